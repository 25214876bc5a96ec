/* engine_invariants: the engine's side of the invariants (invariants.h). A queued action is
 * judged against the built-in rules when it is recorded, with her state and zone at that
 * moment, and the tallies are written in the handler's savepoint (a handler rolled back
 * takes its counts and its violations with it). After the batch commits, the custom rules
 * run on each action (the script set, with a handler's budget), and every violation is
 * counted and handed to on_violation, or logged. Nothing here changes an action. Our own
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

/* Run the custom rules on a committed action. */
static void run_custom(engine_t *e, pending_action_t *p) {
  const invariants_t *inv = scripts_invariants(e->scripts);
  for (int i = 0; i < invariants_count(inv); i++) {
    if (invariants_kind(inv, i) != INV_CUSTOM) continue;
    char *message, *err;
    int ok = scripts_invariant_check(e->scripts, i, p->body, p->member_view, &message, &err);
    if (ok < 0) {
      char *m = xasprintf("the check raised: %s", err ? err : "?");
      report(e, p->body, invariants_name(inv, i), m);
      free(m);
    } else if (!ok) {
      report(e, p->body, invariants_name(inv, i), message ? message : "violated");
    }
    free(message);
    free(err);
  }
}

void eng_invariants_report(engine_t *e, pending_action_t *p) {
  size_t i;
  json_t *v;
  json_array_foreach(p->violations, i, v)
      report(e, p->body, json_string_value(json_object_get(v, "rule")), json_string_value(json_object_get(v, "message")));
  if (p->member_view && eng_invariants_on(e)) run_custom(e, p);
}
