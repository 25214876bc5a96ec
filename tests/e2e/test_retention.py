"""test_retention: what leaves the database — `hearth purge` and the daemon's retention.

- purge removes final actions older than the keep (expired, skipped, delivered) and
  nothing else: a pending row older than the keep survives; --dry-run counts the same and
  changes nothing; the archive's lines are exactly the removed rows; the funnel report
  (hearth stats --json) is the same before and after; an archive that cannot be
  written (/dev/full) deletes nothing;
- nothing is produced twice after a purge: a keyed send whose row was purged is refused
  when its key comes again, re-importing the same (history) file applies nothing, and the
  dedupe marks of imported history survive the purge (they count from the import);
- the daemon forgets event ids older than the dedupe window on the virtual clock: inside
  the window an id is a duplicate, after it (and the hourly retention) it is accepted
  again, and its mark is gone from the database;
- `hearth purge` never forgets an id the last daemon's (longer) window still holds;
- `hearth run --keep-actions` purges a delivered action once older than the keep, on the
  virtual clock, and its key stays refused.
Every wait is a bounded poll for something that must happen; time is moved with the
virtual clock (POST /v1/clock), never slept on."""
import json
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq, contains  # noqa: E402
from test_daemon import Daemon, VSTART, format_time  # noqa: E402

SCRIPT = r'''
hearth.on("old", function(m, ev)
  m:send("hello", { key = "hello" })   -- keyed: the key can come again
  m:send("plain")                      -- id from the event
end)
hearth.on("skip", function(m, ev)
  m:send("nope", { status = "skipped", reason = { rule = "test" } })
end)
hearth.on("fresh", function(m, ev)
  m:send("soon")                       -- queued for the log channel: pending without a daemon
end)
hearth.on("again", function(m, ev)
  local _, recorded = m:send("hello", { key = ev.data.key })
  m:add_points(recorded and 100 or 1, "again " .. ev.data.key)
end)
'''

DAY = 86400


def outbox(w):
    """{id: (status, delivery, body as dict)} read straight from the database."""
    con = sqlite3.connect(w.db)
    try:
        rows = con.execute("SELECT id, status, delivery, body FROM outbox").fetchall()
    finally:
        con.close()
    return {r[0]: (r[1], r[2], json.loads(r[3])) for r in rows}


def count(w, sql):
    con = sqlite3.connect(w.db)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def stats(w):
    rc, out, err = w.run("stats", "--db", w.db, "--json")
    eq(rc, 0, "hearth stats exit status (stderr: %s)" % err)
    return json.loads(out)


def purge(w, *extra):
    rc, out, err = w.run("purge", "--db", w.db, *extra)
    eq(rc, 0, "hearth purge %s exit status (stdout: %s, stderr: %s)" % (" ".join(extra), out, err))
    return out


def history(now):
    """Two members' events 60 days ago (with ids), one skipped send and one pending send
    two minutes ago."""
    old = format_time(now - 60 * DAY)
    recent = format_time(now - 120)
    evs = []
    for i, mid in enumerate(("m-1", "m-2")):
        evs.append({"id": "old-%d" % i, "type": "old", "member": mid, "time": old})
    evs.append({"id": "skip-1", "type": "skip", "member": "m-1", "time": recent})
    evs.append({"id": "fresh-1", "type": "fresh", "member": "m-2", "time": recent})
    return evs


def imported(w, evs):
    r = w.import_events(evs)
    eq(r.rc, 0, "import exit status (stderr: %s)" % r.err)
    return r


