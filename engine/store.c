/* store: SQLite connection, schema migrations and prepared statements (see store.h).
 *
 * Schema, version 1:
 *   meta          counters (event and timer sequence numbers)
 *   members       one row per member: engine fields, attrs/tags/timer generations as JSON
 *   member_tags   (tag, member): the index behind tag sweeps
 *   ledger        every points grant and spend, (member, n) clustered
 *   seen_events   event ids inside the dedupe window (by generation and id since 11)
 *   outbox        every action with its stable id, status, payload and delivery state
 *   timers        durable timers clustered on (due, id)
 *   failed_events events whose handler failed, with the traceback
 *   cron_state    the last slot each cron entry ran for
 *   funnel        counters scripts keep per campaign, step and variant (hearth.count)
 *   point_lots    each grant's remainder and expiry (5)
 *   item_stock    units of each declared item redeemed, net of refunds (5)
 *   redemptions   every m:redeem by its action id: result, cost, refund (5)
 *   broadcasts    each dated one-off send's time, state and sweep cursor (6)
 *   staff_load, staff_cursor, staff_log, tasks   owners and tasks (7)
 *   purged_keys   ids of keyed actions removed by a purge (still refused when the key recurs) (8)
 *   purged_counts actions removed by a purge, counted as the funnel report counts the outbox (8)
 *   script_versions      each script set loaded: its hash, first and last load, its files (9)
 *   definition_versions  each journey definition by its own hash, its text kept, so that
 *                        runs pinned to it finish on it after a reload (9)
 *   invariant_tallies  what invariant rules count, per rule, key and window (10)
 *   seen_gens     the generations of dedupe marks: opened when, marks' times up to (11)
 *   outbox        indexed on (member, id), unique, for both an id and a member's actions (13)
 *   members       keyed by an integer rid, her id unique beside it (14) */
#include "store.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpointer.h"
#include "log.h"
#include "util.h"
#include "wal_sync.h"

/* The log's length in frames from which the writer checkpoints it itself: SQLite's
 * autocheckpoint while a database is opened and migrated, then on_wal_commit's when the
 * checkpointer's thread cannot be had. */
#define AUTOCHECKPOINT_FRAMES 16384
#define TEXT_OF(n) #n
#define AUTOCHECKPOINT_TEXT(n) TEXT_OF(n)

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
    /* 5: points lots (what is left of each grant that expires, and when; points that never
     * expire, a balance from before lots among them, are the balance less the lots), the
     * ledger entry's type and the lots it touched, item
     * stock shared across members, and redemptions by their action id */
    "CREATE TABLE point_lots(member TEXT NOT NULL, n INTEGER NOT NULL, granted INTEGER NOT NULL,"
    "  expires INTEGER NOT NULL, notice_at INTEGER, notice TEXT, amount INTEGER NOT NULL,"
    "  remaining INTEGER NOT NULL CHECK (remaining >= 0), campaign TEXT,"
    "  PRIMARY KEY (member, n)) WITHOUT ROWID;"
    "ALTER TABLE ledger ADD COLUMN type TEXT;"
    "ALTER TABLE ledger ADD COLUMN lots TEXT;"
    "CREATE TABLE item_stock(item TEXT PRIMARY KEY, used INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE redemptions(id TEXT PRIMARY KEY, member TEXT NOT NULL, item TEXT NOT NULL,"
    "  campaign TEXT NOT NULL, time INTEGER NOT NULL, qty INTEGER NOT NULL, cost INTEGER NOT NULL,"
    "  status TEXT NOT NULL, reason TEXT, expires INTEGER, refunded INTEGER) WITHOUT ROWID;"
    "CREATE INDEX redemptions_member ON redemptions(member, item);",
    /* 6: dated one-off audience sends (hearth.broadcast): when each runs, how far its
     * sweep has gone (the last member id done, committed with that chunk's actions) and
     * whether it is done, so a restart resumes it and never runs it twice */
    "CREATE TABLE broadcasts(name TEXT PRIMARY KEY, at INTEGER NOT NULL, state TEXT NOT NULL,"
    "  cursor TEXT NOT NULL DEFAULT '', seen INTEGER NOT NULL DEFAULT 0,"
    "  matched INTEGER NOT NULL DEFAULT 0, started_at INTEGER, finished_at INTEGER) WITHOUT ROWID;",
    /* 7: staff: members owned per staff member (least-loaded), round-robin cursors, the
     * log of owner changes, and tasks with their due time and when they were done */
    "CREATE TABLE staff_load(staff TEXT PRIMARY KEY, members INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO staff_load(staff, members) SELECT json_extract(attrs, '$.staff'), count(*)"
    "  FROM members WHERE json_type(attrs, '$.staff') = 'text' GROUP BY 1;"
    "CREATE TABLE staff_cursor(pool TEXT PRIMARY KEY, next INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE staff_log(seq INTEGER PRIMARY KEY, member TEXT NOT NULL, time INTEGER NOT NULL,"
    "  from_staff TEXT, to_staff TEXT NOT NULL, rule TEXT NOT NULL, cause TEXT);"
    "CREATE INDEX staff_log_member ON staff_log(member, seq);"
    "CREATE TABLE tasks(id TEXT PRIMARY KEY, member TEXT NOT NULL, staff TEXT NOT NULL,"
    "  due INTEGER NOT NULL, done_at INTEGER) WITHOUT ROWID;"
    "CREATE INDEX tasks_open ON tasks(member) WHERE done_at IS NULL;",
    /* 8: retention (hearth purge): dedupe marks found by age; whether an action's id came
     * from a key (1), or from its cause (0; NULL: recorded before this, treated as keyed);
     * the ids of keyed actions purged (a key can come again at any time), and the counts
     * of purged actions that the funnel report adds to those still in the outbox */
    "CREATE INDEX seen_events_at ON seen_events(at);"
    "ALTER TABLE outbox ADD COLUMN keyed INTEGER;"
    "CREATE TABLE purged_keys(id TEXT PRIMARY KEY) WITHOUT ROWID;"
    "CREATE TABLE purged_counts(campaign TEXT NOT NULL, step TEXT NOT NULL, status TEXT NOT NULL,"
    "  kind TEXT NOT NULL, n INTEGER NOT NULL,"
    "  PRIMARY KEY (campaign, step, status, kind)) WITHOUT ROWID;",
    /* 9: script versions: each script set loaded (its hash, when, its files) and the
     * definitions (journeys) it declared, by their own hash, so that runs pinned to an
     * older definition can still finish on it after a reload */
    "CREATE TABLE script_versions(hash TEXT PRIMARY KEY, loaded_at INTEGER NOT NULL,"
    "  last_loaded_at INTEGER NOT NULL, last_seq INTEGER NOT NULL, files TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE definition_versions(kind TEXT NOT NULL, name TEXT NOT NULL, hash TEXT NOT NULL,"
    "  label TEXT, body TEXT NOT NULL, set_hash TEXT NOT NULL, loaded_at INTEGER NOT NULL,"
    "  PRIMARY KEY (kind, name, hash)) WITHOUT ROWID;",
    /* 10: what the invariants count (invariants.c): sends per member per local day or
     * week, points per campaign per day, by rule, key and the window's start */
    "CREATE TABLE invariant_tallies(rule TEXT NOT NULL, key TEXT NOT NULL, since INTEGER NOT NULL,"
    "  n INTEGER NOT NULL, PRIMARY KEY (rule, key, since)) WITHOUT ROWID;",
    /* 11: scale-out: hearth.emit to a member of another partition, kept with the batch that
     * caused it until the node has published it to her partition (cluster_node.c) */
    "CREATE TABLE forwards(seq INTEGER PRIMARY KEY, partition INTEGER NOT NULL, id TEXT NOT NULL,"
    "  body TEXT NOT NULL);"
    /* and the emits forwarded here, held until the first clock tick after the one their
     * sender had applied, then applied in (at, id) order */
    "CREATE TABLE inbox(id TEXT PRIMARY KEY, after INTEGER NOT NULL, at INTEGER NOT NULL,"
    "  body TEXT NOT NULL) WITHOUT ROWID;",
    /* 12: dedupe marks in generations (store_seen_mark): each mark keyed (generation, id)
     * with its time, a catalog of generations with when each was opened and a bound of
     * its marks' times, and no index on time (the purge drops whole generations); the
     * marks so far become generation 0 */
    "CREATE TABLE seen_gens(gen INTEGER PRIMARY KEY, opened_at INTEGER NOT NULL,"
    "  last_at INTEGER NOT NULL);"
    "INSERT INTO seen_gens(gen, opened_at, last_at)"
    "  SELECT 0, min(at), max(at) FROM seen_events HAVING count(*) > 0;"
    "CREATE TABLE seen_marks(gen INTEGER NOT NULL, id TEXT NOT NULL, at INTEGER NOT NULL,"
    "  PRIMARY KEY (gen, id)) WITHOUT ROWID;"
    "INSERT INTO seen_marks(gen, id, at) SELECT 0, id, at FROM seen_events;"
    "DROP TABLE seen_events;"
    "ALTER TABLE seen_marks RENAME TO seen_events;",
    /* 13: one index for both an action's id and a member's actions: (member, id), unique.
     * An id names its member (campaign/member/...), so it is the id's uniqueness, and it
     * replaces the UNIQUE id and outbox_member(member, seq): two B-trees in random order,
     * each dirtying a page per insert. Dead letters are found by id through a partial
     * index. The table is made anew because a column's UNIQUE cannot be dropped. */
    "CREATE TABLE outbox_v13(seq INTEGER PRIMARY KEY, id TEXT NOT NULL,"
    "  member TEXT NOT NULL, campaign TEXT NOT NULL, step TEXT, kind TEXT NOT NULL,"
    "  status TEXT NOT NULL, channel TEXT, time INTEGER NOT NULL, body TEXT NOT NULL,"
    "  delivery TEXT, attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER,"
    "  leased_until INTEGER, last_error TEXT, keyed INTEGER);"
    "INSERT INTO outbox_v13(seq, id, member, campaign, step, kind, status, channel, time, body,"
    "  delivery, attempts, next_at, leased_until, last_error, keyed)"
    "  SELECT seq, id, member, campaign, step, kind, status, channel, time, body,"
    "  delivery, attempts, next_at, leased_until, last_error, keyed FROM outbox;"
    "DROP TABLE outbox;"
    "ALTER TABLE outbox_v13 RENAME TO outbox;"
    "CREATE UNIQUE INDEX outbox_id ON outbox(member, id);"
    "CREATE INDEX outbox_pending ON outbox(next_at) WHERE delivery = 'pending';"
    "CREATE INDEX outbox_dead ON outbox(id) WHERE delivery = 'dead';",
    /* 14: members keyed by an integer (rid), with her id unique beside it. The write-back
     * of a member finds her row by rid, and SQLite overwrites a row that keeps its size
     * in place; keyed by the text id (WITHOUT ROWID) every write-back deleted and
     * re-inserted the whole record in a B-tree ordered by text. rid is declared, so a
     * VACUUM keeps it. */
    "CREATE TABLE members_v14(rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
    "  created_at INTEGER NOT NULL, joined_at INTEGER,"
    "  last_active_at INTEGER, orders INTEGER NOT NULL DEFAULT 0,"
    "  spend REAL NOT NULL DEFAULT 0, points INTEGER NOT NULL DEFAULT 0 CHECK (points >= 0),"
    "  attrs TEXT NOT NULL DEFAULT '{}', tags TEXT NOT NULL DEFAULT '{}',"
    "  timer_gens TEXT NOT NULL DEFAULT '{}', ledger_n INTEGER NOT NULL DEFAULT 0,"
    "  sends TEXT NOT NULL DEFAULT '{}');"
    "INSERT INTO members_v14(id, created_at, joined_at, last_active_at, orders, spend, points,"
    "  attrs, tags, timer_gens, ledger_n, sends)"
    "  SELECT id, created_at, joined_at, last_active_at, orders, spend, points,"
    "  attrs, tags, timer_gens, ledger_n, sends FROM members ORDER BY id;"
    "DROP TABLE members;"
    "ALTER TABLE members_v14 RENAME TO members;",
    /* 15: which commit of a writer whose log is synced behind it made an action pending
     * (store_sync_behind: its session in the high bits): delivery hands out only rows of
     * its commits on disk, however they became pending (queued, released, requeued) */
    "ALTER TABLE outbox ADD COLUMN made_pending INTEGER;",
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

