/* engine: opening and reloading, batches, dedupe, built-in member fields, handler calls
 * and the funnel counters of a batch (see engine.h). The clock driver is in
 * engine_clock.c, the changes scripts ask for in engine_changes.c. */
#include "engine_private.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "restraint.h"
#include "versions.h"


const char *const action_status_names[AS_COUNT] = {"queued", "capped", "suppressed", "deferred",
                                                   "skipped", "limited", "expired"};

const double handler_bucket_bounds[HANDLER_BUCKETS - 1] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                          0.01, 0.025, 0.05, 0.1, 0.5};

int action_status_parse(const char *s) {
  for (int i = 0; i < AS_COUNT; i++)
    if (strcmp(s, action_status_names[i]) == 0) return i;
  return -1;
}

const char *engine_db_error(engine_t *e) { return store_errmsg(e->store); }

int engine_sync_behind(engine_t *e, int max_unsynced, char *err, size_t errlen) {
  return store_sync_behind(e->store, max_unsynced, err, errlen);
}

int engine_sync(engine_t *e) { return store_sync(e->store); }

/* Bad zone names remembered at most (past it a bad name is read and reported each time). */
#define MAX_BAD_ZONES 256

/* The loaded zone NAME, loading it the first time; NULL when NAME is not a zone (kept as
 * such: never looked up again), with *bad set to its entry (NULL past MAX_BAD_ZONES) and
 * the reason in err. */
static const tz_t *zone_named(engine_t *e, const char *name, struct bad_zone **bad, char *err,
                              size_t errlen) {
  *bad = NULL;
  if (!strcmp(name, tz_name(e->tz))) return e->tz;
  for (int i = 0; i < e->nzones; i++)
    if (!strcmp(tz_name(e->zones[i]), name)) return e->zones[i];
  for (int i = 0; i < e->nbad_zones; i++)
    if (!strcmp(e->bad_zones[i].name, name)) {
      snprintf(err, errlen, "'%s' is not a zone (found so before)", name);
      *bad = &e->bad_zones[i];
      return NULL;
    }
  tz_t *z = tz_load(name, err, errlen);
  if (!z) {
    if (e->nbad_zones == MAX_BAD_ZONES) return NULL;
    e->bad_zones = xrealloc(e->bad_zones, (size_t)(e->nbad_zones + 1) * sizeof *e->bad_zones);
    *bad = &e->bad_zones[e->nbad_zones++];
    **bad = (struct bad_zone){.name = xstrdup(name), .logged = 0};
    return NULL;
  }
  e->zones = xrealloc(e->zones, (size_t)(e->nzones + 1) * sizeof *e->zones);
  e->zones[e->nzones++] = z;
  return z;
}

const tz_t *engine_zone(engine_t *e, const char *name) {
  struct bad_zone *bad;
  char err[200];
  return zone_named(e, name, &bad, err, sizeof err);
}

const tz_t *engine_member_tz(engine_t *e, const member_t *m) {
  const char *name = json_string_value(json_object_get(member_attrs((member_t *)m), "tz"));
  if (!name) return e->tz;
  struct bad_zone *bad;
  char err[200];
  const tz_t *z = zone_named(e, name, &bad, err, sizeof err);
  if (z) return z;
  if (!bad || !bad->logged) /* events are checked on the way in; a script may set a bad name */
    log_msg(LOG_WARN, "member's tz is not a zone: using the engine's (said once per name)", "member", m->id,
            "tz", name, "error", err, NULL);
  if (bad) bad->logged = 1;
  return e->tz;
}

char *engine_fmt_time(engine_t *e, int64_t t, char buf[32]) {
  return rfc3339_format(t, e->tz ? tz_offset_at(e->tz, t) : 0, buf);
}

/* ---- counters ---- */

static void count_handler_time(engine_stats_t *s, double seconds) {
  int b = 0;
  while (b < HANDLER_BUCKETS - 1 && seconds > handler_bucket_bounds[b]) b++;
  s->handler_hist[b]++;
  s->handler_calls++;
  s->handler_seconds += seconds;
}

