/* scripts: what the engine needs of a loaded script set, and nothing of Lua. A script set
 * is the campaigns' declarations (handlers by event type, cron entries, broadcasts,
 * channels) and the sandboxed state that runs them; script_api.c and its neighbours
 * implement it. The engine decides when a handler, a cron run or a broadcast happens and
 * what its transaction is; the script set only runs the Lua and reports how it ended. */
#ifndef HEARTH_SCRIPTS_H
#define HEARTH_SCRIPTS_H

#include <jansson.h>
#include <stdint.h>

#include "cron.h"
#include "invariants.h"
#include "restraint.h"
#include "util.h"

typedef struct scripts scripts_t;
struct engine;
struct engine_call;

/* Load every script of the engine's folder (or its explicit file list). NULL when any
 * script fails; errors then holds one "file:line: message" line per failure. */
scripts_t *scripts_load(struct engine *e, strbuf_t *errors);
void scripts_free(scripts_t *s);

/* Handlers of an event type ("*" for the catch-all ones), in declaration order. */
int scripts_handler_count(scripts_t *s, const char *type);
const char *scripts_handler_campaign(scripts_t *s, const char *type, int i);
/* Run handler i of `type` for the call's member and event, with the budget armed.
 * 0 when it returned, -1 when it raised: *err is the message with its traceback. */
int scripts_run_handler(scripts_t *s, const char *type, int i, struct engine_call *call, char **err);

/* Channels as declared with hearth.channel, in declaration order. */
typedef struct {
  char *name;
  json_t *opts;
} channel_decl_t;
int scripts_channel_count(scripts_t *s);
const channel_decl_t *scripts_channel(scripts_t *s, int i);

/* The restraint rules declared with hearth.restraint and the channels' quotas. */
const restraint_t *scripts_restraint(scripts_t *s);
/* Ask the guard `campaign` declared with hearth.guard whether a deferred send (the action
 * as JSON) still applies when it is judged again: 1 yes (or no guard), 0 no, -1 when the
 * guard raised (*err: message and traceback). */
int scripts_guard(scripts_t *s, const char *campaign, struct engine_call *call, json_t *send, char **err);

/* The invariants declared with hearth.invariant (invariants.h). */
const invariants_t *scripts_invariants(scripts_t *s);
/* Run custom invariant i (kind INV_CUSTOM) on a kept action (its NDJSON object) and the
 * member's view, outside any handler, with a handler's budget: 1 holds, 0 violated
 * (*message malloc'd), -1 when the check raised (*err: message and traceback). */
int scripts_invariant_check(scripts_t *s, int i, json_t *action, json_t *member, char **message, char **err);

/* Cron entries. */
int scripts_cron_count(scripts_t *s);
/* The entry's stable key in cron_state ("campaign#n spec"), campaign and expression. */
const char *scripts_cron_key(scripts_t *s, int i);
const char *scripts_cron_campaign(scripts_t *s, int i);
const char *scripts_cron_spec(scripts_t *s, int i);
const cron_t *scripts_cron_expr(scripts_t *s, int i);

/* How a step of a cron run ended. */
enum { CRON_FINISHED, CRON_YIELDED, CRON_FAILED };
/* Start a run of entry i for `slot` (its coroutine gets the slot time), or resume the
 * suspended one, until it finishes, fails (*err: message and traceback) or yields between
 * two sweep chunks. The call is the run's: a sweep moves it from member to member. */
int scripts_cron_start(scripts_t *s, int i, int64_t slot, struct engine_call *call, char **err);
int scripts_cron_resume(scripts_t *s, int i, struct engine_call *call, char **err);
/* Drop the suspended run of entry i, if any. */
void scripts_cron_drop(scripts_t *s, int i);

/* ---- points expiry rules and redemption items (hearth.points_rule, hearth.item) ---- */

/* When a grant expires: never, a duration after the grant, N calendar months after it
 * (same local wall time, the day clamped to the month's end), or at the start of the next
 * local month or year (the lot lasts through the month's or year's last day). */
enum { EXPIRE_NEVER, EXPIRE_AFTER, EXPIRE_MONTHS, EXPIRE_MONTH_END, EXPIRE_YEAR_END };
typedef struct {
  int kind;
  int64_t n;      /* EXPIRE_AFTER: seconds; EXPIRE_MONTHS: months */
} expiry_t;

typedef struct {
  char *campaign;          /* NULL: the global rule (grants of campaigns without their own) */
  expiry_t expire;
  int64_t notice_before;   /* seconds before expiry the notice is due */
  char *notice_send;       /* the notice's template, or NULL for none */
} points_rule_t;
/* The rule for grants of `campaign`: its own, else the global one, else NULL. */
const points_rule_t *scripts_points_rule(scripts_t *s, const char *campaign);

/* An item of the points mall. */
typedef struct {
  char *name, *campaign;
  int64_t cost;            /* points per unit, > 0 */
  int64_t stock;           /* units in all, shared across members; -1: unlimited */
  int64_t per_member;      /* units one member may hold; -1: unlimited */
  int64_t from, to;        /* redeemable in [from, to); INT64_MIN / INT64_MAX when open */
} item_decl_t;
/* The item declared under `name`, or NULL. */
const item_decl_t *scripts_item(scripts_t *s, const char *name);
/* Broadcasts (hearth.broadcast): dated one-off sends to an audience, in declaration
 * order. The engine sweeps the members (by tag through the tag index, else all), checks
 * attrs itself and asks the script set only for the `where` predicate and the send. */
#define BROADCAST_NO_TIME INT64_MIN
typedef struct {
  char *name;
  char *campaign;       /* the script that declared it */
  int64_t at;           /* when it runs, or BROADCAST_NO_TIME: when started from the CLI */
  char *tag;            /* audience: members with this tag, or NULL for all */
  json_t *attrs;        /* audience: attributes that must equal these values, or NULL */
  int has_where;        /* audience: a predicate over the member handle */
  int chunk;            /* members per transaction */
  int where_ref, fn_ref; /* the functions, in the registry */
} broadcast_decl_t;
int scripts_broadcast_count(scripts_t *s);
const broadcast_decl_t *scripts_broadcast(scripts_t *s, int i);
/* Index of the broadcast called name, or -1. */
int scripts_broadcast_find(scripts_t *s, const char *name);
/* Run broadcast i's `where` for the call's member: 1 in the audience, 0 not (or no
 * predicate: 1), -1 when it raised (*err: message and traceback). */
int scripts_broadcast_where(scripts_t *s, int i, struct engine_call *call, char **err);
/* Run broadcast i's fn(m) for the call's member: 0, or -1 when it raised (*err). */
int scripts_broadcast_run(scripts_t *s, int i, struct engine_call *call, char **err);
/* Versions (lua_versions.c). The set's hash (64 hex digits) and its manifest, one
 * "label\tsha256" line per chunk loaded; the definitions declared with their own hash. */
void scripts_set_version(scripts_t *s, char out[65]);
const char *scripts_manifest(scripts_t *s);
typedef struct {
  char *kind, *name, *hash, *label, *body; /* label: NULL when none */
  char *attr, *timer;  /* the member attribute holding a run, the run's timer type */
  int migrates;        /* declares a migration: runs on other versions move at load */
} version_decl_t;
int scripts_version_count(scripts_t *s);
const version_decl_t *scripts_version(scripts_t *s, int i);
/* Ask definition i what a reload does to one run (its state, as stored): *out a new
 * JSON object {version, label, step, action, ...}. 0, or -1 with *err (traceback). */
int scripts_plan_run(scripts_t *s, int i, json_t *state, json_t **out, char **err);

#endif
