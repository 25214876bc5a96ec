/* bench_sqlite_ceiling: the bare-SQLite ceiling of the side-by-side benchmark (run_peer.sh).
 * The handlers of tests/bench/scripts/streak.lua written in C (no Lua, no engine): the same
 * parse as Hearth (jansson, local day from the engine's timeutil.c, see peer_events.c), a
 * minimal schema (members, ledger, a compact outbox), WAL with synchronous=FULL, BATCH
 * events per transaction. Each member's row is read once per batch into a small cache and
 * written back before the commit, the way Hearth's member cache does. What is left is the
 * cost this machine's disk and SQLite put on the same writes. Our own code.
 *
 *   bench_sqlite_ceiling run EVENTS DB BATCH   apply the events, print counts
 * (run_peer.sh reads the end state from the members table itself). */
#include <assert.h>
#include <math.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer_events.h"

#define UNSET INT64_MIN

static const char *const SCHEMA =
    "CREATE TABLE IF NOT EXISTS members(id TEXT PRIMARY KEY, points INTEGER NOT NULL,"
    "  streak INTEGER, last_checkin_day INTEGER, last_order INTEGER, tags TEXT,"
    "  ledger_n INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS ledger(member TEXT NOT NULL, n INTEGER NOT NULL,"
    "  time INTEGER NOT NULL, delta INTEGER NOT NULL, balance INTEGER NOT NULL,"
    "  reason TEXT NOT NULL, cause TEXT NOT NULL, PRIMARY KEY (member, n)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS outbox(seq INTEGER PRIMARY KEY, id TEXT NOT NULL,"
    "  member TEXT NOT NULL, kind TEXT NOT NULL, time INTEGER NOT NULL, body TEXT NOT NULL);";

/* One member's state while a batch runs. */
typedef struct {
  char *id;       /* NULL: empty slot */
  int64_t points, streak, last_checkin_day, last_order, ledger_n;
  int tagged_new; /* tags holds "new" */
} member_t;

/* Open addressing over member ids, emptied after each batch. */
typedef struct {
  member_t *slots;
  size_t cap, n;
} cache_t;

typedef struct {
  sqlite3 *db;
  sqlite3_stmt *get, *put, *ledger, *outbox;
  cache_t cache;
  const char *cause;  /* the current event's id */
  int64_t time;
  int nactions;       /* actions of the current event, for their ids */
  long long actions;
} ceiling_t;

static int sql_fail(sqlite3 *db, const char *what) {
  fprintf(stderr, "bench_sqlite_ceiling: %s: %s\n", what, sqlite3_errmsg(db));
  return -1;
}

static int exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    fprintf(stderr, "bench_sqlite_ceiling: %s: %s\n", sql, msg ? msg : "?");
    sqlite3_free(msg);
    return -1;
  }
  return 0;
}

static int step_done(sqlite3 *db, sqlite3_stmt *st, const char *what) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_DONE ? 0 : sql_fail(db, what);
}

