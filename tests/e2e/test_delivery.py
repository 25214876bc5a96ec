"""test_delivery: delivery and operations end to end.

- Webhook channels against a receiver on 127.0.0.1 (http.server in a thread): HMAC
  signatures, Idempotency-Key = action id, retries on 503 and on 429 + Retry-After with a
  spaced-out schedule, a 400 as a dead letter after one attempt, an always-500 receiver as
  a dead letter after exactly `attempts` tries, `hearth dead-letters` and `--requeue`
  (picked up by a running daemon with no request), a virtual clock moved past the lease
  of a request in flight (sent once), /metrics against what the receiver saw, and the
  log channel's NDJSON file.
- A crash (SIGKILL) while a request is in flight: the restarted daemon sends the action
  again with the same Idempotency-Key.
- HTTP limits of `hearth run`: 503 + Retry-After past --max-backlog, 431, 413, and a
  client that sends nothing being closed.
- Operations: `hearth stats` (text and --json), `hearth backup`, `hearth dead-letters` on
  an empty database.

Only 127.0.0.1; every port comes from binding port 0 (the daemon gets --listen
127.0.0.1:0 and logs the port it bound). Retries, backoff and "nothing more came" are
checked on the daemon's virtual clock (--virtual-clock, moved with POST /v1/clock, which
answers once everything due has started): the retry times the daemon scheduled are read
from the database and held against the documented schedule, and right after each move
the test checks which transfers started (a started transfer holds a lease on its row).
No test sleeps to show that something did not happen; every wait is a bounded poll for
something that must happen, and no assertion is on how long anything took. Receivers and
daemons are always stopped in a finally."""

import hashlib
import hmac
import http.client
import http.server
import calendar
import json
import math
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq, contains  # noqa: E402

SECRET = "hook-secret-0123456789"
START_GUARD = 30   # hang guards only: far above what any run needs
STOP_GUARD = 30
# Where the virtual clock of a test daemon starts (a whole second, in the engine's zone).
VSTART = "2026-11-22T10:00:00+08:00"


# ---------------------------------------------------------------- polling

def wait_for(pred, timeout, what, interval=0.05):
    """Poll pred() until it returns something truthy; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("gave up after %s s waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---------------------------------------------------------------- time and the outbox

def parse_time(s):
    """Epoch seconds of an RFC 3339 time with a numeric offset or Z (whole seconds)."""
    base, off = s[:19], s[19:]
    t = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    if off in ("Z", "z"):
        return t
    sign = 1 if off[0] == "+" else -1
    return t - sign * (int(off[1:3]) * 3600 + int(off[4:6]) * 60)


def format_time(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def outbox(w, aid):
    """One action's delivery state as the daemon recorded it: delivery, attempts (tries
    finished), next_at (when the next try is due) and leased (a transfer is in flight)."""
    db = sqlite3.connect("file:%s?mode=ro" % w.db, uri=True, timeout=30)
    try:
        row = db.execute("SELECT delivery, attempts, next_at, leased_until FROM outbox WHERE id = ?",
                         (aid,)).fetchone()
    finally:
        db.close()
    assert row, "no outbox row for %r" % aid
    return {"delivery": row[0], "attempts": row[1], "next_at": row[2], "leased": row[3] is not None,
            "leased_until": row[3]}


def tried(w, counts, what):
    """Wait until each action a of counts has finished counts[a] tries and none is in
    flight (no lease); their rows."""
    def look():
        rows = {a: outbox(w, a) for a in counts}
        done = all(r["attempts"] == counts[a] and not r["leased"] for a, r in rows.items())
        return rows if done else None
    return wait_for(look, 30, what)


def drive_retries(d, w, ids, first_start):
    """Move the virtual clock from retry to retry until every action of ids is delivered
    or dead. Before each move to the earliest retry due, the clock goes to one second
    before it and nothing may have started; right after the move exactly the rows due have
    started. Returns ({id: [virtual time each attempt started]}, {id: [next_at the daemon
    scheduled after each failed attempt]}, the final rows)."""
    starts = {a: [first_start] for a in ids}
    scheduled = {a: [] for a in ids}
    while True:
        rows = tried(w, {a: len(starts[a]) for a in ids}, "every try started to finish")
        pending = {a: r for a, r in rows.items() if r["delivery"] == "pending"}
        if not pending:
            return starts, scheduled, rows
        for a, r in pending.items():
            if len(scheduled[a]) < len(starts[a]):
                scheduled[a].append(r["next_at"])
        first = min(r["next_at"] for r in pending.values())
        assert first > d.now, "a retry scheduled at %d, not after the failed try at %d" % (first, d.now)
        d.move(to=first - 1)
        for a, r in pending.items():
            now = outbox(w, a)
            eq((now["leased"], now["attempts"]), (False, r["attempts"]),
               "%s one second before its retry is due (leased, attempts)" % a)
        d.move(to=first)
        for a, r in pending.items():
            now = outbox(w, a)
            started = now["leased"] or now["attempts"] > r["attempts"]
            eq(started, r["next_at"] <= first,
               "%s started right after the clock reached %d (its retry is due at %d)" % (a, first, r["next_at"]))
            if started:
                starts[a].append(first)


def check_backoff(starts, scheduled, backoff, what, max_backoff=3600):
    """The documented schedule on the virtual clock: after the k-th failed try the next is
    due backoff * 2^(k-1) later (capped), jittered in [half, full], rounded up to a whole
    second; and it started exactly when due."""
    for k, (t, due) in enumerate(zip(starts, scheduled), 1):
        b = min(backoff * 2 ** (k - 1), max_backoff)
        gap = due - t
        assert math.ceil(b / 2) <= gap <= math.ceil(b), (
            "%s: try %d failed at %d and the next was scheduled %d s later, outside the "
            "backoff [%g, %g] s (scheduled %r, started %r)" % (what, k, t, gap, b / 2, b, scheduled, starts))
        eq(starts[k], due, "%s: when try %d started (it was due at %d)" % (what, k + 1, due))


# ---------------------------------------------------------------- webhook receiver

def expected_signature(secret, ts, body):
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


class Receiver:
    """A webhook receiver on 127.0.0.1:<port 0>. `policy(key, n)` (n = 1-based count of
    requests seen for that Idempotency-Key) returns (status, {headers}) or "hold" (keep
    the request unanswered until release() or stop()). Every request is recorded."""

    def __init__(self, policy, secret=SECRET):
        self.policy = policy
        self.secret = secret
        self.lock = threading.Lock()
        self.records = []
        self.per_key = {}
        self.release_ev = threading.Event()
        rcv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                t = time.monotonic()
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                key = self.headers.get("Idempotency-Key")
                ts = self.headers.get("X-Hearth-Timestamp") or ""
                sig = self.headers.get("X-Hearth-Signature") or ""
                sig_ok = bool(ts) and hmac.compare_digest(sig, expected_signature(rcv.secret, ts, body))
                try:
                    doc = json.loads(body.decode("utf-8"))
                except ValueError:
                    doc = None
                with rcv.lock:
                    count = rcv.per_key.get(key, 0) + 1
                    rcv.per_key[key] = count
                    rec = {"key": key, "body": body, "json": doc, "t": t, "sig_ok": sig_ok,
                           "ts": ts, "sig": sig, "path": self.path, "status": None,
                           "t_answer": None, "n": count}
                    rcv.records.append(rec)
                    policy = rcv.policy
                decision = policy(key, count)
                if decision == "hold":
                    rcv.release_ev.wait(60)
                    decision = (200, {})
                status, headers = decision
                out = json.dumps({"status": status}).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                    self.wfile.flush()
                except OSError:
                    status = None  # the client went away (a killed daemon)
                with rcv.lock:
                    rec["status"] = status
                    rec["t_answer"] = time.monotonic()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d/hook" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()

    def set_policy(self, policy):
        with self.lock:
            self.policy = policy

    def release(self):
        self.release_ev.set()

    def stop(self):
        self.release_ev.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def snapshot(self):
        with self.lock:
            return [dict(r) for r in self.records]

    def for_key(self, key):
        return [r for r in self.snapshot() if r["key"] == key]

    def acked(self, key):
        """True once a 2xx answer to `key` was written completely."""
        return any(r["status"] is not None and 200 <= r["status"] < 300 for r in self.for_key(key))


def fail_first(k, status=503, headers=None):
    """Answer the first k requests of each key with status, then 200."""
    def policy(key, n):
        return (status, dict(headers or {})) if n <= k else (200, {})
    return policy


def always(status):
    return lambda key, n: (status, {})


def closed_port():
    """A loopback port nobody listens on (bound to 0, then closed)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- the daemon

