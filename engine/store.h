/* store: the SQLite database, and the only file that speaks SQL. Owns the connection, the
 * versioned schema and its migrations (applied on open; a database from a newer hearth is
 * refused), and every query, each behind a typed function with named rows: engine state
 * (members, tags, ledger, dedupe marks, timers, actions, failures, cron state, funnel
 * counters), the reports' reads, the outbox's delivery, and the exports' pages. WAL
 * mode with synchronous=FULL, so a committed batch survives a crash or power loss, or
 * with the log synced behind the writer (store_sync_behind: the import, the daemon). Every
 * failed step is logged with its query here and reported to the caller as -1. Knows
 * nothing about Lua or events. */
#ifndef HEARTH_STORE_H
#define HEARTH_STORE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_SCHEMA_VERSION 15

/* One generation of dedupe marks as the store last read it (see "dedupe marks" in
 * store.c): its number, when it was opened, and an upper bound of its marks' times. */
typedef struct {
  int64_t gen, opened_at, last_at;
} store_seen_gen_t;

/* A session of store_sync_behind numbers its commits in the low STORE_SYNC_COMMIT_BITS of
 * the marks it writes (2^40: decades at thousands of commits a second), the session in
 * the bits above (at most STORE_SYNC_SESSIONS of them). */
#define STORE_SYNC_COMMIT_BITS 40
#define STORE_SYNC_SESSIONS ((int64_t)1 << 22)

