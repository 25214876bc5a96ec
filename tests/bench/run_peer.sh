#!/usr/bin/env bash
# run_peer.sh: the side-by-side benchmark. The same event file and the same streak logic
# (tests/bench/scripts/streak.lua) through three systems, each durable per batch:
#   hearth          `hearth import --batch N` (Lua handlers, SQLite WAL; each batch's log
#                   synced while the next runs, and before the next commits)
#   redis + lua     peer/streak_redis.lua by EVALSHA from peer/bench_redis_peer.c (hiredis),
#                   N calls pipelined per round trip, AOF with appendfsync always
#   sqlite ceiling  peer/bench_sqlite_ceiling.c: the logic in C, a minimal schema, WAL,
#                   synchronous=FULL, N events per transaction
# for each batch size, then prints one table and compares the end state of all runs. A
# figure, not a test: no thresholds; CTest does not run it. See tests/bench/README.md.
#
# Installs redis-server and libhiredis-dev with apt-get when they are missing (printing
# so), and builds hearth, bench_redis_peer and bench_sqlite_ceiling (Release) in BUILD_DIR.
#
# Environment (all optional):
#   EVENTS=1000000 MEMBERS=100000 DAYS=90 SEED=1 START=2026-01-01   generator parameters
#   BATCH="5000 256"     batch sizes to run (events per transaction / per pipelined round trip)
#   BUILD_DIR=build      build directory (configured with -DHEARTH_BENCH_PEER=ON)
#   CACHE_DIR=/tmp       where generated event files are kept between runs (as run_import.sh)
#   KEEP=1               keep the databases and the AOF (their directory is printed)
#   BASELINE=BIN         also run this hearth binary (e.g. one built before a change) the
#                        same way, in the same run: a "baseline hearth" row and hearth/baseline
# Exit status: 0 when every run succeeded and the end states agree.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
EVENTS=${EVENTS:-1000000} MEMBERS=${MEMBERS:-100000} DAYS=${DAYS:-90}
SEED=${SEED:-1} START=${START:-2026-01-01} BATCH=${BATCH:-5000 256} CACHE_DIR=${CACHE_DIR:-/tmp}
BUILD_DIR=${BUILD_DIR:-$root/build}

install_missing() {
  local missing=() p
  for p in redis-server libhiredis-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "run_peer: installing ${missing[*]} (apt-get update; apt-get install -y ${missing[*]})"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

build() {
  echo "build:       cmake -S $root -B $BUILD_DIR -DCMAKE_BUILD_TYPE=Release -DHEARTH_BENCH_PEER=ON"
  cmake -S "$root" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DHEARTH_BENCH_PEER=ON >/dev/null
  cmake --build "$BUILD_DIR" -j2 --target hearth bench_redis_peer bench_sqlite_ceiling >/dev/null
}

# Events, cached by parameters and by the generator's own content (bench_events.sh).
. "$here/bench_events.sh"
generate() { bench_events; }

install_missing
build
generate
work=$(mktemp -d "${TMPDIR:-/tmp}/hearth-bench-peer.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
rc=0
python3 "$here/peer/peer_table.py" --build "$BUILD_DIR" --hearth "$BUILD_DIR/hearth" \
  --events "$events" --scripts "$here/scripts" --lua "$here/peer/streak_redis.lua" \
  --batches "$BATCH" --work "$work" ${BASELINE:+--baseline "$BASELINE"} || rc=$?
[ "${KEEP:-0}" = 1 ] && echo "kept:        $work"
exit $rc