static void count_channel_action(engine_stats_t *s, const char *channel, int status) {
  if (!channel) channel = "";
  for (int i = 0; i < s->nchannels; i++)
    if (!strcmp(s->by_channel[i].channel, channel)) {
      s->by_channel[i].by_status[status]++;
      return;
    }
  s->by_channel = xrealloc(s->by_channel, (size_t)(s->nchannels + 1) * sizeof *s->by_channel);
  channel_actions_t *c = &s->by_channel[s->nchannels++];
  memset(c, 0, sizeof *c);
  c->channel = xstrdup(channel);
  c->by_status[status]++;
}

/* ---- opening, closing, reloading ---- */

/* Read the sequence counters; another process (an import beside the daemon) may have
 * moved them since we last looked. */
static void load_seqs(engine_t *e) {
  e->event_seq = store_meta_get(e->store, "event_seq", 0);
  e->timer_seq = store_meta_get(e->store, "timer_seq", 0);
}

void eng_schedule_cron(engine_t *e, int64_t now);

/* Take a freshly loaded script set: one cron slot per entry, scheduled if the clock runs. */
static void adopt_scripts(engine_t *e, scripts_t *s) {
  for (int i = 0; e->scripts && i < e->ncron; i++) scripts_cron_drop(e->scripts, i);
  scripts_free(e->scripts);
  free(e->cron);
  e->scripts = s;
  e->ncron = s ? scripts_cron_count(s) : 0;
  e->cron = xcalloc((size_t)e->ncron + 1, sizeof *e->cron);
  for (int i = 0; i < e->ncron; i++) e->cron[i] = (cron_slot_t){.next_slot = INT64_MAX, .running = INT64_MIN, .started = 0};
  free(e->bcast);
  e->nbcast = s ? scripts_broadcast_count(s) : 0;
  e->bcast = xcalloc((size_t)e->nbcast + 1, sizeof *e->bcast);
  for (int i = 0; i < e->nbcast; i++) e->bcast[i] = (bcast_slot_t){.due = INT64_MAX, .running = 0};
  if (e->started) eng_schedule_cron(e, e->now), eng_schedule_broadcasts(e);
}

engine_t *engine_open(const engine_opts_t *o, char **errp) {
  char err[1024] = "";
  *errp = NULL;
  engine_t *e = xcalloc(1, sizeof *e);
  e->dedupe_window = o->dedupe_window;
  e->max_member_bytes = o->max_member_bytes > 0 ? o->max_member_bytes : MEMBER_BYTES_DEFAULT;
  uint64_t cache_mib = o->member_cache_mib > 0 ? (uint64_t)o->member_cache_mib : MEMBER_CACHE_MIB_DEFAULT;
  e->member_cache_bytes = cache_mib > SIZE_MAX >> 20 ? SIZE_MAX : (size_t)(cache_mib << 20);
  e->expire_before = INT64_MIN;
  e->seen_floor = INT64_MIN;
  e->earliest_timer = INT64_MAX;
  clock_init_real(&e->clock);
  if (o->limits.max_instructions)
    e->limits = o->limits;
  else
    budget_default(&e->limits);
  e->scripts_dir = o->scripts_dir ? xstrdup(o->scripts_dir) : NULL;
  e->stdlib_dir = o->stdlib_dir ? xstrdup(o->stdlib_dir) : NULL;
  if (o->script_files) {
    size_t n = 0;
    while (o->script_files[n]) n++;
    e->script_files = xcalloc(n + 1, sizeof *e->script_files);
    for (size_t i = 0; i < n; i++) e->script_files[i] = xstrdup(o->script_files[i]);
  }
  member_cache_init(&e->members);
  e->now = clock_now(&e->clock);
  e->tz = tz_load(o->tz_name ? o->tz_name : "Asia/Shanghai", err, sizeof err);
  if (!e->tz) goto fail;
  if (o->memory_db)
    e->store = store_open_copy(o->db_path, err, sizeof err);
  else
    e->store = store_open(o->db_path, o->readonly, err, sizeof err);
  if (!e->store) goto fail;
  load_seqs(e);
  if (!o->no_scripts) {
    strbuf_t errors;
    sb_init(&errors);
    scripts_t *s = scripts_load(e, &errors);
    if (!s) {
      *errp = sb_take(&errors);
      engine_close(e);
      return NULL;
    }
    sb_free(&errors);
    if (engine_note_versions(e, s, !o->readonly) < 0) {
      scripts_free(s);
      *errp = xstrdup("the script version could not be recorded in the database");
      engine_close(e);
      return NULL;
    }
    adopt_scripts(e, s);
    engine_versions_adopted(e, !o->readonly);
  }
  return e;
fail:
  *errp = xstrdup(err);
  engine_close(e);
  return NULL;
}

