#!/usr/bin/env bash
# run_cluster.sh: the scale-out benchmark (figures, not a test: no thresholds). Generates
# (or reuses from a cache in /tmp) a seeded event file with gen_events.py, then for a
# three-node nats-server cluster with R=3 and a single node with R=1, and for 1, 2, 4 and 8
# engines on this machine: a fresh cluster, `hearth cluster init`, the engines started and
# given their partitions, `hearth import FILE --cluster URL`, and the time until
# `hearth cluster wait` succeeds; events/s and CPU seconds per 1M events (engines, nats
# servers, importer). Prints one table. The driver is cluster_bench.py (read its header);
# the nats servers come from tests/e2e/nats_cluster.py.
#
# Environment (all optional):
#   EVENTS=200000 MEMBERS=20000 DAYS=90 SEED=1 START=2026-01-01   generator parameters
#   PARTITIONS=24            partitions of the cluster (at least the largest engine count)
#   ENGINES=1,2,4,8          engine counts
#   LAYOUTS=3:3,1:1          nats nodes:replicas of each layout
#   HEARTH_BIN=build/hearth  binary to measure (default: build/hearth of this checkout)
#   CACHE_DIR=/tmp           where generated event files are kept between runs
# Exit status: 0, or the driver's (non-zero when a step failed; its message says which).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
EVENTS=${EVENTS:-200000} MEMBERS=${MEMBERS:-20000} DAYS=${DAYS:-90}
SEED=${SEED:-1} START=${START:-2026-01-01} CACHE_DIR=${CACHE_DIR:-/tmp}
PARTITIONS=${PARTITIONS:-24} ENGINES=${ENGINES:-1,2,4,8} LAYOUTS=${LAYOUTS:-3:3,1:1}
HEARTH_BIN=${HEARTH_BIN:-$root/build/hearth}
if [ ! -x "$HEARTH_BIN" ]; then
  echo "run_cluster: no hearth binary at $HEARTH_BIN (run 'bash setup.sh demo' or set HEARTH_BIN)" >&2
  exit 2
fi
if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
  echo "run_cluster: nats-server is not installed: run 'bash setup.sh test', which installs it" >&2
  exit 2
fi

# Events, cached by parameters and by the generator's own content (as run_import.sh).
. "$here/bench_events.sh"
bench_events
echo "binary:      $HEARTH_BIN"
echo "machine:     $(nproc) cores, $(nats-server --version 2>/dev/null || /usr/sbin/nats-server --version)"

# Every engine's virtual clock starts at the first local midnight of the events, so that
# timers and cron run as they do in `hearth import` (history on a virtual clock).
exec python3 "$here/cluster_bench.py" --bin "$HEARTH_BIN" --events "$events" \
  --scripts "$here/scripts" --clock "${START}T00:00:00+08:00" \
  --partitions "$PARTITIONS" --engines "$ENGINES" --layouts "$LAYOUTS"
