/* store: the SQLite database. Owns the connection, the versioned schema and its
 * migrations (applied on open; a database from a newer hearth is refused), and every
 * prepared statement the engine uses. WAL mode with synchronous=FULL, so a committed
 * batch survives a crash or power loss. Knows nothing about Lua. */
#ifndef HEARTH_STORE_H
#define HEARTH_STORE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_SCHEMA_VERSION 1

/* The prepared statements, one per query the engine runs. */
enum {
  ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_SAVEPOINT, ST_RELEASE, ST_ROLLBACK_TO,
  ST_META_GET, ST_META_SET,
  ST_MEMBER_GET, ST_MEMBER_PUT,
  ST_TAG_ADD, ST_TAG_DEL,
  ST_LEDGER_ADD,
  ST_SEEN_MARK, ST_SEEN_PURGE,
  ST_ACTION_GET, ST_ACTION_ADD, ST_ACTION_RESTATUS,
  ST_TIMER_ADD, ST_TIMER_DUE, ST_TIMER_DEL_UPTO, ST_TIMER_NEXT,
  ST_FAILED_ADD,
  ST_CRON_GET, ST_CRON_SET, ST_FUNNEL_ADD, ST_FUNNEL_SUM, ST_MEMBER_EXISTS,
  ST_SWEEP_ALL, ST_SWEEP_TAG,
  ST_COUNT
};

typedef struct store {
  sqlite3 *db;
  char *path;
  sqlite3_stmt *st[ST_COUNT];
  int in_tx;
  sqlite3_stmt **cached;  /* prepared queries by slot (see query_t in store.c) */
  int ncached;
} store_t;

/* A query with its SQL text, prepared once per connection on first use (store.c only). */
typedef struct {
  const char *sql;
  int slot;   /* -1 until first used */
} query_t;
#define QUERY(text) {(text), -1}

/* Open (creating if needed) and migrate. readonly: open an existing database without
 * writing (used to inspect). NULL with a message in err on failure. */
store_t *store_open(const char *path, int readonly, char *err, size_t errlen);
/* An in-memory database starting as a copy of src_path (empty when src_path is NULL or
 * does not exist); the file itself is never written. Used by dry-run and tests. */
store_t *store_open_copy(const char *src_path, char *err, size_t errlen);
void store_close(store_t *s);

/* A prepared statement, reset and with bindings cleared, ready to bind. */
sqlite3_stmt *store_stmt(store_t *s, int which);
/* Step a statement that returns no rows; resets it. SQLITE_DONE on success. */
int store_exec_stmt(store_t *s, sqlite3_stmt *st);
/* Run literal SQL (no results); 0 ok, -1 with message. */
int store_exec(store_t *s, const char *sql, char *err, size_t errlen);
const char *store_errmsg(store_t *s);

int store_begin(store_t *s);
int store_commit(store_t *s);
void store_rollback(store_t *s);

int64_t store_meta_get(store_t *s, const char *key, int64_t dflt);
int store_meta_set(store_t *s, const char *key, int64_t value);

/* Bind a NUL-terminated string (or NULL) / an integer at parameter idx (1-based). */
void bind_text(sqlite3_stmt *st, int idx, const char *s);
void bind_int(sqlite3_stmt *st, int idx, int64_t v);

/* ==== engine state: members, tags, ledger, dedupe, timers, actions, failures, cron, funnel ==== */

/* ==== reports: one member, the funnel, stats and metrics (read side) ==== */

/* ==== outbox delivery: due rows, leases, retries, dead letters, requeue ==== */

#endif
