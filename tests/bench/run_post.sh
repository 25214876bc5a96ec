#!/usr/bin/env bash
# run_post.sh: the POST benchmark. The event file run_import.sh uses (generated or reused
# from its cache) posted to `hearth run` in bodies of BODY events from CLIENTS concurrent
# clients (post_client.py: threads, keep-alive connections), then `hearth import` of the
# same file into a fresh database, in the same run. Prints, side by side: wall time,
# events/s, CPU seconds of the hearth process per 1M events, p50/p99/max time to 202 (POST),
# 503 retries, database bytes per member, and the ratio POST/import. A figure, not a test:
# no thresholds; CTest does not run it. See tests/bench/README.md.
#
# The daemon runs on the real clock with the handlers of tests/bench/scripts/ and delivers
# its actions on the log channel (stdout, sent to /dev/null) while it ingests, with
# --max-backlog 0 (no 503 for the delivery backlog). Events are applied at receipt; the
# import applies them on event time (history: its actions are `expired`, not delivered).
#
# Environment (all optional):
#   EVENTS=1000000 MEMBERS=100000 DAYS=90 SEED=1 START=2026-01-01   generator parameters
#   CLIENTS=4 BODY=1000       concurrent clients, events per body
#   DELIVER=0                 run the daemon on a virtual clock set to now and never
#                             moved: nothing set for later comes due (sends queued for
#                             now are still delivered)
#   HEARTH_BIN=build/hearth   binary to measure
#   CACHE_DIR=/tmp            where generated event files are kept (as run_import.sh)
#   KEEP_DB=1                 keep both databases (their directory is printed)
# Exit status: 0 when every body got 202 and the import took every line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
EVENTS=${EVENTS:-1000000} MEMBERS=${MEMBERS:-100000} DAYS=${DAYS:-90}
SEED=${SEED:-1} START=${START:-2026-01-01} CACHE_DIR=${CACHE_DIR:-/tmp}
CLIENTS=${CLIENTS:-4} BODY=${BODY:-1000} DELIVER=${DELIVER:-1}
HEARTH_BIN=${HEARTH_BIN:-$root/build/hearth}
if [ ! -x "$HEARTH_BIN" ]; then
  echo "run_post: no hearth binary at $HEARTH_BIN (run 'bash setup.sh demo' or set HEARTH_BIN)" >&2
  exit 2
fi

# Events, cached by parameters and by the generator's own content (run_import.sh's name).
. "$here/bench_events.sh"
bench_events

work=$(mktemp -d "${TMPDIR:-/tmp}/hearth-bench-post.XXXXXX")
[ "${KEEP_DB:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT

rc=0
python3 - "$HEARTH_BIN" "$events" "$work" "$here" "$MEMBERS" "$CLIENTS" "$BODY" "$DELIVER" <<'PY' || rc=$?
import json, os, signal, sqlite3, subprocess, sys, time
binary, events, work, here, members, clients, body, deliver = sys.argv[1:9]
members = int(members)
scripts = os.path.join(here, "scripts")
nlines = sum(1 for _ in open(events, "rb"))

def db_bytes(db):
    """Bytes of the database after folding its WAL in."""
    try:
        c = sqlite3.connect(db)
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        c.close()
    except sqlite3.Error as e:
        print("checkpoint:  failed: %s" % e)
    return sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))

# ---- POST: hearth run + post_client.py
db = os.path.join(work, "post.db")
err_path = os.path.join(work, "run.stderr")
cmd = [binary, "run", "--listen", "127.0.0.1:0", "--db", db, "--scripts", scripts,
       "--tz", "Asia/Shanghai", "--max-backlog", "0", "--max-body", str(64 << 20)]
if deliver == "0":  # a clock that does not move: nothing set for later comes due
    cmd += ["--virtual-clock", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())]
print("command:     " + " ".join(cmd) + " >/dev/null", flush=True)
with open(err_path, "wb") as err, open(os.devnull, "wb") as null:
    d = subprocess.Popen(cmd, stdout=null, stderr=err, stdin=subprocess.DEVNULL)
port, deadline = None, time.time() + 60
while port is None and time.time() < deadline and d.poll() is None:
    for line in open(err_path, encoding="utf-8", errors="replace"):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("msg") == "listening":
            port = int(rec["addr"].rsplit(":", 1)[1])
    time.sleep(0.05)
if port is None:
    d.kill()
    sys.exit("run_post: the daemon did not start: " + open(err_path).read()[-2000:])
ccmd = [sys.executable, os.path.join(here, "post_client.py"), "--port", str(port), "--events", events,
        "--clients", clients, "--body", body]
print("client:      " + " ".join(ccmd), flush=True)
out = subprocess.run(ccmd, stdout=subprocess.PIPE, check=False)
post = json.loads(out.stdout)
d.send_signal(signal.SIGTERM)
_, status, ru = os.wait4(d.pid, 0)
d.returncode = os.waitstatus_to_exitcode(status)
post_cpu = ru.ru_utime + ru.ru_stime  # ingest and delivery of the whole run
post_bytes = db_bytes(db)

# ---- import of the same file
idb = os.path.join(work, "import.db")
icmd = [binary, "import", events, "--db", idb, "--scripts", scripts, "--tz", "Asia/Shanghai", "--quiet"]
print("command:     " + " ".join(icmd), flush=True)
t0 = time.monotonic()
p = subprocess.Popen(icmd, stdout=subprocess.DEVNULL)
_, status, iru = os.wait4(p.pid, 0)
iwall = time.monotonic() - t0
p.returncode = os.waitstatus_to_exitcode(status)
imp_bytes = db_bytes(idb)
irate = nlines / iwall if iwall else 0

print()
print("%-24s %14s %14s" % ("", "POST", "import"))
print("%-24s %14.2f %14.2f" % ("wall s", post["wall_s"], iwall))
print("%-24s %14d %14.0f" % ("events/s", post["events_per_s"], irate))
print("%-24s %14.1f %14.1f" % ("CPU s per 1M events", post_cpu * 1e6 / nlines,
                               (iru.ru_utime + iru.ru_stime) * 1e6 / nlines))
print("%-24s %14.1f %14s" % ("p50 ms to 202", post["p50_ms"], "-"))
print("%-24s %14.1f %14s" % ("p99 ms to 202", post["p99_ms"], "-"))
print("%-24s %14.1f %14s" % ("max ms to 202", post["max_ms"], "-"))
print("%-24s %14d %14s" % ("503 retries", post["retries_503"], "-"))
print("%-24s %14.0f %14.0f" % ("db bytes per member", post_bytes / members, imp_bytes / members))
print("%-24s %14s %14s" % ("accepted", post["accepted"], "-"))
print("ratio POST/import events/s: %.2f  (%s clients, %s events per body, %s; daemon exit %d, import exit %d)"
      % (post["events_per_s"] / irate if irate else 0, clients, body,
         "real clock" if deliver != "0" else "virtual clock never moved", d.returncode, p.returncode))
if post["failed_bodies"]:
    print("failed bodies: %d, e.g. %s" % (post["failed_bodies"], post["failed"][:2]))
sys.exit(0 if not post["failed_bodies"] and p.returncode == 0 and d.returncode == 0 else 1)
PY

[ "${KEEP_DB:-0}" = 1 ] && echo "databases kept in: $work"
exit $rc
