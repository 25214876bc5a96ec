"""test_liveness: `hearth run` stays live while a hostile handler burns its whole budget on
every event of a large POST /v1/events body. The body is validated whole, then applied a
slice at a time, each slice committed; /healthz, /metrics and GET routes are answered
between slices; a POST that arrives meanwhile waits its turn (and over the bound gets
503 with Retry-After); SIGTERM during the body answers it 503 naming how many events were
applied, and exactly those are in the database; a database error answers 500 naming what
was applied; a bad line still refuses the whole body; bodies posted together share one
commit;
/healthz is answered between the slices of hostile timers too.

Every check is an order of events, never a duration: "GET /healthz was answered while the
POST still had no answer" is read from the POST's socket (nothing to read yet) right
after the /healthz answer, with a body that takes many slices. Waits are bounded polls
for something that must happen (a log line, a gauge); guards only stop hangs."""

import http.client
import json
import os
import re
import select
import signal
import socket
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq, contains  # noqa: E402
from test_daemon import start, STOP_GUARD  # noqa: E402

GUARD = 120  # seconds: a hang guard for one answer, never a threshold

# Every `burn` event runs a handler that loops until its budget stops it: the call fails
# (its m:set is rolled back) and the event is recorded as failed. `ping` has no handler.
HOSTILE = r'''
hearth.on("burn", function(m, ev)
  m:set("touched", true)
  local x = 0
  while true do x = x + 1 end
end)
'''


def burn(i):
    return {"id": "b-%d" % i, "type": "burn", "member": "m-%d" % i}


def ping(i):
    return {"id": "p-%d" % i, "type": "ping", "member": "p-%d" % i}


def ndjson(events):
    return ("".join(json.dumps(e) + "\n" for e in events)).encode()


def send_post(port, body):
    """Send a whole POST /v1/events on a fresh connection; the answer is read later."""
    s = socket.create_connection(("127.0.0.1", port), timeout=GUARD)
    head = ("POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
            "Content-Length: %d\r\n\r\n" % len(body)).encode()
    s.sendall(head + body)
    return s


def has_answer(s):
    """1 when the server has sent something on s (readable now), without waiting."""
    return bool(select.select([s], [], [], 0)[0])


def read_answer(s):
    """(status, {header: value}, parsed JSON) of the answer on s; closes s."""
    r = http.client.HTTPResponse(s)
    try:
        r.begin()
        raw = r.read().decode()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
    finally:
        s.close()
    return r.status, hdrs, json.loads(raw) if raw else None


def failures_logged(d):
    return sum(1 for r in d.log() if r.get("msg") == "handler failed")


def wait_failures(d, n, what):
    """Poll the log until at least n handler failures are logged (the body is being applied)."""
    deadline = time.time() + GUARD
    while time.time() < deadline:
        if failures_logged(d) >= n:
            return
        if d.p.poll() is not None:
            raise AssertionError("daemon exited while waiting for %s; stderr: %s" % (what, d.stderr()[-3000:]))
        time.sleep(0.02)
    raise AssertionError("%s: not seen within %d s; stderr: %s" % (what, GUARD, d.stderr()[-3000:]))


def gauge(d, name):
    status, _, text = d.request("GET", "/metrics")
    eq(status, 200, "GET /metrics status")
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    assert m, "no %s in /metrics: %s" % (name, text)
    return int(m.group(1))


def wait_deferred(d, n):
    deadline = time.time() + GUARD
    while time.time() < deadline:
        if gauge(d, "hearth_http_deferred") == n:
            return
        time.sleep(0.02)
    raise AssertionError("hearth_http_deferred never reached %d" % n)


def count_rows(db, table):
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT count(*) FROM %s" % table).fetchone()[0]
    finally:
        con.close()


def test_healthz_and_gets_answered_while_a_hostile_body_is_applied():
    # 80 events that each spend a whole budget: seconds of work, against the milliseconds
    # of the GETs below (a precondition with a wide margin, not a threshold)
    n = 80
    with Workspace({"burn.lua": HOSTILE}) as w, start(w) as d:
        d.wait_listening()
        post = send_post(d.port, ndjson([burn(i) for i in range(n)]))
        wait_failures(d, 1, "the first event of the body applied")
        status, _, body = d.request("GET", "/healthz")
        assert not has_answer(post), "the POST was answered before GET /healthz: the body went in one go"
        eq((status, body), (200, {"status": "ok"}), "GET /healthz while the body is applied")
        status, _, m = d.request("GET", "/v1/members/m-0")
        eq(status, 200, "GET /v1/members/m-0 (applied in the first slice) while the body is applied")
        eq(m["attrs"].get("touched"), None, "the failed call's change, rolled back")
        eq(gauge(d, "hearth_http_deferred"), 1, "the POST waits for its answer")
        assert not has_answer(post), "the POST was answered before the GETs: the body went in one go"
        status, _, reply = read_answer(post)
        eq((status, reply), (202, {"accepted": n, "duplicates": 0}), "the POST's answer after its last slice")
        eq(failures_logged(d), n, "one handler failure per event")
        # the same body again: every event is a duplicate
        status, _, reply = read_answer(send_post(d.port, ndjson([burn(i) for i in range(n)])))
        eq((status, reply), (202, {"accepted": 0, "duplicates": n}), "the body sent again")
        d.stop_clean()
        eq(count_rows(w.db, "seen_events"), n, "events marked seen")


