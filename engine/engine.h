/* engine: turns events into state changes and actions, and owns every one of them. Owns
 * the store, the loaded script set (through scripts.h, never Lua), the time zone, the
 * clock driver, the per-batch member cache and the counters.
 *
 * A batch is one SQLite transaction: the dedupe marks, the member state, the points
 * ledger, the actions and the timers of every event in it commit together or not at all.
 * Each handler call is an engine_call: it runs under its own savepoint and member undo,
 * so a failing handler is rolled back alone, recorded with its traceback, and the rest of
 * the batch goes on. The script API changes nothing itself: it checks its arguments and
 * calls the engine_* functions below.
 *
 * Time: the clock (clock.h) says what time it is; `now` is the time the work in hand is
 * judged at. Two functions drive it, for every caller (daemon, import, dry-run, tests):
 * engine_feed applies one event, engine_run_until runs timers and cron to a time. On a
 * virtual clock an event first runs everything due at or before its own time (earliest
 * first, ties in the order set, cron slots in time order) and then moves the clock to it;
 * on the real clock events apply at the time of the batch, and what comes due is run by
 * the daemon's loop through engine_run_until. */
#ifndef HEARTH_ENGINE_H
#define HEARTH_ENGINE_H

#include <jansson.h>
#include <stdint.h>

#include "budget.h"
#include "clock.h"
#include "event.h"
#include "member.h"
#include "scripts.h"
#include "store.h"
#include "timeutil.h"

/* Generation stored with rows from hearth.emit: m:cancel never applies to them. */
#define TIMER_NOT_CANCELLABLE (-1)

/* How many events may follow one another, each caused at once by the one before (an emit,
 * a timer due at once): the next is recorded as failed with the chain, not applied. A
 * script whose handler emits its own event stops here instead of freezing the daemon. */
#define MAX_CAUSAL_DEPTH 32

/* Action statuses, in the order counters are kept. `expired`: came due during a history
 * import too long before the import to be delivered; kept for audit, never delivered. */
enum { AS_QUEUED, AS_CAPPED, AS_SUPPRESSED, AS_DEFERRED, AS_SKIPPED, AS_LIMITED, AS_EXPIRED, AS_COUNT };
extern const char *const action_status_names[AS_COUNT];
int action_status_parse(const char *s);