const char *store_errmsg(store_t *s) { return s->sync_err[0] ? s->sync_err : sqlite3_errmsg(s->db); }

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
    /* a new database frees the pages a purge empties a chunk at a time (hearth purge);
     * the mode can only be chosen before the first table */
    if (v == 0 && store_exec(s, "PRAGMA auto_vacuum = INCREMENTAL", err, errlen) < 0) return -1;
    if (store_exec(s, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = " AUTOCHECKPOINT_TEXT(AUTOCHECKPOINT_FRAMES) ";"
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

/* Once per process, before SQLite's first connection: no memory statistics. Nothing
 * reads them, and keeping them takes a mutex around every allocation SQLite makes. */
static void configure_sqlite(void) {
  int rc = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  /* SQLITE_MISUSE: SQLite was started before (by a program embedding the engine), and
   * keeps its statistics: slower, not wrong */
  if (rc != SQLITE_OK && rc != SQLITE_MISUSE)
    log_msg(LOG_WARN, "SQLite kept its memory statistics", "error", sqlite3_errstr(rc), NULL);
}

static void sqlite_configured(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, configure_sqlite);
}

static int on_wal_commit(void *ud, sqlite3 *db, const char *schema, int frames);

store_t *store_open(const char *path, int readonly, char *err, size_t errlen) {
  sqlite_configured();
  store_t *s = xcalloc(1, sizeof *s);
  s->path = xstrdup(path);
  int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  if (sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
    set_err(err, errlen, "cannot open database %s: %s", path,
            s->db ? sqlite3_errmsg(s->db) : "out of memory");
    goto fail;
  }
  if (store_init(s, readonly, err, errlen) < 0) goto fail;
  if (!readonly) {
    char why[512];
    s->checkpointer = checkpointer_start(path, s->db, CHECKPOINT_BACKGROUND_FRAMES, why, sizeof why);
    if (!s->checkpointer) /* on_wal_commit checkpoints as the autocheckpoint would */
      log_msg(LOG_WARN, "checkpoints stay on the writing thread", "db", path, "error", why, NULL);
    sqlite3_wal_hook(s->db, on_wal_commit, s);
  }
  return s;
fail:
  store_close(s);
  return NULL;
}

store_t *store_open_copy(const char *src_path, char *err, size_t errlen) {
  sqlite_configured();
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
  if (s->db) sqlite3_wal_hook(s->db, NULL, NULL);
  wal_sync_stop(s->wal_sync); /* what was committed is synced first */
  checkpointer_stop(s->checkpointer);
  for (int i = 0; i < s->ncached; i++) sqlite3_finalize(s->cached[i]);
  free(s->cached);
  free(s->seen_gens);
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
  s->changes_at_begin = sqlite3_total_changes64(s->db);
  s->seen_loaded = 0; /* another connection may have changed the generations */
  s->next_due_known = 0; /* ...and the timers */
  return 0;
}

/* Commit n durable (n <= 0: nothing to wait for): 0, or -1 with the reason logged and kept. */
static int synced_upto(store_t *s, int64_t n) {
  if (!s->wal_sync || n <= 0 || wal_sync_wait(s->wal_sync, (uint64_t)n, s->sync_err, sizeof s->sync_err) == 0)
    return 0;
  log_msg(LOG_ERROR, "database error", "db", s->path, "error", s->sync_err, NULL);
  return -1;
}

/* Before commit n + 1 is written: at most max_unsynced - 1 commits before it wait for
 * their sync (with 1, commit n is on disk before n + 1 commits). */
static int room_for_commit(store_t *s) { return synced_upto(s, (int64_t)s->commits + 1 - s->max_unsynced); }

/* A row made pending by this statement: the commit it will be in (the next), or NULL
 * when every commit is synced by itself. */
static void bind_pending_mark(store_t *s, sqlite3_stmt *st, int idx) {
  if (!s->wal_sync) {
    sqlite3_bind_null(st, idx);
    return;
  }
  assert(s->commits + 1 < (uint64_t)1 << STORE_SYNC_COMMIT_BITS);
  sqlite3_bind_int64(st, idx, s->sync_base + (int64_t)s->commits + 1);
  s->tx_made_pending = 1;
}

/* SQLite's WAL hook: after each commit that wrote the log, a transaction's or a single
 * statement's (delivery's outcomes, a requeue). The sync thread is told of it, and the
 * checkpointer. */
static int on_wal_commit(void *ud, sqlite3 *db, const char *schema, int frames) {
  (void)schema;
  store_t *s = ud;
  if (s->wal_sync) {
    room_for_commit(s); /* a no-op after store_commit's; a failure is logged and refuses the next transaction */
    uint64_t n = ++s->commits;
    if (s->tx_made_pending) s->pending_upto = n;
    s->tx_made_pending = 0;
    wal_sync_written(s->wal_sync, n);
  }
  if (s->checkpointer) checkpointer_committed(s->checkpointer, frames);
  else if (frames >= AUTOCHECKPOINT_FRAMES) /* what SQLite's own autocheckpoint does */
    sqlite3_wal_checkpoint(db, NULL);
  return SQLITE_OK;
}

int store_commit(store_t *s) {
  static query_t q = QUERY("COMMIT");
  assert(s->in_tx);
  /* a transaction that changed no row writes nothing: it does not wait */
  int wrote = sqlite3_total_changes64(s->db) != s->changes_at_begin;
  if ((wrote && room_for_commit(s) < 0) || run(s, query(s, &q)) < 0) return -1;
  s->in_tx = 0;
  return 0;
}

int store_sync_behind(store_t *s, int max_unsynced, char *err, size_t errlen) {
  assert(!s->in_tx && !s->wal_sync);
  assert(max_unsynced >= 1);
  const char *db = sqlite3_db_filename(s->db, "main"); /* SQLite's own names: a link resolved */
  sqlite3_stmt *st = NULL;
  int wal = 0;
  if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    wal = sqlite3_column_text(st, 0) && strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
  sqlite3_finalize(st);
  if (!db || !db[0] || !wal) {
    set_err(err, errlen, "%s has no write-ahead log to sync", s->path);
    return -1;
  }
  /* a session of its own for the marks of the rows it makes pending; with
   * synchronous=FULL still, this write syncs the log, and with it every row made pending
   * before (by an earlier session or another process) */
  int64_t session = -1;
  if (store_begin(s) == 0) { /* read and written at once: two writers never share one */
    session = store_meta_get(s, "sync_session", 0) + 1;
    if (session >= STORE_SYNC_SESSIONS || store_meta_set(s, "sync_session", session) < 0 || store_commit(s) < 0)
      session = -1;
    if (s->in_tx) store_rollback(s);
  }
  if (session < 0) {
    set_err(err, errlen, "%s: cannot number the session: %s", s->path, sqlite3_errmsg(s->db));
    return -1;
  }
  s->sync_base = session << STORE_SYNC_COMMIT_BITS;
  s->commits = 0;
  s->pending_upto = 0;
  s->tx_made_pending = 0;
  s->max_unsynced = max_unsynced;
  s->wal_sync = wal_sync_start(sqlite3_filename_wal(db), err, errlen);
  if (!s->wal_sync) return -1;
  if (store_exec(s, "PRAGMA synchronous = NORMAL", err, errlen) < 0) {
    wal_sync_stop(s->wal_sync);
    s->wal_sync = NULL;
    return -1;
  }
  return 0;
}

int store_sync(store_t *s) { return synced_upto(s, (int64_t)s->commits); }

uint64_t store_last_commit(store_t *s) { return s->commits; }

int store_durable(store_t *s, uint64_t n) {
  return s->wal_sync ? wal_sync_durable(s->wal_sync, n, s->sync_err, sizeof s->sync_err) : 1;
}

int store_outbox_take_held(store_t *s) {
  int held = s->outbox_held;
  s->outbox_held = 0;
  return held;
}

void store_on_synced(store_t *s, void (*fn)(void *ud), void *ud) {
  if (s->wal_sync) wal_sync_on_synced(s->wal_sync, fn, ud);
}

void store_rollback(store_t *s) {
  static query_t q = QUERY("ROLLBACK");
  if (!s->in_tx) return;
  s->tx_made_pending = 0;
  run(s, query(s, &q)); /* a failed rollback is logged; SQLite has rolled back anyway */
  s->in_tx = 0;
  s->seen_loaded = 0;
  s->next_due_known = 0;
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
  s->seen_loaded = 0; /* a generation opened inside the savepoint is gone */
  s->next_due_known = 0; /* and its timers */
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
                           " attrs, tags, timer_gens, ledger_n, sends, rid FROM members WHERE id = ?1");
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
  row->rid = sqlite3_column_int64(st, 11);
  sqlite3_reset(st);
  return 1;
}

