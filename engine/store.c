/* store: SQLite connection, schema migrations and prepared statements (see store.h).
 *
 * Schema, version 1:
 *   meta          counters (event and timer sequence numbers)
 *   members       one row per member: engine fields, attrs/tags/timer generations as JSON
 *   member_tags   (tag, member): the index behind tag sweeps
 *   ledger        every points grant and spend, (member, n) clustered
 *   seen_events   event ids inside the dedupe window
 *   outbox        every action with its stable id, status, payload and delivery state
 *   timers        durable timers clustered on (due, id)
 *   failed_events events whose handler failed, with the traceback
 *   cron_state    the last slot each cron entry ran for
 *   funnel        counters scripts keep per campaign, step and variant (hearth.count) */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/* Migration i takes the schema from version i to i + 1. */
static const char *const migrations[] = {
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE members("
    "  id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, joined_at INTEGER,"
    "  last_active_at INTEGER, orders INTEGER NOT NULL DEFAULT 0,"
    "  spend REAL NOT NULL DEFAULT 0, points INTEGER NOT NULL DEFAULT 0 CHECK (points >= 0),"
    "  attrs TEXT NOT NULL DEFAULT '{}', tags TEXT NOT NULL DEFAULT '{}',"
    "  timer_gens TEXT NOT NULL DEFAULT '{}', ledger_n INTEGER NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;"
    "CREATE TABLE member_tags(tag TEXT NOT NULL, member TEXT NOT NULL,"
    "  PRIMARY KEY (tag, member)) WITHOUT ROWID;"
    "CREATE TABLE ledger(member TEXT NOT NULL, n INTEGER NOT NULL, time INTEGER NOT NULL,"
    "  delta INTEGER NOT NULL, balance INTEGER NOT NULL CHECK (balance >= 0),"
    "  reason TEXT NOT NULL, campaign TEXT, cause TEXT,"
    "  PRIMARY KEY (member, n)) WITHOUT ROWID;"
    "CREATE TABLE seen_events(id TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE outbox(seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
    "  member TEXT NOT NULL, campaign TEXT NOT NULL, step TEXT, kind TEXT NOT NULL,"
    "  status TEXT NOT NULL, channel TEXT, time INTEGER NOT NULL, body TEXT NOT NULL,"
    "  delivery TEXT, attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER,"
    "  leased_until INTEGER, last_error TEXT);"
    "CREATE INDEX outbox_member ON outbox(member, seq);"
    "CREATE INDEX outbox_pending ON outbox(next_at) WHERE delivery = 'pending';"
    "CREATE TABLE timers(due INTEGER NOT NULL, id INTEGER NOT NULL, member TEXT NOT NULL,"
    "  type TEXT NOT NULL, data TEXT, gen INTEGER NOT NULL, campaign TEXT,"
    "  PRIMARY KEY (due, id)) WITHOUT ROWID;"
    "CREATE TABLE failed_events(seq INTEGER PRIMARY KEY, at INTEGER NOT NULL,"
    "  member TEXT NOT NULL, event TEXT NOT NULL, campaign TEXT, error TEXT NOT NULL);"
    "CREATE TABLE cron_state(key TEXT PRIMARY KEY, last_slot INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE funnel(campaign TEXT NOT NULL, step TEXT NOT NULL, variant TEXT NOT NULL,"
    "  metric TEXT NOT NULL, n INTEGER NOT NULL,"
    "  PRIMARY KEY (campaign, step, variant, metric)) WITHOUT ROWID;",
};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

static const char *const sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT handler",
    [ST_RELEASE] = "RELEASE handler",
    [ST_ROLLBACK_TO] = "ROLLBACK TO handler",
    [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [ST_META_SET] = "INSERT INTO meta(key, value) VALUES (?1, ?2)"
                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [ST_MEMBER_GET] = "SELECT created_at, joined_at, last_active_at, orders, spend, points,"
                      " attrs, tags, timer_gens, ledger_n FROM members WHERE id = ?1",
    [ST_MEMBER_PUT] = "INSERT INTO members(id, created_at, joined_at, last_active_at, orders,"
                      " spend, points, attrs, tags, timer_gens, ledger_n)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                      " ON CONFLICT(id) DO UPDATE SET joined_at = excluded.joined_at,"
                      " last_active_at = excluded.last_active_at, orders = excluded.orders,"
                      " spend = excluded.spend, points = excluded.points,"
                      " attrs = excluded.attrs, tags = excluded.tags,"
                      " timer_gens = excluded.timer_gens, ledger_n = excluded.ledger_n",
    [ST_TAG_ADD] = "INSERT OR IGNORE INTO member_tags(tag, member) VALUES (?1, ?2)",
    [ST_TAG_DEL] = "DELETE FROM member_tags WHERE tag = ?1 AND member = ?2",
    [ST_LEDGER_ADD] = "INSERT INTO ledger(member, n, time, delta, balance, reason, campaign,"
                      " cause) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_SEEN_MARK] = "INSERT INTO seen_events(id, at) VALUES (?1, ?2)"
                     " ON CONFLICT(id) DO UPDATE SET at = excluded.at"
                     " WHERE seen_events.at < ?3",
    [ST_SEEN_PURGE] = "DELETE FROM seen_events WHERE at < ?1",
    [ST_ACTION_GET] = "SELECT status FROM outbox WHERE id = ?1",
    [ST_ACTION_ADD] = "INSERT INTO outbox(id, member, campaign, step, kind, status, channel,"
                      " time, body, delivery, next_at)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [ST_ACTION_RESTATUS] = "UPDATE outbox SET status = ?2, time = ?3, body = ?4,"
                           " delivery = ?5, next_at = ?6 WHERE id = ?1",
    [ST_TIMER_ADD] = "INSERT INTO timers(due, id, member, type, data, gen, campaign)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_TIMER_DUE] = "SELECT due, id, member, type, data, gen, campaign FROM timers"
                     " WHERE due <= ?1 ORDER BY due, id LIMIT ?2",
    [ST_TIMER_DEL_UPTO] = "DELETE FROM timers WHERE (due, id) <= (?1, ?2) AND id <= ?3",
    [ST_TIMER_NEXT] = "SELECT MIN(due) FROM timers",
    [ST_FAILED_ADD] = "INSERT INTO failed_events(at, member, event, campaign, error)"
                      " VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_CRON_GET] = "SELECT last_slot FROM cron_state WHERE key = ?1",
    [ST_CRON_SET] = "INSERT INTO cron_state(key, last_slot) VALUES (?1, ?2)"
                    " ON CONFLICT(key) DO UPDATE SET last_slot = excluded.last_slot",
    [ST_FUNNEL_ADD] = "INSERT INTO funnel(campaign, step, variant, metric, n)"
                      " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO UPDATE SET n = n + excluded.n",
    [ST_FUNNEL_SUM] = "SELECT coalesce(sum(n), 0) FROM funnel WHERE metric = ?1"
                      " AND (?2 IS NULL OR campaign = ?2) AND (?3 IS NULL OR step = ?3)"
                      " AND (?4 IS NULL OR variant = ?4)",
    [ST_MEMBER_EXISTS] = "SELECT 1 FROM members WHERE id = ?1",
    [ST_SWEEP_ALL] = "SELECT id FROM members WHERE id > ?1 ORDER BY id LIMIT ?2",
    [ST_SWEEP_TAG] = "SELECT member FROM member_tags WHERE tag = ?3 AND member > ?1"
                     " ORDER BY member LIMIT ?2",
};

void bind_text(sqlite3_stmt *st, int idx, const char *s) {
  if (s)
    sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, idx);
}

