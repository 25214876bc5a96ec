"""test_diff: `hearth diff` end to end — the shipped scripts against a copy with
onboarding's day 7 moved to day 5 (changed funnel rows and members, exit 1; the members
checked against two dry-runs compared here independently), against an identical copy
(exit 0), --member on diff and dry-run, repeated steps matched by occurrence, events on
standard input, usage errors; `hearth dry-run --member ID --timeline` on the bundled
month; log lines of a dry-run carrying the virtual time."""

import calendar
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq, contains  # noqa: E402

MONTH = os.path.join(harness.ROOT, "examples", "events", "month.ndjson")
SCRIPTS = os.path.join(harness.ROOT, "scripts")
TZ = "Asia/Shanghai"


def copy_scripts(w, name, edit=None):
    """A copy of the shipped scripts (tests left out) under w.dir/name, edited by edit(src)
    for onboarding.lua."""
    dst = os.path.join(w.dir, name)
    shutil.copytree(SCRIPTS, dst, ignore=shutil.ignore_patterns("*_test.lua"))
    if edit:
        path = os.path.join(dst, "onboarding.lua")
        with open(path, encoding="utf-8") as f:
            src = f.read()
        new = edit(src)
        assert new != src, "the edit changed nothing"
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return dst


def day7_to_day5(src):
    return src.replace('name = "day7",  after = "7d"', 'name = "day5",  after = "5d"')


def diff(w, old, new, *extra, events=MONTH, stdin=None):
    return w.run("diff", "--events", events, "--scripts", old, "--with", new, "--tz", TZ, *extra, stdin=stdin)


def ndjson(text):
    return [json.loads(l) for l in text.splitlines() if l.strip()]


_DRY_RUNS = {}


def dry_run_actions(w, scripts, *extra, label=None):
    """The actions of a dry-run of the month; with a label, remembered for the module
    (the runs are deterministic, and each takes seconds under the sanitizers)."""
    if label in _DRY_RUNS:
        return _DRY_RUNS[label]
    rc, out, err = w.run("dry-run", "--events", MONTH, "--scripts", scripts, "--tz", TZ, *extra)
    eq(rc, 0, "dry-run exit status (stderr %r)" % err[-400:])
    actions = ndjson(out)
    if label:
        _DRY_RUNS[label] = actions
    return actions


def what(a):
    kind = a["action"]
    if kind == "send":
        return a.get("template", "")
    if kind == "task":
        return a.get("text", "")
    if kind in ("tag", "untag"):
        return a.get("tag", "")
    if kind == "points":
        return "%+d" % a["delta"]
    return ""


def keyed(actions):
    """Per member: {(campaign, step, kind, occurrence): (time, status, what)}, the final
    status of an id judged again kept at the place of its first recording, occurrences
    counted in time order — the matching REFERENCE.md documents, written out here."""
    final, order = {}, []
    for a in actions:
        if a["id"] not in final:
            order.append(a["id"])
        final[a["id"]] = a
    per = {}
    for i, aid in enumerate(order):
        a = final[aid]
        t = calendar.timegm(time.strptime(a["time"][:19], "%Y-%m-%dT%H:%M:%S"))  # one zone throughout
        per.setdefault(a["member"], []).append((a["campaign"], a.get("step", ""), a["action"], t, i, a))
    out = {}
    for m, rows in per.items():
        rows.sort(key=lambda r: (r[0], r[1], r[2], r[3], r[4]))
        seen, d = {}, {}
        for c, s, k, t, i, a in rows:
            n = seen.get((c, s, k), 0)
            seen[(c, s, k)] = n + 1
            d[(c, s, k, n)] = (a["time"], a["status"], what(a))
        out[m] = d
    return out


