"""test_dry_run: `hearth dry-run` end to end — durable timers (m:after, m:at, m:cancel) on
the virtual clock, their order relative to events and to each other, cron sweeps over
tagged members, --db snapshots left untouched, determinism, --tz across a DST change, a
member cache too small to keep anyone changing nothing,
lines refused for the data of well-known types or a time past --max-future (judged
against the real present), a member's own zone (member.updated data.tz) and usage
errors."""

import calendar
import datetime
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq, contains  # noqa: E402

SHANGHAI = 8 * 3600


def epoch(y, mo, d, h=0, mi=0, s=0, offset=SHANGHAI):
    return calendar.timegm((y, mo, d, h, mi, s)) - offset


def t(month, day, hour, minute=0, second=0):
    """An RFC 3339 time in 2026, Asia/Shanghai."""
    return "2026-%02d-%02dT%02d:%02d:%02d+08:00" % (month, day, hour, minute, second)


def dry_run(w, events, *extra, tz="Asia/Shanghai", events_name=None):
    """Write events and dry-run them; return (rc, [actions], stdout, stderr).
    The zone is always passed explicitly so a HEARTH_TZ in the environment cannot leak in."""
    path = w.write_events(events, events_name) if events is not None else None
    args = ["dry-run"]
    if path:
        args += ["--events", path]
    args += ["--scripts", w.scripts, "--tz", tz] + list(extra)
    rc, out, err = w.run(*args)
    actions = []
    for n, line in enumerate(out.splitlines(), 1):
        if not line.strip():
            continue
        try:
            a = json.loads(line)
        except ValueError as exc:
            raise AssertionError("dry-run stdout line %d is not JSON (%s): %r" % (n, exc, line))
        assert isinstance(a, dict), "dry-run stdout line %d is not an object: %r" % (n, line)
        for k in ("id", "time", "member", "campaign", "action", "status"):
            assert k in a, "action on line %d has no %r: %r" % (n, k, a)
        actions.append(a)
    return rc, actions, out, err


def ok_run(w, events, *extra, **kw):
    rc, actions, out, err = dry_run(w, events, *extra, **kw)
    eq(rc, 0, "dry-run exit status (stderr: %s)" % err[-3000:])
    failures = [r for r in harness.parse_log(err) if r.get("msg") == "handler failed"]
    eq(failures, [], "handler failures logged by the dry-run")
    return actions, out, err


def ids(actions):
    return [a["id"] for a in actions]


def by_id(actions, action_id):
    found = [a for a in actions if a["id"] == action_id]
    assert len(found) == 1, "expected exactly one action %r, got %d among %r" % (
        action_id, len(found), ids(actions))
    return found[0]


# ---------------------------------------------------------------- m:after

AFTER = r'''
hearth.on("member.joined", function(m, ev)
  m:after("3d", "nudge", { n = 7 })
end)
hearth.on("nudge", function(m, ev)
  m:send("nudge_tpl", { key = "nudge", vars = { n = ev.data.n, at = ev.time } })
end)
hearth.on("ping", function(m, ev)
  m:task("ping " .. ev.id, { key = "ping-" .. ev.id })
end)
'''

JOIN = {"id": "j-1", "type": "member.joined", "member": "m-1", "time": t(3, 2, 15)}


def test_after_fires_exactly_three_days_after_join():
    with Workspace({"drip.lua": AFTER}) as w:
        actions, _, err = ok_run(w, [JOIN])
        eq(ids(actions), ["drip/m-1/nudge"], "actions with the default --until (30d)")
        a = actions[0]
        eq(a["time"], t(3, 5, 15), "the timer's action time: join + 3 days")
        eq((a["member"], a["campaign"], a["action"], a["status"], a["template"]),
           ("m-1", "drip", "send", "queued", "nudge_tpl"), "the timer's action fields")
        eq(a["vars"], {"n": 7, "at": epoch(2026, 3, 5, 15)},
           "timer data reaches the handler; ev.time is the due time")
        contains(err, "timers fired 1", "dry-run summary on stderr")


def test_after_not_before_its_due_time():
    with Workspace({"drip.lua": AFTER}) as w:
        for until in ("2d", "2d23h59m", "2026-03-05T14:59:59+08:00"):
            actions, _, _ = ok_run(w, [JOIN], "--until", until)
            eq(ids(actions), [], "actions with --until %s (the timer is due at join + 3d)" % until)
        for until in ("3d", "2026-03-05T15:00:00+08:00", "2026-03-05T07:00:00Z"):
            actions, _, _ = ok_run(w, [JOIN], "--until", until)
            eq(ids(actions), ["drip/m-1/nudge"], "actions with --until %s (due exactly then)" % until)
            eq(actions[0]["time"], t(3, 5, 15), "action time with --until %s" % until)


