/* versions: noting script versions, migration timers and the reload plan (versions.h). */
#include "versions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_private.h"
#include "log.h"
#include "scripts.h"
#include "store.h"
#include "util.h"

const char *engine_script_version(const engine_t *e) { return e->script_version; }

int engine_kept_definition(engine_t *e, const char *kind, const char *name, const char *hash,
                           char **body, char **label) {
  return store_definition_get(e->store, kind, name, hash, body, label);
}

/* The manifest as JSON: [{"file": label, "sha256": hex}, ...]. */
static char *manifest_json(const char *manifest) {
  json_t *a = json_array();
  for (const char *p = manifest; *p;) {
    const char *tab = strchr(p, '\t'), *nl = strchr(p, '\n');
    if (!tab || !nl || tab > nl) break;
    json_t *f = json_object();
    json_object_set_new(f, "file", json_stringn(p, (size_t)(tab - p)));
    json_object_set_new(f, "sha256", json_stringn(tab + 1, (size_t)(nl - tab - 1)));
    json_array_append_new(a, f);
    p = nl + 1;
  }
  char *text = json_dumps(a, JSON_COMPACT);
  json_decref(a);
  return text;
}

/* Runs in flight on another version than `hash`: their members, collected. */
typedef struct {
  const char *hash;
  char **ids;
  int n, cap;
} stale_runs_t;

static int collect_stale(void *ud, const char *member, const char *state) {
  stale_runs_t *r = ud;
  json_t *st = state ? json_loads(state, 0, NULL) : NULL;
  const char *v = json_string_value(json_object_get(st, "version"));
  int stale = !v || strcmp(v, r->hash) != 0;
  json_decref(st);
  if (!stale) return 0;
  if (r->n == r->cap) r->ids = xrealloc(r->ids, (size_t)(r->cap = r->cap ? 2 * r->cap : 64) * sizeof *r->ids);
  r->ids[r->n++] = xstrdup(member);
  return 0;
}

/* One timer due now per run in flight on another version of definition d: the
 * definition's code migrates the run when it fires (data {"migrate": hash}). */
static int add_migration_timers(engine_t *e, const version_decl_t *d) {
  stale_runs_t r = {.hash = d->hash};
  int rc = store_runs_in_flight(e->store, d->attr, collect_stale, &r) < 0 ? -1 : 0;
  char *data = xasprintf("{\"migrate\":\"%s\"}", d->hash);
  for (int i = 0; rc == 0 && i < r.n; i++) {
    timer_row_t row = {.due = e->now, .id = ++e->timer_seq, .member = r.ids[i], .type = d->timer,
                       .data = data, .gen = TIMER_NOT_CANCELLABLE, .campaign = d->name};
    rc = store_timer_add(e->store, &row);
    if (rc == 0 && row.due < e->earliest_timer) e->earliest_timer = row.due;
  }
  if (rc == 0 && r.n > 0) {
    char n[24];
    snprintf(n, sizeof n, "%d", r.n);
    log_msg(LOG_INFO, "runs in flight on other versions migrate now", "definition", d->name, "version", d->hash,
            "runs", n, NULL);
  }
  for (int i = 0; i < r.n; i++) free(r.ids[i]);
  free(r.ids);
  free(data);
  return rc;
}

/* Journeys kept earlier that s no longer defines: a warning for each one with runs in
 * flight (their timers will find no handler). */
typedef struct {
  engine_t *e;
  struct scripts *s;
  int failed;
  json_t *plan; /* versions_plan: the definitions' list */
} orphans_t;

static int count_run(void *ud, const char *member, const char *state) {
  (void)member, (void)state;
  ++*(long *)ud;
  return 0;
}

static int defines(struct scripts *s, const char *kind, const char *name) {
  for (int i = 0; i < scripts_version_count(s); i++) {
    const version_decl_t *d = scripts_version(s, i);
    if (strcmp(d->kind, kind) == 0 && strcmp(d->name, name) == 0) return 1;
  }
  return 0;
}

/* Runs in flight of a kept definition s does not define (a journey's runs live in the
 * attribute "_journey.<name>", as stdlib/journey.lua keeps them). */
