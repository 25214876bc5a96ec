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
#   BASELINE=BIN                                    also run this hearth binary (e.g. one built
#                                                   before a change) on the same file, after the
#                                                   first, and print both CPU times' ratio and
#                                                   whether the two stdouts are identical
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
MEMBERS=${MEMBERS:-100000} DAYS=${DAYS:-90} EVENTS=${EVENTS:-1000000} SEED=${SEED:-1} UNTIL=${UNTIL:-30d}
SCRIPTS=${SCRIPTS:-$root/scripts}
ARGS=${ARGS:-}
HEARTH_BIN=${HEARTH_BIN:-$root/build/hearth}
BASELINE=${BASELINE:-}
[ -x "$HEARTH_BIN" ] || { echo "run_dry_run.sh: no hearth binary at $HEARTH_BIN (bash setup.sh demo builds one)" >&2; exit 1; }
[ -z "$BASELINE" ] || [ -x "$BASELINE" ] || { echo "run_dry_run.sh: BASELINE=$BASELINE is not an executable" >&2; exit 1; }
events=/tmp/hearth-dryrun-e$EVENTS-m$MEMBERS-d$DAYS-s$SEED.ndjson
if [ ! -s "$events" ]; then
  t0=$(date +%s.%N)
  python3 "$here/gen_events.py" --members "$MEMBERS" --days "$DAYS" --events "$EVENTS" --seed "$SEED" --out "$events"
  echo "generator:   $(python3 -c "print(round($(date +%s.%N) - $t0, 2))") s (not counted)"
fi
out=$(mktemp -d)
python3 - "$events" "$SCRIPTS" "$UNTIL" "$out" "$ARGS" "$HEARTH_BIN" $BASELINE <<'PY'
import hashlib, os, subprocess, sys, time
events, scripts, until, out, args = sys.argv[1:6]
bins = sys.argv[6:]
n_events = sum(1 for _ in open(events, "rb"))

def run(k, bin_):
    """One dry-run; its own child's CPU and peak RSS (wait4), its stdout's lines and sha256."""
    acts, summ = "%s/actions-%d.ndjson" % (out, k), "%s/summary-%d.txt" % (out, k)
    t0 = time.time()
    with open(acts, "wb") as o, open(summ, "wb") as e:
        p = subprocess.Popen([bin_, "dry-run", "--events", events, "--scripts", scripts, "--until", until]
                             + args.split(), stdout=o, stderr=e)
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.time() - t0
    h, n = hashlib.sha256(), 0
    with open(acts, "rb") as f:
        for line in f:
            h.update(line)
            n += 1
    os.remove(acts)
    rc = os.waitstatus_to_exitcode(status)
    print("binary:      %s" % bin_)
    print("events:      %d" % n_events)
    print("wall:        %.2f s" % wall)
    print("events/s:    %.0f" % (n_events / wall))
    print("cpu:         %.2f s user + %.2f s sys" % (ru.ru_utime, ru.ru_stime))
    print("peak RSS:    %.1f MiB" % (ru.ru_maxrss / 1024))
    print("actions:     %d lines on stdout, sha256 %s" % (n, h.hexdigest()))
    print("summary (last lines):")
    lines = open(summ, encoding="utf-8", errors="replace").read().splitlines()
    for l in [l for l in lines if not l.startswith("{")][-12:]:
        print("  " + l)
    print("exit status: %d" % rc)
    return rc, ru.ru_utime, h.hexdigest()

results = [run(k, b) for k, b in enumerate(bins)]
if len(results) == 2:
    (rc0, cpu0, sha0), (rc1, cpu1, sha1) = results
    print("")
    print("baseline/this user CPU: %.2f (%.2f s / %.2f s; one run each, this binary first)" % (cpu1 / cpu0, cpu1, cpu0))
    print("stdout identical: %s" % ("yes" if sha0 == sha1 else "NO"))
sys.exit(max(r[0] for r in results))
PY
rc=$?
rm -rf "$out"
exit $rc
