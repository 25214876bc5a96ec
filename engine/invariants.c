/* invariants: the rules operators switch on and the judging of queued actions against
 * them (see invariants.h). Our own design; the local-calendar windows follow the same
 * idea as restraint.c's cap windows (her zone's midnight, the ISO week from Monday) but
 * are computed here, apart from it, so that a mistake in one is not copied into the
 * other. */
#include "invariants.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Tallies older than this are dropped (the longest window is a local week). */
#define TALLY_KEEP (9 * 86400)

enum { PER_LOCAL_DAY, PER_LOCAL_WEEK };

typedef struct {
  char *name, *campaign;
  int kind;                   /* INV_* */
  int max;                    /* max_marketing, points_budget */
  int per;                    /* max_marketing: PER_* */
  int quiet_from, quiet_to;   /* no_quiet: minutes after local midnight, [from, to) */
  char *budget_campaign;      /* points_budget */
  char **except;              /* no_quiet: campaigns whose service sends may go out then */
  int nexcept;
  int custom_ref;             /* check: the glue's handle */
} rule_t;

struct invariants {
  rule_t *rules;
  int n;
  int64_t pruned_at;          /* last time old tallies were dropped, INT64_MIN: never */
};

invariants_t *invariants_new(void) {
  invariants_t *inv = xcalloc(1, sizeof *inv);
  inv->pruned_at = INT64_MIN;
  return inv;
}

void invariants_free(invariants_t *inv) {
  if (!inv) return;
  for (int i = 0; i < inv->n; i++) {
    free(inv->rules[i].name);
    free(inv->rules[i].campaign);
    free(inv->rules[i].budget_campaign);
    for (int j = 0; j < inv->rules[i].nexcept; j++) free(inv->rules[i].except[j]);
    free(inv->rules[i].except);
  }
  free(inv->rules);
  free(inv);
}

/* ---- declarations ---- */

static int only_keys(json_t *o, const char *rule, const char *const *known, char *err, size_t errlen) {
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    int ok = 0;
    for (const char *const *p = known; *p; p++) ok |= !strcmp(*p, k);
    if (!ok) {
      set_err(err, errlen, "option '%s.%s' is unknown", rule, k);
      return -1;
    }
  }
  return 0;
}

static int whole(json_t *v, const char *path, int *out, char *err, size_t errlen) {
  if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000000) {
    set_err(err, errlen, "option '%s' must be a whole number >= 0", path);
    return -1;
  }
  *out = (int)json_integer_value(v);
  return 0;
}

static int local_time(json_t *v, const char *path, int *minutes, char *err, size_t errlen) {
  char msg[200];
  if (!json_is_string(v) || wallclock_parse(json_string_value(v), minutes, msg, sizeof msg) < 0) {
    set_err(err, errlen, "option '%s' must be a local time \"HH:MM\"", path);
    return -1;
  }
  return 0;
}

static int parse_max_marketing(json_t *o, rule_t *r, char *err, size_t errlen) {
  static const char *const known[] = {"max", "per", NULL};
  if (!json_is_object(o) || only_keys(o, "max_marketing", known, err, errlen) < 0) {
    if (!*err) set_err(err, errlen, "option 'max_marketing' must be { max = n, per = \"local_day\" }");
    return -1;
  }
  if (whole(json_object_get(o, "max"), "max_marketing.max", &r->max, err, errlen) < 0) return -1;
  const char *per = json_string_value(json_object_get(o, "per"));
  if (per && !strcmp(per, "local_day")) r->per = PER_LOCAL_DAY;
  else if (per && !strcmp(per, "local_week")) r->per = PER_LOCAL_WEEK;
  else {
    set_err(err, errlen, "option 'max_marketing.per' must be \"local_day\" or \"local_week\"");
    return -1;
  }
  return 0;
}