def test_sigterm_during_a_hostile_body_answers_503_with_what_was_applied():
    n = 200
    with Workspace({"burn.lua": HOSTILE}) as w:
        with start(w) as d:
            d.wait_listening()
            post = send_post(d.port, ndjson([burn(i) for i in range(n)]))
            wait_failures(d, 1, "the first event of the body applied")
            d.send_signal(signal.SIGTERM)
            status, hdrs, reply = read_answer(post)
            eq(status, 503, "the POST in hand at SIGTERM (reply %r)" % (reply,))
            applied = reply["applied"]
            eq(reply["events"], n, "events of the body, in the 503")
            assert 1 <= applied < n, "applied %r of %d" % (applied, n)
            contains(reply["error"], "stopping: %d of the %d events" % (applied, n), "the 503's message")
            contains(reply["error"], "safe for events with ids", "the 503's message")
            eq(d.p.wait(timeout=STOP_GUARD), 0, "exit status after SIGTERM")
            msgs = [r.get("msg") for r in d.log()]
            assert "stopped" in msgs, "no 'stopped' log line: %r" % msgs
        # exactly the events named applied are in the database, each with its failure
        eq(count_rows(w.db, "seen_events"), applied, "events marked seen")
        eq(count_rows(w.db, "failed_events"), applied, "failures recorded")
        with start(w) as d:
            d.wait_listening()
            again = ndjson([burn(i) for i in range(applied)])
            status, _, reply = read_answer(send_post(d.port, again))
            eq((status, reply), (202, {"accepted": 0, "duplicates": applied}),
               "the events applied before SIGTERM, sent again")
            d.stop_clean()


def test_bodies_wait_their_turn_and_one_over_the_bound_gets_503():
    # The first body is 300 events whose handler each spends its whole budget: seconds of
    # work at the least, against the milliseconds it takes to queue nine small bodies
    # behind it, so the queue is full when the tenth comes (a precondition with a wide
    # margin, not a threshold on the daemon). SIGTERM then answers every body in hand.
    n, waiting = 300, 8
    with Workspace({"burn.lua": HOSTILE}) as w, start(w) as d:
        d.wait_listening()
        first = send_post(d.port, ndjson([burn(i) for i in range(n)]))
        wait_deferred(d, 1)
        queued = []
        for i in range(waiting):
            queued.append(send_post(d.port, ndjson([ping(i)])))
            wait_deferred(d, 2 + i)
        status, hdrs, reply = read_answer(send_post(d.port, ndjson([ping(99)])))
        eq(status, 503, "a body over the bound of waiting bodies (reply %r)" % (reply,))
        eq(hdrs.get("retry-after"), "1", "Retry-After of the 503")
        contains(reply["error"], "busy", "the 503's message")
        d.send_signal(signal.SIGTERM)
        status, _, reply = read_answer(first)
        eq(status, 503, "the first body, in hand at SIGTERM (reply %r)" % (reply,))
        assert 1 <= reply["applied"] < n, "applied %r of %d" % (reply["applied"], n)
        for i, sock in enumerate(queued):
            status, _, reply = read_answer(sock)
            eq((status, reply.get("applied")), (503, 0), "waiting body %d: its turn never came" % i)
        eq(d.p.wait(timeout=STOP_GUARD), 0, "exit status after SIGTERM")
        eq(count_rows(w.db, "seen_events"), count_rows(w.db, "failed_events"),
           "only the first body's events were applied (each a failure of its burn handler)")


def test_database_error_answers_500_naming_what_was_applied():
    # Another process holds the write lock: the slice cannot begin (after SQLite's busy
    # timeout) and the body is answered 500 with the count applied, here none.
    n = 5
    with Workspace({"burn.lua": HOSTILE}) as w, start(w) as d:
        d.wait_listening()
        con = sqlite3.connect(w.db, isolation_level=None, timeout=GUARD)
        try:
            con.execute("BEGIN IMMEDIATE")
            status, _, reply = read_answer(send_post(d.port, ndjson([ping(i) for i in range(n)])))
        finally:
            con.close()
        eq(status, 500, "a body whose slice hit a database error (reply %r)" % (reply,))
        eq((reply["applied"], reply["events"]), (0, n), "applied and events in the 500")
        contains(reply["error"], "database error: 0 of the %d events" % n, "the 500's message")
        status, _, reply = read_answer(send_post(d.port, ndjson([ping(i) for i in range(n)])))
        eq((status, reply), (202, {"accepted": n, "duplicates": 0}), "the body sent again once the lock is gone")
        d.stop_clean()


