#!/usr/bin/env bash
# run_retention.sh: bytes per member on disk after the benchmark's events, with and without
# a purge. Imports the event file run_import.sh and run_peer.sh use (generated or reused
# from the same cache) into a fresh database with tests/bench/scripts/, then prints the
# database's bytes (after a WAL checkpoint), its tables' bytes (sqlite3_analyzer's dbstat
# when the sqlite3 module has it) and bytes per member: right after the import; after
# `hearth purge` (final actions older than KEEP go, dedupe marks stay: the window counts
# from the import); and after `hearth purge --dedupe-window 1s`, the state once the window
# has passed. A figure, not a test: no thresholds; CTest does not run it.
#
# Environment (all optional): EVENTS MEMBERS DAYS SEED START CACHE_DIR (as run_import.sh),
#   HEARTH_BIN=build/hearth, KEEP=30d (hearth purge --keep), KEEP_DB=1 (keep the database).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
EVENTS=${EVENTS:-1000000} MEMBERS=${MEMBERS:-100000} DAYS=${DAYS:-90}
SEED=${SEED:-1} START=${START:-2026-01-01} CACHE_DIR=${CACHE_DIR:-/tmp} KEEP=${KEEP:-30d}
HEARTH_BIN=${HEARTH_BIN:-$root/build/hearth}
[ -x "$HEARTH_BIN" ] || { echo "run_retention: no hearth binary at $HEARTH_BIN" >&2; exit 2; }

. "$here/bench_events.sh"
bench_events
work=$(mktemp -d "${TMPDIR:-/tmp}/hearth-bench-retention.XXXXXX")
[ "${KEEP_DB:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
db="$work/bench.db"

report() {  # report LABEL: bytes, bytes per member, and the biggest tables
  python3 - "$db" "$MEMBERS" "$1" <<'PY'
import os, sqlite3, sys
db, members, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = sqlite3.connect(db)
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
size = sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))
print("%-34s %12d bytes  %6.0f bytes/member" % (label, size, size / members))
try:
    rows = c.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 6").fetchall()
    print("    " + ", ".join("%s %.0f" % (n, b / members) for n, b in rows) + "  (bytes/member)")
except sqlite3.Error:
    pass
c.close()
PY
}

echo "command:     $HEARTH_BIN import $events --db $db --scripts $here/scripts --quiet"
"$HEARTH_BIN" import "$events" --db "$db" --scripts "$here/scripts" --tz Asia/Shanghai --quiet >/dev/null
report "after the import"
echo "command:     $HEARTH_BIN purge --db $db --keep $KEEP"
"$HEARTH_BIN" purge --db "$db" --keep "$KEEP" | sed 's/^/             /'
report "after hearth purge"
echo "command:     $HEARTH_BIN purge --db $db --keep $KEEP --dedupe-window 1s"
"$HEARTH_BIN" purge --db "$db" --keep "$KEEP" --dedupe-window 1s | sed 's/^/             /'
report "after the dedupe window has passed"
[ "${KEEP_DB:-0}" = 1 ] && echo "database kept: $db"
exit 0