def test_purge_removes_only_final_actions_and_archives_them():
    with Workspace({"r.lua": SCRIPT}) as w:
        imported(w, history(int(time.time())))
        before = outbox(w)
        statuses = sorted((v[0], v[1]) for v in before.values())
        eq(statuses, [("expired", None)] * 4 + [("queued", "pending"), ("skipped", None)],
           "outbox before the purge (status, delivery)")
        funnel = stats(w)["campaigns"]
        gone = sorted(i for i, v in before.items() if v[1] != "pending")

        out = purge(w, "--keep", "60s", "--dry-run")
        contains(out, "would purge 5 actions", "dry-run count")
        eq(outbox(w), before, "outbox after --dry-run")

        archive = os.path.join(w.dir, "archive.ndjson")
        out = purge(w, "--keep", "60s", "--archive", archive)
        contains(out, "purged 5 actions (expired 4, skipped 1)", "purge output")
        after = outbox(w)
        eq(sorted(after), sorted(set(before) - set(gone)), "rows kept: the pending one only")
        pending = [i for i, v in before.items() if v[1] == "pending"]
        eq(after[pending[0]], before[pending[0]], "the pending row, older than the keep, is untouched")

        with open(archive, encoding="utf-8") as f:
            lines = [json.loads(l) for l in f if l.strip()]
        eq(sorted(l["action"]["id"] for l in lines), gone, "archive ids = removed ids")
        for l in lines:
            status, delivery, body = before[l["action"]["id"]]
            eq(l["action"], body, "archived action %s = its row" % body["id"])
            eq(l["delivery"], delivery, "archived delivery of %s" % body["id"])
        eq(stats(w)["campaigns"], funnel, "the funnel report after the purge")

        out = purge(w, "--keep", "60s", "--archive", archive)
        contains(out, "purged 0 actions", "a second purge finds nothing")


def test_a_purged_action_is_not_produced_twice():
    with Workspace({"r.lua": SCRIPT}) as w:
        now = int(time.time())
        evs = history(now)
        imported(w, evs)
        remembered = stats(w)["totals"]["events_remembered"]
        purge(w, "--keep", "60s")
        eq(count(w, "SELECT count(*) FROM outbox WHERE id = 'r/m-1/hello'"), 0, "the keyed row is purged")
        eq(stats(w)["totals"]["events_remembered"], remembered,
           "history's event ids survive the purge (marked at the import, inside the window)")

        # the same history again: every event a duplicate, nothing new in the outbox
        kept = outbox(w)
        r = imported(w, evs)
        eq((r.summary["accepted"], r.summary["duplicates"]), (0, len(evs)), "re-import accepted/duplicates")
        eq(outbox(w), kept, "outbox after the re-import")

        # the purged key again, and a fresh key as the control
        recent = format_time(now - 10)
        imported(w, [{"type": "again", "member": "m-1", "time": recent, "data": {"key": "hello"}},
                     {"type": "again", "member": "m-2", "time": recent, "data": {"key": "other"}}])
        eq(w.member("m-1")["points"], 1, "m-1: the purged key is refused (recorded = false)")
        eq(w.member("m-2")["points"], 100, "m-2: a new key is recorded")
        eq(count(w, "SELECT count(*) FROM outbox WHERE id = 'r/m-1/hello'"), 0, "no second row for the key")


def test_an_archive_that_cannot_be_written_deletes_nothing():
    if not os.path.exists("/dev/full"):
        return  # no device that refuses writes on this system
    with Workspace({"r.lua": SCRIPT}) as w:
        imported(w, history(int(time.time())))
        before = outbox(w)
        rc, out, err = w.run("purge", "--db", w.db, "--keep", "60s", "--archive", "/dev/full")
        eq(rc, 1, "exit status when the archive cannot be written (stdout: %s)" % out)
        contains(err, "cannot write the archive /dev/full", "the error names the archive")
        eq(outbox(w), before, "nothing deleted without its archive lines")


PING = r'''
hearth.on("ping", function(m, ev)
  local _, recorded = m:send("pong", { key = "pong" })
  m:add_points(recorded and 100 or 1, "ping " .. ev.id)
end)
'''


def test_dedupe_window_purged_on_the_virtual_clock():
    with Workspace({"p.lua": PING}) as w:
        with Daemon(w, "--virtual-clock", VSTART, "--dedupe-window", "2d") as d:
            d.wait_listening()
            ev = {"id": "e-1", "type": "ping", "member": "m-1"}
            d.post_ok([ev], accepted=1)
            d.post_ok([ev], accepted=0, duplicates=1)
            d.move(advance="1d")
            d.post_ok([ev], accepted=0, duplicates=1)
            eq(stats(w)["totals"]["events_remembered"], 1, "the id is remembered inside the window")
            d.move(advance="2d")
            eq(stats(w)["totals"]["events_remembered"], 0, "the id is forgotten after the window")
            d.wait_log("retention: purged", "the retention's log line")
            d.post_ok([ev], accepted=1)
            eq(d.member("m-1")["points"], 101, "the second acceptance ran the handler (its key refused)")
            d.stop_clean()


