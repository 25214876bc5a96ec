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
 *   funnel        counters scripts keep per campaign, step and variant (hearth.count)
 *   invariant_tallies  what invariant rules count, per rule, key and window (version 5) */
#include "store.h"

#include <assert.h>
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
    /* 2: each member's log of queued marketing sends, for caps and channel quotas */
    "ALTER TABLE members ADD COLUMN sends TEXT NOT NULL DEFAULT '{}';",
    /* 3: how many events, each caused at once by the one before, led to a timer */
    "ALTER TABLE timers ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE timers ADD COLUMN chain TEXT;",
    /* 4: ids of keyed changes (points, tags) that no channel delivers, so that a key
     * recorded again changes nothing without an outbox row */
    "CREATE TABLE action_keys(id TEXT PRIMARY KEY) WITHOUT ROWID;"
    "INSERT INTO action_keys(id) SELECT id FROM outbox WHERE kind IN ('points', 'tag', 'untag');",
    /* 5: what the invariants count (invariants.c): sends per member per local day or
     * week, points per campaign per day, by rule, key and the window's start */
    "CREATE TABLE invariant_tallies(rule TEXT NOT NULL, key TEXT NOT NULL, since INTEGER NOT NULL,"
    "  n INTEGER NOT NULL, PRIMARY KEY (rule, key, since)) WITHOUT ROWID;",
};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))
_Static_assert(sizeof migrations / sizeof migrations[0] == STORE_SCHEMA_VERSION,
               "one migration per schema version");

static void bind_text(sqlite3_stmt *st, int idx, const char *s) {
  if (s)
    sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, idx);
}

static void bind_int(sqlite3_stmt *st, int idx, int64_t v) { sqlite3_bind_int64(st, idx, v); }

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

/* Run literal SQL (schema, pragmas): 0, or -1 with the message in err. */
static int store_exec(store_t *s, const char *q, char *err, size_t errlen) {
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
  for (int i = 0; i < s->ncached; i++) sqlite3_finalize(s->cached[i]);
  free(s->cached);
  if (s->db) sqlite3_close(s->db);
  free(s->path);
  free(s);
}

const char *store_path(store_t *s) { return s->path; }

int store_begin(store_t *s) {
  static query_t q = QUERY("BEGIN IMMEDIATE");
  assert(!s->in_tx);
  if (run(s, query(s, &q)) < 0) return -1;
  s->in_tx = 1;
  return 0;
}

int store_commit(store_t *s) {
  static query_t q = QUERY("COMMIT");
  assert(s->in_tx);
  if (run(s, query(s, &q)) < 0) return -1;
  s->in_tx = 0;
  return 0;
}

void store_rollback(store_t *s) {
  static query_t q = QUERY("ROLLBACK");
  if (!s->in_tx) return;
  run(s, query(s, &q)); /* a failed rollback is logged; SQLite has rolled back anyway */
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

static int run_sql(store_t *s, query_t *q) { return run(s, query(s, q)); }

int store_savepoint(store_t *s) {
  assert(s->in_tx);
  static query_t q = QUERY("SAVEPOINT handler");
  return run_sql(s, &q);
}

int store_release(store_t *s) {
  static query_t q = QUERY("RELEASE handler");
  return run_sql(s, &q);
}

int store_rollback_to(store_t *s) {
  static query_t q = QUERY("ROLLBACK TO handler");
  return run_sql(s, &q) < 0 ? -1 : store_release(s);
}

static char *column_text(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return t ? xstrdup((const char *)t) : NULL;
}

static int64_t column_time(sqlite3_stmt *st, int i) {
  return sqlite3_column_type(st, i) == SQLITE_NULL ? STORE_NO_TIME : sqlite3_column_int64(st, i);
}

static void bind_time(sqlite3_stmt *st, int i, int64_t t) {
  if (t == STORE_NO_TIME)
    sqlite3_bind_null(st, i);
  else
    sqlite3_bind_int64(st, i, t);
}

/* Step a query expected to return at most one row: 1 (st stays on the row: read it, then
 * reset), 0 none, -1 error (logged). */
static int step_row(store_t *s, sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) return 1;
  if (rc == SQLITE_DONE) {
    sqlite3_reset(st);
    return 0;
  }
  return failed(s, st);
}