class Daemon:
    """`hearth run --listen 127.0.0.1:0` on a workspace; stderr goes to a file."""

    def __init__(self, w, *extra, env=None, virtual=None):
        self.w = w
        self.extra = list(extra)
        self.now = None          # the virtual clock's time (epoch seconds), when virtual
        if virtual:
            self.extra += ["--virtual-clock", virtual]
            self.now = parse_time(virtual)
        self.env = dict(os.environ)
        self.env.pop("HEARTH_LOG", None)
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        self.env["HOOK_SECRET"] = SECRET
        if env:
            self.env.update(env)
        self.p = None
        self.port = None
        self.n = 0

    def start(self):
        self.n += 1
        self.err_path = os.path.join(self.w.dir, "daemon-%d-%d.err" % (id(self), self.n))
        self.out_path = os.path.join(self.w.dir, "daemon-%d-%d.out" % (id(self), self.n))
        args = [harness.BIN, "run", "--listen", "127.0.0.1:0", "--db", self.w.db,
                "--scripts", self.w.scripts] + self.extra
        with open(self.err_path, "wb") as err, open(self.out_path, "wb") as out:
            self.p = subprocess.Popen(args, cwd=self.w.dir, env=self.env, stdout=out, stderr=err)

        def listening():
            for rec in harness.parse_log(self.stderr()):
                if rec.get("msg") == "listening" and rec.get("addr"):
                    return rec["addr"]
            if self.p.poll() is not None:
                raise AssertionError("hearth run exited with %s before listening; stderr: %s"
                                     % (self.p.returncode, self.stderr()[-3000:]))
            return None
        addr = wait_for(listening, START_GUARD, "the daemon's 'listening' log line")
        self.port = int(addr.rsplit(":", 1)[1])
        return self

    def stderr(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def request(self, method, path, body=None, headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if isinstance(body, str):
                body = body.encode("utf-8")
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def post_events(self, events):
        body = "\n".join(harness.event_line(e) for e in events) + "\n"
        return self.request("POST", "/v1/events", body, {"Content-Type": "application/x-ndjson"})

    def post_ok(self, events):
        st, _, body = self.post_events(events)
        eq(st, 202, "POST /v1/events status (body %r)" % body)
        return json.loads(body)

    def move(self, advance=None, to=None):
        """POST /v1/clock: move the virtual clock (by a duration, or to epoch second `to`).
        The answer comes once everything due has run and its deliveries have started."""
        body = {"advance": advance} if advance is not None else {"to": format_time(to)}
        st, _, data = self.request("POST", "/v1/clock", json.dumps(body))
        eq(st, 200, "POST /v1/clock %r status (body %r)" % (body, data))
        self.now = parse_time(json.loads(data)["now"])
        return self.now

    def metrics(self):
        st, _, body = self.request("GET", "/metrics")
        eq(st, 200, "GET /metrics status")
        return parse_metrics(body.decode())

    def stop(self):
        """SIGTERM and wait; returns the exit status (None if it was not running)."""
        if not self.p:
            return None
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(STOP_GUARD)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
                raise AssertionError("daemon did not stop within %d s of SIGTERM" % STOP_GUARD)
        return self.p.returncode

    def kill9(self):
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(10)

    def close(self):
        """For finally blocks: make sure the process is gone."""
        if self.p and self.p.poll() is None:
            try:
                self.stop()
            except AssertionError:
                pass
        if self.p and self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)


def assert_clean_stop(d):
    rc = d.stop()
    eq(rc, 0, "daemon exit status after SIGTERM (stderr tail: %s)" % d.stderr()[-3000:])


METRIC_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)$")


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_RE.match(line)
        assert m, "unparseable /metrics line %r" % line
        out[m.group(1)] = float(m.group(2))
    return out