def test_event_just_before_the_timer_comes_first():
    with Workspace({"drip.lua": AFTER}) as w:
        events = [
            JOIN,
            {"id": "p-1", "type": "ping", "member": "m-1", "time": t(3, 5, 14)},       # 2d23h
            {"id": "p-2", "type": "ping", "member": "m-1", "time": t(3, 5, 14, 59, 59)},
            {"id": "p-3", "type": "ping", "member": "m-1", "time": t(3, 5, 15)},       # = due
            {"id": "p-4", "type": "ping", "member": "m-1", "time": t(3, 5, 16)},
        ]
        actions, _, _ = ok_run(w, events)
        eq(ids(actions), ["drip/m-1/ping-p-1", "drip/m-1/ping-p-2", "drip/m-1/nudge",
                          "drip/m-1/ping-p-3", "drip/m-1/ping-p-4"],
           "output order: events before the due time, then the timer (due at or before the "
           "event at 15:00), then the later events")
        eq([a["time"] for a in actions],
           [t(3, 5, 14), t(3, 5, 14, 59, 59), t(3, 5, 15), t(3, 5, 15), t(3, 5, 16)],
           "action times")


# ---------------------------------------------------------------- m:at, ties, nesting

AT = r'''
hearth.on("member.joined", function(m, ev)
  -- absolute times, as RFC 3339 strings and as epoch seconds
  m:at("2026-03-10T09:30:00+08:00", "late")
  m:at(hearth.time("2026-03-04T08:00:00+08:00"), "tie_b")
  m:at("2026-03-04T00:00:00Z", "tie_a")          -- the same instant, set second
  m:at(hearth.time("2026-03-04T08:00:00+08:00"), "tie_c")
end)
for _, k in ipairs({ "late", "tie_a", "tie_b", "tie_c" }) do
  hearth.on(k, function(m, ev) m:send(k, { key = k }) end)
end
'''


def test_at_absolute_time_and_ties_in_the_order_set():
    with Workspace({"at.lua": AT}) as w:
        actions, _, _ = ok_run(w, [JOIN])
        eq(ids(actions), ["at/m-1/tie_b", "at/m-1/tie_a", "at/m-1/tie_c", "at/m-1/late"],
           "timers due at the same instant fire in the order they were set, before later ones")
        eq([a["time"] for a in actions], [t(3, 4, 8)] * 3 + [t(3, 10, 9, 30)], "action times")


NESTED = r'''
hearth.on("member.joined", function(m, ev)
  m:after("1d", "first")
  m:after("3d", "third")
end)
hearth.on("first", function(m, ev)
  m:send("first", { key = "first" })
  m:after("1d", "second")        -- due at join + 2d: before "third" and before the event
end)
hearth.on("second", function(m, ev) m:send("second", { key = "second" }) end)
hearth.on("third", function(m, ev) m:send("third", { key = "third" }) end)
hearth.on("ping", function(m, ev) m:send("ping", { key = "ping" }) end)
'''


def test_timer_set_by_a_timer_handler_fires_before_the_next_event():
    with Workspace({"nest.lua": NESTED}) as w:
        # the only timer pending when the ping arrives is "first"; "second" is set by it
        events = [JOIN, {"id": "p", "type": "ping", "member": "m-1", "time": t(3, 4, 18)}]
        actions, _, _ = ok_run(w, events, "--until", "1h")
        eq(ids(actions), ["nest/m-1/first", "nest/m-1/second", "nest/m-1/ping"],
           "a timer set by a timer handler, due before the next event, fires before it "
           "(and 'third', due after --until, not at all)")
        eq(by_id(actions, "nest/m-1/second")["time"], t(3, 4, 15), "second's time: join + 2d")


def test_timer_set_by_a_timer_handler_due_before_another_pending_timer():
    # "first" and "third" are both due before the ping: the engine fires them together.
    # "second", set by "first" and due between them, must fire between them, and at all.
    # Regression (engine/engine.c, engine_fire_timers): a batch reads up to 1000 due
    # timers, fires them, then runs ST_TIMER_DEL_UPTO ("due < last.due OR (due = last.due
    # AND id <= last.id)"), which also deletes a timer set during the batch that is due
    # before the batch's last row: "second" never fires (the daemon loses it the same way).
    with Workspace({"nest.lua": NESTED}) as w:
        events = [JOIN, {"id": "p", "type": "ping", "member": "m-1", "time": t(3, 7, 18)}]
        actions, _, err = ok_run(w, events, "--until", "1h")
        eq(ids(actions), ["nest/m-1/first", "nest/m-1/second", "nest/m-1/third", "nest/m-1/ping"],
           "order of the timers (join+1d, +2d set by the first, +3d) and the event at +5d")
        eq([a["time"] for a in actions], [t(3, 3, 15), t(3, 4, 15), t(3, 5, 15), t(3, 7, 18)],
           "action times")
        contains(err, "timers fired 3", "dry-run summary")


