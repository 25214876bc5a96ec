#!/usr/bin/env python3
"""cluster_bench.py: the scale-out benchmark's driver (tests/bench/run_cluster.sh runs it).
Figures, not a test: no thresholds. Standard library only, plus tests/e2e/nats_cluster.py.

For each layout (three nats-server nodes with R=3, one node with R=1) and each engine
count N: a fresh nats cluster, `hearth cluster init --partitions P --replicas R`, N engines
(`hearth run --cluster URL --engine eK --data DIR --scripts SCRIPTS --virtual-clock T0`,
stdout to /dev/null), a poll of `hearth cluster status --json` until every partition is
owned and each engine holds its fair share, then `hearth import EVENTS --cluster URL`
(publish) and `hearth cluster wait` (every partition's consumer has acknowledged
everything). Measured from the start of the import:

  publish s       until `hearth import --cluster` returns (events durable in JetStream)
  total s         until `hearth cluster wait` returns (every event applied and acked)
  events/s        events / total s
  engines CPU     user+sys of every engine over the same interval, s per 1M events
  nats CPU        user+sys of every nats-server over it, s per 1M events
  import CPU      user+sys of the importer, s per 1M events

CPU comes from /proc/PID/stat (utime, stime) before the import and after the wait, so
the engines' start-up and the ownership hand-out are not counted. All processes share
this machine's cores and disk: the figures show the cost per event and the contention,
not the speed-up of engines on their own machines (docs/SCALE.md states the model).

Usage: cluster_bench.py --bin HEARTH --events FILE --scripts DIR --clock T0
                        [--partitions 24] [--engines 1,2,4,8] [--layouts 3:3,1:1]
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
from nats_cluster import NatsCluster  # noqa: E402

SPREAD_GUARD = 120      # seconds for the partitions to spread over the engines (hang guard)
WAIT_TIMEOUT = "3600s"  # `cluster wait --timeout`: a hang guard for the largest runs
STOP_GUARD = 60
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """user+sys seconds of a live process from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK   # fields 14 and 15 of stat(5)


