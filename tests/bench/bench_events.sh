# bench_events.sh: sourced by the benchmarks (run_import.sh, run_peer.sh, run_post.sh,
# run_retention.sh, run_cluster.sh). bench_events sets $events to the generated event file
# for EVENTS, MEMBERS, DAYS, SEED and START, cached in CACHE_DIR by those parameters and by
# gen_events.py's own content (a changed generator makes a new file); the generator's time
# is printed on its own line and counted in no figure. Needs $here (tests/bench).
bench_events() {
  local gen_sum t0 t1
  gen_sum=$(cksum "$here/gen_events.py" | cut -d' ' -f1)
  events="$CACHE_DIR/hearth-bench-e$EVENTS-m$MEMBERS-d$DAYS-s$SEED-$START-g$gen_sum.ndjson"
  if [ -s "$events" ]; then
    echo "generator:   reusing $events"
    return
  fi
  t0=$EPOCHREALTIME
  python3 "$here/gen_events.py" --events "$EVENTS" --members "$MEMBERS" --days "$DAYS" \
    --seed "$SEED" --start "$START" --out "$events.tmp.$$" || { rm -f "$events.tmp.$$"; exit 1; }
  mv "$events.tmp.$$" "$events"
  t1=$EPOCHREALTIME
  awk -v a="$t0" -v b="$t1" -v f="$events" \
    'BEGIN { printf "generator:   %.2f s (not counted) -> %s\n", b - a, f }'
}