# ---------------------------------------------------------------- m:cancel

CANCEL = r'''
hearth.on("member.joined", function(m, ev)
  m:after("2d", "remind", { v = "old" })
  m:after("2d", "keep")
  if ev.data.mode == "cancel_now" then
    m:cancel("remind")
  elseif ev.data.mode == "reset_now" then
    m:cancel("remind")
    m:after("4d", "remind", { v = "new" })
  end
end)
hearth.on("order.paid", function(m, ev)
  m:cancel("remind")
  if ev.data.reset then m:after("1d", "remind", { v = "reset" }) end
end)
hearth.on("remind", function(m, ev) m:send("remind", { vars = ev.data }) end)
hearth.on("keep", function(m, ev) m:send("keep", { key = "keep" }) end)
'''


def join(member, mode=None, time=None):
    ev = {"id": "j-" + member, "type": "member.joined", "member": member,
          "time": time or t(3, 2, 15)}
    if mode:
        ev["data"] = {"mode": mode}
    return ev


def test_cancelled_timer_never_fires():
    with Workspace({"c.lua": CANCEL}) as w:
        events = [
            join("m-a", "cancel_now"),                       # cancelled in the same handler
            join("m-b"),                                     # cancelled by a later event
            {"id": "o-b", "type": "order.paid", "member": "m-b", "time": t(3, 3, 15),
             "data": {"amount": 1, "order_id": "o"}},
            join("m-c"),                                     # not cancelled: control
        ]
        actions, _, err = ok_run(w, events, "--until", "60d")
        reminds = [(a["member"], a["vars"]) for a in actions if a["template"] == "remind"]
        eq(reminds, [("m-c", {"v": "old"})], "remind sends (only the uncancelled member's)")
        keeps = sorted(a["member"] for a in actions if a["template"] == "keep")
        eq(keeps, ["m-a", "m-b", "m-c"], "m:cancel(type) leaves the member's other timer types")
        contains(err, "cancelled 2", "dry-run summary counts the cancelled timers")


def test_cancel_then_reset_fires_only_the_new_timer():
    with Workspace({"c.lua": CANCEL}) as w:
        events = [
            join("m-a", "reset_now"),                        # cancel + re-set in one handler
            join("m-b"),
            {"id": "o-b", "type": "order.paid", "member": "m-b", "time": t(3, 3, 15),
             "data": {"amount": 1, "order_id": "o", "reset": True}},
        ]
        actions, _, _ = ok_run(w, events, "--until", "60d")
        reminds = [(a["member"], a["time"], a["vars"]) for a in actions if a["template"] == "remind"]
        eq(reminds, [("m-b", t(3, 4, 15), {"v": "reset"}), ("m-a", t(3, 6, 15), {"v": "new"})],
           "remind sends: only the timers set after the cancel, at their own due times")


# ---------------------------------------------------------------- cron

CRON = r'''
hearth.on("member.joined", function(m, ev)
  if ev.data.vip then m:tag("vip") end
end)
hearth.cron("0 10 * * 3", function(now)
  local seen = 0
  for m in hearth.members{ tag = "vip", chunk = 2 } do
    seen = seen + 1
    m:send("weekly", { key = "weekly/" .. now, vars = { slot = now, wday = hearth.local_date(now).wday } })
  end
  hearth.count("swept", { n = seen })
end)
'''

SWEEP_IN_HANDLER = r'''
hearth.on("order.paid", function(m, ev)
  m:add_points(10, "order")
  for x in hearth.members{ tag = "vip" } do x:tag("never") end
end)
'''