int store_member_get(store_t *s, const char *id, member_row_t *row) {
  static query_t q = QUERY("SELECT created_at, joined_at, last_active_at, orders, spend, points,"
                           " attrs, tags, timer_gens, ledger_n, sends FROM members WHERE id = ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, id);
  int found = step_row(s, st);
  if (found != 1) return found;
  row->id = id;
  row->created_at = sqlite3_column_int64(st, 0);
  row->joined_at = column_time(st, 1);
  row->last_active_at = column_time(st, 2);
  row->orders = sqlite3_column_int64(st, 3);
  row->spend = sqlite3_column_double(st, 4);
  row->points = sqlite3_column_int64(st, 5);
  row->attrs = column_text(st, 6);
  row->tags = column_text(st, 7);
  row->gens = column_text(st, 8);
  row->ledger_n = sqlite3_column_int64(st, 9);
  row->sends = column_text(st, 10);
  sqlite3_reset(st);
  return 1;
}

int store_member_put(store_t *s, const member_row_t *r) {
  static query_t q = QUERY("INSERT INTO members(id, created_at, joined_at, last_active_at, orders,"
                           " spend, points, attrs, tags, timer_gens, ledger_n, sends)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                           " ON CONFLICT(id) DO UPDATE SET joined_at = excluded.joined_at,"
                           " last_active_at = excluded.last_active_at, orders = excluded.orders,"
                           " spend = excluded.spend, points = excluded.points,"
                           " attrs = excluded.attrs, tags = excluded.tags,"
                           " timer_gens = excluded.timer_gens, ledger_n = excluded.ledger_n,"
                           " sends = excluded.sends");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, r->id);
  bind_int(st, 2, r->created_at);
  bind_time(st, 3, r->joined_at);
  bind_time(st, 4, r->last_active_at);
  bind_int(st, 5, r->orders);
  sqlite3_bind_double(st, 6, r->spend);
  bind_int(st, 7, r->points);
  bind_text(st, 8, r->attrs ? r->attrs : "{}");
  bind_text(st, 9, r->tags ? r->tags : "{}");
  bind_text(st, 10, r->gens ? r->gens : "{}");
  bind_int(st, 11, r->ledger_n);
  bind_text(st, 12, r->sends ? r->sends : "{}");
  int rc = run(s, st);
  sqlite3_clear_bindings(st); /* the texts are the caller's */
  return rc;
}

int store_member_exists(store_t *s, const char *id) {
  static query_t q = QUERY("SELECT 1 FROM members WHERE id = ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, id);
  int found = step_row(s, st);
  if (found == 1) sqlite3_reset(st);
  return found;
}

static int tag_change(store_t *s, query_t *q, const char *member, const char *tag) {
  sqlite3_stmt *st = query(s, q);
  if (!st) return -1;
  bind_text(st, 1, tag);
  bind_text(st, 2, member);
  return run(s, st);
}

int store_tag_add(store_t *s, const char *member, const char *tag) {
  static query_t q = QUERY("INSERT OR IGNORE INTO member_tags(tag, member) VALUES (?1, ?2)");
  return tag_change(s, &q, member, tag);
}

int store_tag_del(store_t *s, const char *member, const char *tag) {
  static query_t q = QUERY("DELETE FROM member_tags WHERE tag = ?1 AND member = ?2");
  return tag_change(s, &q, member, tag);
}

int store_member_ids(store_t *s, const char *tag, const char *after, int limit, char ***ids) {
  static query_t all = QUERY("SELECT id FROM members WHERE id > ?1 ORDER BY id LIMIT ?2");
  static query_t tagged = QUERY("SELECT member FROM member_tags WHERE tag = ?3 AND member > ?1"
                                " ORDER BY member LIMIT ?2");
  assert(limit > 0);
  *ids = NULL;
  sqlite3_stmt *st = query(s, tag ? &tagged : &all);
  if (!st) return -1;
  bind_text(st, 1, after ? after : "");
  bind_int(st, 2, limit);
  if (tag) bind_text(st, 3, tag);
  char **v = xcalloc((size_t)limit, sizeof *v);
  int n = 0, rc;
  while (n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) v[n++] = column_text(st, 0);
  if (n < limit && rc != SQLITE_DONE) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
    return failed(s, st);
  }
  sqlite3_reset(st);
  *ids = v;
  return n;
}

