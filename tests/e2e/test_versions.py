"""test_versions: script versions and the migration of journeys in flight.

A daemon on the virtual clock (--virtual-clock, POST /v1/clock) runs version 1 of a
journey (day3, day7, day15); a member joins and is at day7 when the script changes to
version 2 (day7 renamed day5, day10 added) and the daemon gets SIGHUP. Each way a version
may declare for the runs in flight is shown by what the member gets afterwards:
- no migrate (finish on the old version, the default): day7 fires at its old time under
  its old name, nothing of version 2 reaches her; a member joining later runs version 2;
- migrate.map = {day7 = "day5"}: the renamed step fires as day5 at day7's time, the added
  day10 is scheduled, day15 keeps its time;
- the same with retime = true: day5 fires at day 5, as version 2 times it;
- migrate.restart: run 1 ends, run 2 starts at the reload on version 2;
- migrate with finish_old = false and no map: day7 has no step in version 2, so it is
  dropped with a warning in the log, and `hearth reload --plan` says so beforehand.
A started wait moves under its new name with its deadline, and its event takes the new
branch. A journey removed while runs are in flight is warned at load and by the plan.
`hearth reload --plan` (text and --json) is checked before each reload, `hearth stats`
and GET /metrics show the version loaded. No test sleeps to prove that something did not
happen: time moves only by POST /v1/clock, which answers once everything due has run."""

import json
import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq, contains  # noqa: E402
from test_daemon import start, parse_time, VSTART  # noqa: E402

DAY = 86400

V1 = r'''
local journey = require "journey"
journey.define {
  name = "onb", enter = "member.joined", version = "1",
  steps = {
    { name = "day3",  after = "3d",  send = "tips",   category = "service" },
    { name = "day7",  after = "7d",  send = "coupon", category = "service",
      when = function(m) return m.orders == 0 end },
    { name = "day15", after = "15d", task = "call" },
  },
}
'''

# version 2: day7 renamed day5 (due on day 5), day10 added; MIGRATE is the migrate line
V2 = r'''
local journey = require "journey"
journey.define {
  name = "onb", enter = "member.joined", version = "2",
  %s
  steps = {
    { name = "day3",  after = "3d",  send = "tips",   category = "service" },
    { name = "day5",  after = "5d",  send = "coupon2", category = "service",
      when = function(m) return m.orders == 0 end },
    { name = "day10", after = "10d", send = "survey", category = "service" },
    { name = "day15", after = "15d", task = "call" },
  },
}
'''


def joined(eid, member, t):
    return {"id": eid, "type": "member.joined", "member": member,
            "time": harness_time(t)}


def harness_time(t):
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def actions(m):
    """(id, template or task text, seconds after t0) of every action, in id order."""
    out = []
    for a in m["actions"]:
        out.append((a["id"], a.get("template") or a.get("text") or a["action"], parse_time(a["time"])))
    return sorted(out)


def plan(w, *extra):
    rc, out, err = w.run("reload", "--plan", "--db", w.db, "--scripts", w.scripts, *extra)
    eq(rc, 0, "hearth reload --plan exit status (stderr %s)" % err)
    return out


class Case:
    """One run of the scenario: v1 loaded, m-1 joined at t0 and past day3, then v2."""

    def __init__(self, w, d, migrate):
        self.w, self.d = w, d
        self.t0 = parse_time(VSTART)
        d.wait_listening()
        d.post_ok([joined("j-1", "m-1", self.t0)], accepted=1)
        d.move(to=harness_time(self.t0 + 4 * DAY))
        got = [a[0] for a in actions(d.member("m-1"))]
        eq(got, ["onb/m-1/1/day3"], "version 1 ran day3 before the reload")
        self.v1_version = self.stats_version()
        w.write_script("onb.lua", V2 % migrate)
        self.plan_text = plan(w)
        self.plan_json = json.loads(plan(w, "--json"))
        n = len(d.log())
        d.send_signal(signal.SIGHUP)
        d.wait_log("scripts reloaded", "SIGHUP reload", after=n)
        self.reload_log = d.log()[n:]

    def stats_version(self):
        rc, out, err = self.w.run("stats", "--db", self.w.db, "--json")
        eq(rc, 0, "stats --json (stderr %s)" % err)
        return json.loads(out)["script_version"]["hash"]

    def run_to(self, days):
        self.d.move(to=harness_time(self.t0 + days * DAY))
        return actions(self.d.member("m-1"))

    def rel(self, acts):
        return [(i, what, (t - self.t0) / DAY) for i, what, t in acts]


