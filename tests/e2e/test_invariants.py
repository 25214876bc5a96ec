"""test_invariants: hearth.invariant end to end — the bundled month dry-runs unchanged with
the shipped invariants (nothing on stdout changes, nothing on stderr about them, exit 0);
the count behind max_marketing is kept across processes (a second `hearth import` into
the same database sees the first one's send of that day); the deliberately broken example (examples/broken/late_promo.lua, marketing labelled
"service" at 23:00) makes the dry-run name the rule, the member and the action on stderr
and exit 1 while its sends stay queued; `hearth test` fails a case whose actions broke an
invariant, naming them; the daemon counts a violation in /metrics, logs it as a warning,
and leaves the action as it was."""

import glob
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq, contains  # noqa: E402

ROOT = os.environ.get("HEARTH_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
MONTH = os.path.join(ROOT, "examples", "events", "month.ndjson")
START_GUARD = 30  # seconds a daemon may take to listen, and a violation to show (hang guards only)


def copy_scripts(w, skip=(), extra=()):
    for path in glob.glob(os.path.join(ROOT, "scripts", "*.lua")):
        if os.path.basename(path) not in skip:
            shutil.copy(path, w.scripts)
    for path in extra:
        shutil.copy(path, w.scripts)


def month_dry_run(w):
    return w.run("dry-run", "--events", MONTH, "--scripts", w.scripts, "--until", "30d", "--tz", "Asia/Shanghai",
                 "--stdlib", os.path.join(ROOT, "stdlib"))


def test_shipped_invariants_hold_on_the_bundled_month():
    with Workspace() as w, Workspace() as bare:
        copy_scripts(w)
        assert os.path.exists(os.path.join(w.scripts, "00_invariants.lua")), "the example invariants ship"
        copy_scripts(bare, skip=("00_invariants.lua",))
        rc, out, err = month_dry_run(w)
        eq(rc, 0, "dry-run exit status with the invariants (stderr tail: %s)" % err[-2000:])
        rc2, out2, _ = month_dry_run(bare)
        eq(rc2, 0, "dry-run exit status without them")
        eq(out, out2, "stdout with and without the invariants")
        assert "invariant" not in err, "nothing said about invariants that hold: %s" % err[-2000:]


def test_broken_example_fails_the_dry_run_naming_rule_member_and_action():
    with Workspace() as w:
        copy_scripts(w, extra=(os.path.join(ROOT, "examples", "broken", "late_promo.lua"),))
        rc, out, err = month_dry_run(w)
        eq(rc, 1, "dry-run exit status with a broken script")
        all_lines = [l for l in err.splitlines() if l.startswith("hearth: invariant '")]
        lines = [l for l in all_lines if l.startswith("hearth: invariant 'no_night_sends'")]
        assert lines, "violations on stderr: %s" % err[-2000:]
        others = [l for l in all_lines if l not in lines]
        for l in others:  # a promotion to a member who deleted the friend meanwhile
            assert re.match(r"^hearth: invariant 'reachable' violated by action late_promo/.* \(member m-\d+\): "
                            r"send to a member whose friend was deleted$", l), l
        pat = re.compile(r"^hearth: invariant 'no_night_sends' violated by action (late_promo/(m-\d+)/\S+) "
                         r"\(member (m-\d+)\): service send at 23:00 local time \(Asia/Shanghai\), inside 21:00-09:00$")
        actions = {a["id"]: a for a in map(json.loads, out.splitlines())}
        for line in lines:
            m = pat.match(line)
            assert m, "violation line names rule, action and member: %r" % line
            eq(m.group(2), m.group(3), "the member of the action id is the member named")
            a = actions.get(m.group(1))
            assert a, "the action named is on stdout: %s" % m.group(1)
            eq((a["status"], a["template"], a["time"][11:16]), ("queued", "double_points_tonight", "23:00"),
               "the violating send is left as it was")
        promos = [a for a in actions.values() if a["campaign"] == "late_promo"]
        eq(len(lines), len(promos), "one violation per late promotion")
        contains(err, "hearth: %d invariant violations" % len(all_lines), "the count at the end")


def test_hearth_test_fails_a_case_that_breaks_an_invariant():
    with Workspace({
        "night.lua": 'hearth.invariant { name = "no_night", no_quiet = { from = "21:00", to = "09:00" } }\n'
                     'hearth.on("ping", function(m) m:send("late", { category = "service" }) end)\n',
        "night_test.lua": 'test("a send at night", function(t)\n'
                          '  t:at("2026-11-02T23:30:00+08:00")\n'
                          '  t:event("m-7", "ping")\n'
                          'end)\n'
                          'test("acknowledged", function(t)\n'
                          '  t:at("2026-11-02T23:30:00+08:00")\n'
                          '  t:event("m-7", "ping")\n'
                          '  t:expect_violations(1)\n'
                          'end)\n',
    }) as w:
        rc, out, err = w.run("test", w.scripts, "--stdlib", os.path.join(ROOT, "stdlib"), "--tz", "Asia/Shanghai")
        eq(rc, 1, "hearth test exit status (stdout %s)" % out)
        contains(out, "FAIL %s: a send at night" % os.path.join(w.scripts, "night_test.lua"), "the failing case")
        contains(out, "invariant 'no_night', member m-7, action night/m-7/@1/1: service send at 23:30",
                 "rule, member and action named")
        contains(out, "ok   %s: acknowledged" % os.path.join(w.scripts, "night_test.lua"), "the acknowledged case")


def test_counts_are_kept_across_processes():
    with Workspace({
        "daily.lua": 'hearth.invariant { name = "one_a_day", max_marketing = { max = 1, per = "local_day" } }\n'
                     'hearth.on("ping", function(m) m:send("promo") end)\n',
    }) as w:
        first = w.import_events([{"id": "e1", "type": "ping", "member": "m-1", "time": "2026-11-02T10:00:00+08:00"}],
                                "--stale-after", "3650d", "--tz", "Asia/Shanghai")
        eq(first.rc, 0, "first import (%s)" % first.err[-2000:])
        eq([r for r in harness.parse_log(first.err) if r.get("msg") == "invariant violated"], [], "one send: fine")
        second = w.import_events([{"id": "e2", "type": "ping", "member": "m-1", "time": "2026-11-02T15:00:00+08:00"}],
                                 "--stale-after", "3650d", "--tz", "Asia/Shanghai")
        eq(second.rc, 0, "second import (%s)" % second.err[-2000:])
        warns = [(r["rule"], r["member"], r["action"]) for r in harness.parse_log(second.err)
                 if r.get("msg") == "invariant violated"]
        eq(warns, [("one_a_day", "m-1", "daily/m-1/e2/1")], "the second send of her day, in another process")


def metrics(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def post(port, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/events", body=body, headers={"Content-Type": "application/x-ndjson"})
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def test_daemon_counts_and_logs_a_violation_and_keeps_the_action():
    with Workspace({
        "guarded.lua": 'hearth.invariant { name = "no_bad", check = function(a, m)\n'
                       '  return a.template ~= "bad", "template bad for " .. m.id end }\n'
                       'hearth.invariant { name = "reachable", reachable = true }\n'
                       'hearth.on("ping", function(m, ev) m:send(ev.data.t, { category = "service" }) end)\n',
    }) as w:
        env = dict(os.environ)
        env.pop("HEARTH_LOG", None)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        err_path = os.path.join(w.dir, "daemon.stderr")
        with open(err_path, "wb") as errf:
            p = subprocess.Popen([harness.BIN, "run", "--listen", "127.0.0.1:0", "--db", w.db, "--scripts", w.scripts,
                                  "--tz", "Asia/Shanghai"], cwd=w.dir, env=env, stdout=subprocess.DEVNULL,
                                 stderr=errf, stdin=subprocess.DEVNULL)
            try:
                def log():
                    with open(err_path, "rb") as f:
                        return harness.parse_log(f.read().decode("utf-8", "replace"))
                port, deadline = None, time.time() + START_GUARD
                while port is None and time.time() < deadline:
                    for rec in log():
                        if rec.get("msg") == "listening":
                            port = int(rec["addr"].rsplit(":", 1)[1])
                    assert p.poll() is None, "daemon exited: %r" % log()
                    time.sleep(0.05)
                assert port, "daemon listening"
                events = [{"id": "e1", "type": "ping", "member": "m-1", "data": {"t": "bad"}},
                          {"id": "e2", "type": "ping", "member": "m-1", "data": {"t": "good"}},
                          {"id": "e3", "type": "friend.deleted", "member": "m-2"},
                          {"id": "e4", "type": "ping", "member": "m-2", "data": {"t": "good"}}]
                status, body = post(port, "\n".join(json.dumps(e) for e in events))
                eq(status, 202, "POST /v1/events (%s)" % body)
                want = ['hearth_invariant_violations_total{rule="no_bad"} 1',
                        'hearth_invariant_violations_total{rule="reachable"} 1']
                deadline, text = time.time() + START_GUARD, ""
                while time.time() < deadline and not all(x in text for x in want):
                    text = metrics(port)
                    time.sleep(0.05)
                for x in want:
                    contains(text, x, "/metrics")
                warns = [r for r in log() if r.get("msg") == "invariant violated"]
                eq(sorted((r["level"], r["rule"], r["member"], r["action"]) for r in warns),
                   [("warn", "no_bad", "m-1", "guarded/m-1/e1/1"), ("warn", "reachable", "m-2", "guarded/m-2/e4/1")],
                   "one warning per violation")
                eq([r["message"] for r in warns if r["rule"] == "no_bad"], ["template bad for m-1"], "its message")
                m = json.loads(w.run("member", "m-1", "--db", w.db)[1])
                eq(sorted((a["id"], a["status"]) for a in m["actions"]),
                   [("guarded/m-1/e1/1", "queued"), ("guarded/m-1/e2/1", "queued")], "actions left as they were")
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait(timeout=30)


if __name__ == "__main__":
    harness.main()