def test_day7_moved_to_day5_reports_steps_and_members_and_exits_1():
    with Workspace() as w:
        new = copy_scripts(w, "new", day7_to_day5)
        rc, out, err = diff(w, SCRIPTS, new)
        eq(rc, 1, "exit status when something differs (stderr %r)" % err[-400:])
        contains(out, "campaign onboarding step day7: sent ", "the old step's count")
        contains(out, "campaign onboarding step day5: sent 0 -> ", "the new step's count")
        contains(out, "members whose actions changed:", "the members section")
        contains(out, "onboarding/day5 send first_order_coupon", "a member's first differing action")
        assert out.rstrip().endswith("different"), "the last line says different: %r" % out[-200:]
        # the changed members, against two dry-runs compared here
        before = keyed(dry_run_actions(w, SCRIPTS, label="shipped"))
        after = keyed(dry_run_actions(w, new, label="day5"))
        expected = sorted(m for m in set(before) | set(after) if before.get(m, {}) != after.get(m, {}))
        assert expected, "the edit changes some member's actions"
        rc, out, err = diff(w, SCRIPTS, new, "--format", "ndjson")
        eq(rc, 1, "exit status with --format ndjson")
        findings = ndjson(out)
        members = [f["member"] for f in findings if f["finding"] == "member"]
        eq(members, expected, "the members reported, in id order")
        counts = {(f["campaign"], f.get("step"), f["metric"]): (f["before"], f["after"])
                  for f in findings if f["finding"] == "count"}
        eq(counts[("onboarding", "day5", "sent")][0], 0, "day5 sent nothing before")
        eq(counts[("onboarding", "day7", "sent")][1], 0, "day7 sends nothing after")
        total = findings[-1]
        eq(total["finding"], "total", "the last finding")
        eq(total["identical"], False, "identical")
        eq(total["members_changed"], len(expected), "members_changed")
        # a member's first difference: the earliest differing action, either side
        m = expected[0]
        f = [x for x in findings if x.get("member") == m][0]
        diffs = [k for k in set(before[m]) | set(after[m]) if before[m].get(k) != after[m].get(k)]
        firsts = [min(v[0] for v in (before[m].get(k), after[m].get(k)) if v) for k in diffs]
        reported = min(side["time"] for side in (f["before"], f["after"]) if side)
        eq(reported, min(firsts), "the time of %s's first difference (one zone: text order is time order)" % m)
        eq(f["changed"], len(diffs), "how many of %s's actions differ" % m)


def test_identical_copy_exits_0():
    with Workspace() as w:
        same = copy_scripts(w, "same")
        rc, out, err = diff(w, SCRIPTS, same)
        eq(rc, 0, "exit status when identical (stdout %r, stderr %r)" % (out[-400:], err[-400:]))
        contains(out, "members changed: 0", "no member changed")
        assert out.rstrip().endswith("identical"), out
        assert "funnel (before -> after)" not in out, "no funnel row differs"
        rc, out, _ = diff(w, SCRIPTS, same, "--format", "ndjson")
        eq(rc, 0, "exit status with ndjson")
        findings = ndjson(out)
        eq([f["finding"] for f in findings], ["total"], "only the total when identical")
        eq(findings[0]["identical"], True, "identical")


def test_new_scripts_that_break_an_invariant_exit_1_with_the_rule_named():
    # the shipped invariants (scripts/00_invariants.lua) hold for the shipped scripts; a
    # promotion sent at 23:00 as "service" (examples/broken/late_promo.lua) breaks them
    with Workspace() as w:
        broken = copy_scripts(w, "broken")
        shutil.copy(os.path.join(harness.ROOT, "examples", "broken", "late_promo.lua"), broken)
        rc, out, err = diff(w, SCRIPTS, broken)
        eq(rc, 1, "exit status (stdout %r)" % out[-400:])
        contains(err, "hearth: after: invariant 'no_night_sends' violated by action ", "the rule and action named")
        assert "hearth: before: invariant" not in err, "the shipped scripts break none: %s" % err[-600:]
        contains(out, "invariant violations 0 -> ", "the totals count them")
        rc, out, _ = diff(w, SCRIPTS, broken, "--format", "ndjson")
        total = [f for f in ndjson(out) if f["finding"] == "total"][0]
        eq(total["invariant_violations_before"], 0, "none before")
        assert total["invariant_violations_after"] > 0, total


def test_member_filters_diff_and_dry_run():
    with Workspace() as w:
        new = copy_scripts(w, "new", day7_to_day5)
        before = keyed(dry_run_actions(w, SCRIPTS, label="shipped"))
        after = keyed(dry_run_actions(w, new, label="day5"))
        changed = sorted(m for m in before if before[m] != after.get(m))
        unchanged = sorted(m for m in before if before[m] == after.get(m))
        pick = [changed[0], unchanged[0]]
        rc, out, _ = diff(w, SCRIPTS, new, "--format", "ndjson", "--member", pick[0], "--member", pick[1])
        eq(rc, 1, "one selected member changed")
        findings = ndjson(out)
        eq([f["finding"] for f in findings], ["member", "total"], "only member findings and the total")
        eq(findings[0]["member"], pick[0], "the changed member")
        rc, out, _ = diff(w, SCRIPTS, new, "--member", unchanged[0], "--member", unchanged[1], "--timeline")
        eq(rc, 0, "no selected member changed: identical for them")
        heads = [l for l in out.splitlines() if l.startswith("member ")]
        eq(heads, ["member %s: %s" % (m, side) for side in ("before", "after") for m in unchanged[:2]],
           "--timeline: each member's path before, then after")
        assert not [l for l in out.splitlines() if l.startswith("  %s:" % changed[0])], \
            "a member not selected is not reported (%s)" % changed[0]
        # dry-run --member: exactly her lines of the full output
        full = dry_run_actions(w, SCRIPTS, label="shipped")
        mine = dry_run_actions(w, SCRIPTS, "--member", pick[0])
        eq(mine, [a for a in full if a["member"] == pick[0]], "dry-run --member output")