def metric(ms, name):
    assert name in ms, "/metrics has no %s; it has %r" % (name, sorted(ms))
    return ms[name]


# ---------------------------------------------------------------- scripts and helpers

def webhook_script(url, attempts, backoff="1s", extra=""):
    return r'''
hearth.channel("crm", {type = "webhook", url = "%s", secret_env = "HOOK_SECRET",
                       backoff = "%s", attempts = %d%s})
hearth.on("order.paid", function(m, ev)
  m:send("thanks", { key = "thanks-" .. ev.data.order_id, vars = { order = ev.data.order_id } })
end)
''' % (url, backoff, attempts, extra)


def order(n, member=None):
    return {"id": "e-%s" % n, "type": "order.paid", "member": member or "m-%s" % n,
            "data": {"amount": 10, "order_id": "o-%s" % n}}


def action_id(n, member=None):
    return "crm/%s/thanks-o-%s" % (member or "m-%s" % n, n)


def member_delivery(w, member, aid):
    """The delivery state `hearth member` reports for one action (None when absent)."""
    rc, out, err = w.member_raw(member)
    if rc != 0:
        return None
    for a in json.loads(out).get("actions", []):
        if a.get("id") == aid:
            return a.get("delivery")
    return None


def dead_letters_json(w):
    rc, out, err = w.run("dead-letters", "--db", w.db, "--json")
    eq(rc, 0, "hearth dead-letters --json exit status (stderr %s)" % err)
    try:
        return json.loads(out)
    except ValueError:
        raise AssertionError("hearth dead-letters --json printed no JSON: %r" % out)


def check_request(r, at=None):
    """What every webhook request must carry. at: the virtual time the request was sent
    at (the signed timestamp is the daemon's clock); None: a real clock."""
    assert r["sig_ok"], "bad signature: ts=%r sig=%r body=%r" % (r["ts"], r["sig"], r["body"])
    assert r["json"] is not None, "body is not JSON: %r" % r["body"]
    eq(r["key"], r["json"].get("id"), "Idempotency-Key vs the action id in the body")
    # the signed timestamp is the current Unix time (receivers reject stale ones)
    assert re.fullmatch(r"\d+", r["ts"]), "X-Hearth-Timestamp %r" % r["ts"]
    if at is not None:
        eq(int(r["ts"]), at, "X-Hearth-Timestamp on the virtual clock")
    else:
        assert abs(int(r["ts"]) - time.time()) < 300, "X-Hearth-Timestamp %r is not now" % r["ts"]


# ---------------------------------------------------------------- webhook delivery

def test_webhook_retries_on_503_signed_keyed_spaced_and_metrics_agree():
    K, N_ACTIONS = 2, 3
    rcv = Receiver(fail_first(K, 503))
    w = Workspace({"crm.lua": webhook_script(rcv.url, attempts=5)})
    d = Daemon(w, virtual=VSTART)
    try:
        d.start()
        t0 = d.now
        eq(d.post_ok([order(i) for i in range(1, N_ACTIONS + 1)]),
           {"accepted": N_ACTIONS, "duplicates": 0}, "POST result")
        ids = [action_id(i) for i in range(1, N_ACTIONS + 1)]
        # Other traffic keeps coming while the retries wait, as on a live daemon: each
        # event wakes the delivery pump, which must still not start a retry early.
        pings = 0
        for n in range(3):
            tried(w, {a: 1 for a in ids}, "the first tries to finish")
            pings += 1
            d.post_ok([{"id": "ping-%d" % pings, "type": "ping", "member": "m-x"}])
            d.move(advance="0s")
            for a in ids:
                eq(outbox(w, a)["leased"], False, "%s right after an unrelated event (no early retry)" % a)
        starts, scheduled, rows = drive_retries(d, w, ids, t0)
        for a in ids:
            eq(rows[a]["delivery"], "delivered", "delivery state of %s" % a)
            eq(rows[a]["attempts"], K + 1, "attempts of %s" % a)
        wait_for(lambda: all(rcv.acked(a) for a in ids), 20, "every action acknowledged")
        wait_for(lambda: all(member_delivery(w, "m-%d" % i, ids[i - 1]) == "delivered"
                             for i in range(1, N_ACTIONS + 1)), 20, "every action marked delivered")

        recs = rcv.snapshot()
        eq(sorted(set(r["key"] for r in recs)), sorted(ids), "keys the receiver saw")
        for r in recs:
            eq(r["path"], "/hook", "request path")
        for a in ids:
            reqs = rcv.for_key(a)
            eq([r["status"] for r in reqs], [503] * K + [200], "answers given to %s" % a)
            for r, at in zip(reqs, starts[a]):
                check_request(r, at)
            bodies = set(r["body"] for r in reqs)
            eq(len(bodies), 1, "every retry of %s carries the same body" % a)
            eq(reqs[0]["json"]["action"], "send", "action kind in the body")
            eq(reqs[0]["json"]["template"], "thanks", "template in the body")
            check_backoff(starts[a], scheduled[a], 1, a)

        # /metrics agrees with what the receiver saw.
        ms = d.metrics()
        total = len(rcv.snapshot())
        eq(total, N_ACTIONS * (K + 1), "requests the receiver saw")
        eq(metric(ms, "hearth_outbox_backlog"), 0, "hearth_outbox_backlog")
        eq(metric(ms, 'hearth_delivery_attempts_total{channel="crm"}'), total, "attempts_total{crm}")
        eq(metric(ms, 'hearth_delivery_delivered_total{channel="crm"}'), N_ACTIONS, "delivered_total{crm}")
        eq(metric(ms, 'hearth_delivery_retried_total{channel="crm"}'), N_ACTIONS * K, "retried_total{crm}")
        eq(metric(ms, 'hearth_delivery_failed_total{channel="crm"}'), N_ACTIONS * K, "failed_total{crm}")
        eq(metric(ms, 'hearth_delivery_dead_total{channel="crm"}'), 0, "dead_total{crm}")
        eq(metric(ms, 'hearth_events_total{outcome="accepted"}'), N_ACTIONS + pings, "events accepted")
        eq(metric(ms, "hearth_handler_seconds_count"), N_ACTIONS, "handler calls")
        eq(metric(ms, 'hearth_actions_total{status="queued",channel="crm"}'), N_ACTIONS, "actions queued")
        eq(metric(ms, "hearth_dead_letters"), 0, "dead letters gauge")
        assert_clean_stop(d)
    finally:
        d.close()
        rcv.stop()
        w.cleanup()