static int orphan_runs(engine_t *e, struct scripts *s, const char *kind, const char *name, long *n) {
  *n = 0;
  if (defines(s, kind, name)) return 0;
  char *attr = xasprintf("_journey.%s", name);
  int rc = store_runs_in_flight(e->store, attr, count_run, n);
  free(attr);
  return rc < 0 ? -1 : 0;
}

static int warn_orphan(void *ud, const char *kind, const char *name) {
  orphans_t *o = ud;
  long n;
  if (orphan_runs(o->e, o->s, kind, name, &n) < 0) {
    o->failed = 1;
    return -1;
  }
  if (n > 0) {
    char runs[24];
    snprintf(runs, sizeof runs, "%ld", n);
    log_msg(LOG_WARN, "a journey with runs in flight is no longer defined: they get nothing more", "journey", name,
            "runs", runs, NULL);
  }
  return 0;
}

static int note_all(engine_t *e, struct scripts *s, const char *hash) {
  char *files = manifest_json(scripts_manifest(s));
  int rc = store_script_version_note(e->store, hash, e->now, files);
  free(files);
  for (int i = 0; rc == 0 && i < scripts_version_count(s); i++) {
    const version_decl_t *d = scripts_version(s, i);
    rc = store_definition_note(e->store, d->kind, d->name, d->hash, d->label, d->body, hash, e->now);
  }
  orphans_t o = {e, s, 0, NULL};
  if (rc == 0 && (store_definition_names(e->store, "journey", warn_orphan, &o) < 0 || o.failed)) rc = -1;
  return rc;
}

static int add_all_migrations(engine_t *e) {
  for (int i = 0; i < scripts_version_count(e->scripts); i++) {
    const version_decl_t *d = scripts_version(e->scripts, i);
    if (d->migrates && add_migration_timers(e, d) < 0) return -1;
  }
  return 0;
}

/* In a batch of its own, or in the one open (engine_feed starting the clock). */
void eng_add_migrations(engine_t *e) {
  e->migrations_due = 0;
  if (!e->scripts) return;
  int own = !e->in_batch;
  if (own && engine_begin(e) < 0) return;
  if (add_all_migrations(e) < 0) {
    log_msg(LOG_ERROR, "the migration timers could not be set; runs in flight finish on their own version",
            "version", e->script_version, NULL);
    if (own) engine_rollback(e);
    return;
  }
  if (own) engine_commit(e);
}

int engine_note_versions(engine_t *e, struct scripts *s, int note) {
  if (!note) return 0;
  char hash[65];
  scripts_set_version(s, hash);
  if (engine_begin(e) < 0) return -1;
  if (note_all(e, s, hash) < 0) {
    engine_rollback(e);
    log_msg(LOG_ERROR, "the script version could not be recorded", "version", hash, NULL);
    return -1;
  }
  return engine_commit(e);
}

/* The runs on other versions that would lose a step under the loaded set (what the plan
 * marks WARNING): counted per definition, and one warning each, at load. */
typedef struct {
  engine_t *e;
  const version_decl_t *d;
  int decl;
  long warned;
  char *example; /* the first one's plan, or NULL */
} stale_check_t;

static int check_stale(void *ud, const char *member, const char *state) {
  stale_check_t *c = ud;
  json_t *st = state ? json_loads(state, 0, NULL) : NULL;
  const char *v = json_string_value(json_object_get(st, "version"));
  json_t *out = NULL;
  char *err = NULL;
  if (st && (!v || strcmp(v, c->d->hash) != 0)) {
    if (scripts_plan_run(c->e->scripts, c->decl, st, &out, &err) < 0) {
      log_msg(LOG_ERROR, "the plan of a run in flight failed", "definition", c->d->name, "member", member,
              "error", err ? err : "?", NULL);
      free(err);
    } else if (json_is_true(json_object_get(out, "warning"))) {
      if (!c->warned++) c->example = xasprintf("%s: %s", member, json_string_value(json_object_get(out, "action")));
    }
  }
  json_decref(out);
  json_decref(st);
  return 0;
}

static void warn_lost_steps(engine_t *e) {
  for (int i = 0; i < scripts_version_count(e->scripts); i++) {
    stale_check_t c = {e, scripts_version(e->scripts, i), i, 0, NULL};
    if (store_runs_in_flight(e->store, c.d->attr, check_stale, &c) >= 0 && c.warned) {
      char n[24];
      snprintf(n, sizeof n, "%ld", c.warned);
      log_msg(LOG_WARN, "runs in flight lose steps under this version (see hearth reload --plan)", "definition",
              c.d->name, "version", c.d->hash, "runs", n, "first", c.example, NULL);
    }
    free(c.example);
  }
}

