"""test_daemon: `hearth run` end to end — HTTP ingest (object, array, NDJSON; duplicates;
400 with line and field and nothing applied, the data of well-known types and the bound
on future times (--max-future) included; 401 with a token file; 413 past --max-body;
/healthz), timers firing in real time, durable timers across a clean stop and restart,
kill -9 after a 202, SIGHUP reloads (a broken script keeps the old ones), a cron entry
that missed many slots running once at start-up, the virtual clock (--virtual-clock and
POST /v1/clock), and timers and actions another process (hearth import) commits while
the daemon runs.

The daemon listens on 127.0.0.1 with port 0 (the port is read from its "listening" log
line). Downtime and "nothing more happened" are shown on the virtual clock: a restart
starts the clock later, and POST /v1/clock answers only once everything due has run, so
the state read right after it is final. No test sleeps to show that something did not
happen; every wait is a bounded poll for something that must happen; no test asserts on
how long anything took; every daemon is killed in a finally."""

import calendar
import datetime
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq, contains  # noqa: E402

START_GUARD = 30      # seconds a daemon may take to log "listening" (a hang guard only)
STOP_GUARD = 30       # seconds a daemon may take to exit after SIGTERM (a hang guard only)


# Where the virtual clock of a test daemon starts (a whole minute, in the engine's zone).
VSTART = "2026-11-22T10:00:00+08:00"