def test_webhook_429_retry_after_is_honoured():
    # 429 with Retry-After: 30 on the first attempt, on a channel whose backoff is 1 s:
    # the retry is due no sooner than 30 s after the answer, and not jittered.
    rcv = Receiver(fail_first(1, 429, {"Retry-After": "30"}))
    w = Workspace({"crm.lua": webhook_script(rcv.url, attempts=4)})
    d = Daemon(w, virtual=VSTART)
    try:
        d.start()
        t0 = d.now
        d.post_ok([order(1)])
        a = action_id(1)
        starts, scheduled, rows = drive_retries(d, w, [a], t0)
        eq(scheduled[a], [t0 + 30], "the retry's due time after a 429 with Retry-After: 30 at %d" % t0)
        eq(starts[a], [t0, t0 + 30], "when the tries started")
        eq(rows[a]["delivery"], "delivered", "delivery state")
        wait_for(lambda: rcv.acked(a), 20, "the action acknowledged after the 429")
        reqs = rcv.for_key(a)
        eq([r["status"] for r in reqs], [429, 200], "answers given")
        for r, at in zip(reqs, starts[a]):
            check_request(r, at)
        wait_for(lambda: member_delivery(w, "m-1", a) == "delivered", 20, "the action marked delivered")
        ms = d.metrics()
        eq(metric(ms, 'hearth_delivery_attempts_total{channel="crm"}'), 2, "attempts_total{crm}")
        eq(metric(ms, 'hearth_delivery_retried_total{channel="crm"}'), 1, "retried_total{crm}")
        assert_clean_stop(d)
    finally:
        d.close()
        rcv.stop()
        w.cleanup()


def test_webhook_400_is_a_dead_letter_after_one_attempt():
    rcv = Receiver(always(400))
    w = Workspace({"crm.lua": webhook_script(rcv.url, attempts=5)})
    d = Daemon(w, virtual=VSTART)
    try:
        d.start()
        t0 = d.now
        d.post_ok([order(1)])
        a = action_id(1)
        dl = wait_for(lambda: [x for x in dead_letters_json(w) if x.get("id") == a], 20,
                      "the 400 to become a dead letter")
        eq(dl[0]["attempts"], 1, "attempts recorded on the dead letter")
        contains(dl[0]["last_error"], "400", "last_error of the dead letter")
        eq(dl[0]["channel"], "crm", "dead letter channel")
        # no retry follows, even an hour past the 1 s backoff
        d.move(advance="1h")
        eq(outbox(w, a), {"delivery": "dead", "attempts": 1, "next_at": t0, "leased": False,
                          "leased_until": None},
           "the dead letter an hour later (nothing started)")
        reqs = rcv.for_key(a)
        eq(len(reqs), 1, "requests for a non-retryable 400")
        check_request(reqs[0], t0)
        ms = d.metrics()
        eq(metric(ms, 'hearth_delivery_attempts_total{channel="crm"}'), 1, "attempts_total{crm}")
        eq(metric(ms, 'hearth_delivery_dead_total{channel="crm"}'), 1, "dead_total{crm}")
        eq(metric(ms, 'hearth_delivery_retried_total{channel="crm"}'), 0, "retried_total{crm}")
        eq(member_delivery(w, "m-1", a), "dead", "delivery state in hearth member")
        assert_clean_stop(d)
    finally:
        d.close()
        rcv.stop()
        w.cleanup()