int store_ledger_add(store_t *s, const ledger_row_t *r) {
  static query_t q = QUERY("INSERT INTO ledger(member, n, time, delta, balance, reason, campaign,"
                           " cause) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, r->member);
  bind_int(st, 2, r->n);
  bind_int(st, 3, r->time);
  bind_int(st, 4, r->delta);
  bind_int(st, 5, r->balance);
  bind_text(st, 6, r->reason);
  bind_text(st, 7, r->campaign);
  bind_text(st, 8, r->cause);
  return run(s, st);
}

int store_seen_mark(store_t *s, const char *id, int64_t now, int64_t expired_before) {
  static query_t q = QUERY("INSERT INTO seen_events(id, at) VALUES (?1, ?2)"
                           " ON CONFLICT(id) DO UPDATE SET at = excluded.at"
                           " WHERE seen_events.at < ?3");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, id);
  bind_int(st, 2, now);
  bind_int(st, 3, expired_before);
  if (run(s, st) < 0) return -1;
  return sqlite3_changes(s->db) > 0;
}

int store_action_status(store_t *s, const char *id, char *status, size_t n) {
  static query_t q = QUERY("SELECT status FROM outbox WHERE id = ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, id);
  int found = step_row(s, st);
  if (found != 1) return found;
  const unsigned char *t = sqlite3_column_text(st, 0);
  snprintf(status, n, "%s", t ? (const char *)t : "");
  sqlite3_reset(st);
  return 1;
}

int store_action_key_claim(store_t *s, const char *id) {
  static query_t q = QUERY("INSERT OR IGNORE INTO action_keys(id) VALUES (?1)");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, id);
  if (run(s, st) < 0) return -1;
  return sqlite3_changes(s->db) > 0;
}

int store_action_add(store_t *s, const action_row_t *r) {
  static query_t q = QUERY("INSERT INTO outbox(id, member, campaign, step, kind, status, channel,"
                           " time, body, delivery, next_at)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, r->id);
  bind_text(st, 2, r->member);
  bind_text(st, 3, r->campaign);
  bind_text(st, 4, r->step);
  bind_text(st, 5, r->kind);
  bind_text(st, 6, r->status);
  bind_text(st, 7, r->channel);
  bind_int(st, 8, r->time);
  bind_text(st, 9, r->body);
  bind_text(st, 10, r->deliverable ? "pending" : NULL);
  bind_int(st, 11, r->time);
  int rc = run(s, st);
  sqlite3_clear_bindings(st);
  return rc;
}

int store_action_rejudge(store_t *s, const action_row_t *r) {
  static query_t q = QUERY("UPDATE outbox SET status = ?2, time = ?3, body = ?4,"
                           " delivery = ?5, next_at = ?6 WHERE id = ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, r->id);
  bind_text(st, 2, r->status);
  bind_int(st, 3, r->time);
  bind_text(st, 4, r->body);
  bind_text(st, 5, r->deliverable ? "pending" : NULL);
  bind_int(st, 6, r->time);
  int rc = run(s, st);
  sqlite3_clear_bindings(st);
  return rc;
}

int store_timer_add(store_t *s, const timer_row_t *r) {
  static query_t q = QUERY("INSERT INTO timers(due, id, member, type, data, gen, campaign, depth, chain)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, r->due);
  bind_int(st, 2, r->id);
  bind_text(st, 3, r->member);
  bind_text(st, 4, r->type);
  bind_text(st, 5, r->data);
  bind_int(st, 6, r->gen);
  bind_text(st, 7, r->campaign);
  bind_int(st, 8, r->depth);
  bind_text(st, 9, r->chain);
  int rc = run(s, st);
  sqlite3_clear_bindings(st);
  return rc;
}

void store_timer_rows_free(timer_row_t *rows, int n) {
  for (int i = 0; i < n; i++)
    free(rows[i].member), free(rows[i].type), free(rows[i].data), free(rows[i].campaign), free(rows[i].chain);
  free(rows);
}

int store_timers_due(store_t *s, int64_t upto, int max, timer_row_t **out) {
  static query_t q = QUERY("SELECT due, id, member, type, data, gen, campaign, depth, chain FROM timers"
                           " WHERE due <= ?1 ORDER BY due, id LIMIT ?2");
  assert(max > 0);
  *out = NULL;
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, upto);
  bind_int(st, 2, max);
  timer_row_t *rows = xcalloc((size_t)max, sizeof *rows);
  int n = 0, rc = SQLITE_DONE;
  while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    timer_row_t *r = &rows[n++];
    r->due = sqlite3_column_int64(st, 0);
    r->id = sqlite3_column_int64(st, 1);
    r->member = column_text(st, 2);
    r->type = column_text(st, 3);
    r->data = column_text(st, 4);
    r->gen = sqlite3_column_int64(st, 5);
    r->campaign = column_text(st, 6);
    r->depth = sqlite3_column_int64(st, 7);
    r->chain = column_text(st, 8);
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    store_timer_rows_free(rows, n);
    return failed(s, st);
  }
  sqlite3_reset(st);
  *out = rows;
  return n;
}

int store_timers_delete_upto(store_t *s, int64_t due, int64_t id, int64_t max_id) {
  static query_t q = QUERY("DELETE FROM timers WHERE (due, id) <= (?1, ?2) AND id <= ?3");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, due);
  bind_int(st, 2, id);
  bind_int(st, 3, max_id);
  return run(s, st);
}