/* A member row's fields as ?1..?12 (id, created_at, joined_at, last_active_at, orders,
 * spend, points, attrs, tags, timer_gens, ledger_n, sends), for the insert and the update. */
static void bind_member(sqlite3_stmt *st, const member_row_t *r) {
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
}

int store_member_put(store_t *s, member_row_t *r) {
  static query_t ins = QUERY("INSERT INTO members(id, created_at, joined_at, last_active_at, orders,"
                             " spend, points, attrs, tags, timer_gens, ledger_n, sends)"
                             " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                             " ON CONFLICT(id) DO NOTHING");
  sqlite3_stmt *st = query(s, &ins);
  if (!st) return -1;
  bind_member(st, r);
  int rc = run(s, st);
  sqlite3_clear_bindings(st); /* the texts are the caller's */
  if (rc < 0) return -1;
  if (sqlite3_changes(s->db) == 1) {
    r->rid = sqlite3_last_insert_rowid(s->db);
    return 0;
  }
  /* her row is there already, written by another connection: write over it */
  static query_t find = QUERY("SELECT rid FROM members WHERE id = ?1");
  st = query(s, &find);
  if (!st) return -1;
  bind_text(st, 1, r->id);
  int found = step_row(s, st);
  if (found == 0) /* it was there a moment ago, in this transaction */
    log_msg(LOG_ERROR, "a member's row went between two statements", "db", s->path, "member", r->id, NULL);
  if (found != 1) return -1;
  r->rid = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  int updated = store_member_update(s, r);
  if (updated == 0)
    log_msg(LOG_ERROR, "a member's row went between two statements", "db", s->path, "member", r->id, NULL);
  return updated == 1 ? 0 : -1;
}

int store_member_update(store_t *s, const member_row_t *r) {
  /* the insert's numbering (bind_member); created_at (?2) never changes. Found by rid,
   * and the id must still be hers. */
  static query_t q = QUERY("UPDATE members SET joined_at = ?3, last_active_at = ?4, orders = ?5,"
                           " spend = ?6, points = ?7, attrs = ?8, tags = ?9, timer_gens = ?10,"
                           " ledger_n = ?11, sends = ?12 WHERE rid = ?13 AND id = ?1");
  assert(r->rid > 0);
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_member(st, r);
  bind_int(st, 13, r->rid);
  int rc = run(s, st);
  sqlite3_clear_bindings(st); /* the texts are the caller's */
  return rc < 0 ? -1 : sqlite3_changes(s->db) > 0;
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
                           " cause, type, lots) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
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
  bind_text(st, 9, r->type);
  bind_text(st, 10, r->lots);
  return run(s, st);
}

int store_action_status(store_t *s, const char *member, const char *id, char *status, size_t n) {
  static query_t q = QUERY("SELECT status FROM outbox WHERE member = ?1 AND id = ?2");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, member);
  bind_text(st, 2, id);
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
                           " time, body, delivery, next_at, keyed, made_pending)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)");
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
  bind_int(st, 12, r->keyed ? 1 : 0);
  if (r->deliverable) bind_pending_mark(s, st, 13);
  else sqlite3_bind_null(st, 13);
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE && sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_UNIQUE) {
    /* the id is in the outbox already: the caller's to report, not a database failure */
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return STORE_EXISTS;
  }
  if (rc != SQLITE_DONE) {
    failed(s, st);
    sqlite3_clear_bindings(st);
    return -1;
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return 0;
}

int store_action_rejudge(store_t *s, const action_row_t *r) {
  static query_t q = QUERY("UPDATE outbox SET status = ?2, time = ?3, body = ?4,"
                           " delivery = ?5, next_at = ?6, made_pending = ?8 WHERE member = ?7 AND id = ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, r->id);
  bind_text(st, 7, r->member);
  bind_text(st, 2, r->status);
  bind_int(st, 3, r->time);
  bind_text(st, 4, r->body);
  bind_text(st, 5, r->deliverable ? "pending" : NULL);
  bind_int(st, 6, r->time);
  if (r->deliverable) bind_pending_mark(s, st, 8);
  else sqlite3_bind_null(st, 8);
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
  if (rc == 0 && s->next_due_known && (!s->next_due_exists || r->due < s->next_due))
    s->next_due_exists = 1, s->next_due = r->due;
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
  s->next_due_known = 0;
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, due);
  bind_int(st, 2, id);
  bind_int(st, 3, max_id);
  return run(s, st);
}

/* Inside a transaction (BEGIN IMMEDIATE: no other connection writes) the earliest due
 * time is read once and then kept: store_timer_add lowers it, and a delete or a rollback
 * forgets it. The import asks before every event. */
int store_timer_next(store_t *s, int64_t *due) {
  static query_t q = QUERY("SELECT due FROM timers ORDER BY due LIMIT 1");
  if (s->in_tx && s->next_due_known) {
    if (s->next_due_exists) *due = s->next_due;
    return s->next_due_exists;
  }
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  int found = step_row(s, st);
  if (found < 0) return -1;
  if (found == 1) {
    *due = s->next_due = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
  }
  s->next_due_known = s->in_tx;
  s->next_due_exists = found;
  return found;
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
  static query_t q = QUERY("SELECT time, delta, balance, reason, campaign, cause, type, lots FROM ledger"
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
        .type = report_col_or_null(st, 6),
        .lots = report_col_or_null(st, 7),
    };
    each(ud, &e);
    n++;
  }
  return report_end(s, st, rc, n);
}