def test_a_bad_body_behind_one_in_hand_is_refused_at_once_and_the_next_waits():
    # Large bodies are parsed off the loop as they come; a refused one is answered 400 when
    # its parse is done, while the hostile body before it is still being applied, and takes
    # nothing; the valid one behind it waits its turn and is answered at SIGTERM.
    n = 300
    with Workspace({"burn.lua": HOSTILE}) as w:
        with start(w) as d:
            check_bad_body_behind_one_in_hand(d, n)
        eq(count_rows(w.db, "seen_events"), count_rows(w.db, "failed_events"),
           "only the hostile body's events were applied")


def check_bad_body_behind_one_in_hand(d, n):
    d.wait_listening()
    first = send_post(d.port, ndjson([burn(i) for i in range(n)]))
    wait_failures(d, 1, "the first event of the hostile body applied")
    # both bodies are larger than what the loop parses itself (64 KiB)
    many = 2000
    bad = send_post(d.port, ndjson([ping(i) for i in range(many)]) + b"{not json}\n")
    status, _, reply = read_answer(bad)
    eq(status, 400, "the bad body (reply %r)" % (reply,))
    contains(reply["error"], "line %d" % (many + 1), "the 400 names the line")
    eq(has_answer(first), False, "the hostile body is still in hand when the 400 comes")
    waiting = send_post(d.port, ndjson([ping(many + i) for i in range(many)]))
    wait_deferred(d, 2)
    d.send_signal(signal.SIGTERM)
    eq(read_answer(first)[0], 503, "the hostile body at SIGTERM")
    status, _, reply = read_answer(waiting)
    eq((status, reply["applied"], reply["events"]), (503, 0, many), "the body that waited, at SIGTERM")
    eq(d.p.wait(timeout=STOP_GUARD), 0, "exit status after SIGTERM")


def commits(d):
    return gauge(d, "hearth_commits_total")


def test_bodies_posted_together_share_one_commit_each_answered_202():
    # While the daemon is stopped (SIGSTOP), five small bodies (parsed on the loop) reach
    # its socket buffers; once it runs again it reads them all in one loop turn, and the
    # slice that follows applies
    # them in one transaction (a group commit) before answering each. Without the group
    # commit, each body would be a commit of its own.
    bodies = 5
    with Workspace({"burn.lua": HOSTILE}) as w, start(w) as d:
        d.wait_listening()
        before = commits(d)
        d.send_signal(signal.SIGSTOP)
        try:
            posts = [send_post(d.port, ndjson([ping(10 * b + i) for i in range(3)])) for b in range(bodies)]
        finally:
            d.send_signal(signal.SIGCONT)
        for b, post in enumerate(posts):
            status, _, reply = read_answer(post)
            eq((status, reply), (202, {"accepted": 3, "duplicates": 0}), "body %d's answer" % b)
        eq(commits(d) - before, 1, "commits for the five bodies")
        eq(count_rows(w.db, "seen_events"), 3 * bodies, "events marked seen")
        d.stop_clean()


# Each `arm` sets a timer due at once; each `tick` burns its whole budget.
HOSTILE_TIMERS = r'''
hearth.on("arm", function(m, ev) m:after("0s", "tick") end)
hearth.on("tick", function(m, ev)
  local x = 0
  while true do x = x + 1 end
end)
'''


def test_healthz_answered_while_hostile_timers_fire_zero_delay_timer_starved_io():
    # A due timer restarted with delay 0 from its own callback runs again before any I/O
    # on libuv 1.44: the slices of timers went on back to back and /healthz waited for all.
    # 80 timers that each spend a whole budget: the GET has seconds to come in between.
    n = 80
    with Workspace({"timers.lua": HOSTILE_TIMERS}) as w, start(w) as d:
        d.wait_listening()
        status, _, reply = read_answer(send_post(d.port, ndjson(
            [{"id": "a-%d" % i, "type": "arm", "member": "m-%d" % i} for i in range(n)])))
        eq((status, reply), (202, {"accepted": n, "duplicates": 0}), "the body arming the timers")
        wait_failures(d, 1, "the first timer fired")
        status, _, body = d.request("GET", "/healthz")
        fired = failures_logged(d)
        eq((status, body), (200, {"status": "ok"}), "GET /healthz while the timers fire")
        assert fired < n, "GET /healthz was answered only after all %d timers had fired" % n
        wait_failures(d, n, "every timer fired")
        d.stop_clean()


def test_bad_line_at_the_end_of_a_large_body_400_and_nothing_applied():
    n = 50
    with Workspace({"burn.lua": HOSTILE}) as w, start(w) as d:
        d.wait_listening()
        body = ndjson([burn(i) for i in range(n)]) + b'{"type":"burn","member":"m-x","time":"yesterday"}\n'
        status, _, reply = read_answer(send_post(d.port, body))
        eq(status, 400, "a body with a bad last line (reply %r)" % (reply,))
        contains(reply["error"], "line %d" % (n + 1), "the 400 names the line")
        status, _, body = d.request("GET", "/healthz")
        eq((status, body), (200, {"status": "ok"}), "GET /healthz after the 400")
        eq(failures_logged(d), 0, "handler failures (nothing applied)")
        d.stop_clean()
        eq(count_rows(w.db, "seen_events"), 0, "events marked seen (nothing applied)")


if __name__ == "__main__":
    harness.main()