void eng_drop_pending(engine_t *e, int mark);
static int funnel_flush(engine_t *e, int write);

void engine_close(engine_t *e) {
  if (!e) return;
  if (log_clock() == &e->clock) log_use_clock(NULL);
  if (e->in_batch) engine_rollback(e);
  adopt_scripts(e, NULL);
  free(e->cron);
  free(e->bcast);
  eng_drop_pending(e, 0);
  funnel_flush(e, 0);
  free(e->funnel.buckets);
  free(e->funnel.log);
  free(e->funnel.log_n);
  free(e->pending);
  for (int i = 0; i < e->stats.nchannels; i++) free(e->stats.by_channel[i].channel);
  free(e->stats.by_channel);
  for (int i = 0; i < e->stats.nrules; i++) free(e->stats.by_rule[i].rule);
  free(e->stats.by_rule);
  member_cache_free(&e->members);
  store_close(e->store);
  for (int i = 0; i < e->nzones; i++) tz_free(e->zones[i]);
  free(e->zones);
  for (int i = 0; i < e->nbad_zones; i++) free(e->bad_zones[i].name);
  free(e->bad_zones);
  tz_free(e->tz);
  free(e->scripts_dir);
  free(e->stdlib_dir);
  for (char **f = e->script_files; f && *f; f++) free(*f);
  free(e->script_files);
  free(e);
}

void engine_use_virtual_clock(engine_t *e) {
  assert(!e->started);
  clock_init_virtual(&e->clock, e->now, 1);
  log_use_clock(&e->clock); /* log lines read in the run's time */
}

void engine_use_history_clock(engine_t *e, int64_t stale_after) {
  assert(stale_after > 0);
  int64_t real_now = clock_now(&e->clock);
  engine_use_virtual_clock(e);
  log_use_clock(NULL); /* an import is watched as it runs: its log keeps the real time */
  e->expire_before = real_now - stale_after;
  e->seen_floor = real_now;
}

int engine_reload(engine_t *e, char **err) {
  assert(!e->in_batch);
  strbuf_t errors;
  sb_init(&errors);
  scripts_t *s = scripts_load(e, &errors);
  if (!s) {
    *err = sb_take(&errors);
    return -1;
  }
  sb_free(&errors);
  if (e->clock.is_virtual == 0) e->now = clock_now(&e->clock);
  if (engine_note_versions(e, s, 1) < 0) {
    scripts_free(s);
    *err = xstrdup("the version of the new scripts could not be recorded in the database");
    return -1;
  }
  adopt_scripts(e, s);
  engine_versions_adopted(e, 1);
  *err = NULL;
  return 0;
}

/* ---- funnel counters of the batch ---- */

#define FUNNEL_BUCKETS 256

static uint64_t funnel_hash(const char *a, const char *b, const char *c, const char *d) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a over the four parts, 0-separated */
  const char *parts[4] = {a, b, c, d};
  for (int i = 0; i < 4; i++) {
    for (const char *p = parts[i]; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
  }
  return h;
}

