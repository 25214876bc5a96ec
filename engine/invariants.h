/* invariants: rules that check what came out of the engine, apart from restraint.c, which
 * decides what is sent. An operator switches rules on with hearth.invariant (the Lua glue,
 * lua_invariant.c, hands each declaration here as JSON); the engine shows every action
 * recorded `queued` to invariants_judge and reports what it returns. A violation never
 * changes or blocks an action: the invariants are a safety net that sees a script which
 * bypasses restraint (a marketing message labelled category = "service") or a cap set
 * wrong, not a second restraint.
 *
 * Built-in rules, and what each looks at (always actions whose status is `queued`):
 *   max_marketing = { max = n, per = "local_day" | "local_week" }
 *       sends whose category is not "service", counted per member and her local calendar
 *       day (or ISO week, from Monday); each send past max is a violation.
 *   no_quiet = { from = "HH:MM", to = "HH:MM" [, except = { "campaign", ... }] }
 *       every send, whatever its category, at a local time in [from, to) in her zone,
 *       except the service sends of the campaigns `except` names (a welcome answering a
 *       member who adds the brand at night); their marketing sends are judged.
 *   reachable = true
 *       every send to a member whose `friend_deleted` is true, and every send not of
 *       category "service" to a member whose `unsubscribed` is true.
 *   points_budget = { campaign = "name", max = n, per = "day" }
 *       points actions of that campaign with a positive delta, summed per day in the
 *       engine's zone; each grant that takes the sum past max is a violation.
 *   check = function(action, member) ... end
 *       every queued action; run by the script set (scripts.h), not here.
 *
 * The counts live in the store (store_invariant_add), written in the handler's own
 * transaction: they are right across batches, restarts and handlers rolled back. Knows
 * nothing of Lua. */
#ifndef HEARTH_INVARIANTS_H
#define HEARTH_INVARIANTS_H

#include <jansson.h>
#include <stdint.h>

#include "store.h"
#include "timeutil.h"

typedef struct invariants invariants_t;

enum { INV_MAX_MARKETING, INV_NO_QUIET, INV_REACHABLE, INV_POINTS_BUDGET, INV_CUSTOM };

invariants_t *invariants_new(void);
void invariants_free(invariants_t *inv);
/* Add the rule `name` from a declaration without its name, e.g. {"no_quiet": {"from":
 * "21:00", "to": "09:00"}} or {"check": true} for a custom one (the glue keeps the
 * function; `custom_ref` is its handle, given back by invariants_custom_ref). Exactly one
 * rule per declaration, names unique. 0, or -1 with a message in err. */
int invariants_add(invariants_t *inv, const char *name, const char *campaign, json_t *decl, int custom_ref,
                   char *err, size_t errlen);
int invariants_count(const invariants_t *inv);
const char *invariants_name(const invariants_t *inv, int i);
int invariants_kind(const invariants_t *inv, int i);
/* The script that declared rule i (a custom check runs as that campaign). */
const char *invariants_campaign(const invariants_t *inv, int i);
int invariants_custom_ref(const invariants_t *inv, int i);
/* 1 when some rule is a custom check (the engine then keeps a view of the member). */
int invariants_has_custom(const invariants_t *inv);

/* One queued action to judge. */
typedef struct {
  json_t *action;          /* the action as its NDJSON object */
  const char *member;
  json_t *attrs;           /* her attributes */
  const tz_t *tz;          /* her zone */
  const tz_t *engine_tz;   /* the engine's (points budgets) */
  int64_t now;             /* when it was recorded */
  store_t *store;          /* the tallies, in the open transaction */
} inv_action_t;

/* Judge the built-in rules: each violation is appended to `out` as {"rule": name,
 * "message": text}. 0, or -1 on a database error (logged by the store). */
int invariants_judge(invariants_t *inv, const inv_action_t *a, json_t *out);

#endif