SEND_PLAIN = r'''
hearth.on("ping", function(m, ev)
  m:add_points(1, "ping " .. ev.id)
  m:send("pong")
end)
'''


def test_event_id_seen_again_after_the_window_is_refused_alone_not_a_500():
    # Regression: an event id sent again after the dedupe window was accepted, its default
    # action id (campaign/member/event/n) met the one recorded the first time, and the whole
    # body failed with a 500 on every retry. Now the handler alone is stopped and recorded
    # as failed, the rest of the body applies, and nothing is done twice.
    with Workspace({"p.lua": SEND_PLAIN}) as w:
        with Daemon(w, "--virtual-clock", VSTART, "--dedupe-window", "2d") as d:
            d.wait_listening()
            ev = {"id": "e-1", "type": "ping", "member": "m-1"}
            d.post_ok([ev], accepted=1)
            d.move(advance="3d")
            eq(stats(w)["totals"]["events_remembered"], 0, "the id is forgotten after the window")
            other = {"id": "e-2", "type": "ping", "member": "m-2"}
            d.post_ok([ev, other], accepted=2)
            m1 = d.member("m-1")
            eq(m1["points"], 1, "her points once: the second run's changes rolled back")
            eq([a["template"] for a in m1["actions"]], ["pong"], "her pong once")
            eq(len(m1["failed"]), 1, "the second run is kept as a failed event")
            contains(m1["failed"][0]["error"], "was recorded before", "the failure says why")
            eq(d.member("m-2")["points"], 1, "the other event of the body applied")
            d.stop_clean()


def test_keep_actions_purges_delivered_rows_in_the_daemon():
    with Workspace({"p.lua": PING}) as w:
        with Daemon(w, "--virtual-clock", VSTART, "--keep-actions", "1d") as d:
            d.wait_listening()
            d.post_ok([{"id": "e-1", "type": "ping", "member": "m-1"}], accepted=1)
            d.move(advance="1s")
            deadline = time.time() + 20
            while count(w, "SELECT count(*) FROM outbox WHERE delivery = 'delivered'") != 1:
                assert time.time() < deadline, "the pong was not delivered: %s" % d.stderr()[-2000:]
                time.sleep(0.05)
            d.move(advance="2d")
            eq(count(w, "SELECT count(*) FROM outbox"), 0, "the delivered row is purged")
            eq(count(w, "SELECT count(*) FROM purged_keys WHERE id = 'p/m-1/pong'"), 1, "its id is kept")
            d.post_ok([{"id": "e-2", "type": "ping", "member": "m-1"}], accepted=1)
            eq(d.member("m-1")["points"], 101, "the purged key is refused when it comes again")
            sent = [r for r in stats(w)["campaigns"] if r["name"] == "p"]
            eq(sent[0]["metrics"].get("sent"), 1, "the funnel still counts the purged send")
            d.stop_clean()


def test_purge_keeps_the_ids_of_the_daemons_longer_window():
    with Workspace({"p.lua": PING}) as w:
        five_days_ago = format_time(int(time.time()) - 5 * DAY)
        with Daemon(w, "--virtual-clock", five_days_ago, "--dedupe-window", "30d") as d:
            d.wait_listening()
            d.post_ok([{"id": "e-1", "type": "ping", "member": "m-1"}], accepted=1)
            d.stop_clean()
        out = purge(w, "--dedupe-window", "1d")
        contains(out, "and 0 event ids", "a shorter --dedupe-window than the daemon's forgets nothing")
        eq(stats(w)["totals"]["events_remembered"], 1, "the id inside the daemon's 30d window")
        with Daemon(w, "--virtual-clock", five_days_ago, "--dedupe-window", "1d") as d:
            d.wait_listening()
            d.stop_clean()
        out = purge(w, "--dedupe-window", "1d")
        contains(out, "and 1 event id older", "once the daemon's window is 1d too, the 5-day-old id goes")
        eq(stats(w)["totals"]["events_remembered"], 0, "events remembered after the purge")


if __name__ == "__main__":
    harness.main(globals())
