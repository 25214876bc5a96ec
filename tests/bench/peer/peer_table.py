#!/usr/bin/env python3
"""peer_table.py: the measuring half of tests/bench/run_peer.sh (which builds, installs and
generates, then calls this). For each batch size it runs, on the same event file and one
after the other, `hearth import --batch N`, the Redis + Lua peer (bench_redis_peer against a
redis-server it starts in a temporary directory on a unix socket, AOF with appendfsync
always, and stops afterwards) and the bare-SQLite ceiling (bench_sqlite_ceiling). Then it
prints one table (events/s, CPU seconds per 1M events, bytes written per event, bytes
stored per event, and the ratios Hearth/Redis and Hearth/ceiling) and compares the end
state of every run (points, streak, last check-in day of every member, sorted, sha256).
Standard library only. A figure, not a test: no thresholds.

  peer_table.py --build DIR --hearth BIN --events FILE --scripts DIR --lua FILE
                --batches "5000 256" --work DIR [--baseline BIN]

--baseline runs a second hearth binary (the one before a change) the same way, printed as
"baseline hearth" with the ratio hearth/baseline.
"""
import argparse
import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

TZ = "Asia/Shanghai"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Figures:
    """What one system did with the file at one batch size."""

    def __init__(self, system, batch):
        self.system, self.batch = system, batch
        self.wall = self.cpu = self.written = self.stored = 0.0
        self.note = ""
        self.checksum = None


def run_measured(cmd):
    """Run cmd to its end; (wall s, user+sys s, bytes written, exit status, stdout)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
    # ru_oublock is the kernel's write_bytes of the reaped process in 512-byte units.
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_oublock * 512, p.returncode, out.decode()


def check_exit(name, status, out):
    sys.stdout.write(out)
    if status != 0:
        raise SystemExit("run_peer: %s exited with status %d" % (name, status))


def digest(lines):
    h = hashlib.sha256()
    for line in sorted(lines):
        h.update((line + "\n").encode())
    return h.hexdigest()


def file_bytes(*paths):
    return sum(os.path.getsize(p) for p in paths if os.path.exists(p))


def checkpointed_bytes(db):
    """The database's size after folding its WAL in (as run_import.sh reports it)."""
    c = sqlite3.connect(db)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    return file_bytes(db, db + "-wal")


def sqlite_state(db, query):
    def text(v):
        return "-" if v is None else str(v)
    c = sqlite3.connect(db)
    lines = [" ".join(text(v) for v in row) for row in c.execute(query)]
    c.close()
    return digest(lines)


def run_hearth(a, batch, nlines, system="hearth", binary=None):
    f = Figures(system, batch)
    db = os.path.join(a.work, "%s-%d.db" % (system.replace(" ", "-"), batch))
    cmd = [binary or a.hearth, "import", a.events, "--db", db, "--scripts", a.scripts, "--tz", TZ,
           "--batch", str(batch), "--quiet"]
    print("  " + " ".join(cmd), flush=True)
    f.wall, f.cpu, f.written, status, out = run_measured(cmd)
    check_exit("hearth import", status, out)
    f.stored = checkpointed_bytes(db)
    f.checksum = sqlite_state(db, "SELECT id, points, json_extract(attrs, '$.streak'),"
                                  " json_extract(attrs, '$.last_checkin_day') FROM members")
    return f


def run_ceiling(a, batch, nlines):
    f = Figures("sqlite ceiling", batch)
    db = os.path.join(a.work, "ceiling-%d.db" % batch)
    cmd = [os.path.join(a.build, "bench_sqlite_ceiling"), "run", a.events, db, str(batch)]
    print("  " + " ".join(cmd), flush=True)
    f.wall, f.cpu, f.written, status, out = run_measured(cmd)
    check_exit("bench_sqlite_ceiling", status, out)
    f.stored = checkpointed_bytes(db)
    f.checksum = sqlite_state(db, "SELECT id, points, streak, last_checkin_day FROM members")
    return f


def proc_cpu_and_written(pid):
    """user+sys seconds and write_bytes of a running process (all its threads)."""
    with open("/proc/%d/stat" % pid) as s:
        fields = s.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    written = 0
    with open("/proc/%d/io" % pid) as io:
        for line in io:
            if line.startswith("write_bytes:"):
                written = int(line.split()[1])
    return cpu, written


