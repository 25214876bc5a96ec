#!/usr/bin/env python3
"""liveness.py: how live `hearth run` stays while a hostile handler burns its whole budget
on every event of a large POST /v1/events body (a benchmark: figures, no thresholds).

For each binary (--bin, and --baseline when given), in a fresh temporary directory:
start `hearth run` on 127.0.0.1 (port 0) with one script whose `burn` handler loops until
its budget stops it, post one body of --events `burn` events, and once the first event
is being applied (its failure logged), probe GET /healthz one request after another for
--probe seconds (probes go on until the exit; one that waits is counted with its wait);
then send SIGTERM and measure the time until the process exits. Prints
the /healthz latency distribution (max, p99, p50, count), what the POST was answered, and
the SIGTERM-to-exit time. Loopback only; every wait is bounded (--guard), a process that
does not exit is killed and reported as such. Standard library only.

    python3 tests/bench/liveness.py --bin build/hearth --baseline /tmp/base/build/hearth
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

HOSTILE = r'''
hearth.on("burn", function(m, ev)
  local x = 0
  while true do x = x + 1 end
end)
'''


def log_records(path):
    out = []
    with open(path, "rb") as f:
        for line in f.read().decode("utf-8", "replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def wait_for(pred, guard, proc):
    deadline = time.monotonic() + guard
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        if proc.poll() is not None:
            return None
        time.sleep(0.01)
    return None


def percentile(sorted_v, q):
    if not sorted_v:
        return float("nan")
    k = min(len(sorted_v) - 1, max(0, int(round(q * (len(sorted_v) - 1)))))
    return sorted_v[k]


def healthz(port, timeout):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", "/healthz")
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def post_in_thread(port, body, guard, result):
    def run():
        t0 = time.monotonic()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=guard)
            c.request("POST", "/v1/events", body=body, headers={"Content-Type": "application/x-ndjson"})
            r = c.getresponse()
            result["answer"] = "%d %s" % (r.status, r.read().decode()[:160])
            c.close()
        except Exception as exc:  # a reset or a timeout is a figure too
            result["answer"] = "no answer (%s)" % type(exc).__name__
        result["seconds"] = time.monotonic() - t0
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def measure(binary, args):
    work = tempfile.mkdtemp(prefix="hearth-liveness-")
    try:
        os.mkdir(os.path.join(work, "scripts"))
        with open(os.path.join(work, "scripts", "burn.lua"), "w") as f:
            f.write(HOSTILE)
        err_path = os.path.join(work, "stderr")
        env = dict(os.environ)
        env.pop("HEARTH_LOG", None)
        with open(err_path, "wb") as err:
            proc = subprocess.Popen([binary, "run", "--listen", "127.0.0.1:0", "--db",
                                     os.path.join(work, "hearth.db"), "--scripts",
                                     os.path.join(work, "scripts")],
                                    cwd=work, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err)
        try:
            return run_one(proc, err_path, args)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_one(proc, err_path, args):
    def port():
        for r in log_records(err_path):
            if r.get("msg") == "listening":
                return int(r["addr"].rsplit(":", 1)[1])
        return None
    p = wait_for(port, args.guard, proc)
    if not p:
        return {"error": "did not start"}
    body = "".join(json.dumps({"id": "b-%d" % i, "type": "burn", "member": "m-%d" % i}) + "\n"
                   for i in range(args.events)).encode()
    post = {}
    poster = post_in_thread(p, body, args.guard, post)
    started = wait_for(lambda: any(r.get("msg") == "handler failed" for r in log_records(err_path)),
                       args.guard, proc)
    if not started:
        return {"error": "the body was never applied"}
    probes = {"done": [], "stop": False, "term_at": None}

    def probe():
        """Probes started before SIGTERM count; one closed at exit counts with its wait."""
        while not probes["stop"] and probes["term_at"] is None and proc.poll() is None:
            t0 = time.monotonic()
            ok = True
            try:
                healthz(p, args.guard)
            except Exception:
                ok = False
            probes["done"].append((t0, time.monotonic() - t0, ok))
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    time.sleep(args.probe)  # the benchmark's own schedule: SIGTERM after --probe seconds
    term_at = probes["term_at"] = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=args.guard)
        exit_s = "%.3f s (exit %d)" % (time.monotonic() - term_at, proc.returncode)
    except subprocess.TimeoutExpired:
        exit_s = "> %d s (killed)" % args.guard
    probes["stop"] = True
    prober.join(args.guard)
    poster.join(args.guard)
    before = [(d, ok) for t0, d, ok in probes["done"] if t0 < term_at]
    lat = [d for d, ok in before]
    failed = sum(1 for d, ok in before if not ok)
    lat.sort()
    return {"healthz": lat, "healthz_failed": failed, "post": post, "exit": exit_s}


def report(name, binary, r):
    print("%s: %s" % (name, binary))
    if "error" in r:
        print("  %s" % r["error"])
        return
    ms = [v * 1000 for v in r["healthz"]]
    print("  /healthz latency while the body is applied: max %.1f ms, p99 %.1f ms, p50 %.1f ms "
          "(%d probes started before SIGTERM, %d of them closed without an answer)"
          % (ms[-1], percentile(ms, 0.99), percentile(ms, 0.50), len(ms), r["healthz_failed"]))
    print("  POST answered after %.1f s: %s" % (r["post"].get("seconds", float("nan")),
                                               r["post"].get("answer", "?")))
    print("  SIGTERM to exit: %s" % r["exit"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="build/hearth", help="the build to measure")
    ap.add_argument("--baseline", help="a second binary measured the same way, in the same run")
    ap.add_argument("--events", type=int, default=200, help="burn events in the body (default 200)")
    ap.add_argument("--probe", type=float, default=5.0, help="seconds after the body started to send SIGTERM (default 5)")
    ap.add_argument("--guard", type=int, default=120, help="seconds any one wait may take (default 120)")
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    if args.baseline:
        args.baseline = os.path.abspath(args.baseline)
    print("body: %d events whose handler burns its whole budget; /healthz probed from the first event on, SIGTERM after %.1f s"
          % (args.events, args.probe))
    report("this build", args.bin, measure(args.bin, args))
    if args.baseline:
        report("baseline", args.baseline, measure(args.baseline, args))


if __name__ == "__main__":
    main()
