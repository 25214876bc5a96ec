"""test_staff: staff routing and tasks end to end. `hearth import` of joins through
channel codes (round-robin, least-loaded, data.staff kept), tasks with a due time, a
task.done and a staff.left; then `hearth stats` (text and --json), `hearth member`
(owners, tasks), and a daemon on a virtual clock: GET /v1/staff and /metrics judge
overdue tasks on that clock, POST /v1/clock moves it; a re-sent staff.left moves nobody
twice, and a hand-off cut by SIGKILL finishes after the restart with each member moved
once."""

import calendar
import json
import os
import sqlite3
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq, contains  # noqa: E402
from test_daemon import start, format_time, parse_time, VSTART  # noqa: E402

SCRIPTS = r'''
local channel = require "channel"
channel.define {
  name = "codes",
  owner = {
    card = { rule = "round_robin", staff = { "s-a", "s-b" } },
    default = { rule = "least_loaded", staff = { "s-a", "s-b", "s-c" } },
  },
}
hearth.staff { fallback = "s-lead", task_due = "1h" }
hearth.on("ask", function(m, ev) m:task("call her", { key = ev.data.key }) end)
'''


def ev(i, typ, member, t, data=None):
    e = {"id": "e-%d" % i, "type": typ, "member": member, "time": format_time(t)}
    if data is not None:
        e["data"] = data
    return e


def stats_json(w):
    rc, out, err = w.run("stats", "--json")
    eq(rc, 0, "hearth stats --json exit status (stderr: %s)" % err)
    return {r["staff"]: r for r in json.loads(out)["staff"]["staff"]}


def metric(text, name, staff):
    needle = '%s{staff="%s"} ' % (name, staff)
    for line in text.splitlines():
        if line.startswith(needle):
            return int(line[len(needle):])
    raise AssertionError("no %s for %s in /metrics:\n%s" % (name, staff, text))


def test_import_routes_owners_and_counts_overdue_tasks():
    with Workspace({"codes.lua": SCRIPTS}) as w:
        now = int(time.time())
        t0 = now - 3 * 3600  # three hours ago: the tasks (due after 1 h) are overdue now
        events = [
            ev(1, "member.joined", "m-1", t0, {"channel": "card"}),
            ev(2, "member.joined", "m-2", t0 + 1, {"channel": "card"}),
            ev(3, "member.joined", "m-3", t0 + 2, {"channel": "card"}),
            ev(4, "member.joined", "m-4", t0 + 3, {"channel": "poster", "staff": "s-c"}),
            ev(5, "member.joined", "m-5", t0 + 4, {"channel": "poster"}),  # a 2, b 1, c 1 -> b
            ev(6, "ask", "m-1", t0 + 10, {"key": "call"}),
            ev(7, "ask", "m-2", t0 + 10, {"key": "call"}),
            ev(8, "ask", "m-3", t0 + 10, {"key": "call"}),
            ev(9, "task.done", "m-1", t0 + 20, {"task": "codes/m-1/call"}),
        ]
        r = w.import_events(events)
        eq(r.rc, 0, "import exit status (stderr: %s)" % r.err)
        owners = {m: w.member(m)["attrs"].get("staff") for m in ("m-1", "m-2", "m-3", "m-4", "m-5")}
        eq(owners, {"m-1": "s-a", "m-2": "s-b", "m-3": "s-a", "m-4": "s-c", "m-5": "s-b"}, "owners")
        s = stats_json(w)
        eq({k: (v["members"], v["open_tasks"], v["overdue"], v["done"]) for k, v in s.items()},
           {"s-a": (2, 1, 1, 1), "s-b": (2, 1, 1, 0), "s-c": (1, 0, 0, 0)}, "stats per staff")
        rc, out, err = w.run("stats")
        eq(rc, 0, "hearth stats exit status (stderr: %s)" % err)
        contains(out, "staff s-a: members 2, open_tasks 1, overdue 1, done 1, done_late 0", "stats text")
        m1 = w.member("m-1")
        eq([(o["from"], o["to"], o["rule"]) for o in m1["owners"]], [(None, "s-a", "round_robin")], "m-1 owners")
        eq([(t["id"], t["staff"], t["done_at"] is not None) for t in m1["tasks"]],
           [("codes/m-1/call", "s-a", True)], "m-1 tasks")

        # s-a leaves: her members and their open tasks go to s-c
        r = w.import_events([ev(10, "staff.left", "s-a", now - 60, {"staff": "s-a", "to": "s-c"})])
        eq(r.rc, 0, "import of staff.left (stderr: %s)" % r.err)
        s = stats_json(w)
        eq({k: (v["members"], v["open_tasks"], v["overdue"]) for k, v in s.items()},
           {"s-a": (0, 0, 0), "s-b": (2, 1, 1), "s-c": (3, 1, 1)}, "after the hand-off")
        m3 = w.member("m-3")
        eq(m3["attrs"]["staff"], "s-c", "m-3's new owner")
        eq((m3["owners"][0]["from"], m3["owners"][0]["rule"], m3["owners"][0]["cause"]),
           ("s-a", "staff.left:to", "e-10"), "the change is logged with its cause")
        eq(w.member("s-a")["attrs"]["staff_left"], {"staff": "s-a", "moved": 2, "done": True}, "her record")
        # the same event again is a duplicate: nobody moves twice
        r = w.import_events([ev(10, "staff.left", "s-a", now - 60, {"staff": "s-a", "to": "s-c"})])
        eq(r.rc, 0, "re-import (stderr: %s)" % r.err)
        eq(len(w.member("m-3")["owners"]), 2, "one hand-off record")