void bind_int(sqlite3_stmt *st, int idx, int64_t v) { sqlite3_bind_int64(st, idx, v); }

/* ---- queries kept beside the function that runs them ----
 * A query_t is a static in the function that uses it: its SQL text next to its binds.
 * The first use in a process gives it a slot; each connection prepares it once, on first
 * use, and keeps it (SQLITE_PREPARE_PERSISTENT) until store_close. */
static int query_slots; /* slots handed out so far (one process, one thread) */

static sqlite3_stmt *query(store_t *s, query_t *q) {
  if (q->slot < 0) q->slot = query_slots++;
  if (q->slot >= s->ncached) {
    int n = s->ncached ? s->ncached : 32;
    while (n <= q->slot) n *= 2;
    s->cached = xrealloc(s->cached, (size_t)n * sizeof *s->cached);
    memset(s->cached + s->ncached, 0, (size_t)(n - s->ncached) * sizeof *s->cached);
    s->ncached = n;
  }
  sqlite3_stmt *st = s->cached[q->slot];
  if (!st) {
    if (sqlite3_prepare_v3(s->db, q->sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
      log_msg(LOG_ERROR, "database error preparing a query", "db", s->path, "query", q->sql,
              "error", sqlite3_errmsg(s->db), NULL);
      return NULL;
    }
    s->cached[q->slot] = st;
  }
  return st;
}

/* Log a failed step of st with the database's message and return -1. Every read or write
 * that fails reaches the log here and its caller through the return value. */
static int failed(store_t *s, sqlite3_stmt *st) {
  log_msg(LOG_ERROR, "database error", "db", s->path, "query", st ? sqlite3_sql(st) : "?",
          "error", sqlite3_errmsg(s->db), NULL);
  if (st) sqlite3_reset(st);
  return -1;
}

/* Step a statement that returns no rows and reset it: 0, or -1 (logged). */
static int run(store_t *s, sqlite3_stmt *st) {
  if (!st) return -1;
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) return failed(s, st);
  sqlite3_reset(st);
  return 0;
}

