"""test_reports: a database read that fails is reported, never shown as zeros or as "no
such member". The reports read the database the engine wrote: `hearth stats` (text and
--json), `hearth member`, and the daemon's GET /v1/campaigns and GET /v1/members/{id}.
Each test imports a few events, then damages the database the way a disk or an
operator's slip would, with Python's sqlite3 module: one table's pages overwritten (the
schema is intact, so the database opens and only reading that table fails), or a table
dropped. It checks the exit status or HTTP status, the message and the log.

Every wait is a bounded poll; every daemon is killed in a finally."""

import http.client
import json
import os
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq, contains  # noqa: E402

START_GUARD = 30  # seconds a daemon may take to log "listening" (a hang guard only)

ONBOARD = r'''
hearth.on("member.joined", function(m, ev)
  hearth.count("entered")
  m:send("welcome", { key = "welcome", step = "welcome" })
  m:add_points(10, "welcome")
end)
'''


def joined(n):
    return {"id": "j-%d" % n, "type": "member.joined", "member": "m-%d" % n,
            "time": "2026-11-22T10:0%d:00+08:00" % n, "data": {}}


def workspace_with_members():
    w = Workspace({"onboard.lua": ONBOARD})
    r = w.import_events([joined(1), joined(2)])
    eq(r.rc, 0, "import exit status (stderr %s)" % r.err)
    return w


def drop_table(db, table):
    """Drop a table behind hearth's back (the schema version stays 1)."""
    con = sqlite3.connect(db)
    try:
        con.execute("DROP TABLE %s" % table)
        con.commit()
    finally:
        con.close()


def corrupt_table(db, table):
    """Overwrite the root page of table with garbage; the schema (page 1) stays intact.
    The database is first taken out of WAL mode so that every page is in the file."""
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA journal_mode = DELETE").fetchall()
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        root = con.execute("SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?",
                           (table,)).fetchone()[0]
    finally:
        con.close()
    assert root > 1, "table %s has root page %r" % (table, root)
    with open(db, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * page_size)


def logged_errors(stderr):
    return [r for r in harness.parse_log(stderr) if r.get("level") == "error"]


def test_stats_whose_funnel_cannot_be_read_exits_1_without_printing_zeros():
    w = workspace_with_members()
    try:
        rc, out, err = w.run("stats", "--db", w.db)
        eq(rc, 0, "stats before the damage (stderr %s)" % err)
        contains(out, "entered 2", "stats before the damage")
        corrupt_table(w.db, "funnel")
        for extra in ([], ["--json"]):
            rc, out, err = w.run("stats", "--db", w.db, *extra)
            eq(rc, 1, "stats %s with an unreadable funnel: exit status (stdout %r, stderr %s)" % (extra, out, err))
            eq(out, "", "stats %s prints nothing (no totals, no zeros) when a read fails" % extra)
            contains(err, "hearth: cannot read %s: " % w.db, "stats %s message" % extra)
            contains(err, "malformed", "stats %s message names the error" % extra)
            queries = [r.get("query", "") for r in logged_errors(err)]
            assert any("FROM funnel" in q for q in queries), "the failed read is logged: %r" % err
    finally:
        w.cleanup()


def test_stats_on_a_database_without_its_timers_table_exits_1():
    w = workspace_with_members()
    try:
        drop_table(w.db, "timers")
        rc, out, err = w.run("stats", "--db", w.db)
        eq(rc, 1, "stats without a timers table: exit status (stdout %r)" % out)
        eq(out, "", "stats prints no totals when they cannot be read")
        contains(err, "no such table: timers", "stats message")
    finally:
        w.cleanup()


def test_member_whose_ledger_cannot_be_read_is_an_error_not_absent():
    w = workspace_with_members()
    try:
        eq(w.member("m-1")["points"], 10, "points before the damage")
        corrupt_table(w.db, "ledger")
        rc, out, err = w.member_raw("m-1")
        eq(rc, 1, "member with an unreadable ledger: exit status (stdout %r)" % out)
        eq(out, "", "member prints no partial document")
        contains(err, "hearth: cannot read member 'm-1' from %s: " % w.db, "member message")
        assert "no member" not in err, "a read error is not reported as an absent member: %r" % err
        queries = [r.get("query", "") for r in logged_errors(err)]
        assert any("FROM ledger" in q for q in queries), "the failed read is logged: %r" % err
        rc, out, err = w.member_raw("m-9")  # absent is still told apart
        eq(rc, 1, "absent member: exit status")
        contains(err, "no member 'm-9'", "absent member message")
    finally:
        w.cleanup()


class Daemon:
    """`hearth run` on 127.0.0.1:0; stderr goes to a file; always killed by close()."""

    def __init__(self, w):
        self.err_path = os.path.join(w.dir, "daemon.stderr")
        self._err = open(self.err_path, "wb")
        env = dict(os.environ)
        env.pop("HEARTH_LOG", None)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        self.p = subprocess.Popen([harness.BIN, "run", "--listen", "127.0.0.1:0", "--db", w.db,
                                   "--scripts", w.scripts], cwd=w.dir, env=env,
                                  stdout=subprocess.DEVNULL, stderr=self._err, stdin=subprocess.DEVNULL)
        self.port = None

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_listening(self):
        deadline = time.time() + START_GUARD
        while time.time() < deadline:
            for rec in harness.parse_log(self.stderr()):
                if rec.get("msg") == "listening":
                    self.port = int(rec["addr"].rsplit(":", 1)[1])
                    return
            if self.p.poll() is not None:
                raise AssertionError("daemon exited with %d; stderr: %s" % (self.p.returncode, self.stderr()))
            time.sleep(0.05)
        raise AssertionError("daemon not listening within %d s; stderr: %s" % (START_GUARD, self.stderr()))

    def get(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read().decode("utf-8", "replace")
        finally:
            conn.close()
        return r.status, body

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=30)
        self._err.close()


def test_daemon_answers_500_when_a_report_cannot_be_read():
    w = workspace_with_members()
    d = Daemon(w)
    try:
        d.wait_listening()
        status, body = d.get("/v1/campaigns")
        eq(status, 200, "GET /v1/campaigns before the damage (body %r)" % body)
        status, body = d.get("/v1/members/m-1")
        eq(status, 200, "GET /v1/members/m-1 before the damage (body %r)" % body)
        eq(json.loads(body)["points"], 10, "points before the damage")

        drop_table(w.db, "funnel")
        status, body = d.get("/v1/campaigns")
        eq(status, 500, "GET /v1/campaigns without a funnel table (body %r)" % body)
        contains(body, "database error", "GET /v1/campaigns error body")
        drop_table(w.db, "ledger")
        status, body = d.get("/v1/members/m-1")
        eq(status, 500, "GET /v1/members/m-1 without a ledger table (body %r)" % body)
        status, body = d.get("/v1/members/m-9")
        eq(status, 404, "GET /v1/members/m-9 (absent) is still 404 (body %r)" % body)
        status, body = d.get("/healthz")
        eq(status, 200, "the daemon keeps serving after a failed read")
        queries = [r.get("query", "") for r in logged_errors(d.stderr())]
        assert any("FROM funnel" in q for q in queries), "funnel read error logged: %r" % queries
        assert any("FROM ledger" in q for q in queries), "ledger read error logged: %r" % queries
    finally:
        d.close()
        w.cleanup()


if __name__ == "__main__":
    harness.main()