def test_repeated_steps_are_matched_by_occurrence():
    ping = 'hearth.on("ping", function(m, ev) %s m:send("tip", { step = "tip", key = ev.id }) end)\n'
    with Workspace({"a.lua": ping % ""}) as w:
        new = os.path.join(w.dir, "new")
        os.mkdir(new)
        with open(os.path.join(new, "a.lua"), "w") as f:
            f.write(ping % 'if ev.data.n == 2 then return end')
        events = w.write_events([
            {"id": "p%d" % n, "type": "ping", "member": "m-1", "time": "2026-11-0%dT12:00:00+08:00" % n,
             "data": {"n": n}} for n in (1, 2, 3)])
        rc, out, err = diff(w, w.scripts, new, "--format", "ndjson", events=events)
        eq(rc, 1, "exit status (stderr %r)" % err[-300:])
        f = [x for x in ndjson(out) if x["finding"] == "member"]
        eq(len(f), 1, "one member changed")
        # first with first (same), second with second (ping 2 vs ping 3), third with none
        eq(f[0]["changed"], 2, "differing pairs")
        eq(f[0]["before"]["time"], "2026-11-02T12:00:00+08:00", "before: the second send")
        eq(f[0]["after"]["time"], "2026-11-03T12:00:00+08:00", "after: the second send is ping 3's")


def test_events_from_standard_input():
    with Workspace() as w:
        same = copy_scripts(w, "same")
        with open(MONTH, "rb") as f:
            data = f.read()
        rc, out, err = diff(w, SCRIPTS, same, events="-", stdin=data)
        eq(rc, 0, "identical from stdin (stderr %r)" % err[-300:])
        contains(out, "members with actions: 120 -> 120", "both runs read every line")


def test_usage_errors():
    with Workspace() as w:
        for args, needle in ((["diff", "--events", MONTH, "--scripts", SCRIPTS], "--with"),
                             (["diff", "--events", MONTH, "--with", SCRIPTS, "--format", "csv"], "--format"),
                             (["diff", "--events", MONTH, "--with", SCRIPTS, "--timeline"], "--member"),
                             (["dry-run", "--events", MONTH, "--timeline"], "--member")):
            rc, _, err = w.run(*args)
            eq(rc, 2, "exit status of %r" % args)
            contains(err, needle, "the message of %r" % args)


def test_timeline_of_m0001_on_the_month():
    with Workspace() as w:
        rc, out, err = w.run("dry-run", "--events", MONTH, "--scripts", SCRIPTS, "--tz", TZ,
                             "--member", "m-0001", "--timeline")
        eq(rc, 0, "exit status (stderr %r)" % err[-300:])
        lines = out.splitlines()
        eq(lines[0], "member m-0001", "the heading")
        entries = [l.strip().split(None, 2) for l in lines[1:]]
        times = [e[0] for e in entries]
        eq(times, sorted(times), "entries in time order (one zone, so text order is time order)")
        kinds = [e[1] for e in entries]
        with open(MONTH, encoding="utf-8") as f:
            hers = [json.loads(l) for l in f if '"m-0001"' in l]
        hers = [e for e in hers if e["member"] == "m-0001"]
        eq(kinds.count("event"), len(hers), "one event line per event of hers")
        for ev in hers:
            contains(out, "event    %s (%s)" % (ev["type"], ev["id"]), "her event %s" % ev["id"])
        full = dry_run_actions(w, SCRIPTS, label="shipped")
        eq(kinds.count("action"), len([a for a in full if a["member"] == "m-0001"]), "her actions")
        assert "timer" in kinds, "timers are shown"
        contains(out, "timer    set onboarding:", "a journey's timer set")
        assert any(e[1] == "timer" and e[2].startswith("fired") for e in entries) or \
            any(e[1] == "timer" and e[2].startswith("void") for e in entries), "a timer came due"
        contains(out, "count    onboarding: entered", "her onboarding run")


def test_dry_run_log_lines_carry_the_virtual_time():
    src = 'hearth.on("ping", function(m, ev) hearth.log("info", "ping seen") end)\n'
    with Workspace({"a.lua": src}) as w:
        events = w.write_events([{"type": "ping", "member": "m-1", "time": "2026-03-04T05:06:07+08:00"}])
        rc, _, err = w.run("dry-run", "--events", events, "--scripts", w.scripts, "--tz", TZ)
        eq(rc, 0, "exit status (stderr %r)" % err)
        logs = [l for l in harness.parse_log(err) if "ping seen" in json.dumps(l)]
        eq(len(logs), 1, "one log line from the handler (%r)" % err)
        eq(logs[0]["ts"], "2026-03-03T21:06:07Z", "ts is the virtual time (UTC)")
        eq(logs[0].get("clock"), "virtual", "the line says its clock is virtual")


if __name__ == "__main__":
    harness.main()