int store_timer_next(store_t *s, int64_t *due) {
  static query_t q = QUERY("SELECT due FROM timers ORDER BY due LIMIT 1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  int found = step_row(s, st);
  if (found != 1) return found;
  *due = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return 1;
}

int store_failure_add(store_t *s, const failure_row_t *r) {
  static query_t q = QUERY("INSERT INTO failed_events(at, member, event, campaign, error)"
                           " VALUES (?1, ?2, ?3, ?4, ?5)");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, r->at);
  bind_text(st, 2, r->member);
  bind_text(st, 3, r->event);
  bind_text(st, 4, r->campaign);
  bind_text(st, 5, r->error);
  int rc = run(s, st);
  sqlite3_clear_bindings(st);
  return rc;
}

int store_cron_last(store_t *s, const char *key, int64_t *slot) {
  static query_t q = QUERY("SELECT last_slot FROM cron_state WHERE key = ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, key);
  int found = step_row(s, st);
  if (found != 1) return found;
  *slot = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return 1;
}

int store_cron_set(store_t *s, const char *key, int64_t slot) {
  static query_t q = QUERY("INSERT INTO cron_state(key, last_slot) VALUES (?1, ?2)"
                           " ON CONFLICT(key) DO UPDATE SET last_slot = excluded.last_slot");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, key);
  bind_int(st, 2, slot);
  return run(s, st);
}

int store_funnel_add(store_t *s, const char *campaign, const char *step, const char *variant,
                     const char *metric, int64_t n) {
  static query_t q = QUERY("INSERT INTO funnel(campaign, step, variant, metric, n)"
                           " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO UPDATE SET n = n + excluded.n");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, campaign);
  bind_text(st, 2, step);
  bind_text(st, 3, variant);
  bind_text(st, 4, metric);
  bind_int(st, 5, n);
  return run(s, st);
}

/* ==== reports: one member, the funnel, stats and metrics (read side) ==== */

/* Column i as text, NULL when the column is NULL. */
static const char *report_col_or_null(sqlite3_stmt *st, int i) {
  return (const char *)sqlite3_column_text(st, i);
}

/* Column i as text, "" when the column is NULL. */
static const char *report_col(sqlite3_stmt *st, int i) {
  const char *t = report_col_or_null(st, i);
  return t ? t : "";
}

/* After stepping st through its rows (rc: the last step's code): n, the number of rows,
 * when the statement finished; -1 (logged) when a step failed. Resets st. */
static int report_end(store_t *s, sqlite3_stmt *st, int rc, int n) {
  if (rc != SQLITE_DONE) return failed(s, st);
  sqlite3_reset(st);
  return n;
}


/* Step st, an aggregate query, to its one row: 0 (st on the row: read it, then reset),
 * -1 (logged). An aggregate without a row would be a bug, not an empty result. */
static int aggregate_row(store_t *s, sqlite3_stmt *st) {
  int rc = step_row(s, st);
  assert(rc != 0);
  return rc < 0 ? -1 : 0;
}