int store_member_actions(store_t *s, const char *member, int limit,
                         void (*each)(void *ud, const action_view_t *a), void *ud) {
  /* the newest seqs from the index alone, then only their rows */
  static query_t q = QUERY("SELECT body, status, delivery FROM outbox WHERE seq IN"
                           " (SELECT seq FROM outbox WHERE member = ?1 ORDER BY seq DESC LIMIT ?2)"
                           " ORDER BY seq DESC");
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
  /* the rows in the outbox and those a purge removed (purged_counts), counted alike */
  static query_t q = QUERY("SELECT campaign, step, status, kind, sum(n) FROM ("
                           "SELECT campaign, coalesce(step, '') AS step, status, kind, count(*) AS n FROM outbox"
                           " GROUP BY 1, 2, 3, 4"
                           " UNION ALL SELECT campaign, step, status, kind, n FROM purged_counts)"
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

/* The marks of rows made pending by this session's commits not yet on disk: (*lo, *hi)
 * exclusive, the commits after the last synced up to the one in hand; empty without
 * store_sync_behind. Rows marked by earlier sessions are on disk (store_sync_behind synced
 * the log it found). */
static void unsynced_marks(store_t *s, int64_t *lo, int64_t *hi) {
  *lo = *hi = 0;
  if (!s->wal_sync) return;
  uint64_t synced = wal_sync_synced(s->wal_sync);
  if (s->pending_upto > synced) s->outbox_held = 1;
  *lo = s->sync_base + (int64_t)synced;
  *hi = s->sync_base + (int64_t)s->commits + 2;
}

/* Rows of the outbox due for delivery on `channel` at `now`: pending, next_at reached, no
 * live lease, not made pending by a commit still waiting for its sync; oldest due first,
 * at most cap. Each row is handed to each() while the query is open (its strings live
 * until each returns). Returns the number of rows handed over, or -1 when the read failed
 * (logged) or each() returned -1. */
int store_outbox_due(store_t *s, const char *channel, int64_t now, int cap,
                     int (*each)(void *ud, const outbox_row_t *row), void *ud) {
  static query_t q = QUERY("SELECT seq, id, body, attempts FROM outbox WHERE delivery = 'pending'"
                           " AND next_at <= ?1 AND channel = ?2"
                           " AND (leased_until IS NULL OR leased_until <= ?1)"
                           " AND NOT (coalesce(made_pending, 0) > ?4 AND coalesce(made_pending, 0) < ?5)"
                           " ORDER BY next_at, seq LIMIT ?3");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, now);
  bind_text(st, 2, channel);
  bind_int(st, 3, cap);
  int64_t lo, hi;
  unsynced_marks(s, &lo, &hi);
  bind_int(st, 4, lo);
  bind_int(st, 5, hi);
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
  static query_t one = QUERY("UPDATE outbox SET delivery = 'pending', attempts = 0, made_pending = ?2"
                             " WHERE delivery = 'dead' AND id = ?1");
  static query_t all = QUERY("UPDATE outbox SET delivery = 'pending', attempts = 0, made_pending = ?2"
                             " WHERE delivery = 'dead'");
  sqlite3_stmt *st = query(s, id ? &one : &all);
  if (!st) return -1;
  if (id) bind_text(st, 1, id);
  bind_pending_mark(s, st, 2);
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

/* ==== points lots, expiry and redemptions ====
 * A lot is what is left of one grant (keyed by the grant's ledger n) and when it expires
 * (STORE_NEVER: never); notice_at is when its expiry notice is due (NULL: none, or sent).
 * Item stock counts units redeemed net of refunds; a redemption row is the result of one
 * m:redeem, found again by its action id. */

int store_lot_add(store_t *s, const lot_row_t *r) {
  static query_t q = QUERY("INSERT INTO point_lots(member, n, granted, expires, notice_at, notice, amount,"
                           " remaining, campaign) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, r->member);
  bind_int(st, 2, r->n);
  bind_int(st, 3, r->granted);
  bind_int(st, 4, r->expires);
  bind_time(st, 5, r->notice_at);
  bind_text(st, 6, r->notice);
  bind_int(st, 7, r->amount);
  bind_int(st, 8, r->remaining);
  bind_text(st, 9, r->campaign);
  return run(s, st);
}

void store_lots_free(lot_row_t *rows, int n) {
  for (int i = 0; i < n; i++) free(rows[i].notice), free(rows[i].campaign);
  free(rows);
}

int store_lots_live(store_t *s, const char *member, lot_row_t **out) {
  static query_t q = QUERY("SELECT n, granted, expires, notice_at, notice, amount, remaining, campaign"
                           " FROM point_lots WHERE member = ?1 AND remaining > 0 ORDER BY expires, n");
  *out = NULL;
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, member);
  lot_row_t *v = NULL;
  int n = 0, cap = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (n == cap) v = xrealloc(v, (size_t)(cap = cap ? cap * 2 : 8) * sizeof *v);
    v[n++] = (lot_row_t){.member = member, .n = sqlite3_column_int64(st, 0),
                         .granted = sqlite3_column_int64(st, 1), .expires = sqlite3_column_int64(st, 2),
                         .notice_at = column_time(st, 3), .notice = column_text(st, 4),
                         .amount = sqlite3_column_int64(st, 5), .remaining = sqlite3_column_int64(st, 6),
                         .campaign = column_text(st, 7)};
  }
  if (rc != SQLITE_DONE) {
    store_lots_free(v, n);
    return failed(s, st);
  }
  sqlite3_reset(st);
  *out = v;
  return n;
}

int store_lots_next_due(store_t *s, const char *member, int64_t *due) {
  static query_t q = QUERY("SELECT MIN(MIN(expires), COALESCE(MIN(notice_at), 9223372036854775807))"
                           " FROM point_lots WHERE member = ?1 AND remaining > 0");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, member);
  return one_int(s, st, STORE_NEVER, due);
}

int store_lot_update(store_t *s, const char *member, int64_t n, int64_t remaining, int64_t notice_at) {
  static query_t q = QUERY("UPDATE point_lots SET remaining = ?3, notice_at = ?4 WHERE member = ?1 AND n = ?2");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, member);
  bind_int(st, 2, n);
  bind_int(st, 3, remaining);
  bind_time(st, 4, notice_at);
  return run(s, st);
}

int store_item_used(store_t *s, const char *item, int64_t *used) {
  static query_t q = QUERY("SELECT MAX(used) FROM item_stock WHERE item = ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, item);
  return one_int(s, st, 0, used);
}

int store_item_add_used(store_t *s, const char *item, int64_t delta) {
  static query_t q = QUERY("INSERT INTO item_stock(item, used) VALUES (?1, ?2)"
                           " ON CONFLICT(item) DO UPDATE SET used = used + excluded.used");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, item);
  bind_int(st, 2, delta);
  return run(s, st);
}

int store_redeemed_qty(store_t *s, const char *member, const char *item, int64_t *qty) {
  static query_t q = QUERY("SELECT COALESCE(SUM(qty), 0) FROM redemptions WHERE member = ?1 AND item = ?2"
                           " AND status = 'queued' AND refunded IS NULL");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, member);
  bind_text(st, 2, item);
  return one_int(s, st, 0, qty);
}

int store_redemption_add(store_t *s, const redemption_row_t *r) {
  static query_t q = QUERY("INSERT INTO redemptions(id, member, item, campaign, time, qty, cost, status,"
                           " reason, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, r->id);
  bind_text(st, 2, r->member);
  bind_text(st, 3, r->item);
  bind_text(st, 4, r->campaign);
  bind_int(st, 5, r->time);
  bind_int(st, 6, r->qty);
  bind_int(st, 7, r->cost);
  bind_text(st, 8, r->status);
  bind_text(st, 9, r->reason);
  bind_int(st, 10, r->expires);
  return run(s, st);
}

void store_redemption_free(redemption_row_t *r) {
  free(r->id), free(r->member), free(r->item), free(r->campaign), free(r->status), free(r->reason);
  memset(r, 0, sizeof *r);
}

int store_redemption_get(store_t *s, const char *id, redemption_row_t *r) {
  static query_t q = QUERY("SELECT member, item, campaign, time, qty, cost, status, reason, expires, refunded"
                           " FROM redemptions WHERE id = ?1");
  memset(r, 0, sizeof *r);
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, id);
  int found = step_row(s, st);
  if (found <= 0) return found;
  r->id = xstrdup(id);
  r->member = column_text(st, 0);
  r->item = column_text(st, 1);
  r->campaign = column_text(st, 2);
  r->time = sqlite3_column_int64(st, 3);
  r->qty = sqlite3_column_int64(st, 4);
  r->cost = sqlite3_column_int64(st, 5);
  r->status = column_text(st, 6);
  r->reason = column_text(st, 7);
  r->expires = sqlite3_column_int64(st, 8);
  r->refunded = column_time(st, 9);
  sqlite3_reset(st);
  return 1;
}

int store_redemption_refund(store_t *s, const char *id, int64_t at) {
  static query_t q = QUERY("UPDATE redemptions SET refunded = ?2 WHERE id = ?1 AND refunded IS NULL");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, id);
  bind_int(st, 2, at);
  if (run(s, st) < 0) return -1;
  return sqlite3_changes(s->db);
}

/* ==== broadcasts: dated one-off audience sends (hearth.broadcast) ==== */

static void broadcast_from_row(sqlite3_stmt *st, broadcast_row_t *row) {
  row->name = column_text(st, 0);
  row->at = sqlite3_column_int64(st, 1);
  row->state = column_text(st, 2);
  row->cursor = column_text(st, 3);
  row->seen = sqlite3_column_int64(st, 4);
  row->matched = sqlite3_column_int64(st, 5);
  row->started_at = column_time(st, 6);
  row->finished_at = column_time(st, 7);
}

#define BROADCAST_COLUMNS "name, at, state, cursor, seen, matched, started_at, finished_at"

int store_broadcast_get(store_t *s, const char *name, broadcast_row_t *row) {
  static query_t q = QUERY("SELECT " BROADCAST_COLUMNS " FROM broadcasts WHERE name = ?1");
  memset(row, 0, sizeof *row);
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, name);
  int found = step_row(s, st);
  if (found != 1) return found;
  broadcast_from_row(st, row);
  sqlite3_reset(st);
  return 1;
}