void engine_versions_adopted(engine_t *e, int note) {
  e->script_version[0] = 0;
  e->migrations_due = 0;
  if (!e->scripts) return;
  scripts_set_version(e->scripts, e->script_version);
  if (!note) return;
  warn_lost_steps(e);
  e->migrations_due = 1;
  if (e->started) eng_add_migrations(e);
}

/* ---- the plan ---- */

typedef struct {
  engine_t *e;
  int decl;
  json_t *groups; /* key -> group object */
  json_t *order;  /* keys in the order first seen */
  long in_flight;
  char *err;
} plan_ctx_t;

static int plan_one(void *ud, const char *member, const char *state) {
  plan_ctx_t *p = ud;
  json_t *st = state ? json_loads(state, 0, NULL) : NULL;
  if (!st) return 0;
  json_t *out = NULL;
  if (scripts_plan_run(p->e->scripts, p->decl, st, &out, &p->err) < 0) {
    json_decref(st);
    char *m = xasprintf("member %s: %s", member, p->err ? p->err : "plan failed");
    free(p->err);
    p->err = m;
    return -1;
  }
  json_decref(st);
  p->in_flight++;
  char *key = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
  json_t *g = json_object_get(p->groups, key);
  if (!g) {
    json_object_set_new(out, "members", json_integer(0));
    json_object_set(p->groups, key, out);
    json_array_append_new(p->order, json_string(key));
    g = out;
  }
  json_object_set_new(g, "members", json_integer(json_integer_value(json_object_get(g, "members")) + 1));
  json_decref(out);
  free(key);
  return 0;
}

/* A kept journey the scripts no longer define, with runs in flight: a warning group. */
static int plan_orphan(void *ud, const char *kind, const char *name) {
  orphans_t *o = ud;
  long n;
  if (orphan_runs(o->e, o->s, kind, name, &n) < 0) {
    o->failed = 1;
    return -1;
  }
  if (n == 0) return 0;
  json_t *g = json_pack("{s:s, s:n, s:s, s:s, s:b, s:I}", "version", "(any)", "label", "step", "(any)", "action",
                        "WARNING: no longer defined: these runs get nothing more", "warning", 1, "members",
                        (json_int_t)n);
  json_array_append_new(o->plan, json_pack("{s:s, s:s, s:n, s:n, s:I, s:[o], s:b, s:b}", "kind", kind, "name", name,
                                           "hash", "label", "in_flight", (json_int_t)n, "groups", g, "migrates", 0,
                                           "removed", 1));
  return 0;
}

json_t *versions_plan(engine_t *e, char **err) {
  *err = NULL;
  json_t *defs = json_array();
  for (int i = 0; e->scripts && i < scripts_version_count(e->scripts); i++) {
    const version_decl_t *d = scripts_version(e->scripts, i);
    plan_ctx_t p = {.e = e, .decl = i, .groups = json_object(), .order = json_array()};
    int rc = store_runs_in_flight(e->store, d->attr, plan_one, &p);
    json_t *list = json_array();
    size_t k;
    json_t *key;
    json_array_foreach(p.order, k, key) json_array_append(list, json_object_get(p.groups, json_string_value(key)));
    json_decref(p.groups);
    json_decref(p.order);
    if (rc < 0 || p.err) {
      *err = p.err ? p.err : xstrdup("the database could not be read");
      json_decref(list);
      json_decref(defs);
      return NULL;
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:I, s:o, s:b}", "kind", d->kind, "name", d->name, "hash", d->hash,
                          "label", d->label ? json_string(d->label) : json_null(), "in_flight", (json_int_t)p.in_flight,
                          "groups", list, "migrates", d->migrates);
    json_array_append_new(defs, o);
  }
  orphans_t o = {e, e->scripts, 0, defs};
  if (e->scripts && (store_definition_names(e->store, "journey", plan_orphan, &o) < 0 || o.failed)) {
    *err = xstrdup("the database could not be read");
    json_decref(defs);
    return NULL;
  }
  return json_pack("{s:s, s:o}", "version", e->script_version, "definitions", defs);
}