def test_cron_sweeps_tagged_members_every_wednesday():
    with Workspace({"weekly.lua": CRON}) as w:
        vips = ["v-%d" % i for i in range(1, 6)]          # 5 members, chunks of 2
        events = []
        for i, mid in enumerate(vips + ["x-1", "x-2"]):
            events.append({"id": "j-" + mid, "type": "member.joined", "member": mid,
                           "time": t(3, 2, 9, i), "data": {"vip": mid.startswith("v")}})
        # Mon 2 March 09:00 .. Wed 25 March 10:00: Wednesdays 4, 11, 18 and 25 March
        actions, _, err = ok_run(w, events, "--until", "2026-03-25T10:00:00+08:00")
        weekly = [a for a in actions if a.get("template") == "weekly"]
        got = sorted((a["member"], a["time"]) for a in weekly)
        want = sorted((mid, t(3, day, 10)) for mid in vips for day in (4, 11, 18, 25))
        eq(got, want, "one weekly send per tagged member per Wednesday 10:00 in range")
        for a in weekly:
            eq(a["vars"]["wday"], 4, "the slot's local weekday (1 = Sunday) for %s" % a["id"])
            eq(a["id"], "weekly/%s/weekly/%d" % (a["member"], a["vars"]["slot"]), "action id")
        # members are swept in id order, a slot at a time
        for day in (4, 11, 18, 25):
            eq([a["member"] for a in weekly if a["time"] == t(3, day, 10)], vips,
               "members swept on 2026-03-%02d, in id order" % day)


def test_cron_until_just_before_a_slot_does_not_run_it():
    with Workspace({"weekly.lua": CRON}) as w:
        events = [{"id": "j-v", "type": "member.joined", "member": "v-1", "time": t(3, 2, 9),
                   "data": {"vip": True}}]
        actions, _, _ = ok_run(w, events, "--until", "2026-03-11T09:59:59+08:00")
        eq(sorted(a["time"] for a in actions if a.get("template") == "weekly"), [t(3, 4, 10)],
           "only the 4 March slot lies in range")


def test_members_sweep_in_an_event_handler_fails_that_handler():
    with Workspace({"bad.lua": SWEEP_IN_HANDLER, "weekly.lua": CRON}) as w:
        events = [
            {"id": "j-v", "type": "member.joined", "member": "v-1", "time": t(3, 2, 9),
             "data": {"vip": True}},
            {"id": "o-1", "type": "order.paid", "member": "v-1", "time": t(3, 2, 10),
             "data": {"amount": 5, "order_id": "o-1"}},
        ]
        rc, actions, out, err = dry_run(w, events, "--until", "1h")
        assert rc in (0, 1), "dry-run exit status %d (stderr: %s)" % (rc, err)
        fails = [r for r in harness.parse_log(err) if r.get("msg") == "handler failed"]
        eq(len(fails), 1, "handler failures logged (%s)" % err)
        contains(str(fails[0].get("error")), "hearth.members", "the failure names hearth.members")
        contains(str(fails[0].get("error")), "cron", "the failure says sweeps belong in cron")
        eq(fails[0].get("campaign"), "bad", "the failed handler's campaign")
        contains(err, "1 failed", "dry-run summary counts the failed event")
        eq([a["id"] for a in actions if a["campaign"] == "weekly"], ["weekly/v-1/j-v/1"],
           "the other script's actions (its tag on joining)")
        # Regression (engine/engine.c, engine_action -> emit): the dry-run prints an action
        # the moment it is recorded, so the points action of a handler that then fails (and
        # is rolled back) still appears on stdout although it never happened.
        eq([a for a in actions if a["campaign"] == "bad"], [],
           "actions of the failed (rolled back) handler on the dry-run's stdout")


# ---------------------------------------------------------------- --db snapshot

POINTS = r'''
hearth.on("order.paid", function(m, ev)
  m:add_points(math.floor(ev.data.amount), "order " .. ev.data.order_id)
end)
hearth.on("member.joined", function(m, ev)
  m:add_points(100, "welcome")
  m:at(ev.time + hearth.duration("2d"), "followup")
end)
hearth.on("followup", function(m, ev) m:send("followup", { key = "followup" }) end)
'''


def snapshot_state(directory):
    """{file name: (size, mtime_ns, sha256)} of every file in directory. SQLite's shared
    memory index (-shm) is a scratch file any reader may touch, so only its presence counts."""
    out = {}
    for name in sorted(os.listdir(directory)):
        p = os.path.join(directory, name)
        if not os.path.isfile(p):
            continue
        if name.endswith("-shm"):
            out[name] = "present"
            continue
        st = os.stat(p)
        with open(p, "rb") as f:
            out[name] = (st.st_size, st.st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
    return out


def ago(seconds):
    """An RFC 3339 time `seconds` before the real time now, Asia/Shanghai."""
    t0 = int(time.time()) - seconds
    return time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(t0 + 8 * 3600))