int store_member_view(store_t *s, const char *id, void (*each)(void *ud, const member_view_t *m), void *ud) {
  static query_t q = QUERY("SELECT created_at, joined_at, last_active_at, orders, spend, points,"
                           " attrs, tags FROM members WHERE id = ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, id);
  int rc = step_row(s, st);
  if (rc != 1) return rc;
  member_view_t m = {
      .created_at = sqlite3_column_int64(st, 0),
      .joined_at = column_time(st, 1),
      .last_active_at = column_time(st, 2),
      .orders = sqlite3_column_int64(st, 3),
      .spend = sqlite3_column_double(st, 4),
      .points = sqlite3_column_int64(st, 5),
      .attrs = report_col_or_null(st, 6),
      .tags = report_col_or_null(st, 7),
  };
  each(ud, &m);
  sqlite3_reset(st);
  return 1;
}

int store_member_ledger(store_t *s, const char *member, int limit,
                        void (*each)(void *ud, const ledger_entry_t *e), void *ud) {
  static query_t q = QUERY("SELECT time, delta, balance, reason, campaign, cause FROM ledger"
                           " WHERE member = ?1 ORDER BY n DESC LIMIT ?2");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, member);
  bind_int(st, 2, limit);
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    ledger_entry_t e = {
        .time = sqlite3_column_int64(st, 0),
        .delta = sqlite3_column_int64(st, 1),
        .balance = sqlite3_column_int64(st, 2),
        .reason = report_col(st, 3),
        .campaign = report_col_or_null(st, 4),
        .cause = report_col_or_null(st, 5),
    };
    each(ud, &e);
    n++;
  }
  return report_end(s, st, rc, n);
}

int store_member_actions(store_t *s, const char *member, int limit,
                         void (*each)(void *ud, const action_view_t *a), void *ud) {
  static query_t q = QUERY("SELECT body, status, delivery FROM outbox WHERE member = ?1"
                           " ORDER BY seq DESC LIMIT ?2");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, member);
  bind_int(st, 2, limit);
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    action_view_t a = {
        .body = report_col(st, 0),
        .status = report_col(st, 1),
        .delivery = report_col_or_null(st, 2),
    };
    each(ud, &a);
    n++;
  }
  return report_end(s, st, rc, n);
}

int store_member_failures(store_t *s, const char *member, int limit,
                          void (*each)(void *ud, const failure_view_t *f), void *ud) {
  static query_t q = QUERY("SELECT at, event, campaign, error FROM failed_events WHERE member = ?1"
                           " ORDER BY seq DESC LIMIT ?2");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, member);
  bind_int(st, 2, limit);
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    failure_view_t f = {
        .at = sqlite3_column_int64(st, 0),
        .event = report_col(st, 1),
        .campaign = report_col_or_null(st, 2),
        .error = report_col(st, 3),
    };
    each(ud, &f);
    n++;
  }
  return report_end(s, st, rc, n);
}

int store_first_failure(store_t *s, char **error) {
  static query_t q = QUERY("SELECT error FROM failed_events ORDER BY seq LIMIT 1");
  *error = NULL;
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  int rc = step_row(s, st);
  if (rc != 1) return rc;
  *error = xstrdup(report_col(st, 0));
  sqlite3_reset(st);
  return 1;
}

int store_outbox_counts(store_t *s, void (*each)(void *ud, const outbox_count_t *c), void *ud) {
  static query_t q = QUERY("SELECT campaign, coalesce(step, ''), status, kind, count(*) FROM outbox"
                           " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    outbox_count_t c = {
        .campaign = report_col(st, 0),
        .step = report_col(st, 1),
        .status = report_col(st, 2),
        .kind = report_col(st, 3),
        .n = sqlite3_column_int64(st, 4),
    };
    each(ud, &c);
    n++;
  }
  return report_end(s, st, rc, n);
}

int store_funnel_rows(store_t *s, void (*each)(void *ud, const funnel_row_t *r), void *ud) {
  static query_t q = QUERY("SELECT campaign, step, variant, metric, n FROM funnel ORDER BY 1, 2, 3, 4");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    funnel_row_t r = {
        .campaign = report_col(st, 0),
        .step = report_col(st, 1),
        .variant = report_col(st, 2),
        .metric = report_col(st, 3),
        .n = sqlite3_column_int64(st, 4),
    };
    each(ud, &r);
    n++;
  }
  return report_end(s, st, rc, n);
}

int store_funnel_total(store_t *s, const funnel_key_t *k, int64_t *n) {
  static query_t q = QUERY("SELECT coalesce(sum(n), 0) FROM funnel WHERE metric = ?1"
                           " AND (?2 IS NULL OR campaign = ?2) AND (?3 IS NULL OR step = ?3)"
                           " AND (?4 IS NULL OR variant = ?4)");
  assert(k->metric);
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, k->metric);
  bind_text(st, 2, k->campaign);
  bind_text(st, 3, k->step);
  bind_text(st, 4, k->variant);
  if (aggregate_row(s, st) < 0) return -1;
  *n = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return 0;
}

