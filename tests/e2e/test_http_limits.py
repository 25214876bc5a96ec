"""test_http_limits: how `hearth run` keeps clients apart and stays reachable, end to end
on loopback: the bearer token checked on the headers before any body byte is read (401,
then the connection closes), a declared Content-Length over --max-body refused the same
way (413), a per-client connection cap, idle connections evicted at the connection cap so
that a new client is still served, POST /v1/events refused without a JSON or NDJSON
Content-Type (415), strict chunk framing (400), and --dedupe-window 0 meaning forever.

Clients are raw sockets where the framing matters and http.client elsewhere. Every wait
is a recv or a poll with a generous guard; no test asserts on how long anything took."""

import http.client
import json
import os
import resource
import socket
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq, contains  # noqa: E402
from test_daemon import INGEST, ping, start  # noqa: E402

GUARD = 30  # seconds any single recv may wait (a hang guard only)
TOKEN = "s3cret-T0ken"


# ---------------------------------------------------------------- raw HTTP

def connect(port, source="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(GUARD)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_response(s):
    """(status, {header: value}, body bytes) of one response; the body by Content-Length."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        got = s.recv(65536)
        assert got, "connection closed before a whole response head: %r" % raw
        raw += got
    head, rest = raw.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    hdrs = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    while len(rest) < n:
        got = s.recv(65536)
        assert got, "connection closed inside a response body"
        rest += got
    return status, hdrs, rest[:n]


def sees_close(s):
    """True when the server has closed the connection (EOF or reset) with nothing more."""
    try:
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True


def send_until_closed(s, limit):
    """Send filler until the server closes or limit bytes are out; the count sent, and
    whether the server closed first."""
    filler = b" " * 65536
    sent = 0
    while sent < limit:
        try:
            sent += s.send(filler)
        except (BrokenPipeError, ConnectionResetError):
            return sent, True
    return sent, False


def post_head(length, auth=None, ctype="application/json", chunked=False):
    h = "POST /v1/events HTTP/1.1\r\nHost: x\r\n"
    if ctype:
        h += "Content-Type: %s\r\n" % ctype
    if auth:
        h += "Authorization: %s\r\n" % auth
    h += "Transfer-Encoding: chunked\r\n" if chunked else "Content-Length: %d\r\n" % length
    return (h + "\r\n").encode()


def get(port, path, source=None, token=None):
    """GET on a fresh connection (from source when given): (status, body text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=GUARD,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request("GET", path, headers={"Authorization": "Bearer " + token} if token else {})
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def metric(port, name, source=None):
    status, text = get(port, "/metrics", source=source)
    eq(status, 200, "GET /metrics status")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("/metrics has no %s: %s" % (name, text))


def token_file(w):
    path = os.path.join(w.dir, "token")
    with open(path, "w") as f:
        f.write(TOKEN + "\n")
    return path


# ---------------------------------------------------------------- (1) token before the body

def test_authentication_after_buffering_401_before_the_body_is_read():
    with Workspace({"ing.lua": INGEST}) as w:
        with start(w, "--token-file", token_file(w), "--max-body", "1073741824") as d:
            d.wait_listening()
            # Only the headers of an 8 MB body: the 401 comes without a byte of it, then the close.
            for label, auth in (("no token", None), ("wrong token", "Bearer nope")):
                s = connect(d.port)
                try:
                    s.sendall(post_head(8000000, auth=auth))
                    status, hdrs, body = read_response(s)
                    eq(status, 401, "status for the headers of a body with %s" % label)
                    eq(hdrs.get("connection"), "close", "Connection header of the 401")
                    eq(hdrs.get("www-authenticate"), "Bearer", "WWW-Authenticate of the 401")
                    contains(body.decode(), "bearer token", "401 body")
                    assert sees_close(s), "the connection stays open after the 401 (%s)" % label
                finally:
                    s.close()
            # A client that just sends its 512 MiB body is cut off long before it is done:
            # the daemon reads none of it into memory and stops reading soon after the 401.
            s = connect(d.port)
            try:
                s.sendall(post_head(512 << 20))
                sent, closed = send_until_closed(s, 64 << 20)
                assert closed, "the daemon took %d body bytes of a client without a token" % sent
            finally:
                s.close()
            # Chunked: the same, on the headers alone.
            s = connect(d.port)
            try:
                s.sendall(post_head(0, chunked=True))
                status, _, _ = read_response(s)
                eq(status, 401, "status for the headers of a chunked body without a token")
            finally:
                s.close()
            # With the token the body is read and applied.
            d.post_ok(ping("ok-1", "m-a"), accepted=1, token=TOKEN)
            # /healthz needs no token, with a body too (405, after reading it).
            status, _, _ = d.request("POST", "/healthz", body="x" * 100)
            eq(status, 405, "POST /healthz without a token")
            d.stop_clean()


def test_declared_length_over_max_body_413_before_the_body_is_read():
    with Workspace({"ing.lua": INGEST}) as w:
        with start(w, "--max-body", "4096") as d:
            d.wait_listening()
            s = connect(d.port)
            try:
                s.sendall(post_head(4097))
                status, hdrs, body = read_response(s)
                eq(status, 413, "status for a declared Content-Length over --max-body")
                eq(hdrs.get("connection"), "close", "Connection header of the 413")
                assert sees_close(s), "the connection stays open after the 413"
            finally:
                s.close()
            d.post_ok(ping("small", "m-b"), accepted=1)
            d.stop_clean()


# ---------------------------------------------------------------- (2) idle lock-out

def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        assert hard == resource.RLIM_INFINITY or hard >= need, \
            "this test needs %d file descriptors; the hard limit is %d" % (need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def test_idle_lock_out_with_the_default_limits():
    # 1,024 idle sockets (the default cap), 64 (the default per-client cap) from each of
    # 16 loopback addresses: a new client is served, and a 65th socket from one address
    # is closed at once. The daemon inherits the raised descriptor limit.
    raise_fd_limit(1024 + 512)
    with Workspace({"ing.lua": INGEST}) as w:
        with start(w) as d:
            d.wait_listening()
            idle = []
            try:
                for host in range(1, 17):
                    for _ in range(64):
                        idle.append(connect(d.port, "127.0.0.%d" % host))
                status, body = get(d.port, "/healthz", source="127.0.0.100")
                eq(status, 200, "GET /healthz with 1024 idle sockets open (body %r)" % body)
                over = connect(d.port, "127.0.0.2")
                try:
                    assert sees_close(over), "a 65th connection from 127.0.0.2 was kept"
                finally:
                    over.close()
                status, _ = get(d.port, "/healthz", source="127.0.0.101")
                eq(status, 200, "a second new client")
            finally:
                for s in idle:
                    s.close()
            d.stop_clean()


def test_idle_lock_out_a_new_client_is_served_with_the_cap_of_idle_sockets_open():
    cap = 100
    with Workspace({"ing.lua": INGEST}) as w:
        with start(w, "--max-connections", str(cap), "--max-connections-per-client", "1000",
                   "--header-timeout", "1h") as d:
            d.wait_listening()
            idle = []
            try:
                for _ in range(cap):
                    idle.append(connect(d.port))
                # The cap's worth of sockets that never send a byte: a new client is served,
                # in place of the socket idle longest.
                status, body = get(d.port, "/healthz")
                eq(status, 200, "GET /healthz with %d idle sockets open (body %r)" % (cap, body))
                assert sees_close(idle[0]), "the socket idle longest is still open"
                # Back at the cap: an event is taken too.
                idle.append(connect(d.port))
                d.post_ok(ping("through", "m-c"), accepted=1)
                assert metric(d.port, "hearth_http_evicted_idle_total") >= 1, "evictions not counted"
                eq(metric(d.port, "hearth_http_refused_connections_total"), 0, "refused connections")
            finally:
                for s in idle:
                    s.close()
            d.stop_clean()


def test_per_client_connection_cap():
    with Workspace({"ing.lua": INGEST}) as w:
        with start(w, "--max-connections-per-client", "5") as d:
            d.wait_listening()
            held = []
            try:
                for _ in range(5):
                    held.append(connect(d.port, "127.0.0.1"))
                over = connect(d.port, "127.0.0.1")
                try:
                    assert sees_close(over), "a 6th connection from 127.0.0.1 was kept"
                finally:
                    over.close()
                # Another address is not affected.
                status, _ = get(d.port, "/healthz", source="127.0.0.2")
                eq(status, 200, "GET /healthz from 127.0.0.2 while 127.0.0.1 is at its cap")
                eq(metric(d.port, "hearth_http_refused_connections_total", "127.0.0.2"), 1,
                   "refused connections")
                # The held connections still work.
                held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                status, _, _ = read_response(held[0])
                eq(status, 200, "a request on a held connection")
            finally:
                for s in held:
                    s.close()
            d.stop_clean()


def test_limit_flags_are_checked():
    with Workspace({"ing.lua": INGEST}) as w:
        for flag, value, needle in (("--max-connections", "0", "--max-connections must be"),
                                    ("--max-connections-per-client", "x", "must be a number"),
                                    ("--header-timeout", "0s", "--header-timeout must be"),
                                    ("--body-timeout", "soon", "bad duration")):
            rc, _, err = w.run("run", "--db", w.db, "--scripts", w.scripts, flag, value)
            eq(rc, 2, "exit status for %s %s" % (flag, value))
            contains(err, needle, "error for %s %s" % (flag, value))
        rc, out, _ = w.run("run", "--help")
        eq(rc, 0, "hearth run --help")
        for flag in ("--max-connections N", "--max-connections-per-client N",
                     "--header-timeout DUR", "--body-timeout DUR", "(default 64)",
                     "(default 1024)", "default 10s", "default 30s"):
            contains(out, flag, "hearth run --help")


# ---------------------------------------------------------------- (3) content type

def test_events_without_a_json_content_type_get_415():
    with Workspace({"ing.lua": INGEST}) as w:
        with start(w) as d:
            d.wait_listening()
            n = 0
            for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                          "application/jsonp", "application/json x", None):
                n += 1
                headers = {"Content-Type": ctype} if ctype else {}
                status, _, body = d.request("POST", "/v1/events", json.dumps(ping("t%d" % n, "m-t")),
                                            headers)
                eq(status, 415, "POST /v1/events with Content-Type %r (body %r)" % (ctype, body))
            status, _, _ = d.request("GET", "/v1/members/m-t")
            eq(status, 404, "nothing was applied from the refused posts")
            for ctype in ("application/json", "application/json; charset=utf-8",
                          "Application/JSON", "application/x-ndjson", "application/ndjson",
                          "application/x-ndjson ; charset=UTF-8"):
                n += 1
                d.post_ok(ping("t%d" % n, "m-t"), accepted=1, content_type=ctype)
            d.stop_clean()


# ---------------------------------------------------------------- (4) chunk framing

def chunked_post(port, chunks):
    s = connect(port)
    try:
        s.sendall(post_head(0, chunked=True) + chunks)
        return read_response(s)
    finally:
        s.close()


def test_chunk_not_followed_by_crlf_is_400():
    with Workspace({"ing.lua": INGEST}) as w:
        with start(w) as d:
            d.wait_listening()
            line = json.dumps(ping("c1", "m-k")).encode()
            for label, chunks in (("XX", b"%x\r\n%sXX0\r\n\r\n"),
                                  ("CR X", b"%x\r\n%s\rX0\r\n\r\n"),
                                  ("LF only", b"%x\r\n%s\n0\r\n\r\n"),
                                  ("CR X after the size", b"%x\rX%s\r\n0\r\n\r\n"),
                                  ("CR X after the trailers", b"%x\r\n%s\r\n0\r\n\rX")):
                status, _, body = chunked_post(d.port, chunks % (len(line), line))
                eq(status, 400, "status for a chunk framed with %s (body %r)" % (label, body))
            status, _, _ = d.request("GET", "/v1/members/m-k")
            eq(status, 404, "nothing was applied from the badly framed posts")
            # Well framed, with chunk extensions (ignored) and a trailer field: accepted.
            status, _, body = chunked_post(
                d.port, b"%x;name=value\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n" % (len(line), line))
            eq(status, 202, "status for a well framed chunked post (body %r)" % body)
            eq(json.loads(body), {"accepted": 1, "duplicates": 0}, "reply to the chunked post")
            d.stop_clean()


# ---------------------------------------------------------------- (5) --dedupe-window 0

def test_dedupe_window_0_is_forever():
    with Workspace({"ing.lua": INGEST}) as w:
        with start(w) as d:
            d.wait_listening()
            d.post_ok(ping("e-old", "m-d"), accepted=1)
            d.stop_clean()
        # The id was seen 400 days ago.
        db = sqlite3.connect(w.db)
        try:
            with db:
                cur = db.execute("UPDATE seen_events SET at = at - 400 * 86400 WHERE id = 'e-old'")
                eq(cur.rowcount, 1, "seen_events row for e-old")
        finally:
            db.close()
        with start(w, "--dedupe-window", "0") as d:
            d.wait_listening()
            d.post_ok(ping("e-old", "m-d"), accepted=0, duplicates=1)
            d.stop_clean()
        # The default window (30 days) has forgotten it: the contrast shows the row is old.
        with start(w) as d:
            d.wait_listening()
            d.post_ok(ping("e-old", "m-d"), accepted=1)
            d.stop_clean()


if __name__ == "__main__":
    harness.main()