int store_exec(store_t *s, const char *q, char *err, size_t errlen) {
  char *msg = NULL;
  if (sqlite3_exec(s->db, q, NULL, NULL, &msg) != SQLITE_OK) {
    set_err(err, errlen, "%s: %s", s->path, msg ? msg : sqlite3_errmsg(s->db));
    sqlite3_free(msg);
    return -1;
  }
  return 0;
}

const char *store_errmsg(store_t *s) { return sqlite3_errmsg(s->db); }

static int user_version(store_t *s) {
  sqlite3_stmt *st;
  int v = -1;
  if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) return -1;
  if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return v;
}

/* Bring the schema up to STORE_SCHEMA_VERSION in one transaction. */
static int migrate(store_t *s, char *err, size_t errlen) {
  int v = user_version(s);
  if (v < 0) {
    set_err(err, errlen, "%s: not a hearth database (%s)", s->path, sqlite3_errmsg(s->db));
    return -1;
  }
  if (v > N_MIGRATIONS) {
    set_err(err, errlen,
            "%s: database schema version %d is newer than this hearth understands (%d); "
            "upgrade hearth to open it",
            s->path, v, N_MIGRATIONS);
    return -1;
  }
  if (v == N_MIGRATIONS) return 0;
  if (store_exec(s, "BEGIN IMMEDIATE", err, errlen) < 0) return -1;
  for (int i = v; i < N_MIGRATIONS; i++) {
    if (store_exec(s, migrations[i], err, errlen) < 0) goto fail;
  }
  char q[64];
  snprintf(q, sizeof q, "PRAGMA user_version = %d", N_MIGRATIONS);
  if (store_exec(s, q, err, errlen) < 0 || store_exec(s, "COMMIT", err, errlen) < 0) goto fail;
  return 0;
fail:
  sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
  return -1;
}