def test_always_500_dead_after_exactly_n_attempts_then_requeue_delivers():
    N = 3
    rcv = Receiver(always(500))
    w = Workspace({"crm.lua": webhook_script(rcv.url, attempts=N)})
    d = Daemon(w, virtual=VSTART)
    try:
        d.start()
        t0 = d.now
        d.post_ok([order(1)])
        a = action_id(1)
        starts, scheduled, rows = drive_retries(d, w, [a], t0)
        eq(rows[a]["delivery"], "dead", "delivery state after %d failed tries" % N)
        eq(len(starts[a]), N, "tries started (attempts=%d)" % N)
        check_backoff(starts[a], scheduled[a], 1, a)
        # an hour past the next backoff: nothing more starts
        d.move(advance="1h")
        eq((outbox(w, a)["delivery"], outbox(w, a)["leased"]), ("dead", False),
           "the dead letter an hour later (nothing started)")
        wait_for(lambda: len(rcv.for_key(a)) == N and all(r["status"] for r in rcv.for_key(a)), 20,
                 "the receiver to have answered every try")
        reqs = rcv.for_key(a)
        eq(len(reqs), N, "requests before the dead letter (attempts=%d)" % N)
        for r, at in zip(reqs, starts[a]):
            check_request(r, at)

        rc, out, err = w.run("dead-letters", "--db", w.db)
        eq(rc, 0, "hearth dead-letters exit status (stderr %s)" % err)
        lines = [l for l in out.splitlines() if l.strip()]
        eq(len(lines), 1, "dead letter lines: %r" % out)
        contains(lines[0], a, "dead letter line")
        contains(lines[0], "attempts=%d" % N, "dead letter line")
        contains(lines[0], "500", "dead letter line (last error)")
        dl = dead_letters_json(w)
        eq([x["id"] for x in dl], [a], "dead letters --json ids")
        eq(dl[0]["attempts"], N, "dead letter attempts (json)")
        contains(dl[0]["last_error"], "500", "dead letter last_error (json)")
        eq(dl[0]["action"]["id"], a, "dead letter action body (json)")

        ms = d.metrics()
        eq(metric(ms, 'hearth_delivery_attempts_total{channel="crm"}'), N, "attempts_total{crm}")
        eq(metric(ms, 'hearth_delivery_dead_total{channel="crm"}'), 1, "dead_total{crm}")
        eq(metric(ms, 'hearth_delivery_retried_total{channel="crm"}'), N - 1, "retried_total{crm}")
        eq(metric(ms, "hearth_dead_letters"), 1, "dead letters gauge")

        # The receiver recovers; the operator re-queues; the running daemon delivers it,
        # due at once on its clock (on a virtual clock, at the next move, even by 0 s).
        rcv.set_policy(always(200))
        rc, out, err = w.run("dead-letters", "--db", w.db, "--requeue", a)
        eq(rc, 0, "dead-letters --requeue exit status (stderr %s)" % err)
        contains(out, "re-queued 1 action", "dead-letters --requeue output")
        eq(outbox(w, a)["attempts"], 0, "attempts after the re-queue")
        d.move(advance="0s")
        row = outbox(w, a)
        assert row["leased"] or row["delivery"] == "delivered", (
            "the re-queued action did not start when the clock was moved: %r" % row)
        wait_for(lambda: rcv.acked(a), 20, "the re-queued action delivered by the running daemon")
        reqs = rcv.for_key(a)
        eq(len(reqs), N + 1, "requests after the re-queue")
        check_request(reqs[-1], d.now)
        eq(reqs[-1]["body"], reqs[0]["body"], "the re-queued action's body")
        wait_for(lambda: member_delivery(w, "m-1", a) == "delivered", 20, "the action marked delivered")
        eq(dead_letters_json(w), [], "dead letters after the re-queue")
        rc, out, err = w.run("dead-letters", "--db", w.db, "--requeue", a)
        eq(rc, 1, "re-queueing an id that is no dead letter (exit status)")
        assert_clean_stop(d)
    finally:
        d.close()
        rcv.stop()
        w.cleanup()


def test_requeue_while_running_on_a_real_clock_is_delivered_without_a_post():
    # Regression: the daemon used to notice rows another process changed only by polling
    # the outbox; now it watches the database (PRAGMA data_version) and wakes delivery.
    rcv = Receiver(always(400))
    w = Workspace({"crm.lua": webhook_script(rcv.url, attempts=3)})
    d = Daemon(w)
    try:
        d.start()
        d.post_ok([order(1)])
        a = action_id(1)
        wait_for(lambda: member_delivery(w, "m-1", a) == "dead", 20, "the 400 to become a dead letter")
        rcv.set_policy(always(200))
        rc, out, err = w.run("dead-letters", "--db", w.db, "--requeue-all")
        eq(rc, 0, "dead-letters --requeue-all exit status (stderr %s)" % err)
        contains(out, "re-queued 1 action", "dead-letters --requeue-all output")
        wait_for(lambda: rcv.acked(a), 20, "the re-queued action delivered with no event posted")
        eq([r["status"] for r in rcv.for_key(a)], [400, 200], "answers given")
        for r in rcv.for_key(a):
            check_request(r)
        wait_for(lambda: member_delivery(w, "m-1", a) == "delivered", 20, "the action marked delivered")
        assert_clean_stop(d)
    finally:
        d.close()
        rcv.stop()
        w.cleanup()


def test_clock_moved_past_the_lease_of_a_transfer_in_flight_sends_it_once():
    # A transfer's lease (timeout + 30 s) keeps its row from being picked again; a virtual
    # clock moved past the lease while the request is still unanswered must not start a
    # second request for the same row (a new one would take a new lease).
    rcv = Receiver(lambda key, n: "hold")
    w = Workspace({"crm.lua": webhook_script(rcv.url, attempts=5, extra=', timeout = "60s"')})
    d = Daemon(w, virtual=VSTART)
    try:
        d.start()
        t0 = d.now
        d.post_ok([order(1)])
        a = action_id(1)
        wait_for(lambda: len(rcv.for_key(a)) == 1, 20, "the request to reach the receiver")
        row = outbox(w, a)
        eq((row["leased_until"], row["attempts"]), (t0 + 60 + 30, 0), "the lease of the transfer in flight")
        d.move(advance="1h")
        row = outbox(w, a)
        eq((row["delivery"], row["leased_until"], row["attempts"]), ("pending", t0 + 90, 0),
           "the row right after the clock passed its lease (no second transfer, no new lease)")
        rcv.release()
        wait_for(lambda: member_delivery(w, "m-1", a) == "delivered", 20, "the held request answered and recorded")
        eq(len(rcv.for_key(a)), 1, "requests for the action")
        eq(metric(d.metrics(), 'hearth_delivery_attempts_total{channel="crm"}'), 1, "attempts_total{crm}")
        assert_clean_stop(d)
    finally:
        d.close()
        rcv.stop()
        w.cleanup()