int store_broadcast_put(store_t *s, const broadcast_row_t *row) {
  static query_t q = QUERY("INSERT INTO broadcasts(" BROADCAST_COLUMNS ")"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(name) DO UPDATE SET"
                           " at = excluded.at, state = excluded.state, cursor = excluded.cursor,"
                           " seen = excluded.seen, matched = excluded.matched,"
                           " started_at = excluded.started_at, finished_at = excluded.finished_at");
  assert(row->name && row->state);
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, row->name);
  bind_int(st, 2, row->at);
  bind_text(st, 3, row->state);
  bind_text(st, 4, row->cursor ? row->cursor : "");
  bind_int(st, 5, row->seen);
  bind_int(st, 6, row->matched);
  bind_time(st, 7, row->started_at);
  bind_time(st, 8, row->finished_at);
  int rc = run(s, st);
  sqlite3_clear_bindings(st);
  return rc;
}

int store_broadcast_list(store_t *s, int (*each)(void *ud, const broadcast_row_t *row), void *ud) {
  static query_t q = QUERY("SELECT " BROADCAST_COLUMNS " FROM broadcasts ORDER BY at, name");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    broadcast_row_t row;
    broadcast_from_row(st, &row);
    int stop = each(ud, &row) < 0;
    store_broadcast_row_free(&row);
    n++;
    if (stop) {
      sqlite3_reset(st);
      return -1;
    }
  }
  if (rc != SQLITE_DONE) return failed(s, st);
  sqlite3_reset(st);
  return n;
}

void store_broadcast_row_free(broadcast_row_t *row) {
  free(row->name);
  free(row->state);
  free(row->cursor);
  row->name = row->state = row->cursor = NULL;
}

/* ==== data in and out: export pages (hearth export) ==== */

/* Bind a cursor's key as a copy: the caller moves its cursor while the page is read. */
static void bind_cursor(sqlite3_stmt *st, int idx, const char *key) {
  sqlite3_bind_text(st, idx, key, -1, SQLITE_TRANSIENT);
}

int store_export_members(store_t *s, const char *after, int64_t since, int limit,
                         void (*each)(void *ud, const member_export_t *m), void *ud) {
  static query_t q = QUERY("SELECT id, created_at, joined_at, last_active_at, orders, spend, points,"
                           " attrs, tags FROM members WHERE id > ?1 AND (created_at >= ?2"
                           " OR joined_at >= ?2 OR last_active_at >= ?2 OR EXISTS (SELECT 1 FROM"
                           " ledger WHERE ledger.member = members.id AND ledger.time >= ?2))"
                           " ORDER BY id LIMIT ?3");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_cursor(st, 1, after);
  bind_int(st, 2, since);
  bind_int(st, 3, limit);
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    member_export_t m = {
        .id = report_col(st, 0),
        .view = {.created_at = sqlite3_column_int64(st, 1),
                 .joined_at = column_time(st, 2),
                 .last_active_at = column_time(st, 3),
                 .orders = sqlite3_column_int64(st, 4),
                 .spend = sqlite3_column_double(st, 5),
                 .points = sqlite3_column_int64(st, 6),
                 .attrs = report_col_or_null(st, 7),
                 .tags = report_col_or_null(st, 8)},
    };
    each(ud, &m);
    n++;
  }
  return report_end(s, st, rc, n);
}

int store_export_ledger(store_t *s, const char *after_member, int64_t after_n, int64_t since, int limit,
                        void (*each)(void *ud, const ledger_row_t *r), void *ud) {
  static query_t q = QUERY("SELECT member, n, time, delta, balance, reason, campaign, cause, type, lots FROM ledger"
                           " WHERE (member, n) > (?1, ?2) AND time >= ?3 ORDER BY member, n LIMIT ?4");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_cursor(st, 1, after_member);
  bind_int(st, 2, after_n);
  bind_int(st, 3, since);
  bind_int(st, 4, limit);
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    ledger_row_t r = {
        .member = report_col(st, 0),
        .n = sqlite3_column_int64(st, 1),
        .time = sqlite3_column_int64(st, 2),
        .delta = sqlite3_column_int64(st, 3),
        .balance = sqlite3_column_int64(st, 4),
        .reason = report_col(st, 5),
        .campaign = report_col_or_null(st, 6),
        .cause = report_col_or_null(st, 7),
        .type = report_col_or_null(st, 8),
        .lots = report_col_or_null(st, 9),
    };
    each(ud, &r);
    n++;
  }
  return report_end(s, st, rc, n);
}

int store_export_actions(store_t *s, int64_t after_seq, int64_t since, int limit,
                         void (*each)(void *ud, const action_export_t *a), void *ud) {
  static query_t q = QUERY("SELECT seq, time, body, status, delivery FROM outbox"
                           " WHERE seq > ?1 AND time >= ?2 ORDER BY seq LIMIT ?3");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, after_seq);
  bind_int(st, 2, since);
  bind_int(st, 3, limit);
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    action_export_t a = {
        .seq = sqlite3_column_int64(st, 0),
        .time = sqlite3_column_int64(st, 1),
        .body = report_col(st, 2),
        .status = report_col(st, 3),
        .delivery = report_col_or_null(st, 4),
    };
    each(ud, &a);
    n++;
  }
  return report_end(s, st, rc, n);
}

/* ==== console reads: sends by quarter hour, failures by campaign, a member's timers ==== */

int store_send_buckets(store_t *s, int64_t from, int64_t to, void (*each)(void *ud, const send_bucket_t *b),
                       void *ud) {
  /* quarter hours, so that the caller can place them on local days in any zone (every
   * zone offset in use is a whole number of quarter hours) */
  static query_t q = QUERY("SELECT time / 900, coalesce(channel, ''), status, coalesce(delivery, ''), count(*)"
                           " FROM outbox WHERE kind = 'send' AND time >= ?1 AND time < ?2"
                           " GROUP BY 1, 2, 3, 4");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  sqlite3_bind_int64(st, 1, from);
  sqlite3_bind_int64(st, 2, to);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    send_bucket_t b = {.start = sqlite3_column_int64(st, 0) * 900,
                       .channel = (const char *)sqlite3_column_text(st, 1),
                       .status = (const char *)sqlite3_column_text(st, 2),
                       .delivery = (const char *)sqlite3_column_text(st, 3),
                       .n = sqlite3_column_int64(st, 4)};
    each(ud, &b);
  }
  if (rc != SQLITE_DONE) return failed(s, st);
  sqlite3_reset(st);
  return 0;
}

int store_send_span(store_t *s, int64_t *first, int64_t *last) {
  static query_t q = QUERY("SELECT coalesce(min(time), -1), coalesce(max(time), -1) FROM outbox WHERE kind = 'send'");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  if (aggregate_row(s, st) < 0) return -1;
  *first = sqlite3_column_int64(st, 0);
  *last = sqlite3_column_int64(st, 1);
  sqlite3_reset(st);
  return 0;
}

int store_failures_by_campaign(store_t *s, void (*each)(void *ud, const char *campaign, int64_t n), void *ud) {
  static query_t q = QUERY("SELECT coalesce(campaign, ''), count(*) FROM failed_events GROUP BY 1 ORDER BY 2 DESC, 1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    each(ud, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1));
  if (rc != SQLITE_DONE) return failed(s, st);
  sqlite3_reset(st);
  return 0;
}

int store_member_timers(store_t *s, const char *member, int limit,
                        void (*each)(void *ud, const member_timer_t *t), void *ud) {
  /* no index by member (it would cost every timer write): one scan, for one operator's look */
  static query_t q = QUERY("SELECT due, type, coalesce(campaign, '') FROM timers WHERE member = ?1"
                           " ORDER BY due, id LIMIT ?2");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, member);
  bind_int(st, 2, limit);
  int rc, n = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    member_timer_t t = {.due = sqlite3_column_int64(st, 0), .type = (const char *)sqlite3_column_text(st, 1),
                        .campaign = (const char *)sqlite3_column_text(st, 2)};
    each(ud, &t);
    n++;
  }
  if (rc != SQLITE_DONE) return failed(s, st);
  sqlite3_reset(st);
  return n;
}

/* ==== staff: members per staff member, round-robin cursors, owner log, tasks ==== */

int store_staff_load_add(store_t *s, const char *staff, int64_t delta) {
  static query_t q = QUERY("INSERT INTO staff_load(staff, members) VALUES (?1, max(?2, 0))"
                           " ON CONFLICT(staff) DO UPDATE SET members = max(members + ?2, 0)");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, staff);
  bind_int(st, 2, delta);
  return run(s, st);
}

int store_staff_load(store_t *s, const char *staff, int64_t *members) {
  static query_t q = QUERY("SELECT (SELECT members FROM staff_load WHERE staff = ?1)");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, staff);
  return one_int(s, st, 0, members);
}

int store_staff_cursor_take(store_t *s, const char *pool, int64_t *taken) {
  static query_t get = QUERY("SELECT (SELECT next FROM staff_cursor WHERE pool = ?1)");
  static query_t put = QUERY("INSERT INTO staff_cursor(pool, next) VALUES (?1, ?2)"
                             " ON CONFLICT(pool) DO UPDATE SET next = ?2");
  sqlite3_stmt *st = query(s, &get);
  if (!st) return -1;
  bind_text(st, 1, pool);
  if (one_int(s, st, 0, taken) < 0) return -1;
  st = query(s, &put);
  if (!st) return -1;
  bind_text(st, 1, pool);
  bind_int(st, 2, *taken + 1);
  return run(s, st);
}