/* no_quiet.except: a list of campaign names. */
static int parse_except(json_t *v, rule_t *r, char *err, size_t errlen) {
  if (json_is_object(v) && json_object_size(v) == 0) return 0; /* {} from an empty Lua table */
  size_t i;
  json_t *c;
  int ok = json_is_array(v);
  json_array_foreach(v, i, c) ok &= json_is_string(c) && json_string_length(c) > 0;
  if (!ok) {
    set_err(err, errlen, "option 'no_quiet.except' must be a list of campaign names");
    return -1;
  }
  r->except = xcalloc(json_array_size(v) + 1, sizeof *r->except);
  json_array_foreach(v, i, c) r->except[r->nexcept++] = xstrdup(json_string_value(c));
  return 0;
}

static int parse_no_quiet(json_t *o, rule_t *r, char *err, size_t errlen) {
  static const char *const known[] = {"from", "to", "except", NULL};
  if (!json_is_object(o) || only_keys(o, "no_quiet", known, err, errlen) < 0) {
    if (!*err) set_err(err, errlen, "option 'no_quiet' must be { from = \"HH:MM\", to = \"HH:MM\" }");
    return -1;
  }
  json_t *except = json_object_get(o, "except");
  if (except && parse_except(except, r, err, errlen) < 0) return -1;
  if (local_time(json_object_get(o, "from"), "no_quiet.from", &r->quiet_from, err, errlen) < 0 ||
      local_time(json_object_get(o, "to"), "no_quiet.to", &r->quiet_to, err, errlen) < 0)
    return -1;
  if (r->quiet_from == r->quiet_to) {
    set_err(err, errlen, "option 'no_quiet.to' must be a time other than no_quiet.from");
    return -1;
  }
  return 0;
}

static int parse_points_budget(json_t *o, rule_t *r, char *err, size_t errlen) {
  static const char *const known[] = {"campaign", "max", "per", NULL};
  if (!json_is_object(o) || only_keys(o, "points_budget", known, err, errlen) < 0) {
    if (!*err) set_err(err, errlen, "option 'points_budget' must be { campaign = \"name\", max = n, per = \"day\" }");
    return -1;
  }
  const char *campaign = json_string_value(json_object_get(o, "campaign"));
  if (!campaign || !*campaign) {
    set_err(err, errlen, "option 'points_budget.campaign' must name a campaign");
    return -1;
  }
  if (whole(json_object_get(o, "max"), "points_budget.max", &r->max, err, errlen) < 0) return -1;
  json_t *per = json_object_get(o, "per");
  if (per && !(json_is_string(per) && !strcmp(json_string_value(per), "day"))) {
    set_err(err, errlen, "option 'points_budget.per' must be \"day\" (a day in the engine's zone)");
    return -1;
  }
  r->budget_campaign = xstrdup(campaign);
  return 0;
}

static const char *const rule_keys[] = {"max_marketing", "no_quiet", "reachable", "points_budget", "check", NULL};