/* Configure, migrate and prepare an open connection. */
static int store_init(store_t *s, int readonly, char *err, size_t errlen) {
  sqlite3_busy_timeout(s->db, 5000);
  int v = user_version(s);
  if (v > N_MIGRATIONS) { /* refuse before changing anything, even the journal mode */
    set_err(err, errlen,
            "%s: database schema version %d is newer than this hearth understands (%d); "
            "upgrade hearth to open it", s->path, v, N_MIGRATIONS);
    return -1;
  }
  if (!readonly) {
    if (store_exec(s, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 16384;"
                      " PRAGMA foreign_keys = OFF; PRAGMA cache_size = -262144;"
                      " PRAGMA temp_store = MEMORY;",
                   err, errlen) < 0)
      return -1;
    if (migrate(s, err, errlen) < 0) return -1;
  } else {
    if (v != N_MIGRATIONS) {
      set_err(err, errlen, "%s: database schema version %d, this hearth needs %d%s", s->path, v,
              N_MIGRATIONS, v < N_MIGRATIONS ? " (run a command that writes, such as import)" : "");
      return -1;
    }
  }
  for (int i = 0; i < ST_COUNT; i++) {
    if (sqlite3_prepare_v3(s->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL) != SQLITE_OK) {
      set_err(err, errlen, "%s: preparing statement %d: %s", s->path, i, sqlite3_errmsg(s->db));
      return -1;
    }
  }
  return 0;
}

store_t *store_open(const char *path, int readonly, char *err, size_t errlen) {
  store_t *s = xcalloc(1, sizeof *s);
  s->path = xstrdup(path);
  int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  if (sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
    set_err(err, errlen, "cannot open database %s: %s", path,
            s->db ? sqlite3_errmsg(s->db) : "out of memory");
    goto fail;
  }
  if (store_init(s, readonly, err, errlen) < 0) goto fail;
  return s;
fail:
  store_close(s);
  return NULL;
}

store_t *store_open_copy(const char *src_path, char *err, size_t errlen) {
  store_t *s = xcalloc(1, sizeof *s);
  s->path = xstrdup(src_path ? src_path : ":memory:");
  if (sqlite3_open_v2(":memory:", &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
    set_err(err, errlen, "cannot open an in-memory database");
    goto fail;
  }
  FILE *f = src_path ? fopen(src_path, "rb") : NULL;
  if (f) {
    fclose(f);
    sqlite3 *src = NULL;
    int rc = sqlite3_open_v2(src_path, &src, SQLITE_OPEN_READONLY, NULL);
    sqlite3_backup *b = rc == SQLITE_OK ? sqlite3_backup_init(s->db, "main", src, "main") : NULL;
    rc = b ? sqlite3_backup_step(b, -1) : SQLITE_ERROR;
    if (b) sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
      set_err(err, errlen, "cannot read snapshot %s: %s", src_path, sqlite3_errmsg(src ? src : s->db));
      sqlite3_close(src);
      goto fail;
    }
    sqlite3_close(src);
  }
  if (store_init(s, 0, err, errlen) < 0) goto fail;
  return s;
fail:
  store_close(s);
  return NULL;
}

void store_close(store_t *s) {
  if (!s) return;
  for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(s->st[i]);
  for (int i = 0; i < s->ncached; i++) sqlite3_finalize(s->cached[i]);
  free(s->cached);
  if (s->db) sqlite3_close(s->db);
  free(s->path);
  free(s);
}

sqlite3_stmt *store_stmt(store_t *s, int which) {
  sqlite3_stmt *st = s->st[which];
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return st;
}

int store_exec_stmt(store_t *s, sqlite3_stmt *st) {
  (void)s;
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc;
}

int store_begin(store_t *s) {
  if (store_exec_stmt(s, store_stmt(s, ST_BEGIN)) != SQLITE_DONE) return -1;
  s->in_tx = 1;
  return 0;
}

int store_commit(store_t *s) {
  int rc = store_exec_stmt(s, store_stmt(s, ST_COMMIT));
  if (rc != SQLITE_DONE) return -1;
  s->in_tx = 0;
  return 0;
}

void store_rollback(store_t *s) {
  if (!s->in_tx) return;
  store_exec_stmt(s, store_stmt(s, ST_ROLLBACK));
  s->in_tx = 0;
}