int store_totals(store_t *s, store_totals_t *t) {
  static query_t q = QUERY("SELECT (SELECT count(*) FROM members), (SELECT count(*) FROM seen_events),"
                           " (SELECT count(*) FROM failed_events), (SELECT count(*) FROM timers),"
                           " (SELECT count(*) FROM outbox),"
                           " (SELECT count(*) FROM outbox WHERE delivery = 'pending'),"
                           " (SELECT count(*) FROM outbox WHERE delivery = 'delivered'),"
                           " (SELECT count(*) FROM outbox WHERE delivery = 'dead')");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  if (aggregate_row(s, st) < 0) return -1;
  *t = (store_totals_t){
      .members = sqlite3_column_int64(st, 0),
      .events_remembered = sqlite3_column_int64(st, 1),
      .failed_events = sqlite3_column_int64(st, 2),
      .timers_pending = sqlite3_column_int64(st, 3),
      .actions = sqlite3_column_int64(st, 4),
      .pending_delivery = sqlite3_column_int64(st, 5),
      .delivered = sqlite3_column_int64(st, 6),
      .dead_letters = sqlite3_column_int64(st, 7),
  };
  sqlite3_reset(st);
  return 0;
}

int store_gauges(store_t *s, store_gauges_t *g) {
  static query_t q = QUERY("SELECT (SELECT count(*) FROM timers),"
                           " (SELECT count(*) FROM outbox WHERE delivery = 'dead'),"
                           " (SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size())");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  if (aggregate_row(s, st) < 0) return -1;
  *g = (store_gauges_t){
      .timers_pending = sqlite3_column_int64(st, 0),
      .dead_letters = sqlite3_column_int64(st, 1),
      .database_bytes = sqlite3_column_int64(st, 2),
  };
  sqlite3_reset(st);
  return 0;
}

/* Copy every page of s into out, waiting while another connection holds a lock: the
 * number of pages, or -1 with a message in err. */
static int backup_pages(store_t *s, sqlite3 *out, char *err, size_t errlen) {
  sqlite3_backup *b = sqlite3_backup_init(out, "main", s->db, "main");
  if (!b) {
    set_err(err, errlen, "%s", sqlite3_errmsg(out));
    return -1;
  }
  int rc;
  do {
    rc = sqlite3_backup_step(b, 1024);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) sqlite3_sleep(50);
  } while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
  int pages = sqlite3_backup_pagecount(b);
  sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE) {
    set_err(err, errlen, "backup failed: %s", sqlite3_errmsg(out));
    return -1;
  }
  return pages;
}

int store_backup(store_t *s, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (f) {
    fclose(f);
    set_err(err, errlen, "%s exists; choose a new path", path);
    return -1;
  }
  sqlite3 *out = NULL;
  int pages = -1;
  if (sqlite3_open_v2(path, &out, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
    set_err(err, errlen, "cannot create %s: %s", path, out ? sqlite3_errmsg(out) : "out of memory");
  else
    pages = backup_pages(s, out, err, errlen);
  sqlite3_close(out);
  if (pages < 0) {
    remove(path);
    log_msg(LOG_ERROR, "backup failed", "db", s->path, "to", path, "error", err, NULL);
  }
  return pages;
}

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

/* ==== invariants: the tallies their rules keep (invariants.c) ==== */

int store_invariant_add(store_t *s, const char *rule, const char *key, int64_t since, int64_t n, int64_t *total) {
  static query_t q = QUERY("INSERT INTO invariant_tallies(rule, key, since, n) VALUES (?1, ?2, ?3, ?4)"
                           " ON CONFLICT DO UPDATE SET n = n + excluded.n RETURNING n");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, rule);
  bind_text(st, 2, key);
  bind_int(st, 3, since);
  bind_int(st, 4, n);
  if (sqlite3_step(st) != SQLITE_ROW) return failed(s, st);
  *total = sqlite3_column_int64(st, 0);
  if (sqlite3_step(st) != SQLITE_DONE) return failed(s, st);
  sqlite3_reset(st);
  return 0;
}

int store_invariant_prune(store_t *s, int64_t before) {
  static query_t q = QUERY("DELETE FROM invariant_tallies WHERE since < ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, before);
  return run(s, st);
}
