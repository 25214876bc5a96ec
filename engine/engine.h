/* engine: turns events into state changes and actions. Owns the store, the loaded script
 * set, the time zone, the per-batch member cache and the counters. A batch is one SQLite
 * transaction: the dedupe marks, the member state, the points ledger, the actions and the
 * timers of every event in it commit together or not at all. Each handler call runs under
 * its own savepoint and member undo, so a failing handler is rolled back alone, recorded
 * with its traceback, and the rest of the batch goes on. The clock is the caller's: it
 * sets `now` (real time for import and the daemon, virtual time for dry-run). */
#ifndef HEARTH_ENGINE_H
#define HEARTH_ENGINE_H

#include <jansson.h>
#include <stdint.h>

#include "clock.h"
#include "event.h"
#include "lua_host.h"
#include "member.h"
#include "store.h"
#include "timeutil.h"

/* Generation stored with rows from hearth.emit: m:cancel never applies to them. */
#define TIMER_NOT_CANCELLABLE (-1)

/* Action statuses, in the order counters are kept. */
enum { AS_QUEUED, AS_CAPPED, AS_SUPPRESSED, AS_DEFERRED, AS_SKIPPED, AS_LIMITED, AS_COUNT };
extern const char *const action_status_names[AS_COUNT];
int action_status_parse(const char *s);

typedef struct scripts scripts_t;

typedef struct {
  const char *db_path;
  const char *scripts_dir;
  const char *stdlib_dir;
  const char *tz_name;
  int64_t dedupe_window;  /* seconds; 0 = forever */
  lua_limits_t limits;
  int memory_db;          /* dry-run: work on an in-memory copy of db_path (if it exists) */
  int no_scripts;         /* open the store only (member, stats) */
  int readonly;           /* open the store read-only */
  const char *const *script_files; /* load exactly these (NULL-terminated) instead of
                                      every script in scripts_dir (hearth test) */
} engine_opts_t;

/* Upper bounds (seconds) of the handler time histogram buckets; the last is +Inf. */
#define HANDLER_BUCKETS 12
extern const double handler_bucket_bounds[HANDLER_BUCKETS - 1];

typedef struct {
  char *channel;
  unsigned long by_status[AS_COUNT];
} channel_actions_t;

typedef struct {
  unsigned long accepted, duplicates, rejected, failed, timers_fired, timers_cancelled;
  unsigned long actions[AS_COUNT];
  unsigned long handler_errors;
  unsigned long handler_hist[HANDLER_BUCKETS]; /* cumulative counts are built when exported */
  unsigned long handler_calls;
  double handler_seconds;
  channel_actions_t *by_channel;
  int nchannels;
} engine_stats_t;

/* Count one handler call of `seconds`. */
void engine_stats_handler(engine_stats_t *s, double seconds);

/* What happened to one event. */
enum { EV_APPLIED, EV_DUPLICATE, EV_FAILED, EV_ERROR };

/* An action recorded in the open batch, reported (on_action, counters) at commit. */
typedef struct {
  json_t *body;
  int status;
  char *channel;
} pending_action_t;

typedef struct engine {
  store_t *store;
  scripts_t *scripts;
  tz_t *tz;
  char *scripts_dir, *stdlib_dir;
  char **script_files;         /* NULL: every script in scripts_dir */
  lua_limits_t limits;
  int64_t dedupe_window;
  hclock_t clock;              /* what time it is: real, or virtual (dry-run, tests) */
  int64_t now;                 /* the time the work in hand is judged at */
  int virtual_clock;           /* dry-run: firing a timer moves now to its due time */
  int64_t event_seq, timer_seq;
  member_cache_t members;
  engine_stats_t stats;
  int64_t earliest_timer;      /* earliest due time set in this batch, or INT64_MAX */
  pending_action_t *pending;   /* this batch's actions, reported at commit */
  int npending, cappending;
  /* Called at commit for every action recorded or re-judged (dry-run prints them). */
  void (*on_action)(void *ud, json_t *action);
  void *on_action_ud;
  char errbuf[512];
} engine_t;

/* Open the store, load the zone and the scripts. NULL with a message (every script error
 * as file:line: message, one per line) in *err (malloc'd) on failure. */
engine_t *engine_open(const engine_opts_t *opts, char **err);
void engine_close(engine_t *e);

/* Load the scripts again; on failure keep the old ones and return -1 with *err. */
int engine_reload(engine_t *e, char **err);

/* Batches. begin/commit/rollback wrap one transaction. */
int engine_begin(engine_t *e);
int engine_commit(engine_t *e);
void engine_rollback(engine_t *e);

/* Apply one validated event inside the open batch. Returns EV_*; EV_ERROR means the
 * database failed and the batch must be rolled back. */
int engine_apply(engine_t *e, event_t *ev);

/* Fire up to max timers due at or before `upto` in one batch of their own (the caller
 * need not begin one). Sets e->now to each timer's due time. Returns the number fired,
 * -1 on a database error. */
int engine_fire_timers(engine_t *e, int64_t upto, int max);
/* The same inside a transaction the caller holds open (dry-run keeps one batch open
 * across events and the timers between them). */
int engine_fire_timers_open(engine_t *e, int64_t upto, int max);
/* Due time of the earliest pending timer, or INT64_MAX. */
int64_t engine_next_timer(engine_t *e);
/* The earliest cron slot not yet run, or INT64_MAX. */
int64_t engine_next_cron(engine_t *e);

/* Compute each cron entry's next slot as of `now` (missed slots: see lua_cron.c). Call
 * once the clock is known, and after a reload. */
void engine_schedule_cron(engine_t *e, int64_t now);
/* Run what is due at or before `upto`, in time order: timers (in batches of 1000,
 * earliest first, ties in the order they were set) and cron slots (timers first on a
 * tie). sync: cron runs go to completion (dry-run); otherwise a run suspended in a sweep
 * is left for engine_step_cron. At most max_batches timer batches (0 = no limit).
 * Returns 1 when more is due, 0 when done, -1 on a database error. */
int engine_advance(engine_t *e, int64_t upto, int sync, int max_batches);
/* Earliest time anything is due (timer or cron slot), INT64_MAX if nothing. */
int64_t engine_next_due(engine_t *e);
/* Resume one suspended cron run by one sweep chunk; returns 1 if runs remain pending. */
int engine_step_cron(engine_t *e);
/* 1 when a cron run is suspended between sweep chunks. */
int engine_cron_pending(engine_t *e);

/* Record an action (used by the Lua API) inside the open batch. kind: send, task, tag,
 * untag, points, webhook. fields: kind-specific members of the action JSON (stolen).
 * An id seen before is not recorded again: its status is returned, except that a
 * `deferred` action takes the new status (it is being judged again). Returns the status
 * that holds after the call, or -1 on a database error. */
typedef struct {
  member_t *m;
  const char *id, *kind, *campaign, *step, *channel;
  int status;
  json_t *fields;
  int recorded;   /* out: 1 when recorded (or re-judged) now, 0 when the id existed */
} action_req_t;
int engine_action(engine_t *e, action_req_t *req);

/* Actions recorded so far in the batch; a failed handler drops what came after its mark. */
int engine_pending_mark(engine_t *e);
void engine_pending_truncate(engine_t *e, int mark);

/* Format t in the engine's zone as RFC 3339. */
char *engine_fmt_time(engine_t *e, int64_t t, char buf[32]);

#endif
