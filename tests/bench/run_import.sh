#!/usr/bin/env bash
# run_import.sh: the import benchmark. Generates (or reuses from a cache in /tmp) a seeded
# event file, imports it with `hearth import` into a fresh database running the handlers in
# tests/bench/scripts/, and prints figures: wall time, events/s, CPU seconds per 1M events,
# peak RSS, block I/O, database size and the import summary. A figure, not a test: no
# thresholds.
#
# Environment (all optional):
#   EVENTS=1000000 MEMBERS=100000 DAYS=90 SEED=1 START=2026-01-01   generator parameters
#   HEARTH_BIN=build/hearth   binary to measure (default: build/hearth of this checkout)
#   BATCH=5000                events per transaction (hearth import --batch; its default)
#   CACHE_DIR=/tmp            where generated event files are kept between runs
#   KEEP_DB=1                 keep the database (its path is printed) instead of deleting it
# Exit status: hearth's import status (0 when every line was taken).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
EVENTS=${EVENTS:-1000000} MEMBERS=${MEMBERS:-100000} DAYS=${DAYS:-90}
SEED=${SEED:-1} START=${START:-2026-01-01} BATCH=${BATCH:-5000} CACHE_DIR=${CACHE_DIR:-/tmp}
HEARTH_BIN=${HEARTH_BIN:-$root/build/hearth}
if [ ! -x "$HEARTH_BIN" ]; then
  echo "run_import: no hearth binary at $HEARTH_BIN (run 'bash setup.sh demo' or set HEARTH_BIN)" >&2
  exit 2
fi

# Events, cached by parameters and by the generator's own content.
. "$here/bench_events.sh"
bench_events

work=$(mktemp -d "${TMPDIR:-/tmp}/hearth-bench-import.XXXXXX")
[ "${KEEP_DB:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
db="$work/bench.db"

# A small wrapper measures the hearth process alone: wall clock around it, and its own
# rusage (user+sys CPU, peak RSS) from wait4. Then sizes after a WAL checkpoint.
rc=0
python3 - "$HEARTH_BIN" "$events" "$db" "$here/scripts" "$BATCH" "$MEMBERS" <<'PY' || rc=$?
import os, sqlite3, subprocess, sys, time
binary, events, db, scripts, batch, members = sys.argv[1:7]
members = int(members)
nlines = sum(1 for _ in open(events, "rb"))
cmd = [binary, "import", events, "--db", db, "--scripts", scripts, "--tz", "Asia/Shanghai",
       "--batch", batch, "--quiet"]
print("command:     " + " ".join(cmd), flush=True)
t0 = time.monotonic()
p = subprocess.Popen(cmd, stdout=subprocess.PIPE)
out = p.stdout.read()
_, status, ru = os.wait4(p.pid, 0)
wall = time.monotonic() - t0
p.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again

def size(path):
    return os.path.getsize(path) if os.path.exists(path) else 0

def db_bytes():
    return size(db) + size(db + "-wal")

before = db_bytes()
try:  # fold the WAL (if hearth left one) into the database so both counts are comparable
    c = sqlite3.connect(db)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
except sqlite3.Error as e:
    print("checkpoint:  failed: %s" % e)
after = db_bytes()
cpu = ru.ru_utime + ru.ru_stime
print("events:      %d lines" % nlines)
print("wall:        %.2f s" % wall)
print("events/s:    %.0f" % (nlines / wall if wall else 0))
print("cpu:         %.2f s user + %.2f s sys = %.2f s per 1M events"
      % (ru.ru_utime, ru.ru_stime, cpu * 1e6 / nlines if nlines else 0))
print("peak RSS:    %.1f MiB" % (ru.ru_maxrss / 1024))  # Linux reports KiB
# Block I/O as the kernel accounts it (512-byte units; writes count pages dirtied).
print("block I/O:   %.0f MiB written, %.0f MiB read"
      % (ru.ru_oublock * 512 / 2**20, ru.ru_inblock * 512 / 2**20))
print("database:    %d bytes (%.1f MiB; %d before checkpoint), %.0f bytes/member (%d members)"
      % (after, after / 2**20, before, after / members, members))
for line in out.decode(errors="replace").splitlines():
    print("summary:     " + line)
print("exit status: %d" % p.returncode)
sys.exit(p.returncode)
PY

[ "${KEEP_DB:-0}" = 1 ] && echo "database kept: $db"
exit $rc