typedef struct {
  const char *db_path;
  const char *scripts_dir;
  const char *stdlib_dir;
  const char *tz_name;
  int64_t dedupe_window;  /* seconds; 0 = forever */
  long max_member_bytes;  /* attributes and tags of one member, as JSON; 0 = the default */
  long member_cache_mib;  /* memory for members kept parsed between batches; 0 = the default */
  budget_t limits;
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

/* Violations of one invariant rule since start (by name: they outlive a reload). */
typedef struct {
  char *rule;
  unsigned long n;
} rule_violations_t;

typedef struct {
  unsigned long accepted, duplicates, rejected, failed, timers_fired, timers_cancelled;
  unsigned long actions[AS_COUNT];
  unsigned long handler_errors;
  unsigned long commits; /* transactions committed (a batch of events, timers, a sweep chunk) */
  unsigned long handler_hist[HANDLER_BUCKETS]; /* cumulative counts are built when exported */
  unsigned long handler_calls;
  double handler_seconds;
  channel_actions_t *by_channel;
  int nchannels;
  unsigned long invariant_violations;  /* all rules */
  rule_violations_t *by_rule;
  int nrules;
} engine_stats_t;

/* What happened to one event. */
enum { EV_APPLIED, EV_DUPLICATE, EV_FAILED, EV_ERROR };

/* An action recorded in the open batch, reported (on_action, counters) at commit. */
typedef struct {
  json_t *body;
  char *text;       /* the body as stored (compact JSON), or NULL when it was not stored */
  int status;
  char *channel;
  json_t *violations;  /* the built-in invariants it broke ([{rule, message}]), or NULL */
  json_t *member_view; /* her state when recorded, for custom invariants, or NULL */
} pending_action_t;

/* An invariant broken by a committed action (strings valid during the callback). */
typedef struct {
  const char *rule, *member, *action_id, *message;
  json_t *action;      /* the action as its NDJSON object */
} violation_t;

/* Funnel counters added in the open batch, by key, written once each at commit. */
typedef struct funnel_sum {
  char *campaign, *step, *variant, *metric;
  int64_t n;
  struct funnel_sum *next;     /* hash chain */
} funnel_sum_t;

typedef struct {
  funnel_sum_t **buckets;      /* FUNNEL_BUCKETS chains */
  funnel_sum_t **log;          /* each addition, in order: a failing call undoes its own */
  int64_t *log_n;
  int nlog, caplog;
} funnel_batch_t;

/* Cron entries as the clock driver sees them. */
typedef struct {
  int64_t next_slot;   /* INT64_MAX until scheduled, or when the expression never fires */
  int64_t running;     /* slot of the run in progress (or due to start now), or INT64_MIN */
  int started;         /* that run has started and is suspended between sweep chunks */
} cron_slot_t;

/* Broadcasts as the clock driver sees them (engine_broadcast.c). */
typedef struct {
  int64_t due;         /* when it runs, INT64_MAX when it has none or is done */
  int running;         /* its sweep has started in this process: go on chunk by chunk */
} bcast_slot_t;
/* What the engine did, told as it happens to a tracer (dry-run's and diff's --timeline):
 * the engine knows events, timers, counters and failures; actions are told by on_action
 * at commit. Strings are borrowed for the call. A handler that fails after setting a
 * timer has it undone: the tracer is told TRACE_FAILED for that call afterwards. */
typedef enum {
  TRACE_EVENT,       /* an event applied to `member` (type, detail = its id or @seq) */
  TRACE_DUPLICATE,   /* an event id seen before: not applied (type, detail = the id) */
  TRACE_TIMER_SET,   /* a timer for `member` (type, due, campaign; detail "emit" for hearth.emit) */
  TRACE_TIMER_FIRED, /* a timer fired (type, due, campaign) */
  TRACE_TIMER_VOID,  /* a timer came due after m:cancel (or an emit to no member): nothing ran */
  TRACE_CANCEL,      /* m:cancel(type) */
  TRACE_COUNT,       /* hearth.count (campaign, step, variant, detail = metric, n) */
  TRACE_FAILED       /* a handler failed and its changes were undone (campaign, detail = error) */
} trace_kind_t;

typedef struct {
  trace_kind_t kind;
  int64_t at;            /* the engine's `now` */
  const char *member, *type, *campaign, *step, *variant, *detail;
  int64_t due, n;
} engine_trace_t;

typedef struct engine {
  store_t *store;
  scripts_t *scripts;
  tz_t *tz;
  char *scripts_dir, *stdlib_dir;
  char **script_files;         /* NULL: every script in scripts_dir */
  budget_t limits;
  int64_t dedupe_window;
  long max_member_bytes;
  size_t member_cache_bytes;   /* the member cache's bound after each commit */
  int64_t expire_before;       /* history import: a queued action judged before this time is
                                  `expired`; INT64_MIN otherwise */
  int64_t seen_floor;          /* history import: the real time of the import, the earliest an
                                  event id is marked seen at (the window runs from receipt, so a
                                  purge keeps it; see retention.h); INT64_MIN otherwise */
  hclock_t clock;              /* what time it is: real, or virtual (dry-run, tests) */
  int64_t now;                 /* the time the work in hand is judged at */
  int started;                 /* the clock driver has set `now` and scheduled cron */
  int in_batch;                /* a transaction is open */
  uint64_t slice_ns;           /* engine_run_until's slice of wall time (0 = none): the daemon
                                  serves HTTP and signals between slices */
  unsigned long batch_work;    /* events applied and timers fired in the open batch */
  int64_t event_seq, timer_seq;
  char script_version[65];     /* the loaded set's hash (versions.c), "" before any */
  int migrations_due;          /* the set's migration timers wait for the clock to start */
  int action_n;                /* actions recorded for the current event (default ids) */
  member_cache_t members;
  int64_t data_version;        /* the store's data_version when our last batch began */
  engine_stats_t stats;
  int64_t earliest_timer;      /* earliest due time set in this batch, or INT64_MAX */
  cron_slot_t *cron;           /* one per entry of the script set */
  tz_t **zones;                /* members' zones loaded so far (by name) */
  int nzones;
  struct bad_zone { char *name; int logged; } *bad_zones; /* names found not to be zones;
                                  `logged`: a member's tz named it (said once) */
  int nbad_zones;
  int ncron;
  bcast_slot_t *bcast;         /* one per broadcast of the script set */
  int nbcast;
  funnel_batch_t funnel;       /* this batch's funnel counters, written at commit */
  pending_action_t *pending;   /* this batch's actions, reported at commit */
  int npending, cappending;
  /* Called at commit for every action recorded or re-judged (dry-run prints them). */
  void (*on_action)(void *ud, json_t *action, const char *text); /* text: compact JSON or NULL */
  void *on_action_ud;
  /* Called as it happens for what engine_trace_t lists (NULL: nothing is traced). */
  void (*on_trace)(void *ud, const engine_trace_t *t);
  void *on_trace_ud;
  /* Called at commit for every invariant violation, after on_action for its action (dry-run
   * prints them, hearth test fails the case, hearth diff may count them). NULL: each is
   * logged as a warning, at most INVARIANT_LOG_PER_MINUTE a minute. Either way they are
   * counted in stats (invariant_violations, by_rule). Violations change no action. */
  void (*on_violation)(void *ud, const violation_t *v);
  void *on_violation_ud;
  /* Scale-out (cluster_node.c): the partition a member's state lives in when it is not
   * this engine's, else -1. With it, hearth.emit to such a member is recorded as a
   * forward (store: forwards) in the call's transaction, for the node to publish to her
   * partition after the commit. NULL: every member is this engine's. */
  int (*foreign_partition)(void *ud, const char *member);
  void *foreign_ud;
  /* Called inside every commit, before it is written: what the embedder keeps with the
   * batch (scale-out: how far the partition's log got). -1 fails the commit. NULL: none. */
  int (*on_commit)(void *ud);
  void *on_commit_ud;
  int64_t forward_epoch;       /* stamped on each forward ("after"): the time of the last
                                  clock tick the partition applied (cluster_node.c) */
  uint64_t violation_log_minute;  /* the minute (monotonic) of the last logged violation */
  unsigned long violation_log_n, violation_log_dropped;
} engine_t;

#define INVARIANT_LOG_PER_MINUTE 60

/* Open the store, load the zone and the scripts. NULL with a message (every script error
 * as file:line: message, one per line) in *err (malloc'd) on failure. */
engine_t *engine_open(const engine_opts_t *opts, char **err);
void engine_close(engine_t *e);
/* Switch to a virtual clock (before the first event): dry-run and tests. */
void engine_use_virtual_clock(engine_t *e);
/* History: a virtual clock on the durable store (hearth import). What comes due more
 * than stale_after seconds before the real time now is recorded as `expired`. */
void engine_use_history_clock(engine_t *e, int64_t stale_after);

/* Load the scripts again; on failure keep the old ones and return -1 with *err. */
int engine_reload(engine_t *e, char **err);

/* ---- batches ---- */

/* begin/commit/rollback wrap one transaction. Commit reports the batch's actions. */
int engine_begin(engine_t *e);
int engine_commit(engine_t *e);
void engine_rollback(engine_t *e);

/* ---- the clock driver ---- */

/* Apply one validated event inside the batch (opened if none is). On a virtual clock,
 * everything due at or before the event's time runs first (a cron slot among it commits
 * the batch, runs, and opens a new one). Returns EV_*; EV_ERROR: the database failed and
 * the batch was rolled back. */
int engine_feed(engine_t *e, event_t *ev);
/* Run timers and cron slots due at or before t, in time order (timers first on a tie),
 * each timer batch and each sweep chunk its own transaction; no batch may be open. On a
 * virtual clock `now` follows what fires and ends at t. At most max_batches timer
 * batches and sweep chunks (0 = no limit), and no more than e->slice_ns of wall time
 * (a timer batch stops between two timers when it is spent): returns 1 when more is due
 * (call again), 0 when done, -1 on a database error. */
int engine_run_until(engine_t *e, int64_t t, int max_batches);

/* A hearth.emit from another engine's partition (scale-out), as its forward carried it:
 * applied like an event on the virtual clock (what is due at or before `at` runs first),
 * to the member only if she exists, with the handlers of `type` under the forward's id
 * (its dedupe key and the cause of the actions' default ids) and its causal depth. */
typedef struct {
  const char *id, *member, *type, *campaign, *chain;
  json_t *data;      /* borrowed, or NULL */
  int64_t at, depth;
} engine_emit_in_t;
int engine_feed_emit(engine_t *e, const engine_emit_in_t *in);
/* Earliest time anything is due (timer or cron slot), INT64_MAX if nothing; -1 is never
 * returned: a read error is logged and reported as "due now" so the caller retries. */
int64_t engine_next_due(engine_t *e);
/* 1 when a cron run is suspended between sweep chunks (engine_run_until resumes it). */
int engine_cron_pending(engine_t *e);

/* ---- broadcasts (hearth.broadcast), engine_broadcast.c ----
 * A broadcast runs like a timer at its time (the script's `at`, or the time it was
 * started with from the CLI): the clock driver sweeps its audience a chunk per
 * transaction, each chunk's actions committed with the broadcast's cursor, so a restart
 * resumes after the last committed chunk and never sends twice (action ids are derived
 * from the broadcast and the member). */
enum { BROADCAST_UNKNOWN = -2, BROADCAST_ALREADY = -3 };
/* Read every broadcast's progress from the store again (another process may have started
 * one). No batch may be open. */
void engine_broadcasts_reload(engine_t *e);
/* Count broadcast NAME's audience as of now without sending: members looked at and
 * members matched. Nothing is kept. 0, BROADCAST_UNKNOWN, or -1 (database error). */
int engine_broadcast_count(engine_t *e, const char *name, int64_t *seen, int64_t *matched);
/* Arm broadcast NAME for time `at`, in a transaction of its own: 0, BROADCAST_UNKNOWN,
 * BROADCAST_ALREADY (it is running or done: a broadcast runs once), or -1. */
int engine_broadcast_start(engine_t *e, const char *name, int64_t at);

/* ---- one handler call, and the changes a script may ask for ---- */

/* A handler call (or a cron run) in progress. */
typedef struct engine_call {
  member_t *m;               /* the member acted on (a sweep moves it member by member) */
  const event_t *ev;         /* the event handled; NULL in a cron run */
  const char *event_key;     /* its id, or @seq, timer:N, cron:KEY@SLOT */
  const char *campaign;      /* the script that declared the handler or cron entry */
  int64_t depth;             /* events before this one, each caused at once by the one before */
  const char *chain;         /* the last of them ("campaign:type > ..."), or NULL */
  int cron;                  /* a cron run: one transaction per sweep chunk, no savepoint */
  int savepoint;             /* the call's savepoint is open */
  int db_failed;             /* a database error: the batch must be rolled back */
  int pending_mark, action_n_mark, funnel_mark;
  int no_records;            /* a bulk load (engine_load.h): tags and points change with no
                                action record nor funnel count (the ledger is kept) */
  uint64_t started_ns;
  member_undo_t undo;
  char *refusal;             /* why engine_act returned ENGINE_ACT_REPEATED (the glue raises it) */
  int emits;                 /* hearth.emit calls so far (the ids of forwards) */
} engine_call_t;

/* Switch a cron run's call to member m (NULL: none), closing the undo of the last one. */
void engine_call_member(engine_t *e, engine_call_t *c, member_t *m);

/* Every change below is made inside the call and rolled back with it. They return -1 on
 * a database error (logged; the call is marked failed and the batch rolls back). */

/* What one member may hold in attributes and tags, as compact JSON, unless configured. */
#define MEMBER_BYTES_DEFAULT (256 * 1024)
/* Set attribute key (value stolen; NULL removes it). MEMBER_TOO_BIG (nothing changed)
 * when her attributes and tags would grow past the cap. */
enum { MEMBER_TOO_BIG = -2 };
int engine_set_attr(engine_t *e, engine_call_t *c, const char *key, json_t *value);

/* An action a script asks for. `fields` (stolen) are the kind's own members. */
typedef struct {
  const char *kind;      /* send, task, webhook, tag, untag, points */
  const char *key;       /* stable key, or NULL for campaign/member/event/n */
  const char *campaign;  /* NULL: the call's */
  const char *step, *channel;
  int status;            /* AS_* asked for */
  json_t *fields;
  json_t *reason;        /* why the status is not `queued` (stolen; may be NULL) */
  int key_claimed;       /* the engine claimed the key already (a keyed grant) */
  int64_t task_due;      /* a task: when it is due (epoch seconds), opened when queued */
} action_spec_t;
/* Record an action. Sends, tasks and webhooks are outbox rows for their channel; the
 * records of changes already made (points, tag, untag) are rows only for a channel that
 * asks for their kind (`kinds` option), and otherwise counted in the funnel (the ledger
 * and the member keep the change; a keyed one keeps its key). An id seen before records
 * nothing and returns its status, except that a `deferred` one is judged again. Returns the status that holds (an action stored
 * as `expired` shows as `queued`: the scripts judge history as it happened), -1 on error;
 * *recorded says whether anything was written now. */
/* ENGINE_ACT_REPEATED: the action's id was recorded before although its cause is new to
 * the engine (an event id seen again after the dedupe window); c->refusal says so, and
 * the caller stops the handler with it. */
#define ENGINE_ACT_REPEATED (-4)
int engine_act(engine_t *e, engine_call_t *c, action_spec_t *a, int *recorded);
/* Tag or untag the member (and record the tag/untag action, fields stolen as in
 * engine_act). 1 changed, 0 nothing to change (fields released), -1 error,
 * MEMBER_TOO_BIG when a new tag would take her past the cap. */
int engine_tag(engine_t *e, engine_call_t *c, const char *tag, action_spec_t *a);
int engine_untag(engine_t *e, engine_call_t *c, const char *tag, action_spec_t *a);
/* Grant (n > 0) or spend (n < 0) points with a ledger entry and a points action. A keyed
 * grant already recorded changes nothing. 0 applied (or nothing to do), -1 database
 * error, or POINTS_BELOW_ZERO / POINTS_OVERFLOW when the balance would leave its range
 * (nothing changed). */
enum { POINTS_BELOW_ZERO = -2, POINTS_OVERFLOW = -3 };
/* A grant becomes a lot that expires as `expire` says (NULL: as the campaign's points
 * rule says, else never); a spend takes from the lots that expire soonest. */
int engine_add_points(engine_t *e, engine_call_t *c, int64_t n, const char *reason, const expiry_t *expire,
                      action_spec_t *a);
/* Redeem qty units of `item` for the call's member (engine_points.c): in the call's
 * transaction, the points (ledger entry of type redeem, taken from the lots that expire
 * soonest), the item's shared stock and a `redeem` action (fields item, qty, cost, balance)
 * under the action id of `a` (key, or the default). `limited` with a reason naming the rule
 * (window, stock, per_member, balance) and its numbers when it cannot be done. The same id
 * again changes nothing: *recorded 0 and the earlier status. Returns AS_*, -1 on error. */
int engine_redeem(engine_t *e, engine_call_t *c, const item_decl_t *item, int64_t qty, action_spec_t *a,
                  int *recorded);
/* A durable timer delivering an event of `type` (data: JSON text or NULL) to the call's
 * member at `due`; m:cancel(type) voids it. */
int engine_set_timer(engine_t *e, engine_call_t *c, int64_t due, const char *type, const char *data);
/* Every pending timer of `type` for the call's member will not fire. */
int engine_cancel_timers(engine_t *e, engine_call_t *c, const char *type);
/* An event of `type` for `member` (any member), delivered as soon as the batch commits,
 * exactly once; never cancelled, never creating the member. */
int engine_emit(engine_t *e, engine_call_t *c, const char *member, const char *type, const char *data);
/* Add n to a funnel counter. */
int engine_count(engine_t *e, engine_call_t *c, const char *campaign, const char *step,
                 const char *variant, const char *metric, int64_t n);
/* The sum of a funnel counter (NULL: over all), committed plus this batch's. */
int engine_counter(engine_t *e, const char *metric, const char *campaign, const char *step,
                   const char *variant, int64_t *sum);
/* A sweep's next chunk of member ids after `after` (all, or with `tag`): count, -1. */
int engine_member_ids(engine_t *e, const char *tag, const char *after, int limit, char ***ids);
/* The member, loaded into the batch (created if new). NULL on a database error. */
member_t *engine_member(engine_t *e, const char *id);

/* The member's zone: her `tz` attribute (an IANA name) when it names a zone, else the
 * engine's --tz (a bad name is logged the first time it is met). Zones are loaded once
 * and kept, and so are bad names. Never NULL. */
const tz_t *engine_member_tz(engine_t *e, const member_t *m);
/* The zone NAME (the engine's, or one loaded once and kept); NULL when NAME is not a
 * zone (remembered: not read from disk again). */
const tz_t *engine_zone(engine_t *e, const char *name);

/* ---- staff: owners, hand-offs, tasks (engine_staff.c) ---- */

/* How an owner is chosen over a list of staff ids. */
enum { OWNER_FIXED, OWNER_ROUND_ROBIN, OWNER_LEAST_LOADED, OWNER_RULES };
extern const char *const owner_rule_names[OWNER_RULES];
int owner_rule_parse(const char *s); /* -1 when not a rule name */
typedef struct {
  int rule;
  const char *const *staff; /* at least one */
  int nstaff;
  const char *pool;         /* the round-robin cursor's name (shared by every member) */
} owner_rule_t;
/* Give the call's member an owner by rule unless she has one (a non-empty string `staff`
 * attribute, e.g. from member.joined data.staff): that one is kept. *owner: her owner
 * (valid during the call); *assigned: chosen now. The choice, the cursor and the counts
 * are written in the call's savepoint. 0, or -1 on a database error. */
int engine_assign_owner(engine_t *e, engine_call_t *c, const owner_rule_t *r, const char **owner, int *assigned);
/* The per-staff report judged at `now` (members owned, open, overdue and done tasks). */
int engine_staff_report(engine_t *e, int64_t now, void (*each)(void *ud, const staff_report_t *r), void *ud);
/* The same as JSON {now, staff: [{staff, members, open_tasks, overdue, done, done_late}]};
 * NULL on a database error (logged). */
json_t *staff_report_json(store_t *s, const tz_t *tz, int64_t now);

/* The database's message for the last error (already logged where it happened). */
const char *engine_db_error(engine_t *e);
/* Commits return before their log is on disk: each is synced while the next batch runs,
 * with at most max_unsynced waiting for their sync (store_sync_behind). For the import
 * (1: a batch is durable before the next commits), which says it is done only after
 * engine_sync, and the daemon, which answers a body once its commit is durable. 0, or -1
 * with a message in err (then every commit stays synced by itself, as before). */
int engine_sync_behind(engine_t *e, int max_unsynced, char *err, size_t errlen);
/* Every commit on disk: 0, or -1 (engine_db_error says why). */
int engine_sync(engine_t *e);

/* Format t in the engine's zone as RFC 3339. */
char *engine_fmt_time(engine_t *e, int64_t t, char buf[32]);

#endif
