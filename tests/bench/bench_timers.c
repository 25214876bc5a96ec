/* bench_timers: fire N timers due at one instant through the engine (member load, Lua
 * dispatch to a handler, commit per batch of 1000) and print fires/s. A figure, not a
 * test. Usage: bench_timers [N=1000000] [MEMBERS=100000] [DB=/tmp/hearth-bench-timers.db]
 * The handler script counts each fire in a member attribute, so every fire writes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

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
    sqlite3_stmt *st = store_stmt(e->store, ST_TIMER_ADD);
    char member[32];
    snprintf(member, sizeof member, "m-%06ld", i % members);
    bind_int(st, 1, due);
    bind_int(st, 2, ++e->timer_seq);
    bind_text(st, 3, member);
    bind_text(st, 4, "bench.tick");
    bind_text(st, 5, NULL);
    bind_int(st, 6, 0);
    bind_text(st, 7, "fire");
    store_exec_stmt(e->store, st);
  }
  store_meta_set(e->store, "timer_seq", e->timer_seq);
  store_commit(e->store);
  double setup = (double)(mono_ns() - t0) / 1e9;
  e->now = due;
  double cpu0 = cpu_seconds();
  t0 = mono_ns();
  long fired = 0;
  int k;
  while ((k = engine_fire_timers(e, due, 1000)) > 0) fired += k;
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