/* Add n to a counter of the batch (logged, so that a failing call can take it back). */
void eng_funnel_add(engine_t *e, const char *campaign, const char *step, const char *variant,
                       const char *metric, int64_t n) {
  funnel_batch_t *f = &e->funnel;
  if (!f->buckets) f->buckets = xcalloc(FUNNEL_BUCKETS, sizeof *f->buckets);
  funnel_sum_t **b = &f->buckets[funnel_hash(campaign, step, variant, metric) % FUNNEL_BUCKETS], *x;
  for (x = *b; x; x = x->next)
    if (!strcmp(x->metric, metric) && !strcmp(x->step, step) && !strcmp(x->variant, variant) &&
        !strcmp(x->campaign, campaign))
      break;
  if (!x) {
    x = xcalloc(1, sizeof *x);
    x->campaign = xstrdup(campaign), x->step = xstrdup(step), x->variant = xstrdup(variant);
    x->metric = xstrdup(metric);
    x->next = *b;
    *b = x;
  }
  x->n += n;
  if (f->nlog == f->caplog) {
    f->caplog = f->caplog ? f->caplog * 2 : 256;
    f->log = xrealloc(f->log, (size_t)f->caplog * sizeof *f->log);
    f->log_n = xrealloc(f->log_n, (size_t)f->caplog * sizeof *f->log_n);
  }
  f->log[f->nlog] = x;
  f->log_n[f->nlog++] = n;
}

/* Take back the additions made since mark (a failed handler's). */
static void funnel_undo(engine_t *e, int mark) {
  funnel_batch_t *f = &e->funnel;
  while (f->nlog > mark) {
    f->nlog--;
    f->log[f->nlog]->n -= f->log_n[f->nlog];
  }
}

/* Write the batch's counters (at commit) or forget them; 0, or -1 on a database error. */
static int funnel_flush(engine_t *e, int write) {
  funnel_batch_t *f = &e->funnel;
  int rc = 0;
  for (int i = 0; f->buckets && i < FUNNEL_BUCKETS; i++) {
    funnel_sum_t *x = f->buckets[i], *next;
    for (; x; x = next) {
      next = x->next;
      if (write && rc == 0 && x->n && store_funnel_add(e->store, x->campaign, x->step, x->variant, x->metric, x->n) < 0)
        rc = -1;
      free(x->campaign), free(x->step), free(x->variant), free(x->metric), free(x);
    }
    f->buckets[i] = NULL;
  }
  f->nlog = 0;
  return rc;
}

/* The batch's part of a sum (NULL parts: any). */
int64_t eng_funnel_pending(engine_t *e, const char *metric, const char *campaign, const char *step,
                              const char *variant) {
  int64_t n = 0;
  funnel_batch_t *f = &e->funnel;
  for (int i = 0; f->buckets && i < FUNNEL_BUCKETS; i++)
    for (funnel_sum_t *x = f->buckets[i]; x; x = x->next)
      if (!strcmp(x->metric, metric) && (!campaign || !strcmp(x->campaign, campaign)) &&
          (!step || !strcmp(x->step, step)) && (!variant || !strcmp(x->variant, variant)))
        n += x->n;
  return n;
}

/* ---- batches ---- */

void eng_drop_pending(engine_t *e, int mark) {
  while (e->npending > mark) {
    pending_action_t *p = &e->pending[--e->npending];
    json_decref(p->body);
    json_decref(p->violations);
    json_decref(p->member_view);
    free(p->text);
    free(p->channel);
  }
}

/* Report the batch's actions: counters, then the on_action callback and the invariants
 * they broke, in order. */
static void report_pending(engine_t *e) {
  for (int i = 0; i < e->npending; i++) {
    pending_action_t *p = &e->pending[i];
    e->stats.actions[p->status]++;
    count_channel_action(&e->stats, p->channel, p->status);
    if (e->on_action && p->body) e->on_action(e->on_action_ud, p->body, p->text);
    eng_invariants_report(e, p);
  }
  eng_drop_pending(e, 0);
}

int engine_begin(engine_t *e) {
  assert(!e->in_batch);
  e->earliest_timer = INT64_MAX;
  if (!e->clock.is_virtual) e->now = clock_now(&e->clock);
  if (store_begin(e->store) < 0) return -1;
  /* the write lock is ours now: members kept from our last batch are current unless
   * another connection committed in between (our own commits leave data_version alone) */
  int64_t version;
  if (store_data_version(e->store, &version) < 0) {
    store_rollback(e->store);
    return -1;
  }
  if (version != e->data_version) member_cache_clear(&e->members);
  e->data_version = version;
  e->in_batch = 1;
  load_seqs(e);
  return 0;
}