def test_bad_staff_events_are_rejected_with_the_field():
    with Workspace({"codes.lua": SCRIPTS}) as w:
        now = int(time.time())
        r = w.import_events([ev(1, "staff.left", "s-a", now, {"staff": "s-a", "rule": "round_robin"})],
                            json_summary=False)
        contains(r.err, "data.pool", "a rule without a pool")
        r = w.import_events([ev(2, "task.done", "m-1", now, {})], json_summary=False)
        contains(r.err, "data.task", "task.done without data.task")


def test_daemon_judges_overdue_on_its_virtual_clock():
    with Workspace({"codes.lua": SCRIPTS}) as w:
        t0 = parse_time(VSTART)
        with start(w, "--virtual-clock", VSTART) as d:
            d.wait_listening()
            d.post_ok([ev(1, "member.joined", "m-1", t0, {"channel": "card"}),
                       ev(2, "ask", "m-1", t0, {"key": "call"})], accepted=2)
            status, _, body = d.request("GET", "/v1/staff")
            eq(status, 200, "GET /v1/staff")
            eq(body["staff"], [{"staff": "s-a", "members": 1, "open_tasks": 1, "overdue": 0, "done": 0,
                                "done_late": 0}], "before the due time")
            d.move(advance="1h")
            _, _, body = d.request("GET", "/v1/staff")
            eq(body["staff"][0]["overdue"], 1, "overdue at the due time on the virtual clock")
            _, _, text = d.request("GET", "/metrics")
            eq((metric(text, "hearth_staff_members", "s-a"), metric(text, "hearth_staff_tasks_open", "s-a"),
                metric(text, "hearth_staff_tasks_overdue", "s-a")), (1, 1, 1), "metrics")
            d.post_ok({"id": "e-3", "type": "task.done", "member": "m-1", "data": {"task": "codes/m-1/call"}},
                      accepted=1)
            _, _, text = d.request("GET", "/metrics")
            eq(metric(text, "hearth_staff_tasks_overdue", "s-a"), 0, "done: no longer overdue")
            d.stop_clean()
        s = stats_json(w)
        eq((s["s-a"]["done"], s["s-a"]["done_late"]), (1, 1), "hearth stats after the daemon (member %r)"
           % (w.member("m-1")["tasks"],))


def test_a_hand_off_cut_by_a_kill_moves_each_member_exactly_once():
    """SIGKILL as soon as the staff.left is accepted, wherever the hand-off is; after the
    restart it finishes, and no member was moved twice or left behind."""
    n = 2600  # six windows of 500
    with Workspace({"codes.lua": SCRIPTS}) as w:
        now = int(time.time())
        joins = [ev(i, "member.joined", "m-%05d" % i, now - 3600, {"staff": "s-a" if i % 2 else "s-b"})
                 for i in range(1, n + 1)]
        r = w.import_events(joins)
        eq(r.rc, 0, "import of the members (stderr: %s)" % r.err)
        with start(w) as d:
            d.wait_listening()
            d.post_ok({"id": "left-1", "type": "staff.left", "member": "s-a",
                       "data": {"staff": "s-a", "rule": "round_robin", "pool": ["s-c", "s-d"]}}, accepted=1)
            d.kill()
        with start(w) as d:
            d.wait_listening()
            d.wait_member("s-a", lambda m: m["attrs"].get("staff_left", {}).get("done"), "the hand-off is done",
                          timeout=60)
            d.stop_clean()
        db = sqlite3.connect(w.db)
        try:
            twice = db.execute("SELECT member FROM staff_log WHERE rule LIKE 'staff.left%'"
                               " GROUP BY member HAVING count(*) > 1").fetchall()
            moved = db.execute("SELECT count(*) FROM staff_log WHERE rule LIKE 'staff.left%'").fetchone()[0]
            left = db.execute("SELECT count(*) FROM members WHERE json_extract(attrs, '$.staff') = 's-a'").fetchone()[0]
        finally:
            db.close()
        eq((twice, moved, left), ([], n // 2, 0), "moved exactly once each, none left behind")
        s = stats_json(w)
        eq({k: v["members"] for k, v in s.items()},
           {"s-a": 0, "s-b": n // 2, "s-c": n // 4, "s-d": n // 4}, "members per staff after the restart")
        eq(w.member("s-a")["attrs"]["staff_left"]["moved"], n // 2, "her record counts every move once")


if __name__ == "__main__":
    harness.main()