static uint64_t hash_id(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static void cache_init(cache_t *c, size_t batch) {
  c->cap = 16;
  while (c->cap < batch * 2) c->cap *= 2;
  c->slots = calloc(c->cap, sizeof *c->slots);
  c->n = 0;
  if (!c->slots) {
    fprintf(stderr, "bench_sqlite_ceiling: out of memory\n");
    exit(1);
  }
}

static void cache_clear(cache_t *c) {
  for (size_t i = 0; i < c->cap; i++) free(c->slots[i].id);
  memset(c->slots, 0, c->cap * sizeof *c->slots);
  c->n = 0;
}

static int64_t column_or_unset(sqlite3_stmt *st, int i) {
  return sqlite3_column_type(st, i) == SQLITE_NULL ? UNSET : sqlite3_column_int64(st, i);
}

/* Fill m from the members table (defaults when absent). */
static int load_member(ceiling_t *k, member_t *m) {
  m->points = m->ledger_n = 0;
  m->streak = m->last_checkin_day = m->last_order = UNSET;
  m->tagged_new = 0;
  sqlite3_bind_text(k->get, 1, m->id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(k->get);
  if (rc == SQLITE_ROW) {
    m->points = sqlite3_column_int64(k->get, 0);
    m->streak = column_or_unset(k->get, 1);
    m->last_checkin_day = column_or_unset(k->get, 2);
    m->last_order = column_or_unset(k->get, 3);
    m->tagged_new = sqlite3_column_type(k->get, 4) != SQLITE_NULL;
    m->ledger_n = sqlite3_column_int64(k->get, 5);
    rc = sqlite3_step(k->get);
  }
  sqlite3_reset(k->get);
  sqlite3_clear_bindings(k->get);
  return rc == SQLITE_DONE ? 0 : sql_fail(k->db, "reading a member");
}

/* The member's state for this batch, loaded on first use. NULL on a database error. */
static member_t *member_get(ceiling_t *k, const char *id) {
  cache_t *c = &k->cache;
  assert(c->n < c->cap / 2);
  size_t i = hash_id(id) & (c->cap - 1);
  while (c->slots[i].id) {
    if (!strcmp(c->slots[i].id, id)) return &c->slots[i];
    i = (i + 1) & (c->cap - 1);
  }
  member_t *m = &c->slots[i];
  m->id = strdup(id);
  if (!m->id) {
    fprintf(stderr, "bench_sqlite_ceiling: out of memory\n");
    exit(1);
  }
  c->n++;
  return load_member(k, m) < 0 ? NULL : m;
}

static void bind_or_null(sqlite3_stmt *st, int i, int64_t v) {
  if (v == UNSET)
    sqlite3_bind_null(st, i);
  else
    sqlite3_bind_int64(st, i, v);
}

/* Write every member touched in the batch back. */
static int cache_flush(ceiling_t *k) {
  for (size_t i = 0; i < k->cache.cap; i++) {
    const member_t *m = &k->cache.slots[i];
    if (!m->id) continue;
    sqlite3_bind_text(k->put, 1, m->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(k->put, 2, m->points);
    bind_or_null(k->put, 3, m->streak);
    bind_or_null(k->put, 4, m->last_checkin_day);
    bind_or_null(k->put, 5, m->last_order);
    if (m->tagged_new)
      sqlite3_bind_text(k->put, 6, "new", -1, SQLITE_STATIC);
    else
      sqlite3_bind_null(k->put, 6);
    sqlite3_bind_int64(k->put, 7, m->ledger_n);
    if (step_done(k->db, k->put, "writing a member") < 0) return -1;
  }
  return 0;
}

static int add_action(ceiling_t *k, const member_t *m, const char *kind, const char *body) {
  char id[160];
  snprintf(id, sizeof id, "%s/%d", k->cause, ++k->nactions);
  sqlite3_bind_text(k->outbox, 1, id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(k->outbox, 2, m->id, -1, SQLITE_STATIC);
  sqlite3_bind_text(k->outbox, 3, kind, -1, SQLITE_STATIC);
  sqlite3_bind_int64(k->outbox, 4, k->time);
  sqlite3_bind_text(k->outbox, 5, body, -1, SQLITE_TRANSIENT);
  k->actions++;
  return step_done(k->db, k->outbox, "adding an action");
}

static int add_points(ceiling_t *k, member_t *m, int64_t delta, const char *reason) {
  char body[96];
  m->points += delta;
  m->ledger_n++;
  sqlite3_bind_text(k->ledger, 1, m->id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(k->ledger, 2, m->ledger_n);
  sqlite3_bind_int64(k->ledger, 3, k->time);
  sqlite3_bind_int64(k->ledger, 4, delta);
  sqlite3_bind_int64(k->ledger, 5, m->points);
  sqlite3_bind_text(k->ledger, 6, reason, -1, SQLITE_STATIC);
  sqlite3_bind_text(k->ledger, 7, k->cause, -1, SQLITE_STATIC);
  if (step_done(k->db, k->ledger, "adding a ledger entry") < 0) return -1;
  snprintf(body, sizeof body, "{\"delta\":%lld,\"balance\":%lld}", (long long)delta,
           (long long)m->points);
  return add_action(k, m, "points", body);
}

/* checkin: one per local day counts; consecutive days extend the streak, a gap resets it. */
static int on_checkin(ceiling_t *k, member_t *m, int64_t day) {
  char body[96];
  if (m->last_checkin_day != UNSET && day <= m->last_checkin_day) return 0;
  int64_t streak = 1;
  if (m->last_checkin_day != UNSET && m->last_checkin_day == day - 1)
    streak = (m->streak == UNSET ? 0 : m->streak) + 1;
  m->streak = streak;
  m->last_checkin_day = day;
  if (add_points(k, m, 5, "checkin") < 0) return -1;
  snprintf(body, sizeof body, "{\"template\":\"checkin_ok\",\"vars\":{\"streak\":%lld}}",
           (long long)streak);
  return add_action(k, m, "send", body);
}

static int on_joined(ceiling_t *k, member_t *m) {
  m->tagged_new = 1;
  if (add_action(k, m, "tag", "{\"tag\":\"new\"}") < 0) return -1;
  return add_points(k, m, 20, "welcome");
}

static int on_order(ceiling_t *k, member_t *m, double amount) {
  m->last_order = k->time;
  return add_points(k, m, (int64_t)floor(amount), "order");
}

static int apply(ceiling_t *k, const peer_event_t *ev) {
  if (ev->kind == PEV_OTHER) return 0;
  member_t *m = member_get(k, ev->member);
  if (!m) return -1;
  k->cause = ev->id;
  k->time = ev->time;
  k->nactions = 0;
  switch (ev->kind) {
    case PEV_CHECKIN: return on_checkin(k, m, ev->day);
    case PEV_JOINED: return on_joined(k, m);
    case PEV_ORDER: return on_order(k, m, ev->amount);
    default: return 0;
  }
}

static int commit_batch(ceiling_t *k) {
  if (cache_flush(k) < 0 || exec(k->db, "COMMIT") < 0) return -1;
  cache_clear(&k->cache);
  return 0;
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st) {
  return sqlite3_prepare_v2(db, sql, -1, st, NULL) == SQLITE_OK ? 0 : sql_fail(db, sql);
}

static int open_db(ceiling_t *k, const char *path) {
  if (sqlite3_open(path, &k->db) != SQLITE_OK) return sql_fail(k->db, path);
  if (exec(k->db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                  " PRAGMA wal_autocheckpoint = 16384; PRAGMA cache_size = -262144;") < 0 ||
      exec(k->db, SCHEMA) < 0)
    return -1;
  if (prepare(k->db, "SELECT points, streak, last_checkin_day, last_order, tags, ledger_n"
                     " FROM members WHERE id = ?", &k->get) < 0 ||
      prepare(k->db, "INSERT OR REPLACE INTO members VALUES (?, ?, ?, ?, ?, ?, ?)", &k->put) < 0 ||
      prepare(k->db, "INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?)", &k->ledger) < 0 ||
      prepare(k->db, "INSERT INTO outbox(id, member, kind, time, body) VALUES (?, ?, ?, ?, ?)",
              &k->outbox) < 0)
    return -1;
  return 0;
}

static void close_db(ceiling_t *k) {
  sqlite3_finalize(k->get);
  sqlite3_finalize(k->put);
  sqlite3_finalize(k->ledger);
  sqlite3_finalize(k->outbox);
  if (sqlite3_close(k->db) != SQLITE_OK) sql_fail(k->db, "close");
}

static int run(const char *events, const char *path, int batch) {
  ceiling_t k;
  peer_reader_t rd;
  peer_event_t ev;
  long long nevents = 0;
  int rc = 0, got, in_batch = 0;
  memset(&k, 0, sizeof k);
  cache_init(&k.cache, (size_t)batch);
  if (open_db(&k, path) < 0 || peer_reader_open(&rd, events, "Asia/Shanghai") < 0) {
    close_db(&k);
    free(k.cache.slots);
    return 1;
  }
  while ((got = peer_reader_next(&rd, &ev)) > 0) {
    if (!in_batch && exec(k.db, "BEGIN") < 0) break;
    if (apply(&k, &ev) < 0) break;
    nevents++;
    if (++in_batch == batch) {
      if (commit_batch(&k) < 0) break;
      in_batch = 0;
    }
  }
  if (got != 0 || (in_batch && commit_batch(&k) < 0)) rc = 1;
  peer_reader_close(&rd);
  cache_clear(&k.cache);
  free(k.cache.slots);
  close_db(&k);
  printf("sqlite ceiling: %lld events, %lld actions, batch %d%s\n", nevents, k.actions, batch,
         rc ? " (FAILED)" : "");
  return rc;
}

int main(int argc, char **argv) {
  if (argc == 5 && !strcmp(argv[1], "run")) {
    int batch = atoi(argv[4]);
    if (batch >= 1) return run(argv[2], argv[3], batch);
  }
  fprintf(stderr, "usage: bench_sqlite_ceiling run EVENTS DB BATCH\n");
  return 2;
}