def wait_for_socket(path, server, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("run_peer: redis-server exited with status %d" % server.returncode)
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("run_peer: redis-server did not answer on %s within %.0f s" % (path, timeout))


def start_redis(rdir):
    sock = os.path.join(rdir, "redis.sock")
    # Unix socket only (port 0: no TCP), AOF fsynced before each reply, no RDB snapshots
    # and no AOF rewrites (a forked child would do work nobody measures).
    cmd = ["redis-server", "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
           "--dir", rdir, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
           "--auto-aof-rewrite-percentage", "0", "--daemonize", "no",
           "--logfile", os.path.join(rdir, "redis.log")]
    server = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    try:
        wait_for_socket(sock, server)
    except BaseException:
        stop_redis(server)
        raise
    return server, sock


def stop_redis(server):
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)  # Redis fsyncs the AOF and exits
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_redis(a, batch, nlines):
    f = Figures("redis + lua", batch)
    rdir = os.path.join(a.work, "redis-%d" % batch)
    os.mkdir(rdir)
    client = os.path.join(a.build, "bench_redis_peer")
    server, sock = start_redis(rdir)
    try:
        cmd = [client, "run", a.events, sock, a.lua, str(batch)]
        print("  " + " ".join(cmd) + "   (redis-server pid %d)" % server.pid, flush=True)
        cpu0, written0 = proc_cpu_and_written(server.pid)
        f.wall, ccpu, cwritten, status, out = run_measured(cmd)
        cpu1, written1 = proc_cpu_and_written(server.pid)
        check_exit("bench_redis_peer", status, out)
        scpu = cpu1 - cpu0
        f.cpu, f.written = ccpu + scpu, cwritten + (written1 - written0)
        f.note = "client %.1f + server %.1f CPU-s/1M" % (ccpu * 1e6 / nlines, scpu * 1e6 / nlines)
        dump = subprocess.run([client, "dump", sock], stdout=subprocess.PIPE, check=True)
        f.checksum = digest(dump.stdout.decode().splitlines())
    finally:
        stop_redis(server)
    aof = os.path.join(rdir, "appendonlydir")
    f.stored = sum(file_bytes(os.path.join(aof, n)) for n in os.listdir(aof))
    return f


def per_event(x, n):
    return x / n if n else 0.0


def ratio(a, b):
    return "%.2f" % (a / b) if b else "-"


def print_table(rows, nlines):
    print()
    print("%-6s %-15s %10s %12s %12s %12s %8s" % (
        "batch", "system", "events/s", "CPU-s/1M ev", "written B/ev", "stored B/ev", "wall s"))
    for batch in sorted({r.batch for r in rows}, reverse=True):
        group = {r.system: r for r in rows if r.batch == batch}
        for r in group.values():
            print("%-6d %-15s %10.0f %12.2f %12.0f %12.0f %8.2f%s" % (
                batch, r.system, nlines / r.wall, r.cpu * 1e6 / nlines,
                per_event(r.written, nlines), per_event(r.stored, nlines), r.wall,
                "   (" + r.note + ")" if r.note else ""))
        h = group["hearth"]
        for other in ("redis + lua", "sqlite ceiling", BASELINE):
            o = group.get(other)
            if not o:
                continue
            name = "hearth/" + {"redis + lua": "redis", "sqlite ceiling": "ceiling"}.get(other, "baseline")
            print("%-6d %-15s %10s %12s %12s %12s %8s" % (
                batch, name, ratio(nlines / h.wall, nlines / o.wall), ratio(h.cpu, o.cpu),
                ratio(h.written, o.written), ratio(h.stored, o.stored), ""))


BASELINE = "baseline hearth"


def print_checksums(rows):
    print()
    sums = {r.checksum for r in rows}
    if len(sums) == 1:
        print("checksums agree: %s (points, streak, last check-in day of every member)" % sums.pop())
        return 0
    print("checksums DIFFER:")
    for r in rows:
        print("  batch %-5d %-15s %s" % (r.batch, r.system, r.checksum))
    return 1


def main():
    p = argparse.ArgumentParser(description="Hearth, Redis + Lua and bare SQLite side by side.")
    for name in ("build", "hearth", "events", "scripts", "lua", "batches", "work"):
        p.add_argument("--" + name, required=True)
    p.add_argument("--baseline", help="another hearth binary (e.g. the one before a change), run the same way")
    a = p.parse_args()
    batches = [int(b) for b in a.batches.split()]
    with open(a.events, "rb") as f:
        nlines = sum(1 for _ in f)
    print("events:      %d lines in %s" % (nlines, a.events))
    rows = []
    for batch in batches:
        rows.append(run_hearth(a, batch, nlines))
        if a.baseline:
            rows.append(run_hearth(a, batch, nlines, BASELINE, a.baseline))
        for run in (run_redis, run_ceiling):
            rows.append(run(a, batch, nlines))
    print_table(rows, nlines)
    return print_checksums(rows)


if __name__ == "__main__":
    sys.exit(main())
