/* bench_timers: fire N timers due at one instant through the engine (member load, Lua
 * dispatch to a handler, up to 5000 fires per commit) and print fires/s. A figure, not a
 * test. Usage: bench_timers [N=1000000] [MEMBERS=100000] [DB=/tmp/hearth-bench-timers.db]
 * The handler script counts each fire in a member attribute, so every fire writes. The
 * commits are synced as the daemon's are (engine_sync_behind, DAEMON_UNSYNCED_COMMITS),
 * and all of them are on disk before the time is taken. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "daemon.h"
#include "engine.h"
#include "util.h"

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  long members = argc > 2 ? atol(argv[2]) : 100000;
  const char *db = argc > 3 ? argv[3] : "/tmp/hearth-bench-timers.db";
  char dir[] = "/tmp/hearth-bench-XXXXXX";
  if (!mkdtemp(dir)) return 1;
  char *script = xasprintf("%s/fire.lua", dir);
  FILE *f = fopen(script, "w");
  fputs("hearth.on(\"bench.tick\", function(m, ev) m:set(\"ticks\", (m:get(\"ticks\") or 0) + 1) end)\n", f);
  fclose(f);
  unlink(db);
  char wal[512];
  snprintf(wal, sizeof wal, "%s-wal", db);
  unlink(wal);
  engine_opts_t o = {.db_path = db, .scripts_dir = dir, .tz_name = "Asia/Shanghai"};
  char *err;
  engine_t *e = engine_open(&o, &err);
  if (!e) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  /* n timers, all due at the same instant, spread over `members` members */
  int64_t due = 1790000000;
  uint64_t t0 = mono_ns();
  store_begin(e->store);
  for (long i = 0; i < n; i++) {
    char member[32];
    snprintf(member, sizeof member, "m-%06ld", i % members);
    timer_row_t row = {.due = due, .id = ++e->timer_seq, .member = member, .type = "bench.tick",
                       .gen = 0, .campaign = "fire"};
    if (store_timer_add(e->store, &row) < 0) return 1;
  }
  store_meta_set(e->store, "timer_seq", e->timer_seq);
  store_commit(e->store);
  double setup = (double)(mono_ns() - t0) / 1e9;
  char why[400];
  if (engine_sync_behind(e, DAEMON_UNSYNCED_COMMITS, why, sizeof why) < 0) {
    fprintf(stderr, "%s\n", why);
    return 1;
  }
  engine_use_virtual_clock(e);
  double cpu0 = cpu_seconds();
  t0 = mono_ns();
  if (engine_run_until(e, due, 0) < 0 || engine_sync(e) < 0) return 1;
  long fired = (long)e->stats.timers_fired;
  double secs = (double)(mono_ns() - t0) / 1e9, cpu = cpu_seconds() - cpu0;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("timers: %ld inserted in %.2f s (setup, not counted)\n", n, setup);
  printf("fired: %ld in %.2f s wall, %.2f s CPU\n", fired, secs, cpu);
  printf("fires/s: %.0f\n", (double)fired / secs);
  printf("peak RSS: %.1f MiB\n", (double)ru.ru_maxrss / 1024.0);
  engine_close(e);
  unlink(script);
  rmdir(dir);
  free(script);
  return fired == n ? 0 : 1;
}
