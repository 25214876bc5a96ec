"""test_broadcast: dated one-off sends (hearth.broadcast) end to end — `hearth broadcast
count` counts the audience without sending; `list` shows each broadcast's state; `start`
arms one from the CLI and the next import runs it, or a running daemon picks it up; a
stale one is expired (its sends in an import, the whole of it in a daemon a day late);
the bundled month's dry-run shows double11 and its audience; a daemon killed with
SIGKILL in the middle of a broadcast resumes it after a restart, and every member of the
audience ends with exactly one action, nobody else with any.

No test waits for something not to happen: each polls the database (read-only) until
what it waits for is there, with a generous hang guard."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq, contains  # noqa: E402

# Members join with data n (a number) and vip (a boolean); the audience of "promo" is the
# vip members whose n is not a multiple of 3. fn spins a little for each member so that a
# sweep over a few thousand takes long enough to be killed in the middle (the test checks
# that it was, and tries a larger audience when it was not).
SCRIPT = r'''
hearth.on("member.joined", function(m, ev)
  m:set("n", ev.data.n)
  if ev.data.vip then m:tag("vip") end
end)

hearth.broadcast {
  name = "promo",
  chunk = 50,
  audience = { tag = "vip", where = function(m) return m:get("n") % 3 ~= 0 end },
  fn = function(m)
    local x = 0
    for i = 1, SPIN do x = x + i end
    m:send("promo_coupon", { category = "service", vars = { x = x % 7 } })
  end,
}

hearth.broadcast {
  name = "city",
  at = CITY_AT,
  audience = { attrs = { n = 4 } },
  fn = function(m) m:send("old_news", { category = "service" }) end,
}
'''

# Added after an import, so that the daemon is the first to meet it.
LATE = r'''
hearth.broadcast {
  name = "late",
  at = LATE_AT,
  fn = function(m) m:send("late_news", { category = "service" }) end,
}
'''

GUARD = harness.HANG_GUARD


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def workspace(spin=200, city_at="2099-01-01T10:00:00+08:00"):
    return Workspace({"promo.lua": SCRIPT.replace("SPIN", str(spin)).replace("CITY_AT", '"%s"' % city_at)})


def join_events(n, at=None):
    evs = [{"id": "j-%05d" % i, "type": "member.joined", "member": "m-%05d" % i,
            "data": {"n": i, "vip": i % 2 == 0}} for i in range(n)]
    for ev in evs:
        if at is not None:
            ev["time"] = rfc3339(at)
    return evs


def audience(n):
    return {"m-%05d" % i for i in range(n) if i % 2 == 0 and i % 3 != 0}


def db_rows(w, sql, args=()):
    """Read the database the way another process would (the daemon may be writing)."""
    con = sqlite3.connect("file:%s?mode=ro" % w.db, uri=True, timeout=GUARD)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def broadcast_row(w, name):
    rows = db_rows(w, "SELECT state, seen, matched, cursor FROM broadcasts WHERE name = ?", (name,))
    return rows[0] if rows else None


def promo_actions(w):
    """member -> number of promo_coupon actions in the outbox."""
    rows = db_rows(w, "SELECT member, count(*) FROM outbox WHERE body LIKE '%promo_coupon%' GROUP BY member")
    return dict(rows)


def poll(what, check, guard=GUARD, every=0.02):
    end = time.monotonic() + guard
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise AssertionError("gave up waiting for %s after %d s" % (what, guard))


def broadcast_cmd(w, *args):
    return w.run("broadcast", *args, "--db", w.db, "--scripts", w.scripts)


def start_daemon(w):
    return subprocess.Popen([harness.BIN, "run", "--db", w.db, "--scripts", w.scripts,
                             "--listen", "127.0.0.1:0"], cwd=w.dir, env=harness._env(None),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(w.dir, "daemon.log"), "ab"))


def stop(p, sig):
    if p.poll() is None:
        p.send_signal(sig)
    try:
        return p.wait(timeout=GUARD)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError("daemon did not exit after signal %d" % sig)


# ---------------------------------------------------------------- count, list, start

def test_count_counts_the_audience_and_sends_nothing():
    with workspace() as w:
        r = w.import_events(join_events(30))
        eq(r.rc, 0, "import (stderr: %s)" % r.err)
        rc, out, err = broadcast_cmd(w, "count", "promo")
        eq(rc, 0, "count exit (stderr: %s)" % err)
        eq(out.strip(), "promo: %d members in the audience (15 looked at)" % len(audience(30)), "count")
        rc, out, err = broadcast_cmd(w, "count", "promo", "--json")
        eq(out.strip(), '{"name":"promo","matched":%d,"seen":15}' % len(audience(30)), "count --json")
        eq(promo_actions(w), {}, "nothing sent by a count")
        eq(broadcast_row(w, "promo"), None, "a count leaves no progress behind")
        rc, out, err = broadcast_cmd(w, "count", "nope")
        eq(rc, 1, "count of an unknown broadcast")
        contains(err, "no broadcast 'nope'", "its message")


def test_a_stale_broadcast_in_an_import_is_recorded_expired_like_the_rest_of_history():
    now = int(time.time())
    with workspace(city_at=rfc3339(now - 5 * 86400)) as w:
        r = w.import_events(join_events(10, at=now - 10 * 86400))
        eq(r.rc, 0, "import (stderr: %s)" % r.err)
        eq(broadcast_row(w, "city")[:3], ("done", 10, 1), "it ran at its time, in the history")
        eq(db_rows(w, "SELECT member, status FROM outbox WHERE body LIKE '%old_news%'"),
           [("m-00004", "expired")], "its send is expired, as every send that old")
        rc, out, err = broadcast_cmd(w, "list")
        eq(rc, 0, "list (stderr: %s)" % err)
        lines = out.splitlines()
        eq(len(lines), 2, "two broadcasts listed: %r" % out)
        contains(lines[0], "promo", "first declared first")
        contains(lines[0], "declared", "promo was never started")
        contains(lines[1], "done", "city ran")


def test_the_daemon_does_not_send_a_broadcast_a_day_late():
    now = int(time.time())
    with workspace() as w:
        eq(w.import_events(join_events(10)).rc, 0, "import")
        w.write_script("late.lua", LATE.replace("LATE_AT", '"%s"' % rfc3339(now - 2 * 86400)))
        d = start_daemon(w)
        try:
            poll("the daemon to expire 'late'", lambda: (broadcast_row(w, "late") or ("",))[0] == "expired")
        finally:
            eq(stop(d, signal.SIGTERM), 0, "clean stop")
        eq(db_rows(w, "SELECT count(*) FROM outbox WHERE body LIKE '%late_news%'"), [(0,)], "nothing sent")
        rc, out, err = broadcast_cmd(w, "start", "late")
        eq(rc, 0, "an expired broadcast may be started again (stderr: %s)" % err)


def test_start_from_the_cli_runs_in_the_next_import():
    with workspace() as w:
        eq(w.import_events(join_events(40)).rc, 0, "import")
        eq(promo_actions(w), {}, "a broadcast without `at` waits to be started")
        rc, out, err = broadcast_cmd(w, "start", "promo")
        eq(rc, 0, "start (stderr: %s)" % err)
        contains(out, "promo: scheduled for", "start's answer")
        eq(broadcast_row(w, "promo")[0], "scheduled", "armed")
        eq(w.import_events([]).rc, 0, "an empty import runs the clock on to now")
        eq(promo_actions(w), {m: 1 for m in audience(40)}, "one coupon per audience member")
        state, seen, matched, _ = broadcast_row(w, "promo")
        eq((state, seen, matched), ("done", 20, len(audience(40))), "progress")
        rc, out, err = broadcast_cmd(w, "start", "promo")
        eq(rc, 1, "a second start is refused")
        contains(err, "runs once", "its message")
        rc, out, err = broadcast_cmd(w, "start", "promo", "--at", "tomorrow")
        eq(rc, 2, "a bad --at is a usage error")


def test_the_bundled_month_dry_run_shows_double11_and_its_audience():
    rc, out, err = harness.run(["dry-run", "--events", os.path.join(harness.ROOT, "examples/events/month.ndjson"),
                                "--scripts", os.path.join(harness.ROOT, "scripts"), "--until", "30d"])
    eq(rc, 0, "dry-run (stderr: %s)" % err[-2000:])
    contains(err, "broadcast double11 at 2026-11-11T10:00:00+08:00: done, 7 members in the audience "
                  "(60 looked at)", "the summary's broadcast line")
    coupons = [json.loads(l) for l in out.splitlines() if '"d11_coupon"' in l]
    eq(len(coupons), 7, "one coupon per audience member")
    eq(sorted(c["status"] for c in coupons), ["capped"] + ["queued"] * 6, "caps judge them")
    eq({c["time"] for c in coupons}, {"2026-11-11T10:00:00+08:00"}, "at its time")


# ---------------------------------------------------------------- kill -9 mid-way

def kill_mid_broadcast(w, members):
    """Start promo in a running daemon and SIGKILL it once some chunks committed.
    True when it died mid-way (the broadcast still running), False when it finished first."""
    d = start_daemon(w)
    try:
        rc, out, err = broadcast_cmd(w, "start", "promo")
        eq(rc, 0, "start (stderr: %s)" % err)
        poll("the daemon to commit a few chunks of promo",
             lambda: (broadcast_row(w, "promo") or ("", 0))[1] >= 100)
        eq(stop(d, signal.SIGKILL), -signal.SIGKILL, "the daemon died of SIGKILL")
    finally:
        if d.poll() is None:
            d.kill()
            d.wait()
    state, seen, _, _ = broadcast_row(w, "promo")
    return state == "running" and seen < members // 2


def test_kill_9_mid_broadcast_then_resume_sends_each_member_exactly_once():
    members, spin = 4000, 4000
    for attempt in range(4):
        with workspace(spin) as w:
            eq(w.import_events(join_events(members)).rc, 0, "import")
            if not kill_mid_broadcast(w, members):
                print("  the broadcast of %d members finished before the kill: trying more" % members)
                members, spin = members * 2, spin * 2  # it finished before the kill: more work
                continue
            sent_before = promo_actions(w)
            assert 0 < len(sent_before) < len(audience(members)), \
                "killed mid-way: %d of %d sent" % (len(sent_before), len(audience(members)))
            eq(set(sent_before.values()), {1}, "no member twice before the restart")
            d = start_daemon(w)
            try:
                poll("the restarted daemon to finish promo", lambda: broadcast_row(w, "promo")[0] == "done")
            finally:
                eq(stop(d, signal.SIGTERM), 0, "clean stop")
            eq(promo_actions(w), {m: 1 for m in audience(members)}, "every audience member exactly once")
            state, seen, matched, _ = broadcast_row(w, "promo")
            eq((seen, matched), (members // 2, len(audience(members))), "progress counts the whole sweep once")
            ids = db_rows(w, "SELECT id FROM outbox WHERE member = 'm-00002' AND body LIKE '%promo_coupon%'")
            eq(ids, [("promo/m-00002/broadcast:promo/1",)], "the id is derived from broadcast and member")
            return
    raise AssertionError("the broadcast always finished before the kill, even with %d members" % members)


if __name__ == "__main__":
    harness.main()