def groups(plan_json, name="onb"):
    for d in plan_json["definitions"]:
        if d["name"] == name:
            return d
    raise AssertionError("no journey %s in the plan: %r" % (name, plan_json))


def test_finish_old_is_the_default_the_old_step_fires_at_its_old_time():
    with Workspace({"onb.lua": V1}) as w:
        with start(w, "--virtual-clock", VSTART) as d:
            c = Case(w, d, "")
            g = groups(c.plan_json)
            eq(g["label"], "2", "the plan names the label of the version it would load")
            eq(len(g["groups"]), 1, "one group in flight: %r" % g)
            eq((g["groups"][0]["version"], g["groups"][0]["label"], g["groups"][0]["step"], g["groups"][0]["members"]),
               (g["groups"][0]["version"], "1", "day7", 1), "the run in flight: version 1 at day7")
            contains(g["groups"][0]["action"], "finishes on its version 1", "plan: finish on the old version")
            contains(c.plan_text, "journey onb: loads version %s (label 2), 1 in flight" % g["hash"], "plan text")
            contains(c.plan_text, "1 on version %s (label 1) at day7: finishes on its version 1"
                     % g["groups"][0]["version"], "plan text group line")
            # a new member after the reload runs version 2
            d.post_ok([joined("j-2", "m-2", c.t0 + 4 * DAY)], accepted=1)
            acts = c.rel(c.run_to(20))
            eq(acts, [("onb/m-1/1/day15", "call", 15.0), ("onb/m-1/1/day3", "tips", 3.0),
                      ("onb/m-1/1/day7", "coupon", 7.0)],
               "m-1 finishes version 1: day7 at its old time, nothing of version 2")
            m2 = [(i, what, (t - c.t0) / DAY) for i, what, t in actions(d.member("m-2"))]
            eq(m2, [("onb/m-2/1/day10", "survey", 14.0), ("onb/m-2/1/day15", "call", 19.0),
                    ("onb/m-2/1/day3", "tips", 7.0), ("onb/m-2/1/day5", "coupon2", 9.0)],
               "m-2 joined after the reload (day 4): version 2")
            st = d.member("m-1")["attrs"]["_journey.onb"]
            eq((st["active"], st["label"]), (False, "1"), "m-1's run completed on version 1")
            v2 = c.stats_version()
            assert v2 != c.v1_version, "stats shows a new script version after the reload"
            status, _, text = d.request("GET", "/metrics")
            eq(status, 200, "GET /metrics")
            contains(text, 'hearth_script_version_info{version="%s"} 1' % v2, "/metrics names the version loaded")
            d.stop_clean()


def test_map_moves_the_run_the_renamed_step_fires_under_its_new_name():
    with Workspace({"onb.lua": V1}) as w:
        with start(w, "--virtual-clock", VSTART) as d:
            c = Case(w, d, 'migrate = { from = "1", map = { day7 = "day5" } },')
            g = groups(c.plan_json)["groups"]
            eq(len(g), 1, "one group: %r" % g)
            contains(g[0]["action"], "moves to this version: day15 -> day15 at its time, day7 -> day5 at its time",
                     "plan: the map")
            contains(g[0]["action"], "adds day10", "plan: the added step")
            assert "warning" not in g[0], "no warning for a complete map: %r" % g[0]
            acts = c.rel(c.run_to(20))
            eq(acts, [("onb/m-1/1/day10", "survey", 10.0), ("onb/m-1/1/day15", "call", 15.0),
                      ("onb/m-1/1/day3", "tips", 3.0), ("onb/m-1/1/day5", "coupon2", 7.0)],
               "m-1 moved: day7 fires as day5 (version 2's template) at day7's time, day10 added")
            st = d.member("m-1")["attrs"]["_journey.onb"]
            eq((st["label"], st["active"]), ("2", False), "the run finished on version 2")
            d.stop_clean()


def test_map_with_retime_times_the_moved_step_by_the_new_definition():
    with Workspace({"onb.lua": V1}) as w:
        with start(w, "--virtual-clock", VSTART) as d:
            c = Case(w, d, 'migrate = { from = "1", map = { day7 = "day5" }, retime = true },')
            g = groups(c.plan_json)["groups"]
            contains(g[0]["action"], "day7 -> day5 re-timed by the new step", "plan: retime")
            acts = c.rel(c.run_to(20))
            eq(acts, [("onb/m-1/1/day10", "survey", 10.0), ("onb/m-1/1/day15", "call", 15.0),
                      ("onb/m-1/1/day3", "tips", 3.0), ("onb/m-1/1/day5", "coupon2", 5.0)],
               "day7 moved to day5 and re-timed: entry + 5d (still ahead of the reload at day 4)")
            d.stop_clean()


