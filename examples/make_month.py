#!/usr/bin/env python3
"""make_month.py: writes events/month.ndjson, a small store's November 2026 (seeded, so the
file is the same every time): 120 members joining through channel codes (some invited by
a friend), birthdays via member.updated, daily check-ins with streaks and gaps, orders and
a refund, replies, a few unsubscribes and deleted friends. Run: python3 make_month.py"""
import json
import random
from datetime import datetime, timedelta, timezone

TZ = timezone(timedelta(hours=8))
START = datetime(2026, 11, 1, tzinfo=TZ)
CHANNELS = ["poster", "live", "guide_card", "ad"]
STAFF = ["staff-li", "staff-wang", "staff-zhao"]

rng = random.Random(20261101)
events = []
n = 0


def add(t, type_, member, data=None):
    global n
    n += 1
    ev = {"id": "nov-%05d" % n, "type": type_, "member": member,
          "time": t.isoformat(timespec="seconds")}
    if data:
        ev["data"] = data
    events.append(ev)


members = []
for i in range(1, 121):
    mid = "m-%04d" % i
    joined = START + timedelta(days=rng.randrange(0, 20), hours=rng.randrange(9, 21),
                               minutes=rng.randrange(60))
    data = {"channel": rng.choice(CHANNELS), "store": "hz-01", "staff": rng.choice(STAFF)}
    if members and rng.random() < 0.25:
        data["referrer"] = rng.choice(members)[0]
    if i == 1:
        joined = START + timedelta(hours=10)
        data = {"channel": "poster", "store": "hz-01", "staff": "staff-li"}
    members.append((mid, joined))
    add(joined, "member.joined", mid, data)
    if rng.random() < 0.5:
        bday = "%02d-%02d" % (rng.choice([11, 12, 1, 6]), rng.randrange(1, 29))
        add(joined + timedelta(minutes=5), "member.updated", mid, {"birthday": bday, "city": "Hangzhou"})
    keen = rng.random()
    day = joined
    order_no = 0
    while True:
        day = day + timedelta(days=1 if rng.random() < keen else rng.randrange(2, 6))
        if day >= START + timedelta(days=30):
            break
        t = day.replace(hour=rng.randrange(7, 22), minute=rng.randrange(60))
        add(t, "checkin", mid)
        if rng.random() < 0.12:
            order_no += 1
            add(t + timedelta(minutes=20), "order.paid", mid,
                {"amount": round(rng.uniform(39, 599), 1), "order_id": "o-%s-%d" % (mid, order_no)})
        if rng.random() < 0.05:
            add(t + timedelta(hours=1), "message.replied", mid)
    if rng.random() < 0.04:
        add(joined + timedelta(days=rng.randrange(3, 10)), "member.unsubscribed", mid)
    elif rng.random() < 0.03:
        add(joined + timedelta(days=rng.randrange(5, 12)), "friend.deleted", mid)

# m-0001: a keen member with a refund, for the README's `hearth member m-0001`
add(START + timedelta(days=2, hours=11), "order.paid", "m-0001", {"amount": 268.0, "order_id": "o-m-0001-x"})
add(START + timedelta(days=3, hours=9), "order.refunded", "m-0001", {"amount": 68.0, "order_id": "o-m-0001-x"})

events.sort(key=lambda e: (e["time"], e["id"]))
with open("events/month.ndjson", "w") as f:
    for e in events:
        f.write(json.dumps(e, separators=(",", ":")) + "\n")
print("wrote events/month.ndjson: %d events, %d members" % (len(events), len(members)))