int store_staff_log_add(store_t *s, const staff_log_row_t *r) {
  static query_t q = QUERY("INSERT INTO staff_log(member, time, from_staff, to_staff, rule, cause)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, r->member);
  bind_int(st, 2, r->time);
  bind_text(st, 3, r->from);
  bind_text(st, 4, r->to);
  bind_text(st, 5, r->rule);
  bind_text(st, 6, r->cause);
  return run(s, st);
}

int store_staff_window(store_t *s, const char *after, int limit, staff_window_t *w) {
  static query_t q = QUERY("SELECT id, json_extract(attrs, '$.staff') FROM members WHERE id > ?1"
                           " ORDER BY id LIMIT ?2");
  assert(limit > 0);
  memset(w, 0, sizeof *w);
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, after ? after : "");
  bind_int(st, 2, limit);
  w->ids = xcalloc((size_t)limit, sizeof *w->ids);
  w->staff = xcalloc((size_t)limit, sizeof *w->staff);
  int rc;
  while (w->n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    w->ids[w->n] = column_text(st, 0);
    w->staff[w->n] = sqlite3_column_type(st, 1) == SQLITE_TEXT ? column_text(st, 1) : NULL;
    w->n++;
  }
  if (w->n < limit && rc != SQLITE_DONE) {
    store_staff_window_free(w);
    return failed(s, st);
  }
  sqlite3_reset(st);
  return w->n;
}

void store_staff_window_free(staff_window_t *w) {
  for (int i = 0; i < w->n; i++) {
    free(w->ids[i]);
    free(w->staff[i]);
  }
  free(w->ids);
  free(w->staff);
  memset(w, 0, sizeof *w);
}

int store_task_add(store_t *s, const char *id, const char *member, const char *staff, int64_t due) {
  static query_t q = QUERY("INSERT OR IGNORE INTO tasks(id, member, staff, due) VALUES (?1, ?2, ?3, ?4)");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, id);
  bind_text(st, 2, member);
  bind_text(st, 3, staff);
  bind_int(st, 4, due);
  return run(s, st);
}

int store_task_done(store_t *s, const char *id, const char *member, int64_t now) {
  static query_t find = QUERY("SELECT done_at IS NOT NULL FROM tasks WHERE id = ?1 AND member = ?2");
  static query_t done = QUERY("UPDATE tasks SET done_at = ?2 WHERE id = ?1 AND done_at IS NULL");
  sqlite3_stmt *st = query(s, &find);
  if (!st) return -1;
  bind_text(st, 1, id);
  bind_text(st, 2, member);
  int rc = step_row(s, st);
  if (rc <= 0) return rc < 0 ? -1 : TASK_UNKNOWN;
  int was_done = sqlite3_column_int(st, 0);
  sqlite3_reset(st);
  if (was_done) return TASK_WAS_DONE;
  st = query(s, &done);
  if (!st) return -1;
  bind_text(st, 1, id);
  bind_int(st, 2, now);
  return run(s, st) < 0 ? -1 : TASK_CLOSED;
}

int store_tasks_move(store_t *s, const char *member, const char *from, const char *to) {
  static query_t q = QUERY("UPDATE tasks SET staff = ?3 WHERE member = ?1 AND staff = ?2 AND done_at IS NULL");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, member);
  bind_text(st, 2, from);
  bind_text(st, 3, to);
  return run(s, st);
}

int store_staff_report(store_t *s, int64_t now, void (*each)(void *ud, const staff_report_t *r), void *ud) {
  static query_t q = QUERY(
      "WITH names(staff) AS (SELECT staff FROM staff_load UNION SELECT staff FROM tasks)"
      " SELECT n.staff, coalesce((SELECT members FROM staff_load l WHERE l.staff = n.staff), 0),"
      "  (SELECT count(*) FROM tasks t WHERE t.staff = n.staff AND t.done_at IS NULL),"
      "  (SELECT count(*) FROM tasks t WHERE t.staff = n.staff AND t.done_at IS NULL AND t.due <= ?1),"
      "  (SELECT count(*) FROM tasks t WHERE t.staff = n.staff AND t.done_at IS NOT NULL),"
      "  (SELECT count(*) FROM tasks t WHERE t.staff = n.staff AND t.done_at >= t.due)"
      " FROM names n ORDER BY n.staff");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, now);
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    staff_report_t r = {.staff = report_col(st, 0), .members = sqlite3_column_int64(st, 1),
                        .open = sqlite3_column_int64(st, 2), .overdue = sqlite3_column_int64(st, 3),
                        .done = sqlite3_column_int64(st, 4), .done_late = sqlite3_column_int64(st, 5)};
    n++;
    each(ud, &r);
  }
  return report_end(s, st, rc, n);
}

int store_member_staff_log(store_t *s, const char *member, int limit,
                           void (*each)(void *ud, const staff_log_view_t *v), void *ud) {
  static query_t q = QUERY("SELECT time, from_staff, to_staff, rule, cause FROM staff_log WHERE member = ?1"
                           " ORDER BY seq DESC LIMIT ?2");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, member);
  bind_int(st, 2, limit);
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    staff_log_view_t v = {.time = sqlite3_column_int64(st, 0), .from = report_col_or_null(st, 1),
                          .to = report_col(st, 2), .rule = report_col(st, 3), .cause = report_col_or_null(st, 4)};
    n++;
    each(ud, &v);
  }
  return report_end(s, st, rc, n);
}

int store_member_tasks(store_t *s, const char *member, int limit,
                       void (*each)(void *ud, const task_view_t *v), void *ud) {
  static query_t q = QUERY("SELECT id, staff, due, done_at FROM tasks WHERE member = ?1"
                           " ORDER BY due DESC, id LIMIT ?2");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, member);
  bind_int(st, 2, limit);
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    task_view_t v = {.id = report_col(st, 0), .staff = report_col(st, 1), .due = sqlite3_column_int64(st, 2),
                     .done_at = column_time(st, 3)};
    n++;
    each(ud, &v);
  }
  return report_end(s, st, rc, n);
}

/* ==== retention: purging final actions and old dedupe marks, and shrinking the file ==== */

/* The outbox rows a purge may remove, seq in (?1, ?2]: final (delivered, or a status
 * that is never delivered, deferred excepted: its release timer judges it again) and
 * older than ?3; dead letters older than ?4. Never a pending (or leased) row. */
#define PURGEABLE                                                                           \
  " seq > ?1 AND seq <= ?2 AND ((time < ?3 AND (delivery = 'delivered' OR"                   \
  " (delivery IS NULL AND status <> 'deferred'))) OR (delivery = 'dead' AND time < ?4))"

static void bind_purge_range(sqlite3_stmt *st, const purge_range_t *r) {
  bind_int(st, 1, r->after_seq);
  bind_int(st, 2, r->upto_seq);
  bind_int(st, 3, r->before);
  bind_int(st, 4, r->dead_before);
}

int store_outbox_max_seq(store_t *s, int64_t *out) {
  static query_t q = QUERY("SELECT max(seq) FROM outbox");
  return one_int(s, query(s, &q), 0, out);
}

int store_purge_rows(store_t *s, const purge_range_t *r, int (*each)(void *ud, const purge_row_t *row),
                     void *ud) {
  static query_t q = QUERY("SELECT seq, id, status, delivery, attempts, last_error, body FROM outbox"
                           " WHERE" PURGEABLE " ORDER BY seq");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_purge_range(st, r);
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    purge_row_t row = {.seq = sqlite3_column_int64(st, 0),
                       .id = (const char *)sqlite3_column_text(st, 1),
                       .status = (const char *)sqlite3_column_text(st, 2),
                       .delivery = (const char *)sqlite3_column_text(st, 3),
                       .attempts = sqlite3_column_int(st, 4),
                       .last_error = (const char *)sqlite3_column_text(st, 5),
                       .body = (const char *)sqlite3_column_text(st, 6)};
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

int store_purge_delete(store_t *s, const purge_range_t *r) {
  /* a keyed action's id stays refused (changes keep theirs in action_keys already); the
   * funnel report keeps counting what goes */
  static query_t keys = QUERY("INSERT INTO purged_keys(id) SELECT id FROM outbox WHERE" PURGEABLE
                              " AND coalesce(keyed, 1) = 1 AND kind NOT IN ('points', 'tag', 'untag')"
                              " ON CONFLICT DO NOTHING");
  static query_t counts = QUERY("INSERT INTO purged_counts(campaign, step, status, kind, n)"
                                " SELECT campaign, coalesce(step, ''), status, kind, count(*) FROM outbox"
                                " WHERE" PURGEABLE " GROUP BY 1, 2, 3, 4"
                                " ON CONFLICT DO UPDATE SET n = n + excluded.n");
  static query_t del = QUERY("DELETE FROM outbox WHERE" PURGEABLE);
  assert(s->in_tx);
  query_t *steps[] = {&keys, &counts, &del};
  for (int i = 0; i < 3; i++) {
    sqlite3_stmt *st = query(s, steps[i]);
    if (!st) return -1;
    bind_purge_range(st, r);
    if (run(s, st) < 0) return -1;
  }
  return sqlite3_changes(s->db);
}

int store_purge_count(store_t *s, const purge_range_t *r, void (*each)(void *ud, const char *status,
                      const char *delivery, int64_t n), void *ud) {
  static query_t q = QUERY("SELECT status, coalesce(delivery, ''), count(*) FROM outbox WHERE" PURGEABLE
                           " GROUP BY 1, 2 ORDER BY 1, 2");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_purge_range(st, r);
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    each(ud, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
         sqlite3_column_int64(st, 2));
    n++;
  }
  if (rc != SQLITE_DONE) return failed(s, st);
  sqlite3_reset(st);
  return n;
}