int64_t store_meta_get(store_t *s, const char *key, int64_t dflt) {
  static query_t q = QUERY("SELECT value FROM meta WHERE key = ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return dflt;
  bind_text(st, 1, key);
  int64_t v = dflt;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
  else if (rc != SQLITE_DONE) failed(s, st);
  sqlite3_reset(st);
  return v;
}

int store_meta_set(store_t *s, const char *key, int64_t value) {
  static query_t q = QUERY("INSERT INTO meta(key, value) VALUES (?1, ?2)"
                           " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, key);
  bind_int(st, 2, value);
  return run(s, st);
}

/* ==== engine state: members, tags, ledger, dedupe, timers, actions, failures, cron, funnel ==== */

/* ==== reports: one member, the funnel, stats and metrics (read side) ==== */

/* ==== outbox delivery: due rows, leases, retries, dead letters, requeue ==== */

/* Rows of the outbox due for delivery on `channel` at `now`: pending, next_at reached, no
 * live lease; oldest due first, at most cap. Each row is handed to each() while the query
 * is open (its strings live until each returns). Returns the number of rows handed over,
 * or -1 when the read failed (logged) or each() returned -1. */
int store_outbox_due(store_t *s, const char *channel, int64_t now, int cap,
                     int (*each)(void *ud, const outbox_row_t *row), void *ud) {
  static query_t q = QUERY("SELECT seq, id, body, attempts FROM outbox WHERE delivery = 'pending'"
                           " AND next_at <= ?1 AND channel = ?2"
                           " AND (leased_until IS NULL OR leased_until <= ?1)"
                           " ORDER BY next_at, seq LIMIT ?3");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, now);
  bind_text(st, 2, channel);
  bind_int(st, 3, cap);
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    outbox_row_t row = {.seq = sqlite3_column_int64(st, 0),
                        .id = (const char *)sqlite3_column_text(st, 1),
                        .body = (const char *)sqlite3_column_text(st, 2),
                        .attempts = sqlite3_column_int(st, 3)};
    n++;
    if (each(ud, &row) < 0) {
      sqlite3_reset(st);
      return -1;
    }
  }
  if (rc != SQLITE_DONE) return failed(s, st);
  sqlite3_reset(st);
  return n;
}