int invariants_add(invariants_t *inv, const char *name, const char *campaign, json_t *decl, int custom_ref,
                   char *err, size_t errlen) {
  *err = 0;
  for (int i = 0; i < inv->n; i++)
    if (!strcmp(inv->rules[i].name, name)) {
      set_err(err, errlen, "an invariant named '%s' is declared already", name);
      return -1;
    }
  const char *key = NULL;
  const char *k;
  json_t *v, *value = NULL;
  json_object_foreach(decl, k, v) {
    int kind = -1;
    for (int i = 0; rule_keys[i]; i++)
      if (!strcmp(rule_keys[i], k)) kind = i;
    if (kind < 0) {
      set_err(err, errlen, "option '%s' is unknown (known: name, max_marketing, no_quiet, reachable, "
                           "points_budget, check)", k);
      return -1;
    }
    if (key) {
      set_err(err, errlen, "one rule per invariant: '%s' and '%s' are both given", key, k);
      return -1;
    }
    key = k;
    value = v;
  }
  if (!key) {
    set_err(err, errlen, "expects one rule: max_marketing, no_quiet, reachable, points_budget or check");
    return -1;
  }
  rule_t r = {.custom_ref = custom_ref};
  int rc = 0;
  if (!strcmp(key, "max_marketing")) r.kind = INV_MAX_MARKETING, rc = parse_max_marketing(value, &r, err, errlen);
  else if (!strcmp(key, "no_quiet")) r.kind = INV_NO_QUIET, rc = parse_no_quiet(value, &r, err, errlen);
  else if (!strcmp(key, "points_budget")) r.kind = INV_POINTS_BUDGET, rc = parse_points_budget(value, &r, err, errlen);
  else if (!strcmp(key, "check")) r.kind = INV_CUSTOM;
  else {
    r.kind = INV_REACHABLE;
    if (!json_is_true(value)) {
      set_err(err, errlen, "option 'reachable' must be true");
      rc = -1;
    }
  }
  if (rc < 0) {
    free(r.budget_campaign);
    for (int j = 0; j < r.nexcept; j++) free(r.except[j]);
    free(r.except);
    return -1;
  }
  r.name = xstrdup(name);
  r.campaign = xstrdup(campaign ? campaign : "main");
  inv->rules = xrealloc(inv->rules, (size_t)(inv->n + 1) * sizeof *inv->rules);
  inv->rules[inv->n++] = r;
  return 0;
}

int invariants_count(const invariants_t *inv) { return inv ? inv->n : 0; }

static const rule_t *rule_at(const invariants_t *inv, int i) {
  assert(inv && i >= 0 && i < inv->n);
  return &inv->rules[i];
}

const char *invariants_name(const invariants_t *inv, int i) { return rule_at(inv, i)->name; }
int invariants_kind(const invariants_t *inv, int i) { return rule_at(inv, i)->kind; }
const char *invariants_campaign(const invariants_t *inv, int i) { return rule_at(inv, i)->campaign; }
int invariants_custom_ref(const invariants_t *inv, int i) { return rule_at(inv, i)->custom_ref; }

int invariants_has_custom(const invariants_t *inv) {
  for (int i = 0; i < invariants_count(inv); i++)
    if (inv->rules[i].kind == INV_CUSTOM) return 1;
  return 0;
}

/* ---- judging ---- */

static const char *field(json_t *action, const char *key) {
  return json_string_value(json_object_get(action, key));
}

static int is_send(json_t *action) {
  const char *kind = field(action, "action");
  return kind && !strcmp(kind, "send");
}

static int is_service(json_t *action) {
  const char *category = field(action, "category");
  return category && !strcmp(category, "service");
}