typedef struct store {
  sqlite3 *db;
  char *path;
  int in_tx;
  int64_t changes_at_begin;   /* sqlite3_total_changes64 when the transaction began */
  sqlite3_stmt **cached;  /* prepared queries by slot (see query_t in store.c) */
  int ncached;
  store_seen_gen_t *seen_gens; /* the generations, oldest first, read once per transaction */
  int nseen_gens, seen_cap;
  int seen_loaded;             /* seen_gens is this transaction's (cleared by begin, rollback) */
  int next_due_known;          /* this transaction's earliest timer is known (see
                                  store_timer_next; cleared by begin, rollbacks, deletes) */
  int next_due_exists;         /* there is one, due at next_due */
  int64_t next_due;
  struct checkpointer *checkpointer; /* copies the WAL into the file (NULL: SQLite's autocheckpoint) */
  struct wal_sync *wal_sync;  /* syncs the WAL behind the writer (NULL: each commit syncs it) */
  uint64_t commits;           /* commits that wrote the log since store_sync_behind */
  int max_unsynced;           /* how many of them may wait for their sync at once */
  int64_t sync_base;          /* this session's number << STORE_SYNC_COMMIT_BITS: rows it makes pending are
                                 marked sync_base + their commit (outbox.made_pending) */
  int tx_made_pending;        /* the transaction (or statement) in hand made a row pending */
  uint64_t pending_upto;      /* the last commit that made a row pending */
  int outbox_held;            /* store_outbox_due held some back (store_outbox_take_held) */
  char sync_err[320];         /* why the WAL could not be synced ("" when it could) */
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

const char *store_errmsg(store_t *s);
/* The database file ("<memory>" for an in-memory copy). */
const char *store_path(store_t *s);

int store_begin(store_t *s);
int store_commit(store_t *s);
/* From now on a commit returns once its transaction is written, and the log is synced on
 * a thread while the next transaction runs. A commit that writes first waits until at
 * most max_unsynced - 1 commits before it are not yet on disk (1: the one before it is),
 * so a power loss costs at most the last max_unsynced commits (a crash of the process,
 * nothing). Statements outside a transaction that write (delivery's outcomes) are commits
 * too. What was committed is acknowledged only once durable: the import's summary after
 * store_sync, the daemon's 202 after store_durable; and store_outbox_due hands out only
 * rows of commits on disk. 0, or -1 with a message in err (the commits then stay synced
 * each by itself). */
int store_sync_behind(store_t *s, int max_unsynced, char *err, size_t errlen);
/* Every commit durable: 0, or -1 (logged; store_errmsg says why). */
int store_sync(store_t *s);
/* The number of the last commit since store_sync_behind (0 before, or without it). */
uint64_t store_last_commit(store_t *s);
/* Without waiting: 1 when commit n is durable (always, without store_sync_behind), 0 when
 * not yet, -1 when the log could not be synced (store_errmsg says why). */
int store_durable(store_t *s, uint64_t n);
/* store_outbox_due held back rows of a commit whose sync had not ended, since the last
 * call: 1 (and forgotten), else 0. Whoever is told of the sync then looks again. */
int store_outbox_take_held(store_t *s);
/* Call fn(ud) from the sync thread after each sync (see wal_sync_on_synced); NULL stops. */
void store_on_synced(store_t *s, void (*fn)(void *ud), void *ud);
void store_rollback(store_t *s);

int64_t store_meta_get(store_t *s, const char *key, int64_t dflt);
int store_meta_set(store_t *s, const char *key, int64_t value);

/* ==== engine state: members, tags, ledger, dedupe, timers, actions, failures, cron, funnel ==== */

/* Savepoints around one handler call (inside the open transaction). 0 ok, -1 (logged). */
int store_savepoint(store_t *s);
int store_release(store_t *s);
/* Undo everything since the savepoint and release it. */
int store_rollback_to(store_t *s);

#define STORE_NO_TIME INT64_MIN

/* A member's row. The JSON parts are texts (NULL reads as "{}"). */
typedef struct {
  const char *id;
  int64_t created_at, joined_at, last_active_at; /* STORE_NO_TIME when unset */
  int64_t orders, points, ledger_n;
  double spend;
  char *attrs, *tags, *gens, *sends; /* malloc'd by store_member_get; read-only in store_member_put */
  int64_t rid; /* her row's integer key: set by store_member_get and store_member_put */
} member_row_t;

/* Read member `id`: 1 found (texts malloc'd into row), 0 absent, -1 error. */
int store_member_get(store_t *s, const char *id, member_row_t *row);
/* Insert or replace the member's row; sets row->rid. */
int store_member_put(store_t *s, member_row_t *row);
/* Write back a member whose row was read or written (row->rid, every field but id and
 * created_at): 1 written, 0 when her row is not there any more (the caller inserts it
 * with store_member_put), -1 error. */
int store_member_update(store_t *s, const member_row_t *row);
/* 1 when the member has a row, 0 when not, -1 error. */
int store_member_exists(store_t *s, const char *id);
/* The tag index behind tag sweeps. */
int store_tag_add(store_t *s, const char *member, const char *tag);
int store_tag_del(store_t *s, const char *member, const char *tag);

/* Up to `limit` member ids after `after` in id order (all members, or those with `tag`
 * when tag is not NULL), malloc'd into *ids. Returns the count, -1 on error. */
int store_member_ids(store_t *s, const char *tag, const char *after, int limit, char ***ids);

typedef struct {
  const char *member;
  int64_t n, time, delta, balance;
  const char *reason, *campaign, *cause;
  const char *type;   /* NULL (a grant or spend) or expire, redeem, refund */
  const char *lots;   /* JSON [[lot n, points], ...] the entry took from, or NULL */
} ledger_row_t;
int store_ledger_add(store_t *s, const ledger_row_t *row);

/* Mark event id seen at `now`. A mark older than `expired_before` is renewed as new;
 * INT64_MIN: the window is forever. Marks are kept in generations, each opened when the
 * current one is older than the window (see "dedupe marks" in store.c). Returns 1 when
 * the id is new (now marked), 0 when seen inside the window, -1 error. */
int store_seen_mark(store_t *s, const char *id, int64_t now, int64_t expired_before);

typedef struct {
  const char *id, *member, *campaign, *step, *kind, *status, *channel;
  int64_t time;
  const char *body;       /* the action as JSON */
  int deliverable;        /* 1: queued for its channel */
  int keyed;              /* 1: the id comes from a key the script gave (it may recur) */
} action_row_t;
/* The status of member's action `id` into status (at most n bytes): 1 found, 0 absent,
 * -1 error. */
int store_action_status(store_t *s, const char *member, const char *id, char *status, size_t n);
/* STORE_EXISTS when an action with that id is in the outbox already (nothing written). */
#define STORE_EXISTS (-2)
int store_action_add(store_t *s, const action_row_t *row);
/* Claim the id of a keyed change (points, tag) no channel delivers: 1 claimed now, 0
 * claimed before (the same key again), -1 error. */
int store_action_key_claim(store_t *s, const char *id);
/* Judge an existing action again (a deferred action coming due): new status, time, body. */
int store_action_rejudge(store_t *s, const action_row_t *row);

typedef struct {
  int64_t due, id, gen;   /* gen: the member's generation for `type` when set, or -1 */
  char *member, *type, *data, *campaign; /* data: JSON text or NULL */
  int64_t depth;          /* events before it, each caused at once by the one before */
  char *chain;            /* the last of them, "campaign:type > ...", or NULL */
} timer_row_t;
int store_timer_add(store_t *s, const timer_row_t *row);
/* Up to max timers due at or before upto, in (due, id) order, malloc'd into *rows (free
 * with store_timer_rows_free). Returns the count, -1 on error. */
int store_timers_due(store_t *s, int64_t upto, int max, timer_row_t **rows);
void store_timer_rows_free(timer_row_t *rows, int n);
/* Delete the timers up to (due, id) in that order whose id is at most max_id. */
int store_timers_delete_upto(store_t *s, int64_t due, int64_t id, int64_t max_id);
/* Due time of the earliest timer into *due: 1 found, 0 none, -1 error. */
int store_timer_next(store_t *s, int64_t *due);

typedef struct {
  int64_t at;
  const char *member, *event, *campaign, *error; /* event: JSON text */
} failure_row_t;
int store_failure_add(store_t *s, const failure_row_t *row);

/* The last slot cron entry `key` ran for: 1 found, 0 never ran, -1 error. */
int store_cron_last(store_t *s, const char *key, int64_t *slot);
int store_cron_set(store_t *s, const char *key, int64_t slot);

/* Funnel counters kept by scripts (hearth.count). */
int store_funnel_add(store_t *s, const char *campaign, const char *step, const char *variant,
                     const char *metric, int64_t n);
/* ==== reports: one member, the funnel, stats and metrics (read side) ==== */

/* Reads for reports: `hearth member` and GET /v1/members/{id}, the funnel summary, the
 * totals of `hearth stats`, the database gauges of /metrics, `hearth test`'s counters,
 * and `hearth backup`. Each returns -1 on a database error, already logged with the
 * query and SQLite's message; never a default that looks like data. Rows handed to a
 * callback are valid only during that call (copy what must outlive it). */

/* One member's row as `hearth member` shows it. */
typedef struct {
  int64_t created_at, joined_at, last_active_at; /* joined, last active: STORE_NO_TIME if unset */
  int64_t orders, points;
  double spend;
  const char *attrs, *tags; /* JSON objects as stored (attributes; tag -> true); may be NULL */
} member_view_t;

/* One points grant or spend. campaign and cause may be NULL. */
typedef struct {
  int64_t time, delta, balance;
  const char *reason, *campaign, *cause;
  const char *type, *lots; /* may be NULL (see ledger_row_t) */
} ledger_entry_t;

/* One action of a member: its JSON body, its status (queued, skipped, ...) and its delivery
 * state (pending, delivered, dead; NULL when no channel delivers it). */
typedef struct {
  const char *body, *status, *delivery;
} action_view_t;

/* One event whose handler failed: when, the event as JSON, the campaign (may be NULL) and
 * the error with its traceback. */
typedef struct {
  int64_t at;
  const char *event, *campaign, *error;
} failure_view_t;

/* Actions of one campaign and step (step "" when none) with one status and kind. */
typedef struct {
  const char *campaign, *step, *status, *kind;
  int64_t n;
} outbox_count_t;

/* One counter scripts keep with hearth.count (step and variant "" when none). */
typedef struct {
  const char *campaign, *step, *variant, *metric;
  int64_t n;
} funnel_row_t;

/* Which funnel counters to sum: metric is required; a NULL campaign, step or variant is
 * summed over. */
typedef struct {
  const char *metric, *campaign, *step, *variant;
} funnel_key_t;

/* The totals `hearth stats` prints. */
typedef struct {
  int64_t members, events_remembered, failed_events, timers_pending;
  int64_t actions, pending_delivery, delivered, dead_letters;
} store_totals_t;

/* The database gauges of /metrics. */
typedef struct {
  int64_t timers_pending, dead_letters, database_bytes;
} store_gauges_t;

/* Member id: calls each once with its row and returns 1; 0 when there is no such member. */
int store_member_view(store_t *s, const char *id, void (*each)(void *ud, const member_view_t *m), void *ud);
/* The latest `limit` entries of each kind for one member, newest first (limit < 0: all).
 * Each returns how many rows it handed to each. */
int store_member_ledger(store_t *s, const char *member, int limit,
                        void (*each)(void *ud, const ledger_entry_t *e), void *ud);
int store_member_actions(store_t *s, const char *member, int limit,
                         void (*each)(void *ud, const action_view_t *a), void *ud);
int store_member_failures(store_t *s, const char *member, int limit,
                          void (*each)(void *ud, const failure_view_t *f), void *ud);
/* The error of the oldest failed event, malloc'd into *error: 1, or 0 (and NULL) when
 * no event failed. */
int store_first_failure(store_t *s, char **error);

/* Actions counted by campaign, step, status and kind, in that order; how many rows. */
int store_outbox_counts(store_t *s, void (*each)(void *ud, const outbox_count_t *c), void *ud);
/* Every funnel counter ordered by campaign, step, variant and metric; how many rows. */
int store_funnel_rows(store_t *s, void (*each)(void *ud, const funnel_row_t *r), void *ud);
/* The sum of the funnel counters that match k into *n (0 when none match): 0. */
int store_funnel_total(store_t *s, const funnel_key_t *k, int64_t *n);

/* All totals, read in one statement (one snapshot): 0. */
int store_totals(store_t *s, store_totals_t *t);
/* The gauges, read in one statement: 0. */
int store_gauges(store_t *s, store_gauges_t *g);

/* Copy the database to path (which must not exist) with SQLite's online backup: a
 * consistent snapshot even while another connection writes. The number of pages copied,
 * or -1 with a message in err and nothing left at path. */
int store_backup(store_t *s, const char *path, char *err, size_t errlen);

/* ==== outbox delivery: due rows, leases, retries, dead letters, requeue ==== */

/* A queued action due for delivery; the strings live only during the callback. */
typedef struct {
  int64_t seq;
  const char *id, *body;
  int attempts;          /* tries made so far */
} outbox_row_t;

/* Hand each() every pending row of `channel` due at `now` (next_at reached, no live
 * lease, and with store_sync_behind made pending by a commit on disk: the others are
 * held back, see store_outbox_take_held), oldest due first, at most cap; each() returns 0
 * to go on, -1 to stop. Returns the number of rows handed over, or -1 (a failed read is
 * logged). */
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

/* ==== points lots, expiry and redemptions ==== */

/* Expiry of a lot that never expires (sorts after every real time). */
#define STORE_NEVER INT64_MAX
/* The lot number that names the points that never expire. They have no row: they are
 * the balance less what her lots hold (a grant without expiry writes no lot). */
#define NEVER_LOT 0

/* One lot: what is left of the grant with ledger entry n. */
typedef struct {
  const char *member;
  int64_t n, granted, expires;   /* expires: STORE_NEVER when it never does */
  int64_t notice_at;             /* STORE_NO_TIME: no notice (or sent) */
  char *notice;                  /* the notice's template, or NULL */
  int64_t amount, remaining;
  char *campaign;
} lot_row_t;
/* Add a lot (notice and campaign are only read). */
int store_lot_add(store_t *s, const lot_row_t *r);
/* The member's lots with points left, soonest expiry first (ties: oldest grant first),
 * malloc'd into *out (free with store_lots_free). Returns the count, -1 (logged). */
int store_lots_live(store_t *s, const char *member, lot_row_t **out);
void store_lots_free(lot_row_t *rows, int n);
/* The earliest expiry or pending notice among her lots with points left (STORE_NEVER:
 * none). 0, -1 (logged). */
int store_lots_next_due(store_t *s, const char *member, int64_t *due);
int store_lot_update(store_t *s, const char *member, int64_t n, int64_t remaining, int64_t notice_at);

/* Units of `item` redeemed, net of refunds (0 when none). 0, -1 (logged). */
int store_item_used(store_t *s, const char *item, int64_t *used);
int store_item_add_used(store_t *s, const char *item, int64_t delta);
/* Units of `item` the member holds: queued redemptions not refunded. */
int store_redeemed_qty(store_t *s, const char *member, const char *item, int64_t *qty);

/* One m:redeem, by its action id. */
typedef struct {
  char *id, *member, *item, *campaign, *status;
  char *reason;        /* JSON, or NULL when queued */
  int64_t time, qty, cost;
  int64_t expires;     /* the expiry the refund lot gets (STORE_NEVER: none) */
  int64_t refunded;    /* when it was refunded, STORE_NO_TIME if not */
} redemption_row_t;
int store_redemption_add(store_t *s, const redemption_row_t *r);
/* 1 found (strings malloc'd: store_redemption_free), 0 absent, -1 (logged). */
int store_redemption_get(store_t *s, const char *id, redemption_row_t *r);
void store_redemption_free(redemption_row_t *r);
/* Mark it refunded at `at`: 1 now, 0 refunded before, -1 (logged). */
int store_redemption_refund(store_t *s, const char *id, int64_t at);
/* ==== broadcasts: dated one-off audience sends (hearth.broadcast) ==== */

/* One broadcast's progress. state: "scheduled" (started from the CLI, not yet run),
 * "running" (cursor: the last member id whose chunk committed), "done". The row is
 * written in the same transaction as each chunk's actions. */
typedef struct {
  char *name;
  int64_t at;                   /* when it runs (or ran) */
  char *state;
  char *cursor;                 /* "" before the first chunk */
  int64_t seen, matched;        /* members looked at, members in the audience */
  int64_t started_at, finished_at; /* STORE_NO_TIME until then */
} broadcast_row_t;

/* 1 found (row filled, free it), 0 none, -1 error (logged). */
int store_broadcast_get(store_t *s, const char *name, broadcast_row_t *row);
/* Insert or replace the row. 0, or -1 (logged). */
int store_broadcast_put(store_t *s, const broadcast_row_t *row);
/* Hand each() every row, by time then name (strings live during the call); each()
 * returns 0 to go on, -1 to stop. Returns how many, or -1. */
int store_broadcast_list(store_t *s, int (*each)(void *ud, const broadcast_row_t *row), void *ud);
void store_broadcast_row_free(broadcast_row_t *row);
/* ==== data in and out: export pages (hearth export) ==== */

/* Pages of a table in key order, for exports over millions of rows in constant memory:
 * each call is one statement (its own read snapshot, so a long export never holds the
 * WAL) returning at most `limit` rows after the cursor, handed to each() and valid only
 * during that call. since: only rows changed at or after it (INT64_MIN: every row).
 * Each returns how many rows it handed over (fewer than limit: the table is done), or -1
 * (logged). */

/* A member row as exported: her id and the fields `hearth member` shows. She counts as
 * changed at or after `since` when she was created, joined or last active then, or has a
 * ledger entry dated then. */
typedef struct {
  const char *id;
  member_view_t view;
} member_export_t;
/* Members with an id after `after` ("" to start), in id order. */
int store_export_members(store_t *s, const char *after, int64_t since, int limit,
                         void (*each)(void *ud, const member_export_t *m), void *ud);

/* Ledger entries after (after_member, after_n) in (member, n) order ("" and 0 to start). */
int store_export_ledger(store_t *s, const char *after_member, int64_t after_n, int64_t since, int limit,
                        void (*each)(void *ud, const ledger_row_t *r), void *ud);

/* An action as exported: its outbox sequence number (the cursor), time, JSON body, status
 * and delivery state (NULL when no channel delivers it). */
typedef struct {
  int64_t seq, time;
  const char *body, *status, *delivery;
} action_export_t;
/* Actions with a sequence number after after_seq (0 to start), oldest first. */
int store_export_actions(store_t *s, int64_t after_seq, int64_t since, int limit,
                         void (*each)(void *ud, const action_export_t *a), void *ud);
/* ==== console reads ==== */

/* Sends (kind "send") counted by quarter hour (start, a multiple of 900 s), channel, status
 * and delivery state ("" when no channel delivers it); strings live during the callback. */
typedef struct {
  int64_t start, n;
  const char *channel, *status, *delivery;
} send_bucket_t;
/* The sends with from <= time < to, by bucket. 0, or -1 (logged). */
int store_send_buckets(store_t *s, int64_t from, int64_t to, void (*each)(void *ud, const send_bucket_t *b),
                       void *ud);
/* The times of the first and last send (-1 and -1 when there is none). 0, or -1 (logged). */
int store_send_span(store_t *s, int64_t *first, int64_t *last);
/* Failed events counted by campaign ("" when none is known), most first. 0, or -1 (logged). */
int store_failures_by_campaign(store_t *s, void (*each)(void *ud, const char *campaign, int64_t n), void *ud);
/* A member's pending timer, as the console shows it. */
typedef struct {
  int64_t due;
  const char *type, *campaign;
} member_timer_t;
/* The member's first `limit` pending timers, earliest first (a scan of the timers table).
 * Returns how many, or -1 (logged). */
int store_member_timers(store_t *s, const char *member, int limit,
                        void (*each)(void *ud, const member_timer_t *t), void *ud);
/* ==== staff: members per staff member, round-robin cursors, owner log, tasks ==== */

/* The number of members each staff member owns (her `staff` attribute), moved by delta
 * (never below zero), and read (0 for a name never seen). */
int store_staff_load_add(store_t *s, const char *staff, int64_t delta);
int store_staff_load(store_t *s, const char *staff, int64_t *members);
/* The round-robin cursor of `pool`: *taken = its value (0 the first time), then +1. */
int store_staff_cursor_take(store_t *s, const char *pool, int64_t *taken);

/* One change of a member's owner. from NULL: she had none; cause: the event or timer. */
typedef struct {
  const char *member;
  int64_t time;
  const char *from, *to, *rule, *cause;
} staff_log_row_t;
int store_staff_log_add(store_t *s, const staff_log_row_t *r);

/* The next `limit` members after `after` in id order with their `staff` attribute (NULL
 * when she has none or it is not a string): a hand-off's bounded window. */
typedef struct {
  char **ids, **staff;
  int n;
} staff_window_t;
int store_staff_window(store_t *s, const char *after, int limit, staff_window_t *w);
void store_staff_window_free(staff_window_t *w);

/* An open task (action id) of member for staff, due at `due` (recorded once). */
int store_task_add(store_t *s, const char *id, const char *member, const char *staff, int64_t due);
/* Close task id of member at now: TASK_CLOSED, TASK_WAS_DONE, TASK_UNKNOWN (no such task
 * of that member), -1 error. */
enum { TASK_UNKNOWN, TASK_CLOSED, TASK_WAS_DONE };
int store_task_done(store_t *s, const char *id, const char *member, int64_t now);
/* The member's open tasks for `from` go to `to` (her owner changed). */
int store_tasks_move(store_t *s, const char *member, const char *from, const char *to);

/* Per staff member (every name that owns members or has tasks), ordered by name: members
 * owned, open tasks, open ones due at or before now (overdue), done, done after due. */
typedef struct {
  const char *staff;
  int64_t members, open, overdue, done, done_late;
} staff_report_t;
int store_staff_report(store_t *s, int64_t now, void (*each)(void *ud, const staff_report_t *r), void *ud);

/* One member's owner changes and tasks, newest first, for `hearth member`. */
typedef struct {
  int64_t time;
  const char *from, *to, *rule, *cause; /* from, cause may be NULL */
} staff_log_view_t;
int store_member_staff_log(store_t *s, const char *member, int limit,
                           void (*each)(void *ud, const staff_log_view_t *v), void *ud);
typedef struct {
  const char *id, *staff;
  int64_t due, done_at; /* done_at STORE_NO_TIME while open */
} task_view_t;
int store_member_tasks(store_t *s, const char *member, int limit,
                       void (*each)(void *ud, const task_view_t *v), void *ud);

/* ---- retention: purging final actions and old dedupe marks, shrinking the file ----
 * hearth purge and the daemon's hourly retention (retention.c) go through these. */

/* A span of the outbox a purge looks at: seq in (after_seq, upto_seq]; final rows older
 * than `before`, dead letters older than `dead_before` (INT64_MIN: none). */
typedef struct {
  int64_t after_seq, upto_seq, before, dead_before;
} purge_range_t;
/* An outbox row about to be purged; strings live during the callback. */
typedef struct {
  int64_t seq;
  const char *id, *status, *delivery, *last_error, *body;
  int attempts;
} purge_row_t;
/* The largest seq in the outbox (0 when empty): 0, or -1 (logged). */
int store_outbox_max_seq(store_t *s, int64_t *out);
/* Hand each() the rows of the span a purge removes, in seq order; each() returns 0, or
 * -1 to stop. Returns how many were handed over, or -1 (logged, or each() failed). */
int store_purge_rows(store_t *s, const purge_range_t *r, int (*each)(void *ud, const purge_row_t *row),
                     void *ud);
/* In the open transaction: remove those rows, keeping the ids of keyed ones in
 * purged_keys and their counts in purged_counts. Returns how many, or -1 (logged). */
int store_purge_delete(store_t *s, const purge_range_t *r);
/* Count the rows of the span a purge removes by status and delivery ("" for none). */
int store_purge_count(store_t *s, const purge_range_t *r, void (*each)(void *ud, const char *status,
                      const char *delivery, int64_t n), void *ud);
/* 1 when `id` is the id of a keyed action a purge removed, 0 when not, -1 error. */
int store_purged_key_known(store_t *s, const char *id);
/* Forget up to `limit` event ids of the generations whose every mark is older than
 * `before`, oldest generation first (its own statement, or part of the open transaction);
 * a generation emptied is dropped. Marks older than `before` in a generation that also
 * holds newer ones stay until the whole generation is older (they no longer count for
 * dedupe: store_seen_mark compares each mark's own time). Returns how many, or -1. */
int store_seen_purge(store_t *s, int64_t before, int limit);
/* How many event ids store_seen_purge(s, before, ...) would forget in all, into *n: 0,
 * or -1 (logged). */
int store_seen_count_before(store_t *s, int64_t before, int64_t *n);

/* The file's pages: size, count, free; whether freed pages can be given back a chunk at
 * a time (auto_vacuum = INCREMENTAL, the mode of databases created since schema 5). */
typedef struct {
  int64_t page_size, pages, free_pages;
  int incremental;
} store_space_t;
int store_space(store_t *s, store_space_t *sp);
/* Give up to `pages` free pages back to the file system (incremental mode): 0, or -1. */
int store_vacuum_some(store_t *s, int pages);
/* Rebuild the whole file (VACUUM; holds the write lock throughout, and needs as much
 * free disk as the database), switching it to incremental mode: 0, or -1 (logged). */
int store_vacuum_full(store_t *s);
/* Move the WAL into the database and truncate it: 0, or -1 (logged). */
int store_checkpoint(store_t *s);
/* ---- script versions ----
 * Each load of a script set is noted under its hash (first and last load, its files), and
 * each definition it declared (kind "journey") under its own hash with its body (the
 * definition as text), so that runs pinned to it can finish after a reload. */
typedef struct {
  char hash[72];
  int64_t loaded_at, last_loaded_at; /* first and latest load of that set */
  int64_t versions;                  /* distinct sets ever loaded */
} script_version_t;
/* Note a load of set `hash` (files: JSON) at now: 0, or -1 (logged). */
int store_script_version_note(store_t *s, const char *hash, int64_t now, const char *files);
/* The set loaded last: 1, 0 when none was ever noted, -1 (logged). */
int store_script_version_latest(store_t *s, script_version_t *out);
/* Keep a definition's body under (kind, name, hash) unless it is kept already. 0 / -1. */
int store_definition_note(store_t *s, const char *kind, const char *name, const char *hash,
                          const char *label, const char *body, const char *set_hash, int64_t now);
/* A kept definition: 1 with malloc'd *body (and *label, NULL when none), 0 when unknown, -1. */
int store_definition_get(store_t *s, const char *kind, const char *name, const char *hash,
                         char **body, char **label);
/* Hand each() the name of every definition of `kind` ever kept, in name order (after the
 * read, so each() may query); each() returns -1 to stop. The count or -1 (logged). */
int store_definition_names(store_t *s, const char *kind,
                           int (*each)(void *ud, const char *kind, const char *name), void *ud);
/* Hand each() every member whose attribute `attr` is a table with active = true, in id
 * order, with that attribute as JSON text; each() returns -1 to stop. The count or -1. */
int store_runs_in_flight(store_t *s, const char *attr,
                         int (*each)(void *ud, const char *member, const char *state), void *ud);
/* ==== invariants: the tallies their rules keep (invariants.c) ==== */

/* Add n to the tally of (rule, key, window starting at since) and read the new sum into
 * *total, inside the open transaction (a handler rolled back takes its additions with
 * it). 0, or -1 (logged). */
int store_invariant_add(store_t *s, const char *rule, const char *key, int64_t since, int64_t n, int64_t *total);
/* Forget the tallies of windows that started before `before`. 0, or -1 (logged). */
int store_invariant_prune(store_t *s, int64_t before);

/* ==== scale-out: forwards to other partitions (cluster_node.c) ==== */

typedef struct {
  int64_t seq;
  int partition;
  const char *id, *body;    /* valid during the callback */
} forward_row_t;
/* Keep a forward (in the open transaction, with the batch that caused it): 0, -1 (logged). */
int store_forward_add(store_t *s, int partition, const char *id, const char *body);
/* Hand each() up to limit forwards in the order they were kept (each() returns -1 to
 * stop; it must not query). The count or -1 (logged). */
int store_forwards(store_t *s, int limit, int (*each)(void *ud, const forward_row_t *row), void *ud);
/* Forget the forwards up to seq, once published: 0, -1 (logged). */
int store_forwards_done(store_t *s, int64_t upto);
/* Hold an emit forwarded to this partition (a repeat of an id held is dropped): 0, -1. */
int store_inbox_add(store_t *s, const char *id, int64_t after, int64_t at, const char *body);
/* Up to limit held emits whose `after` is before `before`, in (at, id) order: ids and
 * bodies malloc'd (each malloc'd); the count or -1 (logged). */
int store_inbox_due(store_t *s, int64_t before, int limit, char ***ids, char ***bodies);
/* Forget a held emit once applied (in the batch that applied it): 0, -1. */
int store_inbox_delete(store_t *s, const char *id);
/* How many are held: 0, -1. */
int store_inbox_count(store_t *s, int64_t *n);

#endif