int store_outbox_lease(store_t *s, int64_t seq, int64_t until) {
  static query_t q = QUERY("UPDATE outbox SET leased_until = ?2 WHERE seq = ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, seq);
  bind_int(st, 2, until);
  return run(s, st);
}

int store_outbox_done(store_t *s, int64_t seq) {
  static query_t q = QUERY("UPDATE outbox SET delivery = 'delivered', attempts = attempts + 1,"
                           " leased_until = NULL, last_error = NULL WHERE seq = ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, seq);
  return run(s, st);
}

int store_outbox_retry(store_t *s, int64_t seq, int64_t next_at, const char *error) {
  static query_t q = QUERY("UPDATE outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3,"
                           " leased_until = NULL WHERE seq = ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, seq);
  bind_int(st, 2, next_at);
  bind_text(st, 3, error);
  return run(s, st);
}

int store_outbox_dead(store_t *s, int64_t seq, const char *error) {
  static query_t q = QUERY("UPDATE outbox SET delivery = 'dead', attempts = attempts + 1,"
                           " last_error = ?2, leased_until = NULL WHERE seq = ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, seq);
  bind_text(st, 2, error);
  return run(s, st);
}

int store_outbox_void_leases(store_t *s) {
  static query_t q = QUERY("UPDATE outbox SET leased_until = NULL"
                           " WHERE delivery = 'pending' AND leased_until IS NOT NULL");
  return run(s, query(s, &q));
}

/* Step a query returning one integer (or NULL: dflt) into *out: 0, or -1 (logged). */
static int one_int(store_t *s, sqlite3_stmt *st, int64_t dflt, int64_t *out) {
  if (!st) return -1;
  int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) return failed(s, st);
  *out = sqlite3_column_type(st, 0) == SQLITE_NULL ? dflt : sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return 0;
}

int store_outbox_next_due(store_t *s, int64_t *out) {
  static query_t q = QUERY("SELECT MIN(max(next_at, coalesce(leased_until, 0))) FROM outbox"
                           " WHERE delivery = 'pending'");
  return one_int(s, query(s, &q), INT64_MAX, out);
}

int store_outbox_backlog(store_t *s, int64_t *out) {
  static query_t q = QUERY("SELECT count(*) FROM outbox WHERE delivery = 'pending'");
  return one_int(s, query(s, &q), 0, out);
}

/* The distinct channels of pending rows (malloc'd strings), into *out; count or -1. */
static int pending_channels(store_t *s, char ***out) {
  static query_t q = QUERY("SELECT DISTINCT channel FROM outbox"
                           " WHERE delivery = 'pending' AND channel IS NOT NULL");
  sqlite3_stmt *st = query(s, &q);
  *out = NULL;
  if (!st) return -1;
  int n = 0, cap = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (n == cap) *out = xrealloc(*out, (size_t)(cap = cap ? cap * 2 : 8) * sizeof **out);
    (*out)[n++] = xstrdup((const char *)sqlite3_column_text(st, 0));
  }
  if (rc != SQLITE_DONE) {
    for (int i = 0; i < n; i++) free((*out)[i]);
    free(*out);
    *out = NULL;
    return failed(s, st);
  }
  sqlite3_reset(st);
  return n;
}

static int bury_channel(store_t *s, const char *channel, int *buried) {
  static query_t q = QUERY("UPDATE outbox SET delivery = 'dead', last_error = 'unknown channel ' || channel"
                           " WHERE delivery = 'pending' AND channel = ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, channel);
  if (run(s, st) < 0) return -1;
  *buried += sqlite3_changes(s->db);
  return 0;
}

static int is_known(const char *channel, const char *const *known, int nknown) {
  for (int i = 0; i < nknown; i++)
    if (!strcmp(known[i], channel)) return 1;
  return 0;
}

int store_outbox_bury_unknown(store_t *s, const char *const *known, int nknown, int *buried) {
  int own_tx = !s->in_tx;
  *buried = 0;
  if (own_tx && store_begin(s) < 0) return failed(s, NULL);
  char **chans;
  int n = pending_channels(s, &chans), rc = n < 0 ? -1 : 0;
  for (int i = 0; i < n; i++) {
    if (rc == 0 && !is_known(chans[i], known, nknown)) rc = bury_channel(s, chans[i], buried);
    free(chans[i]);
  }
  free(chans);
  if (own_tx && rc == 0 && store_commit(s) < 0) rc = failed(s, NULL);
  if (own_tx && rc < 0) store_rollback(s);
  if (rc < 0) *buried = 0;
  return rc;
}

int store_dead_requeue(store_t *s, const char *id) {
  /* next_at is kept: it is the time of the last attempt on the clock of the daemon that
   * made it, so the row is due at once on that clock, real or virtual */
  static query_t one = QUERY("UPDATE outbox SET delivery = 'pending', attempts = 0"
                             " WHERE delivery = 'dead' AND id = ?1");
  static query_t all = QUERY("UPDATE outbox SET delivery = 'pending', attempts = 0"
                             " WHERE delivery = 'dead'");
  sqlite3_stmt *st = query(s, id ? &one : &all);
  if (!st) return -1;
  if (id) bind_text(st, 1, id);
  if (run(s, st) < 0) return -1;
  return sqlite3_changes(s->db);
}

int store_dead_letters(store_t *s, int limit, int (*each)(void *ud, const dead_letter_t *dl), void *ud) {
  static query_t q = QUERY("SELECT id, coalesce(channel, ''), attempts, coalesce(last_error, ''), body"
                           " FROM outbox WHERE delivery = 'dead' ORDER BY seq DESC LIMIT ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, limit);
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    dead_letter_t dl = {.id = (const char *)sqlite3_column_text(st, 0),
                        .channel = (const char *)sqlite3_column_text(st, 1),
                        .attempts = sqlite3_column_int(st, 2),
                        .last_error = (const char *)sqlite3_column_text(st, 3),
                        .body = (const char *)sqlite3_column_text(st, 4)};
    n++;
    if (each(ud, &dl) < 0) {
      sqlite3_reset(st);
      return -1;
    }
  }
  if (rc != SQLITE_DONE) return failed(s, st);
  sqlite3_reset(st);
  return n;
}

int store_data_version(store_t *s, int64_t *out) {
  static query_t q = QUERY("PRAGMA data_version");
  return one_int(s, query(s, &q), 0, out);
}
