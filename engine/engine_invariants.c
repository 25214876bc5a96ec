/* engine_invariants: the engine's side of the invariants (invariants.h). A queued action is
 * judged against the built-in rules when it is recorded, with her state and zone at that
 * moment, and the tallies are written in the handler's savepoint (a handler rolled back
 * takes its counts and its violations with it). The custom rules run (the script set, with
 * a handler's budget) once the handler that recorded the action has returned and its
 * changes are kept, or at the latest at commit (a cron run's chunk), so that her views
 * are held for one call only. After the batch commits every violation is counted and
 * handed to on_violation, or logged. Nothing here changes an action. Our own
 * design, following the engine's pattern of holding a batch's actions until commit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_private.h"
#include "log.h"

int eng_invariants_on(engine_t *e) { return e->scripts && invariants_count(scripts_invariants(e->scripts)) > 0; }

/* Her state as a custom check sees it: a copy. */
static json_t *member_view(engine_t *e, member_t *m) {
  json_t *tags = json_array();
  const char *k;
  json_t *v;
  json_object_foreach(member_tags(m), k, v) json_array_append_new(tags, json_string(k));
  /* a deep copy: later handlers of the batch change her attributes before the check runs */
  json_t *view = json_pack("{s:s, s:o, s:o, s:I, s:I, s:f, s:s}", "id", m->id, "attrs",
                           json_deep_copy(member_attrs(m)), "tags", tags,
                           "points", (json_int_t)m->points, "orders", (json_int_t)m->orders, "spend", m->spend,
                           "tz", tz_name(engine_member_tz(e, m)));
  return view;
}

int eng_invariants_judge(engine_t *e, engine_call_t *c, pending_action_t *p) {
  if (!eng_invariants_on(e) || p->status != AS_QUEUED || !p->body) return 0;
  invariants_t *inv = (invariants_t *)scripts_invariants(e->scripts);
  inv_action_t a = {.action = p->body, .member = c->m->id, .attrs = member_attrs(c->m),
                    .tz = engine_member_tz(e, c->m), .engine_tz = e->tz, .now = e->now, .store = e->store};
  json_t *found = json_array();
  if (invariants_judge(inv, &a, found) < 0) {
    json_decref(found);
    return eng_db_error(c);
  }
  if (json_array_size(found))
    p->violations = found;
  else
    json_decref(found);
  if (invariants_has_custom(inv)) p->member_view = member_view(e, c->m);
  return 0;
}

static void count(engine_stats_t *s, const char *rule) {
  s->invariant_violations++;
  for (int i = 0; i < s->nrules; i++)
    if (!strcmp(s->by_rule[i].rule, rule)) {
      s->by_rule[i].n++;
      return;
    }
  s->by_rule = xrealloc(s->by_rule, (size_t)(s->nrules + 1) * sizeof *s->by_rule);
  s->by_rule[s->nrules++] = (rule_violations_t){.rule = xstrdup(rule), .n = 1};
}

/* One warning line per violation, at most INVARIANT_LOG_PER_MINUTE a minute; the number
 * left out is said on the first line of a later minute. */
static void log_violation(engine_t *e, const violation_t *v) {
  uint64_t minute = mono_ns() / (60ull * 1000000000ull);
  if (minute != e->violation_log_minute) {
    if (e->violation_log_dropped) {
      char n[32];
      snprintf(n, sizeof n, "%lu", e->violation_log_dropped);
      log_msg(LOG_WARN, "invariant violations not logged (over the rate limit; see /metrics)", "count", n, NULL);
    }
    e->violation_log_minute = minute;
    e->violation_log_n = e->violation_log_dropped = 0;
  }
  if (e->violation_log_n >= INVARIANT_LOG_PER_MINUTE) {
    e->violation_log_dropped++;
    return;
  }
  e->violation_log_n++;
  log_msg(LOG_WARN, "invariant violated", "rule", v->rule, "member", v->member, "action", v->action_id, "message",
          v->message, NULL);
}

static void report(engine_t *e, json_t *action, const char *rule, const char *message) {
  violation_t v = {.rule = rule, .message = message, .action = action,
                   .member = json_string_value(json_object_get(action, "member")),
                   .action_id = json_string_value(json_object_get(action, "id"))};
  if (!v.member) v.member = "?";
  if (!v.action_id) v.action_id = "?";
  count(&e->stats, rule);
  if (e->on_violation)
    e->on_violation(e->on_violation_ud, &v);
  else
    log_violation(e, &v);
}

/* Run the custom rules on p, keeping what it broke with the built-in rules' findings,
 * and let go of her view. */
static void run_custom(engine_t *e, pending_action_t *p) {
  const invariants_t *inv = scripts_invariants(e->scripts);
  for (int i = 0; i < invariants_count(inv); i++) {
    if (invariants_kind(inv, i) != INV_CUSTOM) continue;
    char *message, *err;
    int ok = scripts_invariant_check(e->scripts, i, p->body, p->member_view, &message, &err);
    char *raised = ok < 0 ? xasprintf("the check raised: %s", err ? err : "?") : NULL;
    if (ok <= 0) {
      if (!p->violations) p->violations = json_array();
      json_array_append_new(p->violations, json_pack("{s:s, s:s}", "rule", invariants_name(inv, i), "message",
                                                     raised ? raised : message ? message : "violated"));
    }
    free(raised);
    free(message);
    free(err);
  }
  json_decref(p->member_view);
  p->member_view = NULL;
}

void eng_invariants_settle(engine_t *e, int from) {
  for (int i = from; i < e->npending; i++)
    if (e->pending[i].member_view && eng_invariants_on(e)) run_custom(e, &e->pending[i]);
}

void eng_invariants_report(engine_t *e, pending_action_t *p) {
  if (p->member_view && eng_invariants_on(e)) run_custom(e, p);
  size_t i;
  json_t *v;
  json_array_foreach(p->violations, i, v)
      report(e, p->body, json_string_value(json_object_get(v, "rule")), json_string_value(json_object_get(v, "message")));
}
