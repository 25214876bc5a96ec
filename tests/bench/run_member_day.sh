#!/usr/bin/env bash
# run_member_day.sh: the cost of a member day on each member's own clock, two ways: the
# benefits module (a weekly sweep in the engine's zone plus a timer per slot for each
# member with her own zone) and an hourly sweep of every member. MEMBERS members join (a
# third without tz, the rest in America/New_York, Europe/London, Asia/Tokyo), then the
# clock runs WEEKS weeks. Prints wall time, CPU seconds and the member-day sends of each,
# and of a baseline without member day (the joins and the clock alone).
# A figure, not a test. Needs a built hearth (build/hearth, or HEARTH_BIN).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
MEMBERS=${MEMBERS:-20000} WEEKS=${WEEKS:-4}
HEARTH_BIN=${HEARTH_BIN:-$root/build/hearth}
[ -x "$HEARTH_BIN" ] || { echo "run_member_day.sh: no hearth binary at $HEARTH_BIN" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$MEMBERS" > "$work/events.ndjson" <<'PY'
import json, sys
zones = [None, "America/New_York", "Europe/London", "Asia/Tokyo"]
for i in range(int(sys.argv[1])):
    ev = {"id": "j%d" % i, "type": "member.joined", "member": "m-%06d" % i,
          "time": "2026-11-02T12:00:00+08:00"}
    if zones[i % 4]:
        ev["data"] = {"tz": zones[i % 4]}
    print(json.dumps(ev))
PY
for variant in baseline timers hourly; do
  mkdir -p "$work/$variant"
  cp "$here/member_day/$variant.lua" "$work/$variant/"
  python3 - "$HEARTH_BIN" "$work/events.ndjson" "$work/$variant" "$((WEEKS * 7))d" "$variant" "$root/stdlib" <<'PY'
import resource, subprocess, sys, time
bin_, events, scripts, until, name, stdlib = sys.argv[1:]
t0 = time.time()
p = subprocess.run([bin_, "dry-run", "--events", events, "--scripts", scripts, "--until", until,
                    "--stdlib", stdlib], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
wall = time.time() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # this wrapper's only child
sends = sum(1 for l in p.stdout.splitlines() if b'"template":"md"' in l)
print("%-7s rc %d  wall %6.2f s  cpu %6.2f s  member-day sends %d" % (name, p.returncode, wall, ru.ru_utime + ru.ru_stime, sends))
PY
done