int engine_commit(engine_t *e) {
  assert(e->in_batch);
  if (funnel_flush(e, 1) < 0 || member_cache_flush(&e->members, e->store) < 0 ||
      store_meta_set(e->store, "event_seq", e->event_seq) < 0 ||
      store_meta_set(e->store, "timer_seq", e->timer_seq) < 0 ||
      /* reports judge overdue tasks at it, and a cluster partition starts from it; before the
       * clock has started (engine_open's version note) `now` is only the real time: the
       * stored clock stays */
      (e->started && store_meta_set(e->store, "clock", e->now) < 0) ||
      (e->on_commit && e->on_commit(e->on_commit_ud) < 0) || store_commit(e->store) < 0) {
    log_msg(LOG_ERROR, "commit failed", "error", store_errmsg(e->store), NULL);
    engine_rollback(e);
    return -1;
  }
  e->in_batch = 0;
  e->batch_work = 0;
  e->stats.commits++;
  member_cache_trim(&e->members, e->member_cache_bytes);
  report_pending(e);
  return 0;
}

void engine_rollback(engine_t *e) {
  eng_drop_pending(e, 0);
  funnel_flush(e, 0);
  store_rollback(e->store);
  e->in_batch = 0;
  e->batch_work = 0;
  member_cache_clear(&e->members);
  load_seqs(e);
}

/* ---- one handler call ---- */

void eng_call_begin(engine_t *e, engine_call_t *c) {
  assert(e->in_batch);
  c->pending_mark = e->npending;
  c->funnel_mark = e->funnel.nlog;
  c->action_n_mark = e->action_n;
  c->savepoint = c->cron; /* a cron run's chunk is its own transaction */
  c->db_failed = 0;
  c->started_ns = mono_ns();
  if (c->m) member_undo_begin(&c->undo, c->m);
}

void engine_call_member(engine_t *e, engine_call_t *c, member_t *m) {
  assert(c->cron);
  if (c->m) member_undo_end(&c->undo);
  free(c->refusal);
  c->refusal = NULL;
  c->m = m;
  if (m) {
    e->action_n = 0; /* default ids count per member in a sweep */
    member_undo_begin(&c->undo, m);
  }
}

/* Open the call's savepoint before its first write. */
int eng_call_write(engine_t *e, engine_call_t *c) {
  if (c->savepoint) return 0;
  if (store_savepoint(e->store) < 0) {
    c->db_failed = 1;
    return -1;
  }
  c->savepoint = 1;
  return 0;
}

/* Mark the call failed by the database: the batch will be rolled back. */
int eng_db_error(engine_call_t *c) {
  c->db_failed = 1;
  return -1;
}