int store_purged_key_known(store_t *s, const char *id) {
  static query_t q = QUERY("SELECT 1 FROM purged_keys WHERE id = ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, id);
  int found = step_row(s, st);
  if (found == 1) sqlite3_reset(st);
  return found;
}

/* Run a pragma that returns one integer (literal SQL, not cached): 0, or -1 (logged). */
static int pragma_int(store_t *s, const char *sql, int64_t *out) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) return failed(s, NULL);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
  else if (rc == SQLITE_DONE) *out = 0;
  else {
    log_msg(LOG_ERROR, "database error", "db", s->path, "query", sql, "error", sqlite3_errmsg(s->db), NULL);
    sqlite3_finalize(st);
    return -1;
  }
  sqlite3_finalize(st);
  return 0;
}

int store_space(store_t *s, store_space_t *sp) {
  int64_t mode;
  if (pragma_int(s, "PRAGMA page_size", &sp->page_size) < 0 ||
      pragma_int(s, "PRAGMA page_count", &sp->pages) < 0 ||
      pragma_int(s, "PRAGMA freelist_count", &sp->free_pages) < 0 ||
      pragma_int(s, "PRAGMA auto_vacuum", &mode) < 0)
    return -1;
  sp->incremental = mode == 2;
  return 0;
}

int store_vacuum_some(store_t *s, int pages) {
  char sql[64];
  assert(!s->in_tx && pages > 0);
  snprintf(sql, sizeof sql, "PRAGMA incremental_vacuum(%d)", pages);
  char err[512];
  checkpointer_hold(s->checkpointer);
  int rc = store_exec(s, sql, err, sizeof err);
  checkpointer_release(s->checkpointer);
  if (rc < 0) {
    log_msg(LOG_ERROR, "database error", "db", s->path, "query", sql, "error", err, NULL);
    return -1;
  }
  return 0;
}

int store_vacuum_full(store_t *s) {
  char err[512];
  assert(!s->in_tx);
  /* VACUUM rebuilds the file; with auto_vacuum set first, later purges shrink it a
   * chunk at a time (store_vacuum_some) */
  checkpointer_hold(s->checkpointer);
  int rc = store_exec(s, "PRAGMA auto_vacuum = INCREMENTAL; VACUUM", err, sizeof err);
  checkpointer_release(s->checkpointer);
  if (rc < 0) {
    log_msg(LOG_ERROR, "database error", "db", s->path, "query", "VACUUM", "error", err, NULL);
    return -1;
  }
  return 0;
}

int store_checkpoint(store_t *s) {
  int64_t busy;
  assert(!s->in_tx);
  checkpointer_hold(s->checkpointer);
  int rc = pragma_int(s, "PRAGMA wal_checkpoint(TRUNCATE)", &busy);
  checkpointer_release(s->checkpointer);
  return rc;
}


/* ---- script versions (script_versions, definition_versions; runs in flight) ---- */

int store_script_version_note(store_t *s, const char *hash, int64_t now, const char *files) {
  static query_t q = QUERY("INSERT INTO script_versions(hash, loaded_at, last_loaded_at, last_seq, files)"
                           " VALUES (?1, ?2, ?2, IFNULL((SELECT MAX(last_seq) FROM script_versions), 0) + 1, ?3)"
                           " ON CONFLICT(hash) DO UPDATE SET last_loaded_at = excluded.last_loaded_at,"
                           " last_seq = excluded.last_seq");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, hash);
  bind_int(st, 2, now);
  bind_text(st, 3, files);
  return run(s, st);
}

int store_script_version_latest(store_t *s, script_version_t *out) {
  static query_t q = QUERY("SELECT hash, loaded_at, last_loaded_at, (SELECT COUNT(*) FROM script_versions)"
                           " FROM script_versions ORDER BY last_seq DESC LIMIT 1");
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    sqlite3_reset(st);
    return 0;
  }
  if (rc != SQLITE_ROW) return failed(s, st);
  snprintf(out->hash, sizeof out->hash, "%s", (const char *)sqlite3_column_text(st, 0));
  out->loaded_at = sqlite3_column_int64(st, 1);
  out->last_loaded_at = sqlite3_column_int64(st, 2);
  out->versions = sqlite3_column_int64(st, 3);
  sqlite3_reset(st);
  return 1;
}

int store_definition_note(store_t *s, const char *kind, const char *name, const char *hash,
                          const char *label, const char *body, const char *set_hash, int64_t now) {
  static query_t q = QUERY("INSERT INTO definition_versions(kind, name, hash, label, body, set_hash, loaded_at)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, kind);
  bind_text(st, 2, name);
  bind_text(st, 3, hash);
  bind_text(st, 4, label);
  bind_text(st, 5, body);
  bind_text(st, 6, set_hash);
  bind_int(st, 7, now);
  return run(s, st);
}

int store_definition_get(store_t *s, const char *kind, const char *name, const char *hash,
                         char **body, char **label) {
  static query_t q = QUERY("SELECT body, label FROM definition_versions WHERE kind = ?1 AND name = ?2 AND hash = ?3");
  *body = NULL;
  if (label) *label = NULL;
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, kind);
  bind_text(st, 2, name);
  bind_text(st, 3, hash);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    sqlite3_reset(st);
    return 0;
  }
  if (rc != SQLITE_ROW) return failed(s, st);
  *body = xstrdup((const char *)sqlite3_column_text(st, 0));
  if (label && sqlite3_column_type(st, 1) != SQLITE_NULL) *label = xstrdup((const char *)sqlite3_column_text(st, 1));
  sqlite3_reset(st);
  return 1;
}

int store_definition_names(store_t *s, const char *kind,
                           int (*each)(void *ud, const char *kind, const char *name), void *ud) {
  static query_t q = QUERY("SELECT DISTINCT name FROM definition_versions WHERE kind = ?1 ORDER BY name");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, kind);
  int n = 0, rc;
  char **names = NULL;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    names = xrealloc(names, (size_t)(n + 1) * sizeof *names);
    names[n++] = xstrdup((const char *)sqlite3_column_text(st, 0));
  }
  int status = rc == SQLITE_DONE ? 0 : failed(s, st);
  if (status == 0) sqlite3_reset(st);
  /* handed over after the statement is done: each() may run queries of its own */
  for (int i = 0; i < n; i++) {
    if (status == 0 && each(ud, kind, names[i]) < 0) status = 1;
    free(names[i]);
  }
  free(names);
  return status < 0 ? -1 : n;
}

int store_runs_in_flight(store_t *s, const char *attr,
                         int (*each)(void *ud, const char *member, const char *state), void *ud) {
  static query_t q = QUERY("SELECT id, json_extract(attrs, '$.\"' || ?1 || '\"') FROM members"
                           " WHERE json_extract(attrs, '$.\"' || ?1 || '\".active') = 1 ORDER BY id");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, attr);
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    n++;
    if (each(ud, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1)) < 0) break;
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return failed(s, st);
  sqlite3_reset(st);
  return n;
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

/* ==== dedupe marks: event ids seen, in generations (seen_events, seen_gens) ====
 * A mark is (generation, id, at), clustered on (gen, id), with no index on its time. A
 * generation is opened when the current one was opened longer than the window ago, so
 * at most two generations can hold marks still inside the window: a new id costs one
 * look-up in the previous generation (none in a fresh database) and an insert in the
 * current one. seen_gens keeps, per generation, when it was opened and last_at, an upper
 * bound of its marks' times (rounded up to SEEN_LAST_ROUND, so that it is written about
 * once an hour, not per event): a generation whose last_at is older than the window
 * holds only forgotten marks, is never looked in, and is purged whole. Whether an id is
 * a duplicate is decided by its own mark's time, exactly as with one mark per id; the
 * generations only decide where to look and what a purge can drop.
 * The catalog is read once per transaction (store_begin and the rollbacks clear
 * seen_loaded; outside a transaction it is read on every mark). */

#define SEEN_LAST_ROUND 3600

static int64_t seen_round_up(int64_t t) {
  if (t > INT64_MAX - SEEN_LAST_ROUND) return INT64_MAX;
  int64_t r = t % SEEN_LAST_ROUND;
  if (r == 0) return t;
  return r > 0 ? t + (SEEN_LAST_ROUND - r) : t - r; /* toward +inf for negative times too */
}

