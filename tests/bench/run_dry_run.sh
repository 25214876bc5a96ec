#!/usr/bin/env bash
# run_dry_run.sh: dry-run the standard campaigns (scripts/) over MEMBERS members and DAYS
# days of generated events, and print the wall time, events/s, actions and peak RSS.
# A figure, not a test. Needs a built hearth (build/hearth, or HEARTH_BIN).
#   MEMBERS=100000 DAYS=90 EVENTS=1000000 SEED=1   generator parameters (gen_events.py)
#   UNTIL=30d                                       how far the clock runs after the last event
#   SCRIPTS=scripts                                 the campaigns' folder (e.g. without or with
#                                                   more invariants, to measure their cost)
#   ARGS=                                           more options for hearth dry-run, split on
#                                                   spaces (e.g. ARGS="--member-cache 2048")
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
MEMBERS=${MEMBERS:-100000} DAYS=${DAYS:-90} EVENTS=${EVENTS:-1000000} SEED=${SEED:-1} UNTIL=${UNTIL:-30d}
SCRIPTS=${SCRIPTS:-$root/scripts}
ARGS=${ARGS:-}
HEARTH_BIN=${HEARTH_BIN:-$root/build/hearth}
[ -x "$HEARTH_BIN" ] || { echo "run_dry_run.sh: no hearth binary at $HEARTH_BIN (bash setup.sh demo builds one)" >&2; exit 1; }
events=/tmp/hearth-dryrun-e$EVENTS-m$MEMBERS-d$DAYS-s$SEED.ndjson
if [ ! -s "$events" ]; then
  t0=$(date +%s.%N)
  python3 "$here/gen_events.py" --members "$MEMBERS" --days "$DAYS" --events "$EVENTS" --seed "$SEED" --out "$events"
  echo "generator:   $(python3 -c "print(round($(date +%s.%N) - $t0, 2))") s (not counted)"
fi
out=$(mktemp -d)
python3 - "$HEARTH_BIN" "$events" "$SCRIPTS" "$UNTIL" "$out" "$ARGS" <<'PY'
import resource, subprocess, sys, time
bin_, events, scripts, until, out, args = sys.argv[1:]
t0 = time.time()
with open(out + "/actions.ndjson", "wb") as o, open(out + "/summary.txt", "wb") as e:
    rc = subprocess.call([bin_, "dry-run", "--events", events, "--scripts", scripts, "--until", until] + args.split(),
                         stdout=o, stderr=e)
wall = time.time() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
n_events = sum(1 for _ in open(events, "rb"))
n_actions = sum(1 for _ in open(out + "/actions.ndjson", "rb"))
print("events:      %d" % n_events)
print("wall:        %.2f s" % wall)
print("events/s:    %.0f" % (n_events / wall))
print("cpu:         %.2f s user + %.2f s sys" % (ru.ru_utime, ru.ru_stime))
print("peak RSS:    %.1f MiB" % (ru.ru_maxrss / 1024))
print("actions:     %d lines on stdout" % n_actions)
print("summary (last lines):")
lines = open(out + "/summary.txt", encoding="utf-8", errors="replace").read().splitlines()
for l in [l for l in lines if not l.startswith("{")][-12:]:
    print("  " + l)
print("exit status: %d" % rc)
PY
rm -rf "$out"