def format_time(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def parse_time(s):
    """Epoch seconds of an RFC 3339 time with a numeric offset or Z (whole seconds)."""
    base, off = s[:19], s[19:]
    t = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    if off in ("Z", "z"):
        return t
    sign = 1 if off[0] == "+" else -1
    return t - sign * (int(off[1:3]) * 3600 + int(off[4:6]) * 60)


class Daemon:
    """One `hearth run` process on 127.0.0.1:0 in a workspace. Use as a context manager:
    the process is always killed on exit."""

    def __init__(self, w, *extra, name="daemon"):
        self.w = w
        self.n = getattr(w, "_daemons", 0) + 1
        w._daemons = self.n
        self.out_path = os.path.join(w.dir, "%s%d.stdout" % (name, self.n))
        self.err_path = os.path.join(w.dir, "%s%d.stderr" % (name, self.n))
        env = dict(os.environ)
        env.pop("HEARTH_LOG", None)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        args = [harness.BIN, "run", "--listen", "127.0.0.1:0", "--db", w.db,
                "--scripts", w.scripts, "--tz", "Asia/Shanghai"] + [str(a) for a in extra]
        self.args = args
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.p = subprocess.Popen(args, cwd=w.dir, env=env, stdout=self._out, stderr=self._err,
                                  stdin=subprocess.DEVNULL)
        self.port = None
        self.rc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()

    # ---- process
    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log(self):
        return harness.parse_log(self.stderr())

    def wait_listening(self):
        deadline = time.time() + START_GUARD
        while time.time() < deadline:
            for rec in self.log():
                if rec.get("msg") == "listening":
                    addr = rec.get("addr", "")
                    assert addr.startswith("127.0.0.1:"), "listening on %r" % addr
                    self.port = int(addr.rsplit(":", 1)[1])
                    assert self.port > 0, "listening log names port 0: %r" % rec
                    return self
            if self.p.poll() is not None:
                raise AssertionError("daemon exited with %d before listening; stderr: %s"
                                     % (self.p.returncode, self.stderr()[-3000:]))
            time.sleep(0.05)
        raise AssertionError("daemon logged no 'listening' line within %d s; stderr: %s"
                             % (START_GUARD, self.stderr()[-3000:]))

    def send_signal(self, sig):
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def stop(self, sig=signal.SIGTERM):
        """Send sig and wait for the exit; return the exit status."""
        self.send_signal(sig)
        try:
            self.rc = self.p.wait(timeout=STOP_GUARD)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("daemon did not exit within %d s of %s; stderr: %s"
                                 % (STOP_GUARD, sig, self.stderr()[-3000:]))
        self._close_files()
        return self.rc

    def stop_clean(self):
        rc = self.stop(signal.SIGTERM)
        eq(rc, 0, "daemon exit status after SIGTERM (stderr: %s)" % self.stderr()[-3000:])
        msgs = [r.get("msg") for r in self.log()]
        assert "stopped" in msgs, "no 'stopped' log line after SIGTERM: %r" % msgs

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            try:
                self.p.wait(timeout=STOP_GUARD)
            except subprocess.TimeoutExpired:
                pass
        self._close_files()

    def _close_files(self):
        for f in (self._out, self._err):
            try:
                f.close()
            except OSError:
                pass

    # ---- HTTP
    def request(self, method, path, body=None, headers=None):
        """(status, {header: value}, parsed JSON body or raw text)."""
        assert self.port, "daemon not listening"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            if isinstance(body, str):
                body = body.encode("utf-8")
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            raw = r.read().decode("utf-8", "replace")
            hdrs = {k.lower(): v for k, v in r.getheaders()}
        finally:
            conn.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw
        return r.status, hdrs, parsed

    def post(self, body, token=None, auth=None, content_type="application/json"):
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        if auth is not None:
            headers["Authorization"] = auth
        return self.request("POST", "/v1/events", body, headers)

    def post_ok(self, body, accepted, duplicates=0, **kw):
        status, _, reply = self.post(body, **kw)
        eq(status, 202, "POST /v1/events status (reply %r)" % (reply,))
        eq(reply, {"accepted": accepted, "duplicates": duplicates}, "POST /v1/events reply")

    def member(self, mid, token=None):
        """GET /v1/members/{id} as a dict, or None on 404."""
        headers = {"Authorization": "Bearer " + token} if token else {}
        status, _, body = self.request("GET", "/v1/members/" + mid, headers=headers)
        if status == 404:
            return None
        eq(status, 200, "GET /v1/members/%s status (body %r)" % (mid, body))
        assert isinstance(body, dict), "member body is not an object: %r" % (body,)
        return body

    def move(self, token=None, **body):
        """POST /v1/clock with body (advance="2s" or to="<RFC 3339>"); returns the clock's
        new time in epoch seconds. The answer comes once everything due has run."""
        headers = {"Authorization": "Bearer " + token} if token else {}
        status, _, reply = self.request("POST", "/v1/clock", body, headers)
        eq(status, 200, "POST /v1/clock %r status (reply %r)" % (body, reply))
        return parse_time(reply["now"])

    def wait_member(self, mid, pred, what, timeout=20, token=None):
        """Poll the member API until pred(member) holds; return the member."""
        deadline = time.time() + timeout
        m = None
        while time.time() < deadline:
            m = self.member(mid, token=token)
            if m is not None and pred(m):
                return m
            if self.p.poll() is not None:
                raise AssertionError("daemon exited with %d while waiting for %s; stderr: %s"
                                     % (self.p.returncode, what, self.stderr()[-3000:]))
            time.sleep(0.1)
        raise AssertionError("%s: not seen within %d s; member is %s" % (what, timeout, json.dumps(m)))

    def wait_log(self, msg_part, what, timeout=20, after=0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            recs = self.log()[after:]
            for r in recs:
                if msg_part in str(r.get("msg", "")):
                    return r
            if self.p.poll() is not None:
                raise AssertionError("daemon exited with %d while waiting for %s; stderr: %s"
                                     % (self.p.returncode, what, self.stderr()[-3000:]))
            time.sleep(0.05)
        raise AssertionError("%s: no log line with %r within %d s; stderr: %s"
                             % (what, msg_part, timeout, self.stderr()[-3000:]))


def start(w, *extra):
    return Daemon(w, *extra)


def action_ids(m):
    return sorted(a["id"] for a in m["actions"])


def templates(m):
    return sorted((a["id"], a.get("template")) for a in m["actions"] if a["action"] == "send")


def cli_member(w, mid):
    rc, out, err = w.member_raw(mid, "--limit", "1000")
    eq(rc, 0, "hearth member %s exit status (stderr: %s)" % (mid, err))
    return json.loads(out)


# ---------------------------------------------------------------- ingest

INGEST = r'''
hearth.on("ping", function(m, ev)
  m:send("pong", { key = "pong-" .. ev.id, vars = { n = ev.data.n } })
end)
hearth.on("order.paid", function(m, ev)
  m:add_points(math.floor(ev.data.amount), "order " .. ev.data.order_id)
end)
'''


def ping(eid, member="m-1", n=0):
    return {"id": eid, "type": "ping", "member": member, "data": {"n": n}}


def test_post_object_array_ndjson_and_duplicates():
    with Workspace({"ing.lua": INGEST}) as w:
        with start(w) as d:
            d.wait_listening()
            status, _, body = d.request("GET", "/healthz")
            eq(status, 200, "GET /healthz status")
            eq(body, {"status": "ok"}, "GET /healthz body")
            eq(d.member("m-1"), None, "member before any event (404)")

            d.post_ok(ping("e-1", n=1), accepted=1)                                  # object
            d.post_ok([ping("e-2", n=2), ping("e-3", "m-2", n=3)], accepted=2)      # array
            nd = "\n".join(json.dumps(e) for e in [ping("e-4", n=4), ping("e-1", n=99),
                                                   ping("e-4", n=98)]) + "\n"
            d.post_ok(nd, accepted=1, duplicates=2, content_type="application/x-ndjson")
            d.post_ok([ping("e-2", n=97), ping("e-3", "m-2", n=96)], accepted=0, duplicates=2)
            orders = [{"id": "o-%d" % i, "type": "order.paid", "member": "m-1",
                       "data": {"amount": 10 + i, "order_id": "o-%d" % i}} for i in range(3)]
            d.post_ok(orders, accepted=3)
            d.post_ok(orders[:2], accepted=0, duplicates=2)

            m1 = d.member("m-1")
            eq(templates(m1), [("ing/m-1/pong-e-1", "pong"), ("ing/m-1/pong-e-2", "pong"),
                               ("ing/m-1/pong-e-4", "pong")], "m-1's sends")
            ns = sorted(a["vars"]["n"] for a in m1["actions"] if a["action"] == "send")
            eq(ns, [1, 2, 4], "each send from the first copy of its event (not the duplicates)")
            eq(m1["points"], 10 + 11 + 12, "points from three orders, duplicates ignored")
            eq(m1["orders"], 3, "orders")
            eq([l["reason"] for l in m1["ledger"]], ["order o-2", "order o-1", "order o-0"], "ledger")
            m2 = d.member("m-2")
            eq(templates(m2), [("ing/m-2/pong-e-3", "pong")], "m-2's sends")
            status, _, camp = d.request("GET", "/v1/campaigns")
            eq(status, 200, "GET /v1/campaigns status (body %r)" % (camp,))
            assert isinstance(camp, (dict, list)), "GET /v1/campaigns is not JSON: %r" % (camp,)
            d.stop_clean()
        # the same state through the command line, after a clean stop
        m1 = cli_member(w, "m-1")
        eq((m1["points"], m1["orders"]), (33, 3), "hearth member m-1 points/orders after the stop")


def test_bad_line_400_names_line_and_field_and_applies_nothing():
    with Workspace({"ing.lua": INGEST}) as w:
        with start(w) as d:
            d.wait_listening()
            lines = [json.dumps(ping("b-1", "m-b1")), json.dumps(ping("b-2", "m-b2")),
                     json.dumps({"id": "b-3", "type": "ping", "data": {}}),       # no member
                     json.dumps(ping("b-4", "m-b4"))]
            status, _, body = d.post("\n".join(lines) + "\n")
            eq(status, 400, "status for an NDJSON body with a bad third line (body %r)" % (body,))
            assert isinstance(body, dict) and isinstance(body.get("error"), str), \
                "400 body must be {\"error\": ...}: %r" % (body,)
            contains(body["error"], "line 3", "400 error names the line")
            contains(body["error"], "member", "400 error names the field")

            bad_type = [json.dumps(ping("c-1", "m-c1")), json.dumps(dict(ping("c-2", "m-c2"), type="Bad Type"))]
            status, _, body = d.post("\n".join(bad_type))
            eq(status, 400, "status for a bad type on line 2 (body %r)" % (body,))
            contains(body["error"], "line 2", "400 error names the line")
            contains(body["error"], "type", "400 error names the field")

            status, _, body = d.post(dict(ping("t-1", "m-t1"), time="yesterday"))
            eq(status, 400, "status for a single object with a bad time (body %r)" % (body,))
            contains(body["error"], "line 1", "400 error for a single object names line 1")
            contains(body["error"], "time", "400 error names the field")

            for mid in ("m-b1", "m-b2", "m-b4", "m-c1", "m-t1"):
                eq(d.member(mid), None, "member %s after rejected bodies (404: nothing applied)" % mid)
            # the rejected bodies' event ids were not recorded either: they are new now
            d.post_ok("\n".join([lines[0], lines[1], lines[3]]), accepted=3, duplicates=0)
            eq(action_ids(d.member("m-b1")), ["ing/m-b1/pong-b-1"], "m-b1 after the good retry")
            d.stop_clean()


def from_now(**delta):
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(**delta)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_bad_amount_referrer_tz_and_future_time_400_with_line_and_field():
    # Regression: these were accepted with 202 (an order counted with no spend, an event
    # dated 2031 keeping the member active for five years).
    bad = [
        ({"type": "order.paid", "member": "m-x1", "data": {"amount": "12.5"}},
         'data.amount: must be a number >= 0, got "12.5"'),
        ({"type": "order.paid", "member": "m-x2", "data": {"amount": -5}},
         "data.amount: must be a number >= 0, got -5"),
        ({"type": "order.paid", "member": "m-x3", "data": {}}, "data.amount: missing"),
        ({"type": "member.joined", "member": "m-x4", "data": {"referrer": ""}},
         "data.referrer: must not be empty"),
        ({"type": "member.joined", "member": "m-x5", "data": {"tz": "Mars/Olympus"}},
         "data.tz: unknown time zone 'Mars/Olympus'"),
        ({"type": "ping", "member": "m-x6", "time": "2031-06-01T10:00:00+08:00", "data": {}},
         "time: 2031-06-01T02:00:00+00:00 is more than 2d after the present"),
        ({"type": "ping", "member": "m-x7", "time": from_now(days=3), "data": {}},
         "time: "),
    ]
    with Workspace({"ing.lua": INGEST}) as w:
        with start(w, "--max-future", "2d") as d:
            d.wait_listening()
            good = json.dumps(ping("g-1", "m-g1"))
            for ev, want in bad:
                status, _, body = d.post(good + "\n" + json.dumps(ev) + "\n")
                eq(status, 400, "status for %r on line 2 (body %r)" % (ev, body))
                assert body["error"].startswith("line 2: " + want), \
                    "400 error %r, want 'line 2: %s...'" % (body["error"], want)
                eq(d.member(ev["member"]), None, "nothing of the body with %r applied" % ev)
            status, _, body = d.post([ping("g-2", "m-g2"), bad[-2][0]])
            eq(status, 400, "status for an array with a far date (body %r)" % (body,))
            contains(body["error"], "item 2: time:", "the array item and field named")
            status, _, body = d.post(bad[-2][0])
            eq(status, 400, "status for one object with a far date (body %r)" % (body,))
            contains(body["error"], "line 1: time:", "the single object is line 1")
            for mid in ("m-g1", "m-g2"):
                eq(d.member(mid), None, "member %s: nothing of a refused body applied" % mid)

            d.post_ok([{"type": "order.paid", "member": "m-ok", "data": {"amount": 0, "order_id": "o-0"}},
                       {"type": "order.paid", "member": "m-ok", "data": {"amount": 12.5, "order_id": "o-1"}},
                       {"type": "member.updated", "member": "m-ok", "data": {"tz": "Europe/Berlin"}},
                       {"type": "member.joined", "member": "m-ok", "data": {"referrer": "m-g1"}},
                       dict(ping("g-3", "m-ok"), time=from_now(days=1))], accepted=5)
            m = d.member("m-ok")
            eq((m["orders"], m["spend"], m["attrs"].get("tz")), (2, 12.5, "Europe/Berlin"),
               "orders/spend/tz of the accepted body")
            d.stop_clean()


def test_token_file_401_without_or_with_wrong_token():
    with Workspace({"ing.lua": INGEST}) as w:
        tok = os.path.join(w.dir, "token")
        with open(tok, "w") as f:
            f.write("s3cret-T0ken\n")
        with start(w, "--token-file", tok) as d:
            d.wait_listening()
            status, _, _ = d.request("GET", "/healthz")
            eq(status, 200, "GET /healthz status with a token file set")
            for label, kw in (("no token", {}), ("wrong token", {"token": "s3cret-T0ke"}),
                              ("longer token", {"token": "s3cret-T0ken2"}),
                              ("empty token", {"token": ""}),
                              ("Basic scheme", {"auth": "Basic s3cret-T0ken"})):
                status, hdrs, body = d.post(ping("x-" + label.replace(" ", "-"), "m-x"), **kw)
                eq(status, 401, "POST /v1/events status with %s (body %r)" % (label, body))
            status, _, _ = d.request("GET", "/v1/members/m-x")
            eq(status, 401, "GET /v1/members without a token")
            status, _, _ = d.request("GET", "/v1/campaigns")
            eq(status, 401, "GET /v1/campaigns without a token")
            d.post_ok(ping("ok-1", "m-x"), accepted=1, token="s3cret-T0ken")
            m = d.member("m-x", token="s3cret-T0ken")
            eq(action_ids(m), ["ing/m-x/pong-ok-1"], "only the authorised event was applied")
            d.stop_clean()


def test_max_body_413():
    with Workspace({"ing.lua": INGEST}) as w:
        with start(w, "--max-body", "2048") as d:
            d.wait_listening()
            for count in (40, 400):
                big = [ping("big-%d" % i, "m-big") for i in range(count)]
                body = json.dumps(big)
                assert len(body) > 2048
                status, _, reply = d.post(body)
                eq(status, 413, "status for a %d-byte body past --max-body 2048 (reply %r)"
                   % (len(body), reply))
                eq(d.member("m-big"), None, "nothing of the 413 body applied")
            fits = [ping("fit-%d" % i, "m-fit") for i in range(25)]
            body = json.dumps(fits)
            assert 1024 < len(body) <= 2048, len(body)
            d.post_ok(body, accepted=25)
            d.post_ok(ping("small-1", "m-small"), accepted=1)
            status, _, _ = d.request("GET", "/healthz")
            eq(status, 200, "GET /healthz after a 413")
            d.stop_clean()


# ---------------------------------------------------------------- timers in real time

TIMER = r'''
hearth.on("start", function(m, ev)
  m:after("2s", "ding", { at = ev.time })
  m:send("started", { key = "started" })
end)
hearth.on("ding", function(m, ev)
  m:send("ding", { key = "ding", vars = { set_at = ev.data.at, due = ev.time } })
end)
'''


def test_timer_fires_in_real_time():
    with Workspace({"tm.lua": TIMER}) as w:
        with start(w) as d:
            d.wait_listening()
            d.post_ok({"id": "s-1", "type": "start", "member": "m-t"}, accepted=1)
            m = d.wait_member("m-t", lambda m: "tm/m-t/ding" in action_ids(m),
                              "the 2 s timer's action", timeout=20)
            ding = [a for a in m["actions"] if a["id"] == "tm/m-t/ding"][0]
            started = [a for a in m["actions"] if a["id"] == "tm/m-t/started"][0]
            eq(ding["vars"]["due"] - ding["vars"]["set_at"], 2, "timer due = event time + 2 s")
            assert parse_time(ding["time"]) >= ding["vars"]["due"], \
                "the timer's action is stamped %s, before its due time %d" % (ding["time"], ding["vars"]["due"])
            assert parse_time(started["time"]) <= ding["vars"]["set_at"] + 1, \
                "started %s vs event time %d" % (started["time"], ding["vars"]["set_at"])
            eq(len([a for a in m["actions"] if a["id"] == "tm/m-t/ding"]), 1, "ding recorded once")
            d.stop_clean()


# ---------------------------------------------------------------- durable timers across restarts

DURABLE = r'''
local function fired(m, ev)
  local k = ev.type .. "_n"
  m:set(k, (m:get(k) or 0) + 1)
  m:add_points(1, ev.type)
  m:send(ev.type, { vars = { due = ev.time } })     -- id from the timer: stable per timer
end
hearth.on("arm", function(m, ev)
  m:after("3s", "t1")
  m:after("4s", "t2")
  m:after("4s", "t3")
end)
hearth.on("t1", fired)
hearth.on("t2", fired)
hearth.on("t3", fired)
'''


def fired_counts(m):
    return {k: m["attrs"].get(k + "_n") for k in ("t1", "t2", "t3")}


def test_timers_pending_at_stop_fire_once_after_restart():
    with Workspace({"dur.lua": DURABLE}) as w:
        t0 = parse_time(VSTART)
        with start(w, "--virtual-clock", VSTART) as d:
            d.wait_listening()
            d.post_ok({"id": "a-1", "type": "arm", "member": "m-d"}, accepted=1)
            armed = d.member("m-d")
            d.stop_clean()
        t_event = parse_time(armed["last_active_at"])
        eq(t_event, t0, "event time (the virtual clock's)")
        m = cli_member(w, "m-d")
        eq(fired_counts(m), {"t1": None, "t2": None, "t3": None},
           "timers fired before the stop (the clock never reached them)")
        # down while every timer came due: the restarted daemon's clock starts 6 s later
        with start(w, "--virtual-clock", format_time(t_event + 6)) as d:
            d.wait_listening()
            d.wait_member("m-d", lambda m: all(v is not None for v in fired_counts(m).values()),
                          "all three timers fired after the restart", timeout=20)
            d.move(advance="0s")
            eq(fired_counts(d.member("m-d")), {"t1": 1, "t2": 1, "t3": 1},
               "fired counts once everything due has run")
            d.stop_clean()
        m = cli_member(w, "m-d")
        eq(fired_counts(m), {"t1": 1, "t2": 1, "t3": 1}, "each timer fired exactly once")
        eq(m["points"], 3, "points: one per timer")
        eq(sorted(l["reason"] for l in m["ledger"]), ["t1", "t2", "t3"], "ledger")
        sends = [a for a in m["actions"] if a["action"] == "send"]
        eq(sorted(a["template"] for a in sends), ["t1", "t2", "t3"], "one send per timer")
        for a in sends:
            eq(a["vars"]["due"] - t_event, 3 if a["template"] == "t1" else 4,
               "due time of %s relative to the event" % a["template"])
            assert parse_time(a["time"]) >= a["vars"]["due"], "%s fired before it was due: %r" % (
                a["template"], a)
        # a second restart, an hour on, fires nothing more
        with start(w, "--virtual-clock", format_time(t_event + 3600)) as d:
            d.wait_listening()
            d.post_ok({"id": "probe", "type": "probe", "member": "m-probe"}, accepted=1)
            d.move(advance="1h")
            eq(fired_counts(d.member("m-d")), {"t1": 1, "t2": 1, "t3": 1},
               "fired counts once everything due up to two hours after the event has run")
            d.stop_clean()
        m2 = cli_member(w, "m-d")
        eq((fired_counts(m2), m2["points"], sorted(a["id"] for a in m2["actions"])),
           (fired_counts(m), m["points"], sorted(a["id"] for a in m["actions"])),
           "member after a second restart (nothing fired again)")


CHAIN = r'''
hearth.on("arm", function(m, ev)
  m:at(ev.time + 2, "a")
  m:at(ev.time + 4, "c")
end)
hearth.on("a", function(m, ev)
  m:send("a", { key = "a" })
  m:at(ev.time + 1, "b")          -- due between "a" and "c": already past after a restart
end)
hearth.on("b", function(m, ev) m:send("b", { key = "b" }); m:add_points(1, "b") end)
hearth.on("c", function(m, ev) m:send("c", { key = "c" }) end)
'''


def test_timer_set_by_a_timer_firing_after_restart_is_not_lost():
    # Regression: a batch of due timers used to delete "every timer up to the batch's last
    # (due, id)", so a timer that one of them set, due before that last row, was deleted
    # unfired. After downtime "a" and "c" are due together and "b" (set by "a", due
    # between them) must still fire, once.
    with Workspace({"chain.lua": CHAIN}) as w:
        with start(w, "--virtual-clock", VSTART) as d:
            d.wait_listening()
            d.post_ok({"id": "arm", "type": "arm", "member": "m-ch"}, accepted=1)
            armed = d.member("m-ch")
            d.stop_clean()
        t_event = parse_time(armed["last_active_at"])
        eq(action_ids(cli_member(w, "m-ch")), [],
           "actions before the restart (the clock never reached the timers)")
        # down while "a" and "c" came due: the restarted daemon's clock starts 6 s later
        with start(w, "--virtual-clock", format_time(t_event + 6)) as d:
            d.wait_listening()
            d.wait_member("m-ch", lambda m: "chain/m-ch/c" in action_ids(m),
                          "the last timer fired after the restart", timeout=20)
            d.move(advance="0s")   # everything due has run when this answers
            d.stop_clean()
        m = cli_member(w, "m-ch")
        sends = sorted(a["id"] for a in m["actions"] if a["action"] == "send")
        eq(sends, ["chain/m-ch/a", "chain/m-ch/b", "chain/m-ch/c"],
           "actions after the restart: 'b', set by 'a' and due before 'c', must fire too")
        eq(m["points"], 1, "'b' fired exactly once")


# ---------------------------------------------------------------- kill -9

CRASH = r'''
hearth.on("order.paid", function(m, ev)
  m:add_points(math.floor(ev.data.amount), "order " .. ev.data.order_id)
  m:set("last", ev.data.order_id)
  if ev.data.order_id == "o-0" then m:after("1s", "thanks") end
end)
hearth.on("thanks", function(m, ev) m:send("thanks", { key = "thanks" }) end)
'''


def test_kill_9_after_202_loses_nothing():
    with Workspace({"crash.lua": CRASH}) as w:
        orders = [{"id": "o-%d" % i, "type": "order.paid", "member": "m-k",
                   "data": {"amount": i + 1, "order_id": "o-%d" % i}} for i in range(40)]
        with start(w) as d:
            d.wait_listening()
            d.post_ok(orders[:20], accepted=20)
            d.post_ok("\n".join(json.dumps(o) for o in orders[20:]), accepted=20)
            d.post_ok({"id": "o-x", "type": "order.paid", "member": "m-k2",
                       "data": {"amount": 7, "order_id": "o-x"}}, accepted=1)
            rc = d.stop(signal.SIGKILL)
            eq(rc, -signal.SIGKILL, "the daemon died of SIGKILL")
        m = cli_member(w, "m-k")
        eq((m["orders"], m["points"], m["attrs"].get("last")), (40, sum(range(1, 41)), "o-39"),
           "m-k's orders/points/last attribute in the database after kill -9")
        eq(len(m["ledger"]), 40, "ledger entries after kill -9")
        eq(cli_member(w, "m-k2")["points"], 7, "m-k2's points after kill -9")
        with start(w) as d:
            d.wait_listening()
            m = d.member("m-k")
            eq((m["orders"], m["points"]), (40, 820), "m-k via the API after the restart")
            # every accepted id is known after the crash
            d.post_ok(orders, accepted=0, duplicates=40)
            # the durable timer set before the crash fires after it
            d.wait_member("m-k", lambda m: "crash/m-k/thanks" in action_ids(m),
                          "the timer set before kill -9 fired after the restart", timeout=20)
            d.stop_clean()
        eq(cli_member(w, "m-k")["points"], 820, "points after the duplicate re-post")


# ---------------------------------------------------------------- SIGHUP

V1 = r'''
hearth.on("ping", function(m, ev) m:send("v1", { key = "ping-" .. ev.id }) end)
'''
BROKEN = r'''
hearth.on("ping", function(m, ev) m:send("broken", { key = "ping-" .. ev.id }) end
-- the closing parenthesis above is missing
'''
V2 = r'''
hearth.on("ping", function(m, ev) m:send("v2", { key = "ping-" .. ev.id }) end)
'''


def test_sighup_reload_broken_keeps_old_valid_switches():
    with Workspace({"hup.lua": V1}) as w:
        with start(w) as d:
            d.wait_listening()
            d.post_ok(ping("p-1", "m-h"), accepted=1)
            eq(templates(d.member("m-h")), [("hup/m-h/ping-p-1", "v1")], "before any reload")

            w.write_script("hup.lua", BROKEN)
            n = len(d.log())
            d.send_signal(signal.SIGHUP)
            rec = d.wait_log("reload failed", "SIGHUP with a broken script", after=n)
            contains(json.dumps(rec), "hup.lua", "the reload failure names the broken file")
            d.post_ok(ping("p-2", "m-h"), accepted=1)
            eq(templates(d.member("m-h")), [("hup/m-h/ping-p-1", "v1"), ("hup/m-h/ping-p-2", "v1")],
               "after a failed reload the old script still runs")
            status, _, _ = d.request("GET", "/healthz")
            eq(status, 200, "healthz after a failed reload")

            w.write_script("hup.lua", V2)
            n = len(d.log())
            d.send_signal(signal.SIGHUP)
            d.wait_log("reloaded", "SIGHUP with a valid script", after=n)
            fails = [r for r in d.log()[n:] if "reload failed" in str(r.get("msg"))]
            eq(fails, [], "reload failures logged for the valid script")
            d.post_ok(ping("p-3", "m-h"), accepted=1)
            eq(templates(d.member("m-h")), [("hup/m-h/ping-p-1", "v1"), ("hup/m-h/ping-p-2", "v1"),
                                            ("hup/m-h/ping-p-3", "v2")],
               "after a good reload the new script runs")
            d.stop_clean()


# ---------------------------------------------------------------- cron catch-up

CRON = r'''
hearth.on("member.joined", function(m, ev) m:tag("swept") end)
hearth.cron("* * * * *", function(now)
  for m in hearth.members{ tag = "swept" } do
    local slots = m:get("slots") or {}
    slots[#slots + 1] = now
    m:set("slots", slots)
  end
end)
'''


def test_cron_missed_slots_run_once_at_startup():
    with Workspace({"cr.lua": CRON}) as w:
        r = w.import_events([{"id": "j", "type": "member.joined", "member": "m-c"}])
        eq(r.rc, 0, "import exit status (stderr: %s)" % r.err)
        start_at = parse_time(VSTART) + 30               # half a minute past a slot
        slot = start_at - start_at % 60                  # the latest slot at start-up
        old_slot = slot - 3 * 3600                       # three hours (180 slots) before it
        # the entry's last run, as the daemon records it: key "<campaign>#<n> <spec>"
        db = sqlite3.connect(w.db)
        try:
            db.execute("INSERT INTO cron_state(key, last_slot) VALUES (?, ?) ON CONFLICT(key)"
                       " DO UPDATE SET last_slot = excluded.last_slot", ("cr#1 * * * * *", old_slot))
            db.commit()
        finally:
            db.close()
        with start(w, "--virtual-clock", format_time(start_at)) as d:
            d.wait_listening()
            d.wait_member("m-c", lambda m: m["attrs"].get("slots"), "the catch-up run at start-up", timeout=20)
            d.move(advance="0s")   # everything due at start-up has run when this answers
            eq(d.member("m-c")["attrs"]["slots"], [slot],
               "cron runs at start-up: the 180 missed slots run once, for the latest (old slot %d)" % old_slot)
            # two minutes on: one run per minute boundary crossed, each at its slot
            d.move(advance="2m")
            d.stop_clean()
        slots = cli_member(w, "m-c")["attrs"]["slots"]
        eq(slots, [slot, slot + 60, slot + 120], "cron slots run after the clock moved two minutes")
        db = sqlite3.connect(w.db)
        try:
            rows = db.execute("SELECT key, last_slot FROM cron_state").fetchall()
        finally:
            db.close()
        eq(rows, [("cr#1 * * * * *", slots[-1])], "cron_state after the run")


def test_second_daemon_on_the_same_database_is_refused():
    # Two daemons on one database would void each other's delivery leases and deliver
    # the same action twice at once: the second one must refuse to start.
    with Workspace({"noop.lua": 'hearth.on("x", function(m) end)'}) as w:
        with start(w) as d:
            d.wait_listening()
            r = w.run("run", "--listen", "127.0.0.1:0", "--db", w.db, "--scripts", w.scripts)
            eq(r[0] if isinstance(r, tuple) else r.rc, 1, "second daemon's exit status")
            err = r[2] if isinstance(r, tuple) else r.err
            contains(err, "another 'hearth run' is using", "second daemon's message")
            d.post_ok({"id": "still-1", "type": "x", "member": "m-1"}, accepted=1)
            d.stop_clean()
        # once the first has stopped, a new one starts
        with start(w) as d2:
            d2.wait_listening()
            d2.stop_clean()


# ---------------------------------------------------------------- the virtual clock

def test_virtual_clock_route_moves_runs_due_and_refuses_bad_moves():
    with Workspace({"tm.lua": TIMER}) as w:
        tok = os.path.join(w.dir, "token")
        with open(tok, "w") as f:
            f.write("clock-T0ken\n")
        rc, out, err = w.run("run", "--help")
        eq(rc, 0, "hearth run --help exit status")
        contains(out, "--virtual-clock TIME", "hearth run --help")
        contains(out, "POST /v1/clock", "hearth run --help")
        t0 = parse_time(VSTART)
        with start(w, "--virtual-clock", VSTART, "--token-file", tok) as d:
            d.wait_listening()
            status, _, _ = d.request("POST", "/v1/clock", {"advance": "1s"})
            eq(status, 401, "POST /v1/clock without the token")
            d.post_ok({"id": "s-1", "type": "start", "member": "m-t"}, accepted=1, token="clock-T0ken")
            # nothing happens by the passage of real time: only the clock's moves count
            eq(d.move(token="clock-T0ken", advance="1s"), t0 + 1, "clock after advancing 1s")
            eq(action_ids(d.member("m-t", token="clock-T0ken")), ["tm/m-t/started"],
               "actions one second before the 2 s timer is due")
            eq(d.move(token="clock-T0ken", to="2026-11-22T02:00:02Z"), t0 + 2, "clock after moving to t0 + 2 s")
            m = d.member("m-t", token="clock-T0ken")
            eq(action_ids(m), ["tm/m-t/ding", "tm/m-t/started"], "actions once the timer is due")
            ding = [a for a in m["actions"] if a["id"] == "tm/m-t/ding"][0]
            eq((ding["vars"]["set_at"], ding["vars"]["due"], ding["time"]),
               (t0, t0 + 2, "2026-11-22T10:00:02+08:00"), "the timer's action (set at, due, stamped)")
            status, _, reply = d.request("POST", "/v1/clock", {"advance": "0s"},
                                         {"Authorization": "Bearer clock-T0ken"})
            eq((status, reply), (200, {"now": "2026-11-22T10:00:02+08:00"}), "reply to a 0 s move")
            for label, body in (("a move backwards", {"to": "2026-11-22T10:00:01+08:00"}),
                                ("a bad duration", {"advance": "soon"}),
                                ("a bad time", {"to": "tomorrow"}),
                                ("both keys", {"advance": "1s", "to": "2026-11-23T00:00:00Z"}),
                                ("an empty object", {}), ("not JSON", "advance 1s"),
                                ("a number", {"advance": 5})):
                status, _, reply = d.request("POST", "/v1/clock", body, {"Authorization": "Bearer clock-T0ken"})
                eq(status, 400, "POST /v1/clock with %s (reply %r)" % (label, reply))
                assert isinstance(reply, dict) and reply.get("error"), "400 without an error: %r" % (reply,)
            status, _, _ = d.request("GET", "/v1/clock", headers={"Authorization": "Bearer clock-T0ken"})
            eq(status, 405, "GET /v1/clock")
            eq(d.move(token="clock-T0ken", advance="0s"), t0 + 2, "the refused moves left the clock alone")
            d.stop_clean()
        # on a real clock the route does not exist
        with start(w) as d:
            d.wait_listening()
            status, _, _ = d.request("POST", "/v1/clock", {"advance": "1s"},
                                     {"Authorization": "Bearer clock-T0ken"})
            eq(status, 404, "POST /v1/clock on a real clock")
            d.stop_clean()
        rc, out, err = w.run("run", "--virtual-clock", "yesterday", "--db", w.db, "--scripts", w.scripts)
        eq(rc, 2, "hearth run with a bad --virtual-clock (usage error)")
        contains(err, "--virtual-clock", "the usage error names the flag")


# ---------------------------------------------------------------- work another process commits

OUTSIDE = r'''
hearth.channel("file", {type = "log", path = %s})
hearth.on("note", function(m, ev)
  m:send("note", { key = "note", channel = "file" })
end)
hearth.on("arm", function(m, ev)
  m:at(ev.data.due, "ding")
end)
hearth.on("ding", function(m, ev)
  m:send("ding", { key = "ding", channel = "file" })
end)
'''


def test_timer_and_action_imported_while_running_are_fired_and_delivered():
    # Regression: with nothing due, the daemon stopped its due timer for good and re-armed
    # it only for timers its own requests set, so a timer set by `hearth import` while the
    # daemon ran never fired; a queued action the import wrote waited for an unrelated
    # request to wake delivery.
    with Workspace() as w:
        out_path = os.path.join(w.dir, "actions.ndjson")
        w.write_script("out.lua", OUTSIDE % json.dumps(out_path))

        def lines():
            try:
                with open(out_path, encoding="utf-8") as f:
                    return [json.loads(l)["id"] for l in f.read().splitlines()]
            except OSError:
                return []
        with start(w) as d:
            d.wait_listening()
            # an action queued by another process, while nothing in the daemon is due:
            # no timer, no request, nothing pending
            r = w.import_events([{"id": "note-1", "type": "note", "member": "m-o"}])
            eq(r.rc, 0, "import exit status (stderr: %s)" % r.err)
            eq(r.summary["actions"].get("queued"), 1, "actions the import queued")
            d.wait_member("m-o", lambda m: lines() == ["out/m-o/note"],
                          "the imported action delivered to the log channel's file", timeout=30)
            # a timer set by another process
            due = int(time.time()) + 3
            r = w.import_events([{"id": "arm-1", "type": "arm", "member": "m-o", "data": {"due": due}}])
            eq(r.rc, 0, "import exit status (stderr: %s)" % r.err)
            assert "out/m-o/ding" not in action_ids(cli_member(w, "m-o")), (
                "the import itself fired the timer due 3 s after it started (the machine is far "
                "too slow for this test)")
            m = d.wait_member("m-o", lambda m: "out/m-o/ding" in action_ids(m),
                              "the imported timer fired by the running daemon", timeout=30)
            ding = [a for a in m["actions"] if a["id"] == "out/m-o/ding"][0]
            assert parse_time(ding["time"]) >= due, "the timer fired before it was due: %r" % ding
            got = d.wait_member("m-o", lambda m: lines() == ["out/m-o/note", "out/m-o/ding"],
                                "the timer's action in the log channel's file", timeout=30)
            eq(sorted((a["id"], a.get("delivery")) for a in got["actions"]),
               [("out/m-o/ding", "delivered"), ("out/m-o/note", "delivered")], "delivery states")
            d.stop_clean()


def test_member_kept_between_batches_sees_an_import_in_between():
    # Regression guard for the member cache kept across commits: a member the daemon holds
    # from its last batch must be read again when another process (here `hearth import`)
    # committed in between, or the daemon's next write would put back her old balance.
    with Workspace({"ing.lua": INGEST}) as w:
        def order(eid, amount):
            return {"id": eid, "type": "order.paid", "member": "m-1",
                    "data": {"amount": amount, "order_id": eid}}
        with start(w) as d:
            d.wait_listening()
            d.post_ok(order("o-1", 10), accepted=1)
            eq(d.member("m-1")["points"], 10, "points after the daemon's first order")
            r = w.import_events([order("o-2", 5)])
            eq(r.rc, 0, "import exit status (stderr: %s)" % r.err)
            eq(cli_member(w, "m-1")["points"], 15, "points after the import's order")
            d.post_ok(order("o-3", 1), accepted=1)
            m1 = d.member("m-1")
            eq(m1["points"], 16, "points after the daemon's second order (10 + 5 + 1)")
            eq(m1["orders"], 3, "orders")
            eq([(l["reason"], l["balance"]) for l in m1["ledger"]],
               [("order o-3", 16), ("order o-2", 15), ("order o-1", 10)], "ledger")
            d.stop_clean()


def shifted_month(w, end_before_now):
    """The bundled month, every time moved by one offset so that its last event is
    end_before_now seconds before the real time now (so the test means the same in any
    year). Returns the file's path."""
    src = os.path.join(harness.ROOT, "examples", "events", "month.ndjson")
    evs = [json.loads(l) for l in open(src, encoding="utf-8") if l.strip()]
    last = max(parse_time(e["time"]) for e in evs)
    shift = int(time.time()) - end_before_now - last
    for e in evs:
        e["time"] = format_time(parse_time(e["time"]) + shift)
    path = os.path.join(w.dir, "month-shifted.ndjson")
    with open(path, "w", encoding="utf-8") as f:
        for e in evs:
            f.write(json.dumps(e) + "\n")
    return path


def delivered_lines(d):
    """The actions the daemon's log channel delivered (its stdout), in order."""
    with open(d.out_path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.startswith("{")]


def test_import_then_run_delivers_nothing_from_the_history_and_pending_steps_on_time():
    # Regression (engine/cmd_import.c): `hearth import` of last month then `hearth run`
    # sent 120 welcomes and 78 day-3 and day-7 messages at once, all a month late.
    scripts = os.path.join(harness.ROOT, "scripts")
    with Workspace({}) as w:
        month = shifted_month(w, 2 * 86400)
        imported_at = int(time.time())
        rc, out, err = w.run("import", month, "--db", w.db, "--scripts", scripts, "--quiet",
                             "--stale-after", "1s")
        eq(rc, 0, "import of the month (stderr %s)" % err[-2000:])
        w.scripts = scripts
        with start(w, "--virtual-clock", format_time(int(time.time()))) as d:
            d.wait_listening()
            clock = d.move(advance="0s")
            d.wait_member("m-0001", lambda m: True, "the daemon answers")
            early = delivered_lines(d)
            eq([a["id"] for a in early], [], "delivered right after start: nothing of the history")
            seen, later = 0, []
            for day in range(40):                 # forty days on, a day at a time
                before = clock
                clock = d.move(advance="1d")   # answers once what came due is delivered
                lines = delivered_lines(d)
                for a in lines[seen:]:
                    t = parse_time(a["time"])
                    assert before < t <= clock, ("%s (due %s) delivered after the clock moved from %s to %s"
                                                 % (a["id"], a["time"], format_time(before), format_time(clock)))
                    later.append(a)
                seen = len(lines)
            d.stop_clean()
        assert later, "the steps still pending after the import went out as they came due"
        assert all(parse_time(a["time"]) > imported_at for a in later), "nothing dated before the import"
        kinds = sorted({(a["campaign"], a.get("step")) for a in later})
        assert ("winback", "sleeping") in kinds, "the sleeping recall of members idle since the history: %r" % kinds


if __name__ == "__main__":
    harness.main()