def test_db_snapshot_is_used_and_left_byte_identical():
    with Workspace({"pts.lua": POINTS}) as w:
        # import is history run up to now: joined a day ago, the followup (2 days after
        # joining) is still pending in the database afterwards
        r = w.import_events([
            {"id": "j-1", "type": "member.joined", "member": "m-1", "time": ago(86400 + 60)},
            {"id": "o-1", "type": "order.paid", "member": "m-1", "time": ago(86400),
             "data": {"amount": 42, "order_id": "o-1"}},
        ])
        eq(r.rc, 0, "import exit status (stderr: %s)" % r.err)
        eq(w.member("m-1")["points"], 142, "imported balance")
        # keep the events files out of the database's folder so the listing is the db's own
        snapdir = os.path.join(w.dir, "snap")
        os.mkdir(snapdir)
        snap = os.path.join(snapdir, "snap.db")
        os.rename(w.db, snap)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(w.db + suffix):
                os.rename(w.db + suffix, snap + suffix)
        before = snapshot_state(snapdir)
        events = [
            {"id": "o-1", "type": "order.paid", "member": "m-1", "time": ago(600),
             "data": {"amount": 999, "order_id": "dup"}},           # imported before: duplicate
            {"id": "o-2", "type": "order.paid", "member": "m-1", "time": ago(300),
             "data": {"amount": 8, "order_id": "o-2"}},
        ]
        rc, actions, out, err = dry_run(w, events, "--db", snap, "--until", "3d")
        # first of all: the snapshot is untouched, whatever the run did
        eq(snapshot_state(snapdir), before,
           "the snapshot folder (files, sizes, mtimes, sha256) after the dry-run")
        eq(rc, 0, "dry-run exit status (stderr: %s)" % err[-3000:])
        pts = [a for a in actions if a["action"] == "points"]
        eq([(a["delta"], a["balance"]) for a in pts], [(8, 150)],
           "points continue from the snapshot's balance (142 + 8); o-1 is a known duplicate")
        # the imported member's pending timer (due a day from now) fires in the dry-run
        eq([a["id"] for a in actions if a["action"] == "send"], ["pts/m-1/followup"],
           "the snapshot's pending timer fires on the virtual clock")
        contains(err, "1 duplicates", "dry-run summary: the snapshot's event ids are known")
        # and the database still answers as before
        m = harness.run(["member", "m-1", "--db", snap])
        eq(m[0], 0, "hearth member on the snapshot (stderr: %s)" % m[2])
        eq(json.loads(m[1])["points"], 142, "the snapshot's balance after the dry-run")
        eq(snapshot_state(snapdir), before, "the snapshot after reading it with hearth member")


def test_missing_snapshot_is_an_error_and_creates_nothing():
    # Regression (engine/store.c, store_open_copy): when --db names a file that does not
    # exist the dry-run silently starts from an empty database and exits 0, so a mistyped
    # snapshot path gives plausible but wrong results (`hearth member` refuses a missing db).
    with Workspace({"pts.lua": POINTS}) as w:
        missing = os.path.join(w.dir, "nope", "none.db")
        rc, actions, out, err = dry_run(w, [JOIN], "--db", missing)
        assert rc != 0, "dry-run with a missing --db snapshot must fail, got 0 (stdout %r)" % out
        eq(out, "", "stdout with a missing snapshot")
        assert not os.path.exists(missing), "the dry-run created the snapshot %s" % missing


# ---------------------------------------------------------------- determinism

MIXED = AFTER + r'''
hearth.cron("0 10 * * 3", function(now)
  for m in hearth.members{ chunk = 3 } do
    m:add_points(1, "weekly " .. now)
  end
end)
hearth.on("member.joined", function(m, ev)
  m:at(ev.time + 3600, "tie_x")
  m:at(ev.time + 3600, "tie_y")
end)
hearth.on("tie_x", function(m, ev)
  m:task("x", { vars = { alpha = 1, bravo = 2, charlie = 3, delta = 4, echo = 5, foxtrot = 6,
                         golf = 7, hotel = 8, india = { juliet = 9, kilo = 10, lima = 11 } } })
end)
hearth.on("tie_y", function(m, ev) m:task("y") end)
'''