def hearth(binary, *args, check=True):
    p = subprocess.run([binary] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and p.returncode != 0:
        raise SystemExit("cluster_bench: hearth %s: exit %d: %s"
                         % (" ".join(map(str, args)), p.returncode, p.stderr.decode(errors="replace")[-2000:]))
    return p


def owners(binary, url):
    p = hearth(binary, "cluster", "status", "--cluster", url, "--json")
    try:
        status = json.loads(p.stdout)
        return {part["partition"]: part.get("owner") for part in status["partitions"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise SystemExit("cluster_bench: cluster status --json unreadable (%s): %r" % (exc, p.stdout[:2000]))


def wait_spread(binary, url, names, partitions, engines):
    fair = partitions // len(names)
    deadline = time.monotonic() + SPREAD_GUARD
    last = None
    while time.monotonic() < deadline:
        for e in engines:
            if e.poll() is not None:
                raise SystemExit("cluster_bench: engine exited with %d (see %s)" % (e.returncode, e.err_path))
        last = owners(binary, url)
        counts = {n: 0 for n in names}
        for o in last.values():
            if o in counts:
                counts[o] += 1
        if len(last) == partitions and all(o in counts for o in last.values()) \
                and all(fair <= c <= fair + 1 for c in counts.values()):
            return
        time.sleep(0.2)
    raise SystemExit("cluster_bench: partitions not spread over %d engines within %d s: %r"
                     % (len(names), SPREAD_GUARD, last))


def start_engines(a, url, work, n):
    engines = []
    for k in range(1, n + 1):
        name = "e%d" % k
        err_path = os.path.join(work, name + ".stderr")
        with open(err_path, "wb") as err:
            p = subprocess.Popen([a.bin, "run", "--cluster", url, "--engine", name,
                                  "--data", os.path.join(work, name), "--scripts", a.scripts,
                                  "--virtual-clock", a.clock, "--listen", "127.0.0.1:0"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        p.err_path = err_path
        p.name = name
        engines.append(p)
    return engines


def stop_engines(engines):
    for p in engines:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in engines:
        try:
            p.wait(timeout=STOP_GUARD)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def one_run(a, nodes, replicas, n, nevents):
    work = tempfile.mkdtemp(prefix="hearth-bench-cluster-")
    engines = []
    try:
        with NatsCluster(nodes) as nats:
            hearth(a.bin, "cluster", "init", "--cluster", nats.url, "--partitions", a.partitions,
                   "--replicas", replicas)
            engines = start_engines(a, nats.url, work, n)
            wait_spread(a.bin, nats.url, [e.name for e in engines], a.partitions, engines)
            servers = [node.proc.pid for node in nats.nodes]
            e0 = sum(cpu_seconds(e.pid) for e in engines)
            s0 = sum(cpu_seconds(pid) for pid in servers)
            t0 = time.monotonic()
            imp_err = os.path.join(work, "import.stderr")
            with open(imp_err, "wb") as err:
                imp = subprocess.Popen([a.bin, "import", a.events, "--cluster", nats.url],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            _, wstatus, ru = os.wait4(imp.pid, 0)
            imp.returncode = os.waitstatus_to_exitcode(wstatus)  # keep Popen from waiting again
            t_pub = time.monotonic() - t0
            if imp.returncode != 0:
                with open(imp_err, "rb") as f:
                    raise SystemExit("cluster_bench: hearth import --cluster: exit %d: %s"
                                     % (imp.returncode, f.read().decode(errors="replace")[-2000:]))
            hearth(a.bin, "cluster", "wait", "--cluster", nats.url, "--timeout", WAIT_TIMEOUT)
            total = time.monotonic() - t0
            e1 = sum(cpu_seconds(e.pid) for e in engines)
            s1 = sum(cpu_seconds(pid) for pid in servers)
            stop_engines(engines)
    finally:
        stop_engines(engines)
        shutil.rmtree(work, ignore_errors=True)
    per_m = 1e6 / nevents
    return {"nodes": nodes, "replicas": replicas, "engines": n, "publish": t_pub, "total": total,
            "eps": nevents / total, "engine_cpu": (e1 - e0) * per_m, "nats_cpu": (s1 - s0) * per_m,
            "import_cpu": (ru.ru_utime + ru.ru_stime) * per_m}


def main():
    p = argparse.ArgumentParser(description="Hearth scale-out benchmark driver (see run_cluster.sh).")
    p.add_argument("--bin", required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--scripts", required=True)
    p.add_argument("--clock", required=True, help="every engine's --virtual-clock")
    p.add_argument("--partitions", type=int, default=24)
    p.add_argument("--engines", default="1,2,4,8")
    p.add_argument("--layouts", default="3:3,1:1", help="NODES:REPLICAS,... (default 3:3,1:1)")
    a = p.parse_args()
    nevents = sum(1 for _ in open(a.events, "rb"))
    counts = [int(x) for x in a.engines.split(",")]
    layouts = [tuple(int(x) for x in l.split(":")) for l in a.layouts.split(",")]
    assert all(a.partitions >= n for n in counts), "--partitions must be at least the largest engine count"
    print("events: %d lines, %d partitions" % (nevents, a.partitions), flush=True)
    rows = []
    for nodes, replicas in layouts:
        for n in counts:
            r = one_run(a, nodes, replicas, n, nevents)
            rows.append(r)
            print("done: %d node(s) R=%d, %d engine(s): %.2f s" % (nodes, replicas, n, r["total"]), flush=True)
    print()
    print("| nats | engines | publish s | total s | events/s | engines CPU-s/1M | nats CPU-s/1M | import CPU-s/1M |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print("| %d node%s R=%d | %d | %.2f | %.2f | %.0f | %.1f | %.1f | %.1f |"
              % (r["nodes"], "s" if r["nodes"] > 1 else "", r["replicas"], r["engines"], r["publish"],
                 r["total"], r["eps"], r["engine_cpu"], r["nats_cpu"], r["import_cpu"]))


if __name__ == "__main__":
    main()