def test_webhook_secret_env_missing_refuses_to_start():
    w = Workspace({"crm.lua": webhook_script("http://127.0.0.1:9/hook", attempts=3)})
    d = Daemon(w)
    d.env.pop("HOOK_SECRET", None)
    try:
        try:
            d.start()
        except AssertionError as exc:
            msg = str(exc)
        else:
            raise AssertionError("the daemon started although HOOK_SECRET (secret_env) is unset")
        contains(msg, "exited with 1", "exit status without the secret")
        contains(msg, "HOOK_SECRET", "the error names the variable")
    finally:
        d.close()
        w.cleanup()


def test_log_channel_writes_one_ndjson_line_per_action():
    out_path = None
    w = Workspace()
    out_path = os.path.join(w.dir, "actions.ndjson")
    w.write_script("notes.lua", r'''
hearth.channel("file", {type = "log", path = %s})
hearth.on("order.paid", function(m, ev)
  m:send("thanks", { key = "thanks-" .. ev.data.order_id })
  m:task("call " .. m.id, { key = "call-" .. ev.data.order_id, staff = "s-1" })
end)
''' % json.dumps(out_path))
    d = Daemon(w)
    try:
        d.start()
        d.post_ok([order(1), order(2)])
        d.post_ok([order(3)])
        d.post_ok([order(3)])  # a duplicate event: no new action

        def lines():
            try:
                with open(out_path, encoding="utf-8") as f:
                    return f.read().splitlines()
            except OSError:
                return []
        wait_for(lambda: len(lines()) >= 6, 20, "six lines in the log channel's file")
        ms = wait_for(lambda: (lambda m: m if m.get("hearth_outbox_backlog") == 0 else None)(d.metrics()),
                      10, "hearth_outbox_backlog to reach 0")
        got = lines()
        eq(len(got), 6, "lines in %s: %r" % (out_path, got))
        docs = []
        for l in got:
            try:
                docs.append(json.loads(l))
            except ValueError:
                raise AssertionError("log channel line is not JSON: %r" % l)
        expect = set()
        for n in (1, 2, 3):
            expect.add("notes/m-%d/thanks-o-%d" % (n, n))
            expect.add("notes/m-%d/call-o-%d" % (n, n))
        eq(sorted(x["id"] for x in docs), sorted(expect), "action ids in the log file")
        for x in docs:
            eq(x["status"], "queued", "status of %s" % x["id"])
            eq(x["campaign"], "notes", "campaign of %s" % x["id"])
            eq(x["channel"], "file", "channel of %s" % x["id"])
            assert x["action"] in ("send", "task"), "action kind %r" % x["action"]
        eq(metric(ms, 'hearth_delivery_delivered_total{channel="file"}'), 6, "delivered_total{file}")
        eq(member_delivery(w, "m-3", "notes/m-3/thanks-o-3"), "delivered", "delivery state")
        assert_clean_stop(d)
    finally:
        d.close()
        w.cleanup()


# ---------------------------------------------------------------- crash mid-delivery

def test_sigkill_mid_delivery_redelivers_with_same_key_after_restart():
    rcv = Receiver(lambda key, n: "hold" if n == 1 else (200, {}))
    # timeout="2s" is the shortest useful setting; the restart voids every lease, so the
    # redelivery does not wait for timeout + 30 s.
    w = Workspace({"crm.lua": webhook_script(rcv.url, attempts=5, extra=', timeout = "2s"')})
    d = Daemon(w, virtual=VSTART)
    d2 = Daemon(w, virtual=VSTART)
    try:
        d.start()
        d.post_ok([order(1)])
        a = action_id(1)
        wait_for(lambda: len(rcv.for_key(a)) >= 1, 20, "the first request to reach the receiver")
        d.kill9()  # the request is held, unanswered
        first = rcv.for_key(a)
        eq(len(first), 1, "requests before the kill")
        eq(first[0]["status"], None, "the first request was still unanswered at the kill")
        eq(member_delivery(w, "m-1", a), "pending", "delivery state after the crash")
        # The held request stays held (released in rcv.stop()): an answer written to the
        # dead connection must not pass for an acknowledgement.

        # The restarted daemon's clock has not moved: the redelivery comes only because
        # the start voided the dead process's lease (due at the start + 2 s + 30 s).
        d2.start()
        wait_for(lambda: rcv.acked(a), 30, "the action sent again after the restart")
        reqs = rcv.for_key(a)
        eq(len(reqs), 2, "requests in all (the held one, then the redelivery)")
        for r in reqs:
            check_request(r, d2.now)
        eq(reqs[1]["key"], reqs[0]["key"], "Idempotency-Key of the redelivery")
        eq(reqs[1]["json"], reqs[0]["json"], "body of the redelivery")
        wait_for(lambda: member_delivery(w, "m-1", a) == "delivered", 20, "the action marked delivered")
        # an hour later, past any lease and backoff: nothing starts again
        d2.move(advance="1h")
        row = outbox(w, a)
        eq((row["delivery"], row["attempts"], row["leased"]), ("delivered", 1, False),
           "the delivered action an hour later (delivery, attempts, leased)")
        eq(metric(d2.metrics(), 'hearth_delivery_attempts_total{channel="crm"}'), 1,
           "attempts_total{crm} of the restarted daemon")
        eq(len(rcv.for_key(a)), 2, "requests after delivery (no third send)")
        assert_clean_stop(d2)
    finally:
        d.close()
        d2.close()
        rcv.stop()
        w.cleanup()


# ---------------------------------------------------------------- HTTP limits