static void seen_push(store_t *s, store_seen_gen_t g) {
  if (s->nseen_gens == s->seen_cap) {
    s->seen_cap = s->seen_cap ? s->seen_cap * 2 : 4;
    s->seen_gens = xrealloc(s->seen_gens, (size_t)s->seen_cap * sizeof *s->seen_gens);
  }
  s->seen_gens[s->nseen_gens++] = g;
}

/* Read the generations into s->seen_gens, oldest first, unless this transaction has. */
static int seen_load(store_t *s) {
  static query_t q = QUERY("SELECT gen, opened_at, last_at FROM seen_gens ORDER BY gen");
  if (s->seen_loaded && s->in_tx) return 0;
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  s->nseen_gens = 0;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    seen_push(s, (store_seen_gen_t){.gen = sqlite3_column_int64(st, 0),
                                    .opened_at = sqlite3_column_int64(st, 1),
                                    .last_at = sqlite3_column_int64(st, 2)});
  if (rc != SQLITE_DONE) return failed(s, st);
  sqlite3_reset(st);
  s->seen_loaded = 1;
  return 0;
}

/* Open a generation after the newest, opened at `now`; it becomes the current one. */
static int seen_open_gen(store_t *s, int64_t now) {
  static query_t q = QUERY("INSERT INTO seen_gens(gen, opened_at, last_at) VALUES (?1, ?2, ?3)");
  int64_t gen = s->nseen_gens ? s->seen_gens[s->nseen_gens - 1].gen + 1 : 0;
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, gen);
  bind_int(st, 2, now);
  bind_int(st, 3, seen_round_up(now));
  if (run(s, st) < 0) return -1;
  seen_push(s, (store_seen_gen_t){.gen = gen, .opened_at = now, .last_at = seen_round_up(now)});
  return 0;
}

/* Raise the current generation's bound to cover a mark at `now`. */
static int seen_cover(store_t *s, store_seen_gen_t *g, int64_t now) {
  static query_t q = QUERY("UPDATE seen_gens SET last_at = ?2 WHERE gen = ?1");
  if (now <= g->last_at) return 0;
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, g->gen);
  bind_int(st, 2, seen_round_up(now));
  if (run(s, st) < 0) return -1;
  g->last_at = seen_round_up(now);
  return 0;
}

/* 1 when generation gen holds id marked at or after expired_before, 0 when not, -1. */
static int seen_live_in(store_t *s, int64_t gen, const char *id, int64_t expired_before) {
  static query_t q = QUERY("SELECT 1 FROM seen_events WHERE gen = ?1 AND id = ?2 AND at >= ?3");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, gen);
  bind_text(st, 2, id);
  bind_int(st, 3, expired_before);
  int found = step_row(s, st);
  if (found == 1) sqlite3_reset(st);
  return found;
}

int store_seen_mark(store_t *s, const char *id, int64_t now, int64_t expired_before) {
  static query_t q = QUERY("INSERT INTO seen_events(gen, id, at) VALUES (?1, ?2, ?3)"
                           " ON CONFLICT(gen, id) DO UPDATE SET at = excluded.at"
                           " WHERE seen_events.at < ?4");
  if (seen_load(s) < 0) return -1;
  store_seen_gen_t *cur = s->nseen_gens ? &s->seen_gens[s->nseen_gens - 1] : NULL;
  if (!cur || (expired_before != INT64_MIN && cur->opened_at < expired_before)) {
    if (seen_open_gen(s, now) < 0) return -1;
    cur = &s->seen_gens[s->nseen_gens - 1];
  }
  for (int i = 0; i < s->nseen_gens - 1; i++) { /* older generations that may hold it */
    if (s->seen_gens[i].last_at < expired_before) continue;
    int live = seen_live_in(s, s->seen_gens[i].gen, id, expired_before);
    if (live != 0) return live < 0 ? -1 : 0;
  }
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, cur->gen);
  bind_text(st, 2, id);
  bind_int(st, 3, now);
  bind_int(st, 4, expired_before);
  if (run(s, st) < 0) return -1;
  if (sqlite3_changes(s->db) == 0) return 0;
  return seen_cover(s, cur, now) < 0 ? -1 : 1;
}

/* The oldest generation whose marks are all older than `before`: 1 (*gen), 0 none, -1. */
static int seen_oldest_purgeable(store_t *s, int64_t before, int64_t *gen) {
  static query_t q = QUERY("SELECT gen FROM seen_gens WHERE last_at < ?1 ORDER BY gen LIMIT 1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, before);
  int found = step_row(s, st);
  if (found != 1) return found;
  *gen = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return 1;
}

/* Delete up to limit marks of generation gen, and the generation once it is empty:
 * how many marks, or -1. */
static int seen_drop_some(store_t *s, int64_t gen, int limit) {
  static query_t marks = QUERY("DELETE FROM seen_events WHERE gen = ?1 AND id IN"
                               " (SELECT id FROM seen_events WHERE gen = ?1 ORDER BY id LIMIT ?2)");
  static query_t catalog = QUERY("DELETE FROM seen_gens WHERE gen = ?1"
                                 " AND NOT EXISTS (SELECT 1 FROM seen_events WHERE gen = ?1)");
  sqlite3_stmt *st = query(s, &marks);
  if (!st) return -1;
  bind_int(st, 1, gen);
  bind_int(st, 2, limit);
  if (run(s, st) < 0) return -1;
  int n = sqlite3_changes(s->db);
  if (n < limit) {
    st = query(s, &catalog);
    if (!st) return -1;
    bind_int(st, 1, gen);
    if (run(s, st) < 0) return -1;
  }
  return n;
}

int store_seen_purge(store_t *s, int64_t before, int limit) {
  assert(limit > 0);
  s->seen_loaded = 0; /* the catalog changes under the cache */
  int done = 0;
  while (done < limit) {
    int64_t gen;
    int found = seen_oldest_purgeable(s, before, &gen);
    if (found < 0) return -1;
    if (!found) break;
    int n = seen_drop_some(s, gen, limit - done);
    if (n < 0) return -1;
    done += n;
  }
  return done;
}

int store_seen_count_before(store_t *s, int64_t before, int64_t *n) {
  static query_t q = QUERY("SELECT count(*) FROM seen_events WHERE gen IN"
                           " (SELECT gen FROM seen_gens WHERE last_at < ?1)");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, before);
  return one_int(s, st, 0, n);
}

/* ==== scale-out: forwards to other partitions (cluster_node.c) ==== */

int store_forward_add(store_t *s, int partition, const char *id, const char *body) {
  static query_t q = QUERY("INSERT INTO forwards(partition, id, body) VALUES (?1, ?2, ?3)");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, partition);
  bind_text(st, 2, id);
  bind_text(st, 3, body);
  return run(s, st);
}

int store_forwards(store_t *s, int limit, int (*each)(void *ud, const forward_row_t *row), void *ud) {
  static query_t q = QUERY("SELECT seq, partition, id, body FROM forwards ORDER BY seq LIMIT ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, limit);
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    forward_row_t row = {.seq = sqlite3_column_int64(st, 0), .partition = sqlite3_column_int(st, 1),
                         .id = (const char *)sqlite3_column_text(st, 2),
                         .body = (const char *)sqlite3_column_text(st, 3)};
    n++;
    if (each(ud, &row) < 0) break;
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return failed(s, st);
  sqlite3_reset(st);
  return n;
}

int store_forwards_done(store_t *s, int64_t upto) {
  static query_t q = QUERY("DELETE FROM forwards WHERE seq <= ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, upto);
  return run(s, st);
}

int store_inbox_add(store_t *s, const char *id, int64_t after, int64_t at, const char *body) {
  static query_t q = QUERY("INSERT INTO inbox(id, after, at, body) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, id);
  bind_int(st, 2, after);
  bind_int(st, 3, at);
  bind_text(st, 4, body);
  return run(s, st);
}

int store_inbox_due(store_t *s, int64_t before, int limit, char ***ids, char ***bodies) {
  static query_t q = QUERY("SELECT id, body FROM inbox WHERE after < ?1 ORDER BY at, id LIMIT ?2");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_int(st, 1, before);
  bind_int(st, 2, limit);
  *ids = *bodies = NULL;
  int n = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    *ids = xrealloc(*ids, (size_t)(n + 1) * sizeof **ids);
    *bodies = xrealloc(*bodies, (size_t)(n + 1) * sizeof **bodies);
    (*ids)[n] = xstrdup((const char *)sqlite3_column_text(st, 0));
    (*bodies)[n++] = xstrdup((const char *)sqlite3_column_text(st, 1));
  }
  if (rc != SQLITE_DONE) {
    for (int i = 0; i < n; i++) free((*ids)[i]), free((*bodies)[i]);
    free(*ids);
    free(*bodies);
    *ids = *bodies = NULL;
    return failed(s, st);
  }
  sqlite3_reset(st);
  return n;
}

int store_inbox_delete(store_t *s, const char *id) {
  static query_t q = QUERY("DELETE FROM inbox WHERE id = ?1");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  bind_text(st, 1, id);
  return run(s, st);
}

int store_inbox_count(store_t *s, int64_t *n) {
  static query_t q = QUERY("SELECT count(*) FROM inbox");
  sqlite3_stmt *st = query(s, &q);
  if (!st) return -1;
  if (sqlite3_step(st) != SQLITE_ROW) return failed(s, st);
  *n = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return 0;
}
