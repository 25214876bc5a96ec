#!/usr/bin/env python3
"""http_unauth_rss: peak RSS of `hearth run --token-file` after N clients without a token
each try to send a large body (the memory an unauthenticated client can make the daemon
hold). Prints the daemon's VmHWM before and after, and how many body bytes the clients got
into the socket. A figure, not a test: no threshold.

    python3 tests/bench/http_unauth_rss.py [--bin build/hearth] [--clients 100]
                                           [--body 8000000] [--send 7500000]

Every client connects, sends a POST /v1/events head declaring --body bytes, then sends up
to --send bytes of it (non-blocking, round robin) until the server closes or it is done.
Loopback only; every socket and the daemon are closed at the end."""

import argparse
import errno
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time

GUARD = 120  # seconds: a hang guard for the whole run


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM for pid %d" % pid)


def wait_port(err_path, p):
    deadline = time.time() + 30
    while time.time() < deadline:
        with open(err_path) as f:
            for line in f:
                if '"listening"' in line:
                    return int(json.loads(line)["addr"].rsplit(":", 1)[1])
        if p.poll() is not None:
            raise RuntimeError("daemon exited: %s" % open(err_path).read())
        time.sleep(0.05)
    raise RuntimeError("daemon did not listen")


def flood(port, clients, body, send):
    head = ("POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
            "Content-Length: %d\r\n\r\n" % body).encode()
    chunk = b" " * 65536
    socks, sent, done = [], [], []
    for _ in range(clients):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(head)
        s.setblocking(False)
        socks.append(s)
        sent.append(0)
        done.append(False)
    deadline = time.time() + GUARD
    while not all(done) and time.time() < deadline:
        live = [s for s, d in zip(socks, done) if not d]
        _, writable, _ = select.select([], live, [], 1.0)
        for s in writable:
            i = socks.index(s)
            try:
                n = s.send(chunk[:min(len(chunk), send - sent[i])])
                sent[i] += n
                if sent[i] >= send:
                    done[i] = True
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    continue
                done[i] = True  # the server closed: the rest of the body is never sent
    return socks, sent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("HEARTH_BIN", "build/hearth"))
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--body", type=int, default=8000000)
    ap.add_argument("--send", type=int, default=7500000)
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)
    d = tempfile.mkdtemp(prefix="hearth-rss-")
    os.mkdir(os.path.join(d, "scripts"))
    with open(os.path.join(d, "token"), "w") as f:
        f.write("s3cret\n")
    err_path = os.path.join(d, "stderr")
    err = open(err_path, "w")
    p = subprocess.Popen([a.bin, "run", "--listen", "127.0.0.1:0", "--db", os.path.join(d, "h.db"),
                          "--scripts", os.path.join(d, "scripts"), "--token-file",
                          os.path.join(d, "token")], stderr=err, stdout=subprocess.DEVNULL,
                         cwd=d)
    socks = []
    try:
        port = wait_port(err_path, p)
        before = vm_hwm_kib(p.pid)
        socks, sent = flood(port, a.clients, a.body, a.send)
        after = vm_hwm_kib(p.pid)
        print("binary %s, %d clients, Content-Length %d, up to %d bytes sent each"
              % (a.bin, a.clients, a.body, a.send))
        print("VmHWM before: %.1f MiB, after: %.1f MiB" % (before / 1024.0, after / 1024.0))
        print("body bytes accepted by the sockets: min %d, max %d, total %d"
              % (min(sent), max(sent), sum(sent)))
    finally:
        for s in socks:
            s.close()
        p.terminate()
        p.wait(timeout=30)
        err.close()


if __name__ == "__main__":
    sys.exit(main())