void eng_record_failure(engine_t *e, engine_call_t *c, const char *err) {
  const event_t *ev = c->ev;
  json_t *evj = json_object();
  if (ev->id) json_object_set_new(evj, "id", json_string(ev->id));
  json_object_set_new(evj, "type", json_string(ev->type));
  json_object_set_new(evj, "member", json_string(ev->member));
  char tbuf[32];
  json_object_set_new(evj, "time", json_string(engine_fmt_time(e, ev->time, tbuf)));
  if (ev->data) json_object_set(evj, "data", ev->data);
  char *text = json_dumps(evj, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(evj);
  failure_row_t row = {.at = e->now, .member = ev->member, .event = text ? text : "{}",
                       .campaign = c->campaign, .error = err};
  if (store_failure_add(e->store, &row) < 0) c->db_failed = 1;
  free(text);
  log_msg(LOG_ERROR, "handler failed", "campaign", c->campaign, "event", c->event_key,
          "member", ev->member, "type", ev->type, "error", err, NULL);
}

/* Undo the call's changes alone: its member, actions, counters and savepoint. */
static int call_undo(engine_t *e, engine_call_t *c) {
  member_undo_restore(&c->undo);
  member_undo_end(&c->undo);
  eng_drop_pending(e, c->pending_mark);
  funnel_undo(e, c->funnel_mark);
  e->action_n = c->action_n_mark; /* default ids of later handlers do not depend on this call */
  return c->savepoint && store_rollback_to(e->store) < 0 ? -1 : 0;
}

int eng_call_discard(engine_t *e, engine_call_t *c) {
  assert(!c->cron);
  if (c->db_failed) {
    member_undo_end(&c->undo);
    return -1;
  }
  return call_undo(e, c);
}

void eng_trace(engine_t *e, engine_trace_t *t) {
  if (!e->on_trace) return;
  t->at = e->now;
  e->on_trace(e->on_trace_ud, t);
}

/* Settle a handler call: keep its changes (err NULL), or undo them alone and record the
 * failure. 0 kept, 1 failed and recorded, -1 database error (the batch must roll back). */
int eng_call_end(engine_t *e, engine_call_t *c, const char *err) {
  free(c->refusal); /* raised by the glue already, or the error the caller reports */
  c->refusal = NULL;
  assert(!c->cron);
  count_handler_time(&e->stats, (double)(mono_ns() - c->started_ns) / 1e9);
  if (c->db_failed) {
    member_undo_end(&c->undo);
    return -1;
  }
  if (!err) {
    int rc = c->savepoint ? store_release(e->store) : 0;
    member_undo_end(&c->undo);
    if (rc == 0) eng_invariants_settle(e, c->pending_mark);
    return rc;
  }
  if (call_undo(e, c) < 0) return -1;
  eng_record_failure(e, c, err);
  e->stats.handler_errors++;
  eng_trace(e, &(engine_trace_t){.kind = TRACE_FAILED, .member = c->ev->member, .type = c->ev->type,
                                 .campaign = c->campaign, .detail = err});
  return c->db_failed ? -1 : 1;
}

/* Run every handler for ev on member m: the type's, then the catch-all ones, each in
 * declaration order. Returns EV_APPLIED, EV_FAILED (one or more failed) or EV_ERROR. */
int eng_dispatch(engine_t *e, member_t *m, const event_t *ev, const char *key, int64_t depth,
                    const char *chain) {
  if (!e->scripts) return EV_APPLIED;
  const char *types[2] = {ev->type, "*"};
  int failed = 0;
  e->action_n = 0;
  for (int k = 0; k < 2; k++) {
    int n = scripts_handler_count(e->scripts, types[k]);
    for (int i = 0; i < n; i++) {
      engine_call_t c = {.m = m, .ev = ev, .event_key = key, .depth = depth, .chain = chain,
                         .campaign = scripts_handler_campaign(e->scripts, types[k], i)};
      eng_call_begin(e, &c);
      char *err = NULL;
      int ran = scripts_run_handler(e->scripts, types[k], i, &c, &err);
      assert(ran == 0 || err);
      int rc = eng_call_end(e, &c, ran == 0 ? NULL : err);
      free(err);
      if (rc < 0) return EV_ERROR;
      failed += rc;
    }
  }
  if (failed) {
    e->stats.failed++;
    return EV_FAILED;
  }
  return EV_APPLIED;
}

/* ---- events ---- */

static void set_attr_string(member_t *m, const char *key, json_t *v) {
  if (json_is_string(v) && !json_object_get(member_attrs(m), key)) {
    member_touch(m, MP_ATTRS);
    json_object_set(member_attrs(m), key, v);
  }
}

/* apply_builtins sets her "staff" attribute only from data.staff of a join or an update. */
static int builtins_may_change_owner(const event_t *ev) {
  return (!strcmp(ev->type, "member.joined") || !strcmp(ev->type, "member.updated")) &&
         json_object_get(ev->data, "staff") != NULL;
}

/* The fields the engine keeps itself, updated before the handlers see the event. */
static void apply_builtins(member_t *m, const event_t *ev) {
  const char *t = ev->type;
  json_t *data = ev->data;
  if (strcmp(t, "member.joined") == 0) {
    if (m->joined_at == NO_TIME) m->joined_at = ev->time;
    if (json_object_get(member_attrs(m), "friend_deleted")) { /* added as a friend again */
      member_touch(m, MP_ATTRS);
      json_object_del(member_attrs(m), "friend_deleted");
    }
    const char *keys[] = {"channel", "store", "staff", "referrer", "tz"};
    for (int i = 0; i < 5; i++) set_attr_string(m, keys[i], json_object_get(data, keys[i]));
  } else if (strcmp(t, "member.updated") == 0 && data) {
    const char *k;
    json_t *v;
    member_touch(m, MP_ATTRS);
    json_object_foreach(data, k, v) {
      if (json_is_null(v))
        json_object_del(member_attrs(m), k);
      else
        json_object_set(member_attrs(m), k, v);
    }
  } else if (strcmp(t, "friend.deleted") == 0) {
    member_touch(m, MP_ATTRS); /* no WeCom channel reaches her until she is added again */
    json_object_set_new(member_attrs(m), "friend_deleted", json_true());
  } else if (strcmp(t, "member.unsubscribed") == 0) {
    member_touch(m, MP_ATTRS);
    json_object_set_new(member_attrs(m), "unsubscribed", json_true());
  } else if (strcmp(t, "member.subscribed") == 0) {
    if (json_object_get(member_attrs(m), "unsubscribed")) {
      member_touch(m, MP_ATTRS);
      json_object_del(member_attrs(m), "unsubscribed");
    }
  } else if (strcmp(t, "order.paid") == 0) {
    m->orders++;
    json_t *a = json_object_get(data, "amount");
    if (json_is_number(a) && json_number_value(a) > 0) m->spend += json_number_value(a);
  } else if (strcmp(t, "order.refunded") == 0) {
    json_t *a = json_object_get(data, "amount");
    if (json_is_number(a) && json_number_value(a) > 0) {
      m->spend -= json_number_value(a);
      if (m->spend < 0) m->spend = 0;
    }
  }
  m->spend = round(m->spend * 100.0) / 100.0; /* money: whole cents, no float drift */
  if (m->last_active_at == NO_TIME || ev->time > m->last_active_at) m->last_active_at = ev->time;
  m->dirty = 1;
}

/* Apply an event at `now` inside the open batch: dedupe, built-ins, handlers. */
int eng_apply_event(engine_t *e, event_t *ev) {
  assert(e->in_batch && ev->has_time);
  if (ev->id) {
    int64_t at = e->now > e->seen_floor ? e->now : e->seen_floor; /* marked at receipt at the earliest */
    int fresh = store_seen_mark(e->store, ev->id, at,
                                e->dedupe_window > 0 ? e->now - e->dedupe_window : INT64_MIN);
    if (fresh < 0) return EV_ERROR;
    if (!fresh) {
      e->stats.duplicates++;
      eng_trace(e, &(engine_trace_t){.kind = TRACE_DUPLICATE, .member = ev->member, .type = ev->type, .detail = ev->id});
      return EV_DUPLICATE;
    }
  }
  e->event_seq++;
  char keybuf[40];
  const char *key = ev->id;
  if (!key) {
    prefixed_int(keybuf, sizeof keybuf, "@", e->event_seq);
    key = keybuf;
  }
  member_t *m = member_cache_get(&e->members, e->store, ev->member, ev->time);
  if (!m) return EV_ERROR;
  /* her owner before the built-in fields, when they may change it (her attributes are
   * parsed only then) */
  int owner_event = builtins_may_change_owner(ev);
  char *staff_before = owner_event && eng_member_staff(m) ? xstrdup(eng_member_staff(m)) : NULL;
  apply_builtins(m, ev);
  int staff_rc = eng_staff_builtins(e, m, ev, key, owner_event, staff_before);
  free(staff_before);
  if (staff_rc < 0) return EV_ERROR;
  eng_trace(e, &(engine_trace_t){.kind = TRACE_EVENT, .member = ev->member, .type = ev->type, .detail = key});
  e->stats.accepted++;
  e->batch_work++;
  if (!strcmp(ev->type, "redemption.refunded") && eng_refund(e, m, ev, key) == EV_ERROR) return EV_ERROR;
  return eng_dispatch(e, m, ev, key, 0, NULL);
}

