/* scripts: what the engine needs of a loaded script set, and nothing of Lua. A script set
 * is the campaigns' declarations (handlers by event type, cron entries, channels) and
 * the sandboxed state that runs them; script_api.c and its neighbours implement it. The
 * engine decides when a handler or a cron run happens and what its transaction is; the
 * script set only runs the Lua and reports how it ended. */
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

#endif
