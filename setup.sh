#!/usr/bin/env bash
# setup.sh: the two commands of the README.
#   bash setup.sh demo   install what is missing, build, import the bundled example month
#                        into a fresh database and show the results
#   bash setup.sh test   install what is missing, build with -Werror under ASan and UBSan,
#                        run every test (unit and end-to-end) with CTest
# Debian 12; run as root (or with sudo available) so apt-get can install packages.
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES="build-essential cmake pkg-config liblua5.4-dev libsqlite3-dev libuv1-dev
libjansson-dev libhttp-parser-dev libcurl4-openssl-dev libssl-dev libjemalloc-dev tzdata python3
libjs-chart.js libnats-dev"
# The console's browser tests: a headless Chromium driven by Selenium, and a CJK font so
# that the Chinese labels render in the screenshots.
# The scale-out tests start a three-node JetStream cluster of Debian's nats-server on loopback.
TEST_PACKAGES="chromium chromium-driver python3-selenium fonts-wqy-microhei nats-server"

install_missing() {
  local missing=()
  for p in $PACKAGES ${EXTRA_PACKAGES:-}; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

jobs=$(nproc 2>/dev/null || echo 2)

case "${1:-}" in
  demo)
    install_missing
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build -j "$jobs" --target hearth >/dev/null
    rm -f build/demo.db build/demo.db-wal build/demo.db-shm
    echo "== hearth check"
    ./build/hearth check --scripts scripts
    echo "== hearth import examples/events/month.ndjson"
    ./build/hearth import examples/events/month.ndjson --db build/demo.db --scripts scripts --quiet || true
    echo "== hearth stats: the funnel, staff owners (channel codes rotate new friends) and tasks"
    ./build/hearth stats --db build/demo.db
    echo "== hearth broadcast list"
    ./build/hearth broadcast list --db build/demo.db --scripts scripts
    echo "== hearth member m-0001 (points lots with their expiry, ledger, latest actions)"
    ./build/hearth member m-0001 --db build/demo.db --limit 5
    echo "== hearth dry-run: what the standard campaigns do with the month (funnel per campaign and step)"
    ./build/hearth dry-run --events examples/events/month.ndjson --scripts scripts --until 30d \
      2> >(grep -v '^{' >&2) > build/demo-actions.ndjson || true
    echo "(actions as NDJSON in build/demo-actions.ndjson)"
    echo "== the operators' console on the demo database"
    echo "   ./build/hearth run --db build/demo.db --scripts scripts"
    echo "   then open http://127.0.0.1:8707/ (campaigns, daily sends, one member, operations;"
    echo "   with --token-file the page asks for the token)"
    ;;
  test)
    EXTRA_PACKAGES="$TEST_PACKAGES" install_missing
    cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DHEARTH_STRICT=ON -DHEARTH_SANITIZE=ON >/dev/null
    cmake --build build-test -j "$jobs"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      ctest --test-dir build-test --output-on-failure -j "$jobs"
    ;;
  *)
    echo "usage: bash setup.sh demo|test" >&2
    exit 2
    ;;
esac