def test_restart_ends_the_run_and_starts_a_new_one_on_the_new_version():
    with Workspace({"onb.lua": V1}) as w:
        with start(w, "--virtual-clock", VSTART) as d:
            c = Case(w, d, 'migrate = { from = "1", restart = true },')
            g = groups(c.plan_json)["groups"]
            contains(g[0]["action"], "restarts: ends run 1, run 2 starts now on this version", "plan: restart")
            acts = c.rel(c.run_to(20))
            eq(acts, [("onb/m-1/1/day3", "tips", 3.0), ("onb/m-1/2/day10", "survey", 14.0),
                      ("onb/m-1/2/day15", "call", 19.0), ("onb/m-1/2/day3", "tips", 7.0),
                      ("onb/m-1/2/day5", "coupon2", 9.0)],
               "run 1 stops at the reload (day 4): no 1/day7; run 2 runs version 2 from then")
            st = d.member("m-1")["attrs"]["_journey.onb"]
            eq((st["run"], st["label"], st["active"]), (2, "2", False), "run 2 on version 2, completed")
            counters = json.loads(w.run("stats", "--db", w.db, "--json")[1])
            contains(json.dumps(counters), '"migrated"', "stats counts the migrated run")
            d.stop_clean()


def test_a_step_with_no_counterpart_is_never_dropped_silently():
    with Workspace({"onb.lua": V1}) as w:
        with start(w, "--virtual-clock", VSTART) as d:
            c = Case(w, d, 'migrate = { from = "1", finish_old = false },')
            g = groups(c.plan_json)["groups"]
            eq(g[0].get("warning"), True, "the plan marks the run: %r" % g[0])
            contains(g[0]["action"], "WARNING: dropped (no step here): day7", "plan: what is dropped")
            contains(c.plan_text, "WARNING: dropped (no step here): day7", "plan text")
            warns = [r for r in c.reload_log if r.get("level") == "warn"]
            lost = [r for r in warns if "lose steps" in str(r.get("msg"))]
            eq([(r.get("definition"), r.get("runs")) for r in lost], [("onb", "1")],
               "the reload warns about the runs that lose a step: %r" % warns)
            contains(lost[0].get("first", ""), "m-1: moves to this version", "the warning's example")
            assert any("step 'day7' of version" in str(r.get("msg")) for r in warns), \
                "the reload logs the dropped step: %r" % c.reload_log
            acts = c.rel(c.run_to(20))
            eq(acts, [("onb/m-1/1/day10", "survey", 10.0), ("onb/m-1/1/day15", "call", 15.0),
                      ("onb/m-1/1/day3", "tips", 3.0), ("onb/m-1/1/day5", "coupon2", 5.0)],
               "moved by name: day7 dropped (warned); day5 and day10, new and still ahead, added")
            d.stop_clean()


W1 = r'''
local journey = require "journey"
journey.define {
  name = "pay", enter = "member.joined", version = "1",
  steps = {
    { name = "wait_pay", after = "1d", wait = "order.paid", within = "5d",
      on_event = { name = "thanks", send = "thanks", category = "service" },
      on_timeout = { name = "nudge", send = "nudge", category = "service" } },
  },
}
'''

W2 = r'''
local journey = require "journey"
journey.define {
  name = "pay", enter = "member.joined", version = "2",
  migrate = { from = "1", map = { wait_pay = "wait_order" } },
  steps = {
    { name = "wait_order", after = "1d", wait = "order.paid", within = "5d",
      on_event = { name = "thanks2", send = "thanks2", category = "service" },
      on_timeout = { name = "nudge2", send = "nudge2", category = "service" } },
  },
}
'''