def test_dry_run_is_deterministic():
    with Workspace({"mixed.lua": MIXED}) as w:
        events = []
        for i in range(12):
            mid = "m-%02d" % (i % 5)
            events.append({"id": "e-%d" % i, "type": "member.joined" if i < 5 else "ping",
                           "member": mid, "time": t(3, 2 + i // 3, 8 + i)})
        events.append({"type": "ping", "member": "m-00", "time": t(3, 9, 12)})  # no id
        w.write_events(events, "ev.ndjson")
        outs, parsed = [], []
        for _ in range(3):
            actions, out, _ = ok_run(w, events, events_name="ev.ndjson")
            outs.append(out)
            parsed.append(actions)
        assert len(actions) > 20, "expected a busy run, got %d actions" % len(actions)
        eq(len(set(ids(actions))), len(actions), "action ids are unique")
        # the same actions in the same order, field for field ...
        eq(parsed[1], parsed[0], "actions of two identical dry-runs")
        eq(parsed[2], parsed[0], "actions of a third identical dry-run")
        # ... and byte for byte (a diff of two dry-runs must show only real changes).
        # Regression (engine/json_lua.c, Lua table -> JSON object): keys come out in
        # lua_next order, which depends on Lua's per-state random hash seed, so objects
        # built from Lua tables (vars, payloads, timer data) differ in key order per run.
        for i in (1, 2):
            if outs[i] != outs[0]:
                a = outs[0].splitlines()
                b = outs[i].splitlines()
                k = next(j for j in range(min(len(a), len(b))) if a[j] != b[j]) \
                    if any(x != y for x, y in zip(a, b)) else min(len(a), len(b))
                raise AssertionError("stdout of dry-run %d differs from the first, first at line "
                                     "%d:\n  %s\n  %s" % (i + 1, k + 1, a[k] if k < len(a) else "<eof>",
                                                          b[k] if k < len(b) else "<eof>"))


# ---------------------------------------------------------------- --tz and DST

DST = r'''
hearth.on("member.joined", function(m, ev)
  local d = hearth.local_date(ev.time)
  m:at(hearth.local_time(d.year, d.month, d.day + 2, 10, 0, 0), "wall")
  m:after("2d", "plain")
end)
hearth.on("wall", function(m, ev) m:send("wall", { key = "wall" }) end)
hearth.on("plain", function(m, ev) m:send("plain", { key = "plain" }) end)
'''


def test_tz_new_york_wall_time_across_dst():
    with Workspace({"dst.lua": DST}) as w:
        # US DST starts Sunday 8 March 2026 02:00 local
        ev = {"id": "j", "type": "member.joined", "member": "m-ny",
              "time": "2026-03-07T10:00:00-05:00"}
        actions, _, _ = ok_run(w, [ev], tz="America/New_York")
        eq(by_id(actions, "dst/m-ny/wall")["time"], "2026-03-09T10:00:00-04:00",
           "10:00 local two days after a join on 7 March, across the DST change")
        eq(by_id(actions, "dst/m-ny/plain")["time"], "2026-03-09T11:00:00-04:00",
           "m:after('2d') is 48 hours: 11:00 EDT")
        eq([a["id"] for a in actions], ["dst/m-ny/wall", "dst/m-ny/plain"], "order")
        # the same script in the default zone (no DST): both at 10:00 +08:00 equivalents
        ev8 = dict(ev, time="2026-03-07T10:00:00+08:00")
        actions, _, _ = ok_run(w, [ev8])
        eq(by_id(actions, "dst/m-ny/wall")["time"], "2026-03-09T10:00:00+08:00",
           "10:00 local in Asia/Shanghai")
        eq(by_id(actions, "dst/m-ny/plain")["time"], "2026-03-09T10:00:00+08:00",
           "48 hours later in Asia/Shanghai")


DAILY = r'''
hearth.on("member.joined", function(m, ev) m:tag("daily") end)
hearth.cron("0 10 * * *", function(now)
  for m in hearth.members{ tag = "daily" } do m:send("daily", { key = "d" .. now }) end
end)
'''


def test_tz_new_york_cron_keeps_wall_time_across_dst():
    with Workspace({"daily.lua": DAILY}) as w:
        ev = {"id": "j", "type": "member.joined", "member": "m-ny",
              "time": "2026-03-06T12:00:00-05:00"}
        actions, _, _ = ok_run(w, [ev], "--until", "2026-03-10T12:00:00-04:00", tz="America/New_York")
        eq([a["time"] for a in actions if a["action"] == "send"],
           ["2026-03-07T10:00:00-05:00", "2026-03-08T10:00:00-04:00",
            "2026-03-09T10:00:00-04:00", "2026-03-10T10:00:00-04:00"],
           "a daily 10:00 cron in America/New_York across the DST change")


ZONED = r"""
local journey = require "journey"
journey.define {
  name = "thanks", enter = "order.paid",
  steps = { { name = "next_day", after = "1d", at = "10:00", send = "thanks", category = "service" } },
}
hearth.on("zone.set", function(m, ev) m:set("tz", ev.data.tz) end)
hearth.on("zone.probe", function(m, ev) m:set("probe", pcall(hearth.local_date, nil, ev.data.tz)) end)
hearth.on("zone.read", function(m, ev)
  m:send("seen", { key = ev.id, vars = { tz = m.tz }, category = "service" })
end)
"""


def test_member_updated_tz_moves_the_at_of_a_later_entry():
    with Workspace({"zoned.lua": ZONED}) as w:
        def ev(n, type_, member, time, data=None):
            e = {"id": "e%d" % n, "type": type_, "member": member, "time": time}
            if data is not None:
                e["data"] = data
            return e
        events = [
            ev(1, "member.joined", "m-1", t(11, 9, 12)),
            ev(2, "member.joined", "m-2", t(11, 9, 12)),
            ev(3, "member.updated", "m-1", t(11, 9, 13), {"tz": "America/New_York"}),
            # 10 Nov 12:00 +08:00 = 9 Nov 23:00 in New York
            ev(4, "order.paid", "m-1", t(11, 10, 12), {"amount": 10}),
            ev(5, "order.paid", "m-2", t(11, 10, 12), {"amount": 10}),
        ]
        actions, _, _ = ok_run(w, events, "--until", "3d")
        eq(by_id(actions, "thanks/m-1/1/next_day")["time"], t(11, 10, 23),
           "10:00 EST on 10 November (her next day): 23:00 +08:00")
        eq(by_id(actions, "thanks/m-2/1/next_day")["time"], t(11, 11, 10),
           "without a tz: 10:00 +08:00 on 11 November")


def test_a_bad_tz_set_by_a_script_is_logged_once():
    with Workspace({"zoned.lua": ZONED}) as w:
        # a script asking for the name first (it raises there) does not use up the warning
        events = [{"id": "p", "type": "zone.probe", "member": "m-1", "time": t(11, 9, 11),
                   "data": {"tz": "Mars/Olympus_Mons"}},
                  {"id": "s", "type": "zone.set", "member": "m-1", "time": t(11, 9, 12),
                   "data": {"tz": "Mars/Olympus_Mons"}}]
        events += [{"id": "r%d" % i, "type": "zone.read", "member": "m-1", "time": t(11, 9, 13, i)}
                   for i in range(3)]
        actions, _, err = ok_run(w, events)
        warned = [r for r in harness.parse_log(err) if r.get("tz") == "Mars/Olympus_Mons"]
        eq(len(warned), 1, "warnings about the bad zone (stderr: %s)" % err[-2000:])
        eq([a["vars"]["tz"] for a in actions if a["action"] == "send"], ["Asia/Shanghai"] * 3,
           "m.tz: the engine's zone")


# ---------------------------------------------------------------- usage errors

def test_bad_amount_referrer_tz_and_future_time_rejected_with_line_and_field():
    # Regression: these lines were applied without a word (an order with no spend, a
    # member active until 2031).
    future = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2))
    events = [
        {"type": "member.joined", "member": "m-1", "time": t(11, 2, 9)},
        {"type": "order.paid", "member": "m-2", "time": t(11, 2, 10), "data": {"amount": "12.5"}},
        {"type": "order.paid", "member": "m-3", "time": t(11, 2, 10), "data": {"amount": -5}},
        {"type": "order.refunded", "member": "m-4", "time": t(11, 2, 10), "data": {"note": "x"}},
        {"type": "member.joined", "member": "m-5", "time": t(11, 2, 10), "data": {"referrer": 42}},
        {"type": "member.joined", "member": "m-6", "time": t(11, 2, 10), "data": {"tz": "Asia/Nowhere"}},
        {"type": "checkin", "member": "m-7", "time": "2031-06-01T10:00:00+08:00"},
        {"type": "checkin", "member": "m-8", "time": future.strftime("%Y-%m-%dT%H:%M:%SZ")},
        {"type": "order.paid", "member": "m-9", "time": t(11, 2, 11), "data": {"amount": 0}},
    ]
    with Workspace({"noop.lua": 'hearth.on("checkin", function(m, ev) end)\n'}) as w:
        rc, _actions, _out, err = dry_run(w, events, "--until", "1d")
        eq(rc, 1, "exit status with rejected lines (stderr: %s)" % err[-3000:])
        got = {line: msg for (_f, line, msg) in harness.parse_rejections(err)}
        eq(sorted(got), [2, 3, 4, 5, 6, 7, 8], "rejected line numbers (stderr: %s)" % err[-3000:])
        wants = {2: 'data.amount: must be a number >= 0, got "12.5"',
                 3: "data.amount: must be a number >= 0, got -5",
                 4: "data.amount: missing",
                 5: "data.referrer: must be a member id (a string), got 42",
                 6: "data.tz: unknown time zone 'Asia/Nowhere'",
                 7: "time: 2031-06-01T02:00:00+00:00 is more than 1h after the present",
                 8: "time: "}
        for n, want in wants.items():
            assert got[n].startswith(want), "line %d: got %r, want %r..." % (n, got[n], want)
        contains(err, "events: 2 accepted, 0 duplicates, 7 rejected", "summary counts")

        # the bound is judged against the real present, whatever the virtual clock says
        _actions, _out, err = ok_run(w, events[-2:], "--max-future", "1d", "--until", "1d")
        contains(err, "events: 2 accepted, 0 duplicates, 0 rejected", "2h ahead passes a 1d bound")
        _actions, _out, err = ok_run(w, events[6:7], "--max-future", "0", "--until", "1d")
        contains(err, "events: 1 accepted, 0 duplicates, 0 rejected", "0 = no bound")


def test_bad_until_exits_2():
    with Workspace({"drip.lua": AFTER}) as w:
        for bad in ("soon", "3x", "2026-13-01T00:00:00Z", "", "-"):
            rc, actions, out, err = dry_run(w, [JOIN], "--until", bad)
            eq(rc, 2, "exit status for --until %r (stderr: %s)" % (bad, err))
            eq(out, "", "stdout for --until %r" % bad)
            contains(err, "--until", "stderr for --until %r" % bad)


def test_missing_events_exits_2():
    with Workspace({"drip.lua": AFTER}) as w:
        rc, _, out, err = dry_run(w, None)
        eq(rc, 2, "exit status without --events (stderr: %s)" % err)
        contains(err, "--events", "stderr without --events")
        eq(out, "", "stdout without --events")
        rc, out, err = w.run("dry-run", "--scripts", w.scripts, "--events")
        eq(rc, 2, "exit status for --events with no value (stderr: %s)" % err)
        rc, out, err = w.run("dry-run", "--scripts", w.scripts, "--events",
                             os.path.join(w.dir, "no-such.ndjson"))
        eq(rc, 1, "exit status for an --events file that does not exist (stderr: %s)" % err)
        contains(err, "no-such.ndjson", "stderr names the missing events file")


# ---------------------------------------------------------------- --member-cache

COUNTER = r"""
hearth.on("member.joined", function(m, ev)
  m:set("blob", string.rep("x", 100000)) -- each member holds more than the cache's 1 MiB / 8
  m:after("1d", "tick")
end)
hearth.on("ping", function(m, ev)
  local n = (m:get("n") or 0) + 1
  m:set("n", n)
  if n % 400 == 0 then m:send("milestone", { vars = { n = n } }) end
end)
hearth.on("tick", function(m, ev)
  m:send("tick", { vars = { n = m:get("n") or 0, blob = #m:get("blob") } })
end)
hearth.cron("*/10 * * * *", function(now) end) -- the run commits before each slot
"""


def test_a_small_member_cache_changes_nothing_but_memory():
    # The member cache keeps members between batches up to --member-cache MiB (estimated).
    # With 1 MiB, of three members that each hold 100 KB at most one stays after a commit
    # (the run commits before every cron slot: every 10 minutes of pings) and the others
    # are read again from the database: the run must come out byte for byte the same.
    with Workspace({"counter.lua": COUNTER}) as w:
        events = [{"id": "j-%d" % i, "type": "member.joined", "member": "m-%d" % i,
                   "time": t(3, 1, 9, i)} for i in range(3)]
        events += [{"id": "p-%d" % i, "type": "ping", "member": "m-%d" % (i % 3),
                    "time": t(3, 1, 10 + i // 600, (i // 10) % 60, i % 10)}
                   for i in range(3600)]
        w.write_events(events, "ev.ndjson")
        small, small_out, _ = ok_run(w, events, "--until", "2d", "--member-cache", "1", events_name="ev.ndjson")
        big, big_out, _ = ok_run(w, events, "--until", "2d", events_name="ev.ndjson")
        eq(small_out, big_out, "stdout with a 1 MiB member cache and with the default")
        got = sorted((a["member"], a["template"], a["vars"]["n"]) for a in small
                     if a.get("template") in ("milestone", "tick"))
        want = sorted([("m-%d" % i, "milestone", n) for i in range(3) for n in (400, 800, 1200)] +
                      [("m-%d" % i, "tick", 1200) for i in range(3)])
        eq(got, want, "every ping counted across batches, every timer fired once")
        for bad in ("0", "x", "-5", "2000000"):
            rc, _, out, err = dry_run(w, events[:3], "--member-cache", bad)
            eq(rc, 2, "exit status for --member-cache %r (stderr: %s)" % (bad, err))
            contains(err, "--member-cache", "stderr for --member-cache %r" % bad)


if __name__ == "__main__":
    harness.main()
