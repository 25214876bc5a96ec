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

/* A queued action due for delivery; the strings live only during the callback. */
typedef struct {
  int64_t seq;
  const char *id, *body;
  int attempts;          /* tries made so far */
} outbox_row_t;

/* Hand each() every pending row of `channel` due at `now` (next_at reached, no live
 * lease), oldest due first, at most cap; each() returns 0 to go on, -1 to stop. Returns
 * the number of rows handed over, or -1 (a failed read is logged). */
int store_outbox_due(store_t *s, const char *channel, int64_t now, int cap,
                     int (*each)(void *ud, const outbox_row_t *row), void *ud);
/* Lease row seq to its dispatcher until epoch second `until`. 0, or -1 (logged). */
int store_outbox_lease(store_t *s, int64_t seq, int64_t until);
/* One more attempt, and its outcome: delivered; a retry at next_at with the error; or a
 * dead letter keeping the error. Each clears the lease. 0, or -1 (logged). */
int store_outbox_done(store_t *s, int64_t seq);
int store_outbox_retry(store_t *s, int64_t seq, int64_t next_at, const char *error);
int store_outbox_dead(store_t *s, int64_t seq, const char *error);
/* Void every lease (no transfer of an earlier process is still in flight). */
int store_outbox_void_leases(store_t *s);
/* Earliest time a pending row is due (lease expiries counted), INT64_MAX when none. */
int store_outbox_next_due(store_t *s, int64_t *out);
/* Pending rows (queued, not yet delivered nor dead). */
int store_outbox_backlog(store_t *s, int64_t *out);
/* Pending rows of channels not among known[0..nknown) become dead letters ("unknown
 * channel NAME"), in one transaction; *buried says how many. 0, or -1 (logged). */
int store_outbox_bury_unknown(store_t *s, const char *const *known, int nknown, int *buried);

/* A dead letter as `hearth dead-letters` lists it; strings live during the callback. */
typedef struct {
  const char *id, *channel, *last_error, *body;
  int attempts;
} dead_letter_t;

/* Put dead letter `id` (NULL: every one) back in the queue with attempts reset; it is due
 * at once on the clock of the daemon that tried it. Returns how many, or -1 (logged). */
int store_dead_requeue(store_t *s, const char *id);
/* Hand each() the latest `limit` dead letters, newest first; each() returns 0 to go on,
 * -1 to stop. Returns how many were handed over, or -1 (logged). */
int store_dead_letters(store_t *s, int limit, int (*each)(void *ud, const dead_letter_t *dl), void *ud);

/* SQLite's data_version of this connection: it changes when another connection (hearth
 * import, hearth dead-letters) commits. 0, or -1 (logged). */
int store_data_version(store_t *s, int64_t *out);

#endif
