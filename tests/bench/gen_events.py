#!/usr/bin/env python3
"""gen_events.py: seeded NDJSON event generator for the Hearth import benchmark.

Standard library only. Produces, in time order, one member.joined per member (at a random
time in the first --join-days days, data.channel from a small set), then check-ins and
order.paid events (data.amount, data.order_id) spread uniformly between each member's join
and the end of the --days window. Which member an activity event belongs to is drawn from a
Zipf/power-law weight (rank k weighs 1/k**s, s = --zipf, ranks shuffled over the members), so
a few members produce many events and most produce few. Every event has a unique "id"
(e-0000001, ... in output order). Times are local wall-clock times with a fixed +08:00
offset, starting at local midnight of --start. Same options + same seed = same bytes.

  --members N     members, each with one member.joined (default 100000)
  --days D        length of the window in days (default 90)
  --events E      total events including the joins, E >= N (default 1000000)
  --seed S        random seed (default 1)
  --start DATE    first local day, YYYY-MM-DD (default 2026-01-01)
  --join-days J   joins happen in the first J days (default 7, at most D)
  --order-share F share of activity events that are order.paid, the rest check-ins (0.3)
  --zipf S        Zipf exponent of member activity (default 1.1)
  --out FILE      output file (default: standard output)
"""
import argparse
import datetime
import itertools
import random
import sys

CHANNELS = ("poster", "live", "store", "referral", "ad", "wecom")
KINDS = 3  # 0 member.joined, 1 checkin, 2 order.paid (sort key packs time, member, kind)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Seeded NDJSON event generator for the Hearth import benchmark "
        "(member.joined, checkin, order.paid; Zipf-skewed member activity; time order).")
    p.add_argument("--members", type=int, default=100000, help="members, each joins once (100000)")
    p.add_argument("--days", type=int, default=90, help="days covered by the events (90)")
    p.add_argument("--events", type=int, default=1000000, help="total events incl. joins, >= members (1000000)")
    p.add_argument("--seed", type=int, default=1, help="random seed (1)")
    p.add_argument("--start", default="2026-01-01", help="first local day, YYYY-MM-DD, +08:00 (2026-01-01)")
    p.add_argument("--join-days", type=int, default=7, help="joins fall in the first J days (7, at most --days)")
    p.add_argument("--order-share", type=float, default=0.3, help="share of order.paid among activity (0.3)")
    p.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of member activity (1.1)")
    p.add_argument("--out", default="-", help="output file (default: standard output)")
    a = p.parse_args(argv)
    if a.members < 1 or a.days < 1 or a.events < a.members:
        p.error("need --members >= 1, --days >= 1 and --events >= --members (each member joins once)")
    if not 0.0 <= a.order_share <= 1.0:
        p.error("--order-share must be between 0 and 1")
    try:
        a.start_date = datetime.date.fromisoformat(a.start)
    except ValueError:
        p.error("--start must be YYYY-MM-DD")
    a.join_days = max(1, min(a.join_days, a.days))
    return a


def generate(a, out):
    rnd = random.Random(a.seed)
    n, span = a.members, a.days * 86400
    width = len(str(n))
    mids = ["m-%0*d" % (width, i + 1) for i in range(n)]
    # Join times: seconds since local midnight of --start.
    join = [rnd.randrange(a.join_days * 86400) for _ in range(n)]
    # Zipf weights by rank, ranks shuffled so the busiest member is not simply m-1.
    ranks = list(range(1, n + 1))
    rnd.shuffle(ranks)
    cum = list(itertools.accumulate(r ** -a.zipf for r in ranks))
    # Sort keys: (time * n + member) * KINDS + kind; activity is strictly after the join.
    keys = [(join[i] * n + i) * KINDS for i in range(n)]
    activity = a.events - n
    rr = rnd.random
    for i in rnd.choices(range(n), cum_weights=cum, k=activity):
        j = join[i] + 1
        t = j + int(rr() * (span - j)) if span > j else j
        keys.append((t * n + i) * KINDS + (2 if rr() < a.order_share else 1))
    keys.sort()
    # Precomputed text: the local date of each day and every time of day.
    ndays = keys[-1] // (n * KINDS) // 86400 + 1
    dates = [(a.start_date + datetime.timedelta(days=d)).isoformat() for d in range(ndays)]
    tods = ["T%02d:%02d:%02d+08:00" % (s // 3600, s // 60 % 60, s % 60) for s in range(86400)]
    buf, order_n, w = [], 0, out.write
    for seq, k in enumerate(keys, 1):
        rest, kind = divmod(k, KINDS)
        t, i = divmod(rest, n)
        when = dates[t // 86400] + tods[t % 86400]
        if kind == 1:
            buf.append('{"id":"e-%07d","type":"checkin","member":"%s","time":"%s"}\n'
                       % (seq, mids[i], when))
        elif kind == 2:
            order_n += 1
            amount = max(1.0, rnd.lognormvariate(4.0, 0.8))  # median ~55, never below 1
            buf.append('{"id":"e-%07d","type":"order.paid","member":"%s","time":"%s",'
                       '"data":{"amount":%.2f,"order_id":"o-%d"}}\n'
                       % (seq, mids[i], when, amount, order_n))
        else:
            buf.append('{"id":"e-%07d","type":"member.joined","member":"%s","time":"%s",'
                       '"data":{"channel":"%s"}}\n'
                       % (seq, mids[i], when, CHANNELS[rnd.randrange(len(CHANNELS))]))
        if len(buf) >= 8192:
            w("".join(buf))
            buf.clear()
    w("".join(buf))


def main(argv=None):
    a = parse_args(argv)
    if a.out == "-":
        generate(a, sys.stdout)
        sys.stdout.flush()
    else:
        with open(a.out, "w", encoding="ascii", buffering=1 << 20) as f:
            generate(a, f)


if __name__ == "__main__":
    main()