def read_response(sock, limit=30):
    """Read from a raw socket until EOF (or limit seconds); return the bytes."""
    sock.settimeout(limit)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise AssertionError("no EOF within %d s; got %r" % (limit, data[:300]))
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def status_of(raw):
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", raw)
    assert m, "not an HTTP response: %r" % raw[:300]
    return int(m.group(1))


def test_limits_431_413_idle_close_and_503_over_backlog():
    dead = closed_port()
    w = Workspace({"crm.lua": webhook_script("http://127.0.0.1:%d/hook" % dead, attempts=50,
                                             backoff="1h", extra=', timeout = "2s"')})
    # On a virtual clock: the actions' retries (30 min to 1 h away) never come due, and the
    # backlog gauge is read fresh for every request.
    d = Daemon(w, "--max-backlog", "2", "--max-body", "2000", virtual=VSTART)
    idle = None
    try:
        d.start()
        # A client that connects and sends nothing; checked at the end (header deadline).
        idle = socket.create_connection(("127.0.0.1", d.port), timeout=5)

        # Oversized headers: 431.
        st, _, body = d.request("GET", "/healthz", headers={"X-Big": "a" * 20000})
        eq(st, 431, "status for 20 KB of headers (body %r)" % body)

        # A body over --max-body: 413, with Content-Length ...
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        try:
            payload = b"[" + b" " * 2500 + b"]"
            s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
            raw = read_response(s)
        finally:
            s.close()
        eq(status_of(raw), 413, "status for a 2502-byte body over --max-body 2000")
        # ... and chunked, where the size is only known while reading.
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        try:
            chunk = b" " * 1200
            s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n"
                      + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2 + b"0\r\n\r\n")
            raw = read_response(s)
        finally:
            s.close()
        eq(status_of(raw), 413, "status for a 2400-byte chunked body over --max-body 2000")
        # a body within the limit is taken
        st, _, body = d.request("POST", "/v1/events", json.dumps([order(1)]) + " " * 10,
                                {"Content-Type": "application/json"})
        eq(st, 202, "status for a small body (body %r)" % body)

        # Backlog: actions for a closed port stay queued; past 2 the daemon sheds load.
        shed = None
        for i in range(2, 60):
            st, hdrs, body = d.post_events([order(i)])
            if st == 503:
                shed = (i, hdrs, body)
                break
            eq(st, 202, "POST %d status before shedding (body %r)" % (i, body))
        assert shed, "no 503 after 58 actions queued behind a closed port with --max-backlog 2"
        i, hdrs, body = shed
        eq(i, 4, "the event refused first (%d actions were queued before it)" % (i - 1))
        assert "retry-after" in hdrs, "503 without Retry-After: headers %r" % hdrs
        assert re.fullmatch(r"\d+", hdrs["retry-after"].strip()), "Retry-After %r" % hdrs["retry-after"]
        contains(body.decode(), "backlog", "503 body")
        st, _, _ = d.request("GET", "/healthz")
        eq(st, 200, "healthz while shedding")
        ms = d.metrics()
        assert metric(ms, "hearth_outbox_backlog") > 2, "backlog gauge %r" % ms["hearth_outbox_backlog"]
        eq(metric(ms, "hearth_http_rejected_431_total"), 1, "rejected_431_total")
        eq(metric(ms, "hearth_http_rejected_413_total"), 2, "rejected_413_total")

        # The idle client is closed at the header deadline (a 408 may come first).
        raw = read_response(idle, limit=40)
        if raw:
            eq(status_of(raw), 408, "what the idle client got before the close")
            eq(metric(d.metrics(), "hearth_http_timed_out_total"), 1, "timed_out_total after the 408")
        assert_clean_stop(d)
    finally:
        if idle:
            idle.close()
        d.close()
        w.cleanup()


# ---------------------------------------------------------------- operations

ONBOARD = r'''
hearth.on("member.joined", function(m, ev)
  hearth.count("entered")
  hearth.count("entered", { variant = ev.data.variant })
  m:send("welcome", { key = "welcome", step = "welcome" })
  m:add_points(10, "welcome")
end)
hearth.on("order.paid", function(m, ev)
  hearth.count("converted")
  hearth.count("converted", { variant = m:get("variant") or "A" })
  m:task("call " .. m.id, { key = "call", step = "call", status = "skipped" })
end)
'''


def onboard_events():
    ev = []
    for n, v in ((1, "A"), (2, "B"), (3, "A")):
        ev.append({"id": "j-%d" % n, "type": "member.joined", "member": "m-%d" % n,
                   "time": "2026-11-22T10:0%d:00+08:00" % n, "data": {"variant": v}})
    ev.append({"id": "o-1", "type": "order.paid", "member": "m-1", "time": "2026-11-22T11:00:00+08:00",
               "data": {"amount": 99, "order_id": "o-1"}})
    return ev