static void violation(json_t *out, const rule_t *r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void violation(json_t *out, const rule_t *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  strbuf_t sb;
  sb_init(&sb);
  sb_vaddf(&sb, fmt, ap);
  va_end(ap);
  json_array_append_new(out, json_pack("{s:s, s:s}", "rule", r->name, "message", sb.data ? sb.data : ""));
  sb_free(&sb);
}

/* Her local midnight of the day (or the Monday) that contains t. */
static int64_t window_start(int per, const tz_t *tz, int64_t t, civil_t *c) {
  tz_to_civil(tz, t, c);
  int back = per == PER_LOCAL_WEEK ? (c->wday + 6) % 7 : 0;
  return tz_from_local(tz, c->year, c->month, c->day - back, 0, 0, 0);
}

static int judge_max_marketing(const rule_t *r, const inv_action_t *a, json_t *out) {
  if (!is_send(a->action) || is_service(a->action)) return 0;
  civil_t c;
  int64_t since = window_start(r->per, a->tz, a->now, &c), n;
  if (store_invariant_add(a->store, r->name, a->member, since, 1, &n) < 0) return -1;
  if (n > r->max) {
    civil_t w;
    tz_to_civil(a->tz, since, &w);
    violation(out, r, "marketing send %lld in the local %s of %04d-%02d-%02d (%s); at most %d",
              (long long)n, r->per == PER_LOCAL_WEEK ? "week" : "day", w.year, w.month, w.day, tz_name(a->tz), r->max);
  }
  return 0;
}

/* A service send of a campaign no_quiet.except names. */
static int excepted(const rule_t *r, json_t *action) {
  const char *campaign = field(action, "campaign");
  for (int i = 0; campaign && is_service(action) && i < r->nexcept; i++)
    if (!strcmp(r->except[i], campaign)) return 1;
  return 0;
}

static int judge_no_quiet(const rule_t *r, const inv_action_t *a, json_t *out) {
  if (!is_send(a->action) || excepted(r, a->action)) return 0;
  civil_t c;
  tz_to_civil(a->tz, a->now, &c);
  int minute = c.hour * 60 + c.min;
  int quiet = r->quiet_from < r->quiet_to ? minute >= r->quiet_from && minute < r->quiet_to
                                          : minute >= r->quiet_from || minute < r->quiet_to;
  if (quiet)
    violation(out, r, "%s send at %02d:%02d local time (%s), inside %02d:%02d-%02d:%02d",
              is_service(a->action) ? "service" : "marketing", c.hour, c.min, tz_name(a->tz), r->quiet_from / 60,
              r->quiet_from % 60, r->quiet_to / 60, r->quiet_to % 60);
  return 0;
}

static int judge_reachable(const rule_t *r, const inv_action_t *a, json_t *out) {
  if (!is_send(a->action)) return 0;
  if (json_is_true(json_object_get(a->attrs, "friend_deleted")))
    violation(out, r, "send to a member whose friend was deleted");
  else if (!is_service(a->action) && json_is_true(json_object_get(a->attrs, "unsubscribed")))
    violation(out, r, "marketing send to an unsubscribed member");
  return 0;
}

static int judge_points_budget(const rule_t *r, const inv_action_t *a, json_t *out) {
  const char *kind = field(a->action, "action"), *campaign = field(a->action, "campaign");
  json_t *delta = json_object_get(a->action, "delta");
  if (!kind || strcmp(kind, "points") || !campaign || strcmp(campaign, r->budget_campaign)) return 0;
  if (!json_is_integer(delta) || json_integer_value(delta) <= 0) return 0;
  civil_t c;
  int64_t since = window_start(PER_LOCAL_DAY, a->engine_tz, a->now, &c), n;
  if (store_invariant_add(a->store, r->name, r->budget_campaign, since, json_integer_value(delta), &n) < 0) return -1;
  if (n > r->max)
    violation(out, r, "campaign '%s' granted %lld points on %04d-%02d-%02d (%s); at most %d a day", campaign,
              (long long)n, c.year, c.month, c.day, tz_name(a->engine_tz), r->max);
  return 0;
}

/* Drop old tallies once a day (in the handler's transaction, like the tallies). */
static int prune(invariants_t *inv, store_t *s, int64_t now) {
  if (inv->pruned_at != INT64_MIN && now - inv->pruned_at < 86400 && now >= inv->pruned_at) return 0;
  inv->pruned_at = now;
  return store_invariant_prune(s, now - TALLY_KEEP);
}

int invariants_judge(invariants_t *inv, const inv_action_t *a, json_t *out) {
  int counts = 0;
  for (int i = 0; i < inv->n; i++) {
    const rule_t *r = &inv->rules[i];
    int rc = 0;
    switch (r->kind) {
    case INV_MAX_MARKETING: rc = judge_max_marketing(r, a, out), counts = 1; break;
    case INV_NO_QUIET: rc = judge_no_quiet(r, a, out); break;
    case INV_REACHABLE: rc = judge_reachable(r, a, out); break;
    case INV_POINTS_BUDGET: rc = judge_points_budget(r, a, out), counts = 1; break;
    default: break; /* custom checks: the script set runs them */
    }
    if (rc < 0) return -1;
  }
  return counts ? prune(inv, a->store, a->now) : 0;
}