def test_a_started_wait_moves_with_its_deadline():
    with Workspace({"pay.lua": W1}) as w:
        with start(w, "--virtual-clock", VSTART) as d:
            d.wait_listening()
            t0 = parse_time(VSTART)
            d.post_ok([joined("j-1", "m-1", t0)], accepted=1)
            d.move(to=harness_time(t0 + 2 * DAY))          # waiting since day 1, until day 6
            w.write_script("pay.lua", W2)
            g = groups(json.loads(plan(w, "--json")), "pay")["groups"]
            eq([(x["step"], x.get("warning")) for x in g], [("wait_pay (waiting)", None)], "plan: the wait in flight")
            n = len(d.log())
            d.send_signal(signal.SIGHUP)
            d.wait_log("scripts reloaded", "SIGHUP reload", after=n)
            d.move(to=harness_time(t0 + 3 * DAY))
            st = d.member("m-1")["attrs"]["_journey.pay"]
            eq((sorted(st["waits"]), st["waits"]["wait_order"]["deadline"]), (["wait_order"], t0 + 6 * DAY),
               "the wait moved under its new name with its deadline")
            d.post_ok([{"id": "o-1", "type": "order.paid", "member": "m-1", "time": harness_time(t0 + 3 * DAY),
                        "data": {"amount": 10}}],
                      accepted=1)
            d.move(to=harness_time(t0 + 8 * DAY))
            eq([(i, what, (t - t0) / DAY) for i, what, t in actions(d.member("m-1"))],
               [("pay/m-1/1/thanks2", "thanks2", 3.0)], "the event takes version 2's branch; no timeout")
            d.stop_clean()


def test_plan_changes_nothing_and_needs_a_database():
    with Workspace({"onb.lua": V1}) as w:
        rc, out, err = w.run("reload", "--plan", "--db", os.path.join(w.dir, "none.db"), "--scripts", w.scripts)
        eq(rc, 1, "plan without a database (stderr %s)" % err)
        rc, out, err = w.run("reload", "--db", w.db)
        eq(rc, 2, "reload without --plan is a usage error")
        rc, out, err = w.run("reload", "--help")
        eq(rc, 0, "reload --help")
        contains(out, "--plan", "reload --help")
        r = w.import_events([{"id": "j", "type": "member.joined", "member": "m-9"}])
        eq(r.rc, 0, "import (stderr %s)" % r.err)
        before = open(w.db, "rb").read()
        w.write_script("onb.lua", V2 % 'migrate = { from = "1", restart = true },')
        out = plan(w)
        assert re.search(r"1 on version [0-9a-f]{12} \(label 1\) at day3: restarts", out), out
        eq(open(w.db, "rb").read(), before, "the database after --plan")


def test_changing_another_script_or_moving_the_journey_keeps_its_version():
    with Workspace({"onb.lua": V1, "other.lua": 'hearth.on("ping", function(m) m:tag("a") end)\n'}) as w:
        r = w.import_events([{"id": "j", "type": "member.joined", "member": "m-8"}])
        eq(r.rc, 0, "import (stderr %s)" % r.err)
        w.write_script("other.lua", 'hearth.on("ping", function(m) m:tag("b") end)\n')
        p = json.loads(plan(w, "--json"))
        g = groups(p)
        eq([(x["step"], x["action"], x["members"]) for x in g["groups"]], [("day3", "continues on this version", 1)],
           "another script changed: the run stays on its version")
        rc, out, err = w.run("stats", "--db", w.db, "--json")
        assert p["version"] != json.loads(out)["script_version"]["hash"], "the set's version moved"
        # lines added above the journey in its own file: its functions moved, not changed
        w.write_script("onb.lua", "-- onboarding, version 1\n\n\n" + V1)
        g = groups(json.loads(plan(w, "--json")))
        eq([(x["step"], x["action"]) for x in g["groups"]], [("day3", "continues on this version")],
           "lines added above the journey: the run stays on its version")


def test_a_journey_removed_with_runs_in_flight_is_warned():
    with Workspace({"onb.lua": V1}) as w:
        r = w.import_events([{"id": "j", "type": "member.joined", "member": "m-7"}])
        eq(r.rc, 0, "import (stderr %s)" % r.err)
        w.write_script("onb.lua", 'hearth.on("ping", function(m) m:tag("a") end)\n')
        out = plan(w)
        contains(out, "journey onb: no longer defined, 1 in flight", "plan text")
        contains(out, "WARNING: no longer defined: these runs get nothing more", "plan text")
        r = w.import_events([])
        eq(r.rc, 0, "import with the journey removed (stderr %s)" % r.err)
        warns = [x for x in harness.parse_log(r.err) if x.get("level") == "warn"]
        assert any(x.get("journey") == "onb" and "no longer defined" in x.get("msg", "") for x in warns), \
            "the load warns about the removed journey: %r" % r.err


if __name__ == "__main__":
    harness.main()