def test_stats_text_and_json_after_import():
    with Workspace({"onboard.lua": ONBOARD}) as w:
        # the events' November is history by now: keep it deliverable for this count
        r = w.import_events(onboard_events(), "--stale-after", "36500d")
        eq(r.rc, 0, "import exit status (stderr %s)" % r.err)
        rc, out, err = w.run("stats", "--db", w.db, "--json")
        eq(rc, 0, "stats --json exit status (stderr %s)" % err)
        try:
            s = json.loads(out)
        except ValueError:
            raise AssertionError("stats --json is not JSON: %r" % out)
        t = s["totals"]
        eq(t["members"], 3, "totals.members")
        # points are no outbox rows (no channel asks for them): counted in the funnel below
        eq(t["actions"], 4, "totals.actions (3 sends + 1 skipped task)")
        eq(t["pending_delivery"], 3, "totals.pending_delivery (import never delivers)")
        eq(t["delivered"], 0, "totals.delivered")
        eq(t["dead_letters"], 0, "totals.dead_letters")
        eq(t["events_remembered"], 4, "totals.events_remembered")
        camps = {c["name"]: c for c in s["campaigns"]}
        eq(sorted(camps), ["onboard"], "campaigns")
        c = camps["onboard"]
        eq(c["metrics"].get("entered"), 3, "entered")
        eq(c["metrics"].get("converted"), 1, "converted")
        eq(c["metrics"].get("points"), 3, "queued points actions without a step")
        assert abs(c["metrics"].get("conversion", -1) - 1 / 3) < 1e-9, "conversion %r" % c["metrics"]
        steps = {x["name"]: x for x in c["steps"]}
        eq(steps.get("welcome", {}).get("sent"), 3, "step welcome sent (steps %r)" % c["steps"])
        eq(steps.get("call", {}).get("skipped"), 1, "step call skipped (steps %r)" % c["steps"])
        variants = {x["name"]: x for x in c["variants"]}
        eq(variants.get("A", {}).get("entered"), 2, "variant A entered (%r)" % c["variants"])
        eq(variants.get("B", {}).get("entered"), 1, "variant B entered (%r)" % c["variants"])

        rc, out, err = w.run("stats", "--db", w.db)
        eq(rc, 0, "stats exit status (stderr %s)" % err)
        first = out.splitlines()[0]
        for needle in ("members 3", "actions 4", "pending_delivery 3", "dead_letters 0"):
            contains(first, needle, "stats totals line")
        contains(out, "campaign onboard:", "stats text")
        assert re.search(r"campaign onboard:.*entered 3", out), "campaign line: %r" % out
        assert re.search(r"step welcome: .*sent 3", out), "step welcome line: %r" % out
        assert re.search(r"step call: .*skipped 1", out), "step call line: %r" % out

        rc, out, err = w.run("stats", "--db", os.path.join(w.dir, "nope.db"))
        eq(rc, 1, "stats on a missing database (exit status)")


def test_backup_copies_state_and_refuses_an_existing_path():
    with Workspace({"onboard.lua": ONBOARD}) as w:
        r = w.import_events(onboard_events())
        eq(r.rc, 0, "import exit status (stderr %s)" % r.err)
        dst = os.path.join(w.dir, "copy.db")
        rc, out, err = w.run("backup", dst, "--db", w.db)
        eq(rc, 0, "backup exit status (stderr %s)" % err)
        assert os.path.exists(dst), "no file at %s after backup" % dst
        for mid in ("m-1", "m-2", "m-3"):
            orig = w.member(mid)
            rc, out, err = w.run("member", mid, "--db", dst)
            eq(rc, 0, "member %s on the backup (stderr %s)" % (mid, err))
            eq(json.loads(out), orig, "member %s in the backup vs the original" % mid)
        eq(w.member("m-1")["points"], 10, "points of m-1")
        rc1, s1, _ = w.run("stats", "--db", w.db, "--json")
        rc2, s2, _ = w.run("stats", "--db", dst, "--json")
        eq((rc1, rc2), (0, 0), "stats exit statuses")
        # the staff report's `now` is the present of each call (a second may pass between them)
        st1, st2 = json.loads(s1), json.loads(s2)
        for st in (st1, st2):
            st["staff"].pop("now", None)
        eq(st2, st1, "stats of the backup vs the original")

        # An existing path is refused and left alone.
        with open(dst, "rb") as f:
            before = f.read()
        rc, out, err = w.run("backup", dst, "--db", w.db)
        eq(rc, 1, "backup onto an existing path (exit status; stderr %s)" % err)
        contains(err, "exists", "backup onto an existing path (stderr)")
        with open(dst, "rb") as f:
            eq(f.read() == before, True, "the existing file is unchanged")
        rc, out, err = w.run("backup", "--db", w.db)
        eq(rc, 2, "backup without PATH (usage error)")


def test_backup_while_daemon_runs_is_consistent():
    rcv = Receiver(always(200))
    w = Workspace({"crm.lua": webhook_script(rcv.url, attempts=3)})
    d = Daemon(w)
    try:
        d.start()
        d.post_ok([order(1), order(2)])
        wait_for(lambda: rcv.acked(action_id(1)) and rcv.acked(action_id(2)), 20, "both delivered")
        wait_for(lambda: member_delivery(w, "m-2", action_id(2)) == "delivered", 20, "marked delivered")
        dst = os.path.join(w.dir, "live-copy.db")
        rc, out, err = w.run("backup", dst, "--db", w.db)
        eq(rc, 0, "backup of a live database (stderr %s)" % err)
        for mid in ("m-1", "m-2"):
            rc, out, err = w.run("member", mid, "--db", dst)
            eq(rc, 0, "member %s on the live backup (stderr %s)" % (mid, err))
            eq(json.loads(out), w.member(mid), "member %s in the live backup" % mid)
        assert_clean_stop(d)
    finally:
        d.close()
        rcv.stop()
        w.cleanup()


def test_dead_letters_on_an_empty_database():
    with Workspace({"crm.lua": "hearth.on('ping', function(m, ev) end)\n"}) as w:
        r = w.import_events([{"id": "p-1", "type": "ping", "member": "m-1"}])
        eq(r.rc, 0, "import exit status (stderr %s)" % r.err)
        rc, out, err = w.run("dead-letters", "--db", w.db)
        eq(rc, 0, "dead-letters exit status (stderr %s)" % err)
        eq(out.strip(), "no dead letters", "dead-letters output")
        eq(dead_letters_json(w), [], "dead-letters --json")
        rc, out, err = w.run("dead-letters", "--db", w.db, "--requeue", "nope/m-1/x")
        eq(rc, 1, "requeue of an unknown id (exit status)")
        contains(err, "no dead letter", "requeue of an unknown id (stderr)")
        rc, out, err = w.run("dead-letters", "--db", os.path.join(w.dir, "missing.db"))
        eq(rc, 1, "dead-letters on a missing database (exit status)")


if __name__ == "__main__":
    harness.main()
