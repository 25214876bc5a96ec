/* engine: batches, dedupe, built-in member fields, handler calls and every state change
 * they make, timers, cron and the clock driver (see engine.h). */
#include "engine.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "restraint.h"

/* Timers read and fired per batch. */
#define TIMER_BATCH 1000
/* The reserved timer type that brings a deferred send back at the end of quiet hours. */
#define RELEASE_TIMER "hearth.deferred"

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

static void schedule_cron(engine_t *e, int64_t now);

/* Take a freshly loaded script set: one cron slot per entry, scheduled if the clock runs. */
static void adopt_scripts(engine_t *e, scripts_t *s) {
  for (int i = 0; e->scripts && i < e->ncron; i++) scripts_cron_drop(e->scripts, i);
  scripts_free(e->scripts);
  free(e->cron);
  e->scripts = s;
  e->ncron = s ? scripts_cron_count(s) : 0;
  e->cron = xcalloc((size_t)e->ncron + 1, sizeof *e->cron);
  for (int i = 0; i < e->ncron; i++) e->cron[i] = (cron_slot_t){.next_slot = INT64_MAX, .running = INT64_MIN, .started = 0};
  if (e->started) schedule_cron(e, e->now);
}

engine_t *engine_open(const engine_opts_t *o, char **errp) {
  char err[1024] = "";
  *errp = NULL;
  engine_t *e = xcalloc(1, sizeof *e);
  e->dedupe_window = o->dedupe_window;
  e->max_member_bytes = o->max_member_bytes > 0 ? o->max_member_bytes : MEMBER_BYTES_DEFAULT;
  e->expire_before = INT64_MIN;
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
    adopt_scripts(e, s);
  }
  return e;
fail:
  *errp = xstrdup(err);
  engine_close(e);
  return NULL;
}

static void drop_pending(engine_t *e, int mark);
static int funnel_flush(engine_t *e, int write);

void engine_close(engine_t *e) {
  if (!e) return;
  if (e->in_batch) engine_rollback(e);
  adopt_scripts(e, NULL);
  free(e->cron);
  drop_pending(e, 0);
  funnel_flush(e, 0);
  free(e->funnel.buckets);
  free(e->funnel.log);
  free(e->funnel.log_n);
  free(e->pending);
  for (int i = 0; i < e->stats.nchannels; i++) free(e->stats.by_channel[i].channel);
  free(e->stats.by_channel);
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
}

void engine_use_history_clock(engine_t *e, int64_t stale_after) {
  assert(stale_after > 0);
  int64_t real_now = clock_now(&e->clock);
  engine_use_virtual_clock(e);
  e->expire_before = real_now - stale_after;
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
  adopt_scripts(e, s);
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
static void funnel_add(engine_t *e, const char *campaign, const char *step, const char *variant,
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
static int64_t funnel_pending(engine_t *e, const char *metric, const char *campaign, const char *step,
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

static void drop_pending(engine_t *e, int mark) {
  while (e->npending > mark) {
    pending_action_t *p = &e->pending[--e->npending];
    json_decref(p->body);
    free(p->text);
    free(p->channel);
  }
}

/* Report the batch's actions: counters, then the on_action callback, in order. */
static void report_pending(engine_t *e) {
  for (int i = 0; i < e->npending; i++) {
    pending_action_t *p = &e->pending[i];
    e->stats.actions[p->status]++;
    count_channel_action(&e->stats, p->channel, p->status);
    if (e->on_action && p->body) e->on_action(e->on_action_ud, p->body, p->text);
  }
  drop_pending(e, 0);
}

int engine_begin(engine_t *e) {
  assert(!e->in_batch);
  e->earliest_timer = INT64_MAX;
  if (!e->clock.is_virtual) e->now = clock_now(&e->clock);
  if (store_begin(e->store) < 0) return -1;
  e->in_batch = 1;
  load_seqs(e);
  return 0;
}

int engine_commit(engine_t *e) {
  assert(e->in_batch);
  if (funnel_flush(e, 1) < 0 || member_cache_flush(&e->members, e->store) < 0 ||
      store_meta_set(e->store, "event_seq", e->event_seq) < 0 ||
      store_meta_set(e->store, "timer_seq", e->timer_seq) < 0 || store_commit(e->store) < 0) {
    log_msg(LOG_ERROR, "commit failed", "error", store_errmsg(e->store), NULL);
    engine_rollback(e);
    return -1;
  }
  e->in_batch = 0;
  e->batch_work = 0;
  member_cache_clear(&e->members);
  report_pending(e);
  return 0;
}

void engine_rollback(engine_t *e) {
  drop_pending(e, 0);
  funnel_flush(e, 0);
  store_rollback(e->store);
  e->in_batch = 0;
  e->batch_work = 0;
  member_cache_clear(&e->members);
  load_seqs(e);
}

/* ---- one handler call ---- */

static void call_begin(engine_t *e, engine_call_t *c) {
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
  c->m = m;
  if (m) {
    e->action_n = 0; /* default ids count per member in a sweep */
    member_undo_begin(&c->undo, m);
  }
}

/* Open the call's savepoint before its first write. */
static int call_write(engine_t *e, engine_call_t *c) {
  if (c->savepoint) return 0;
  if (store_savepoint(e->store) < 0) {
    c->db_failed = 1;
    return -1;
  }
  c->savepoint = 1;
  return 0;
}

/* Mark the call failed by the database: the batch will be rolled back. */
static int db_error(engine_call_t *c) {
  c->db_failed = 1;
  return -1;
}

static void record_failure(engine_t *e, engine_call_t *c, const char *err) {
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

/* Settle a handler call: keep its changes (err NULL), or undo them alone and record the
 * failure. 0 kept, 1 failed and recorded, -1 database error (the batch must roll back). */
static int call_end(engine_t *e, engine_call_t *c, const char *err) {
  assert(!c->cron);
  count_handler_time(&e->stats, (double)(mono_ns() - c->started_ns) / 1e9);
  if (c->db_failed) {
    member_undo_end(&c->undo);
    return -1;
  }
  if (!err) {
    int rc = c->savepoint ? store_release(e->store) : 0;
    member_undo_end(&c->undo);
    return rc;
  }
  member_undo_restore(&c->undo);
  member_undo_end(&c->undo);
  drop_pending(e, c->pending_mark);
  funnel_undo(e, c->funnel_mark);
  e->action_n = c->action_n_mark; /* default ids of later handlers do not depend on this failure */
  if (c->savepoint && store_rollback_to(e->store) < 0) return -1;
  record_failure(e, c, err);
  e->stats.handler_errors++;
  return c->db_failed ? -1 : 1;
}

/* Run every handler for ev on member m: the type's, then the catch-all ones, each in
 * declaration order. Returns EV_APPLIED, EV_FAILED (one or more failed) or EV_ERROR. */
static int dispatch(engine_t *e, member_t *m, const event_t *ev, const char *key, int64_t depth,
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
      call_begin(e, &c);
      char *err = NULL;
      int ran = scripts_run_handler(e->scripts, types[k], i, &c, &err);
      assert(ran == 0 || err);
      int rc = call_end(e, &c, ran == 0 ? NULL : err);
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
static int apply_event(engine_t *e, event_t *ev) {
  assert(e->in_batch && ev->has_time);
  if (ev->id) {
    int fresh = store_seen_mark(e->store, ev->id, e->now,
                                e->dedupe_window > 0 ? e->now - e->dedupe_window : INT64_MIN);
    if (fresh < 0) return EV_ERROR;
    if (!fresh) {
      e->stats.duplicates++;
      return EV_DUPLICATE;
    }
  }
  e->event_seq++;
  char keybuf[40];
  const char *key = ev->id;
  if (!key) {
    snprintf(keybuf, sizeof keybuf, "@%lld", (long long)e->event_seq);
    key = keybuf;
  }
  member_t *m = member_cache_get(&e->members, e->store, ev->member, ev->time);
  if (!m) return EV_ERROR;
  apply_builtins(m, ev);
  e->stats.accepted++;
  e->batch_work++;
  return dispatch(e, m, ev, key, 0, NULL);
}

/* ---- timers ---- */

/* 1 when the member has a row or is in this batch's cache, 0 when not, -1 error. */
static int member_known(engine_t *e, const char *id) {
  if (member_cache_find(&e->members, id)) return 1;
  return store_member_exists(e->store, id);
}

/* The clock as a timer due at `due` fires: a virtual clock moves to it. */
static void move_now(engine_t *e, int64_t t) {
  if (e->clock.is_virtual || e->now < t) e->now = t;
  if (e->clock.is_virtual) clock_set(&e->clock, e->now);
}

static int release_send(engine_t *e, member_t *m, const timer_row_t *r, const event_t *ev, const char *key);

/* An event at the end of too long a causal chain: recorded as failed, with the chain. */
static int refuse_chain(engine_t *e, member_t *m, const timer_row_t *r, const event_t *ev) {
  (void)m;
  char *msg = xasprintf("causal chain too long: '%s' would be event %lld of a chain in which each was caused at "
                        "once by the one before (hearth.emit, or a timer due at once); the limit is %d, so it "
                        "is not applied. The chain ended: %s > %s:%s",
                        r->type, (long long)r->depth + 1, MAX_CAUSAL_DEPTH, r->chain ? r->chain : "?",
                        r->campaign ? r->campaign : "?", r->type);
  engine_call_t c = {.m = NULL, .ev = ev, .event_key = "chain", .campaign = r->campaign ? r->campaign : ""};
  record_failure(e, &c, msg);
  free(msg);
  e->stats.handler_errors++;
  e->stats.failed++;
  return c.db_failed ? EV_ERROR : EV_FAILED;
}

/* Fire one timer row inside the open batch. */
static int fire_one(engine_t *e, timer_row_t *r) {
  move_now(e, r->due);
  e->batch_work++;
  if (r->gen == TIMER_NOT_CANCELLABLE) {
    int known = member_known(e, r->member);
    if (known < 0) return EV_ERROR;
    if (!known) {
      e->stats.timers_cancelled++; /* hearth.emit to a member who does not exist */
      return EV_APPLIED;
    }
  }
  member_t *m = member_cache_get(&e->members, e->store, r->member, r->due);
  if (!m) return EV_ERROR;
  json_t *gen = json_object_get(member_gens(m), r->type);
  if (r->gen != TIMER_NOT_CANCELLABLE && (gen ? json_integer_value(gen) : 0) != r->gen) {
    e->stats.timers_cancelled++;
    return EV_APPLIED;
  }
  event_t ev = {.type = r->type, .member = r->member, .time = r->due, .has_time = 1};
  if (r->data) ev.data = json_loads(r->data, 0, NULL);
  char key[48];
  snprintf(key, sizeof key, "timer:%lld", (long long)r->id);
  e->stats.timers_fired++;
  int rc;
  if (r->depth > MAX_CAUSAL_DEPTH)
    rc = refuse_chain(e, m, r, &ev);
  else if (!strcmp(r->type, RELEASE_TIMER))
    rc = release_send(e, m, r, &ev, key);
  else
    rc = dispatch(e, m, &ev, key, r->depth, r->chain);
  json_decref(ev.data);
  return rc;
}

/* Fire timers due at or before upto, in (due, id) order, inside the open batch. Rows are
 * read a batch at a time; the batch stops early when a handler sets a timer due before
 * the next row, so the order stays earliest first. Only rows that existed when the batch
 * was read (id <= the sequence at that moment) are deleted: timers set by the batch's
 * own handlers stay. Returns the number fired, -1 on a database error. */
static int fire_timers(engine_t *e, int64_t upto, int max, uint64_t deadline_ns) {
  assert(e->in_batch);
  timer_row_t *rows;
  int64_t seq_at_read = e->timer_seq, earliest_before = e->earliest_timer;
  e->earliest_timer = INT64_MAX; /* only timers set from here on may cut the batch */
  int n = store_timers_due(e->store, upto, max, &rows);
  if (n < 0) return -1;
  int rc = 0, fired = 0;
  while (fired < n && rc == 0) {
    if (fire_one(e, &rows[fired]) == EV_ERROR) rc = -1;
    fired++;
    if (fired < n && e->earliest_timer < rows[fired].due) break;
    if (deadline_ns && mono_ns() > deadline_ns) break; /* the slice is spent: commit what fired */
  }
  if (rc == 0 && fired > 0 &&
      store_timers_delete_upto(e->store, rows[fired - 1].due, rows[fired - 1].id, seq_at_read) < 0)
    rc = -1;
  store_timer_rows_free(rows, n);
  if (earliest_before < e->earliest_timer) e->earliest_timer = earliest_before;
  return rc < 0 ? -1 : fired;
}

/* Due time of the earliest timer, INT64_MAX when none; a read error counts as "now" so
 * that the caller's next step meets the error and reports it. */
static int64_t next_timer(engine_t *e) {
  int64_t due;
  int found = store_timer_next(e->store, &due);
  if (found < 0) return INT64_MIN;
  return found ? due : INT64_MAX;
}

/* ---- cron ---- */

/* Each entry's next slot as of `now`: an entry whose last run (cron_state) is followed by
 * missed slots runs once, for the latest of them; one never run waits for its next slot. */
static void schedule_cron(engine_t *e, int64_t now) {
  for (int i = 0; i < e->ncron; i++) {
    const cron_t *expr = scripts_cron_expr(e->scripts, i);
    int64_t last;
    int ran = store_cron_last(e->store, scripts_cron_key(e->scripts, i), &last);
    int64_t next;
    if (ran <= 0) {
      next = cron_next(expr, e->tz, now - 1); /* a read error is logged: treat as never run */
    } else {
      int64_t slot = cron_next(expr, e->tz, last), missed = INT64_MIN;
      while (slot >= 0 && slot <= now) {
        missed = slot;
        slot = cron_next(expr, e->tz, slot);
      }
      next = missed != INT64_MIN ? missed : slot;
    }
    e->cron[i].next_slot = next < 0 ? INT64_MAX : next;
  }
}

static int64_t next_cron(engine_t *e) {
  int64_t t = INT64_MAX;
  for (int i = 0; i < e->ncron; i++)
    if (e->cron[i].next_slot < t) t = e->cron[i].next_slot;
  return t;
}

/* The entry whose run is in progress (started, or due to start, for the slot being run),
 * lowest index first, or -1. */
static int cron_in_progress(engine_t *e) {
  for (int i = 0; i < e->ncron; i++)
    if (e->cron[i].running != INT64_MIN) return i;
  return -1;
}

int engine_cron_pending(engine_t *e) { return cron_in_progress(e) >= 0; }

static void record_cron_failure(engine_t *e, int i, int64_t slot, const char *err) {
  char tbuf[32];
  const char *campaign = scripts_cron_campaign(e->scripts, i);
  log_msg(LOG_ERROR, "cron run failed", "campaign", campaign, "cron", scripts_cron_spec(e->scripts, i),
          "slot", engine_fmt_time(e, slot, tbuf), "error", err, NULL);
  json_t *evj = json_pack("{s:s, s:I}", "cron", scripts_cron_key(e->scripts, i), "slot", (json_int_t)slot);
  char *text = json_dumps(evj, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(evj);
  failure_row_t row = {.at = e->now, .member = "", .event = text, .campaign = campaign, .error = err};
  store_failure_add(e->store, &row); /* a failure is logged by the store; the commit reports it */
  free(text);
}

/* One step of the run of entry i, in a transaction of its own: start it (first step) or
 * resume it. A run that yields has finished a sweep chunk, which commits; a failed run
 * keeps its slot recorded and its traceback. 0 ok, -1 database error. */
static int cron_step(engine_t *e, int i) {
  cron_slot_t *cs = &e->cron[i];
  int64_t slot = cs->running;
  assert(slot != INT64_MIN);
  const char *ckey = scripts_cron_key(e->scripts, i);
  char key[320];
  snprintf(key, sizeof key, "cron:%s@%lld", ckey, (long long)slot);
  engine_call_t c = {.event_key = key, .campaign = scripts_cron_campaign(e->scripts, i), .cron = 1};
  if (e->clock.is_virtual && !cs->started) move_now(e, slot);
  if (engine_begin(e) < 0) return -1;
  call_begin(e, &c);
  char *err = NULL;
  int how;
  if (!cs->started) {
    int64_t next = cron_next(scripts_cron_expr(e->scripts, i), e->tz, slot);
    cs->next_slot = next < 0 ? INT64_MAX : next;
    cs->started = 1;
    if (store_cron_set(e->store, ckey, slot) < 0) { /* recorded when the run starts */
      cs->running = INT64_MIN, cs->started = 0;
      engine_rollback(e);
      return -1;
    }
    how = scripts_cron_start(e->scripts, i, slot, &c, &err);
  } else {
    how = scripts_cron_resume(e->scripts, i, &c, &err);
  }
  engine_call_member(e, &c, NULL);
  assert(how == CRON_YIELDED || how == CRON_FINISHED || err);
  if (how != CRON_YIELDED) cs->running = INT64_MIN, cs->started = 0;
  if (c.db_failed) {
    free(err);
    scripts_cron_drop(e->scripts, i);
    cs->running = INT64_MIN, cs->started = 0;
    engine_rollback(e);
    return -1;
  }
  if (how != CRON_FAILED) return engine_commit(e);
  /* failed: drop the chunk in hand, keep the slot recorded, keep the traceback */
  engine_rollback(e);
  int rc = 0;
  if (engine_begin(e) < 0) {
    rc = -1;
  } else {
    if (store_cron_set(e->store, ckey, slot) < 0) rc = -1;
    record_cron_failure(e, i, slot, err);
    if (engine_commit(e) < 0) rc = -1;
  }
  e->stats.handler_errors++;
  free(err);
  return rc;
}

/* ---- the clock driver ---- */

/* Set `now` (and schedule cron) the first time the driver runs. */
static void start_clock(engine_t *e, int64_t t) {
  if (e->started) return;
  e->started = 1;
  e->now = t;
  if (e->clock.is_virtual) clock_restart(&e->clock, t);
  schedule_cron(e, t);
}

int64_t engine_next_due(engine_t *e) {
  start_clock(e, e->clock.is_virtual ? e->now : clock_now(&e->clock));
  if (cron_in_progress(e) >= 0) return e->now;
  int64_t t = next_timer(e), c = next_cron(e);
  return c < t ? c : t;
}

int engine_run_until(engine_t *e, int64_t upto, int max_batches) {
  assert(!e->in_batch);
  start_clock(e, e->clock.is_virtual ? upto : clock_now(&e->clock));
  uint64_t deadline = e->slice_ns ? mono_ns() + e->slice_ns : 0;
  for (int batches = 0;; batches++) {
    int i = cron_in_progress(e);
    int64_t t = i >= 0 ? INT64_MAX : next_timer(e), c = i >= 0 ? INT64_MAX : next_cron(e);
    if (i < 0 && t > upto && c > upto) break;
    if ((max_batches && batches >= max_batches) || (deadline && batches && mono_ns() > deadline)) return 1;
    if (i >= 0) {
      if (cron_step(e, i) < 0) return -1;
    } else if (t <= c) {
      if (engine_begin(e) < 0) return -1;
      if (fire_timers(e, c < upto ? c : upto, TIMER_BATCH, deadline) < 0) {
        engine_rollback(e);
        return -1;
      }
      if (engine_commit(e) < 0) return -1;
    } else {
      /* every entry due at this slot runs, in declaration order, each to its end */
      for (int k = 0; k < e->ncron; k++)
        if (e->cron[k].next_slot <= c) e->cron[k].running = e->cron[k].next_slot;
    }
  }
  if (e->clock.is_virtual && upto > e->now) move_now(e, upto);
  return 0;
}

int engine_feed(engine_t *e, event_t *ev) {
  if (!ev->has_time) ev->time = e->clock.is_virtual ? e->now : clock_now(&e->clock), ev->has_time = 1;
  start_clock(e, e->clock.is_virtual ? ev->time : clock_now(&e->clock));
  if (e->clock.is_virtual) {
    if (cron_in_progress(e) >= 0 || next_cron(e) <= ev->time) {
      /* a cron run commits a transaction per sweep chunk: close the batch for it */
      if (e->in_batch && engine_commit(e) < 0) return EV_ERROR;
      if (engine_run_until(e, ev->time, 0) < 0) return EV_ERROR;
    }
  }
  if (!e->in_batch && engine_begin(e) < 0) return EV_ERROR;
  if (e->clock.is_virtual) {
    /* timers due before the event fire inside the open batch, earliest first */
    int64_t t;
    while ((t = next_timer(e)) <= ev->time) {
      if (t == INT64_MIN || fire_timers(e, ev->time, TIMER_BATCH, 0) < 0) goto fail;
    }
    if (ev->time > e->now) move_now(e, ev->time);
  }
  int rc = apply_event(e, ev);
  if (rc == EV_ERROR) goto fail;
  return rc;
fail:
  engine_rollback(e);
  return EV_ERROR;
}

/* ---- the changes a script may ask for ---- */

/* About the bytes a value takes as compact JSON, by walking it (no formatting: the cap is
 * a bound on memory, not an exact size): strings their length and quotes, numbers 8. */
static int64_t value_bytes(json_t *v) {
  int64_t n = 0;
  const char *k;
  json_t *x;
  size_t i;
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    n = 2;
    json_object_foreach(v, k, x) n += (int64_t)strlen(k) + 4 + value_bytes(x);
    return n;
  case JSON_ARRAY:
    n = 2;
    json_array_foreach(v, i, x) n += 1 + value_bytes(x);
    return n;
  case JSON_STRING: return (int64_t)json_string_length(v) + 2;
  case JSON_INTEGER:
  case JSON_REAL: return 8;
  default: return 5;
  }
}

/* Bytes one attribute or tag takes in the member's JSON: "key":value, */
static int64_t entry_bytes(const char *key, json_t *value) {
  return (int64_t)strlen(key) + 4 + (value ? value_bytes(value) : 0);
}

/* Grow the member by delta bytes, unless that takes her past the cap. */
static int grow(engine_t *e, member_t *m, int64_t delta) {
  int64_t now = member_bytes(m);
  if (delta > 0 && now + delta > e->max_member_bytes) return MEMBER_TOO_BIG;
  m->bytes = now + delta;
  return 0;
}

int engine_set_attr(engine_t *e, engine_call_t *c, const char *key, json_t *value) {
  json_t *attrs = member_attrs(c->m), *old = json_object_get(attrs, key);
  if (!value && !old) return 0;
  int64_t delta = (value ? entry_bytes(key, value) : 0) - (old ? entry_bytes(key, old) : 0);
  if (grow(e, c->m, delta) < 0) {
    json_decref(value);
    return MEMBER_TOO_BIG;
  }
  member_undo_key(&c->undo, MP_ATTRS, key);
  if (value)
    json_object_set_new(attrs, key, value);
  else
    json_object_del(attrs, key);
  return 0;
}

/* Release what a spec still owns (its change was not made). */
static void spec_release(action_spec_t *a) {
  json_decref(a->fields);
  json_decref(a->reason);
  a->fields = a->reason = NULL;
}

/* Hold an action for the commit's report; text (taken, may be NULL) is its stored form. */
static void hold(engine_t *e, json_t *body, char *text, int status, const char *channel) {
  if (e->npending == e->cappending)
    e->pending = xrealloc(e->pending, (size_t)(e->cappending = e->cappending ? e->cappending * 2 : 64) * sizeof *e->pending);
  pending_action_t *p = &e->pending[e->npending++];
  p->body = json_incref(body);
  p->text = text;
  p->status = status;
  p->channel = channel ? xstrdup(channel) : NULL;
}

/* The stable id of an action: campaign/member/key, or campaign/member/event/n. */
static char *action_id(engine_t *e, engine_call_t *c, const action_spec_t *a, int count) {
  const char *campaign = a->campaign ? a->campaign : c->campaign;
  if (a->key) return xasprintf("%s/%s/%s", campaign, c->m->id, a->key);
  return xasprintf("%s/%s/%s/%d", campaign, c->m->id, c->event_key, count ? ++e->action_n : e->action_n);
}


static int add_timer(engine_t *e, engine_call_t *c, timer_row_t *row);

/* A deferred send comes back at `until` to be judged again under the same id. */
static int defer_send(engine_t *e, engine_call_t *c, const action_spec_t *a, const char *id, json_t *fields,
                      int64_t until) {
  json_t *d = json_pack("{s:s, s:s, s:s, s:O}", "id", id, "kind", a->kind, "campaign",
                        a->campaign ? a->campaign : c->campaign, "fields", fields);
  if (a->key) json_object_set_new(d, "key", json_string(a->key));
  if (a->step) json_object_set_new(d, "step", json_string(a->step));
  if (a->channel) json_object_set_new(d, "channel", json_string(a->channel));
  char *data = json_dumps(d, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(d);
  timer_row_t row = {.due = until, .member = c->m->id, .type = RELEASE_TIMER, .data = data,
                     .gen = TIMER_NOT_CANCELLABLE, .campaign = (char *)c->campaign};
  int rc = add_timer(e, c, &row);
  free(data);
  return rc;
}

/* Add a queued marketing send to the member's log, dropping what no rule counts any more. */
static void log_send(engine_t *e, engine_call_t *c, const restraint_t *r, const tz_t *tz, const char *id,
                     const char *channel, const char *staff) {
  json_t *sends = member_sends(c->m);
  int64_t keep = restraint_keep_since(r, tz, e->now);
  const char *k;
  json_t *v;
  void *tmp;
  json_object_foreach_safe(sends, tmp, k, v) {
    if (json_integer_value(json_array_get(v, 0)) < keep) {
      member_undo_key(&c->undo, MP_SENDS, k);
      json_object_del(sends, k);
    }
  }
  member_undo_key(&c->undo, MP_SENDS, id);
  json_object_set_new(sends, id, json_pack("[I, s, s]", (json_int_t)e->now, channel ? channel : "", staff ? staff : ""));
}

static const int verdict_status[] = {
    [VERDICT_QUEUED] = AS_QUEUED, [VERDICT_DEFERRED] = AS_DEFERRED, [VERDICT_SUPPRESSED] = AS_SUPPRESSED,
    [VERDICT_CAPPED] = AS_CAPPED, [VERDICT_LIMITED] = AS_LIMITED};

/* Judge a marketing send now (restraint.h), asking the campaign's guard on a second
 * judgement. Returns AS_*, with *reason (new reference) and *until for a deferral; -1
 * when the guard raised (*err). */
static int judge_send(engine_t *e, engine_call_t *c, const action_spec_t *a, const char *id, json_t *fields,
                      int second, json_t **reason, int64_t *until, char **err) {
  const restraint_t *r = scripts_restraint(e->scripts);
  const tz_t *tz = engine_member_tz(e, c->m);
  json_t *attrs = member_attrs(c->m);
  const char *staff = json_string_value(json_object_get(fields, "staff"));
  if (!staff) staff = json_string_value(json_object_get(attrs, "staff"));
  restraint_send_t send = {.tz = tz, .now = e->now, .channel = a->channel, .staff = staff, .attrs = attrs,
                           .sends = member_sends(c->m)};
  verdict_t v;
  restraint_first(r, &send, &v);
  if (v.verdict == VERDICT_QUEUED && second) {
    json_t *seen = json_pack("{s:s, s:s, s:O}", "id", id, "campaign", a->campaign ? a->campaign : c->campaign,
                             "fields", fields);
    if (a->key) json_object_set_new(seen, "key", json_string(a->key));
    if (a->step) json_object_set_new(seen, "step", json_string(a->step));
    int allow = scripts_guard(e->scripts, a->campaign ? a->campaign : c->campaign, c, seen, err);
    json_decref(seen);
    if (allow < 0) return -1;
    if (!allow) {
      *reason = json_pack("{s:s, s:s}", "rule", "guard", "campaign", a->campaign ? a->campaign : c->campaign);
      return AS_SKIPPED;
    }
  }
  if (v.verdict == VERDICT_QUEUED) restraint_limits(r, &send, &v);
  if (v.verdict == VERDICT_QUEUED && restraint_counts_sends(r)) log_send(e, c, r, tz, id, a->channel, staff);
  *reason = v.reason;
  *until = v.until;
  return verdict_status[v.verdict];
}

static int is_marketing_send(const action_spec_t *a, json_t *fields) {
  const char *category = json_string_value(json_object_get(fields, "category"));
  return !strcmp(a->kind, "send") && !(category && !strcmp(category, "service"));
}

/* The records of changes already made: points, tag, untag. */
static int is_change(const char *kind) {
  return !strcmp(kind, "points") || !strcmp(kind, "tag") || !strcmp(kind, "untag");
}

/* 1 when `channel` delivers actions of `kind`: its `kinds` option, else sends, tasks and
 * webhooks. */
static int channel_delivers(engine_t *e, const char *channel, const char *kind) {
  json_t *kinds = NULL;
  for (int i = 0; e->scripts && channel && i < scripts_channel_count(e->scripts); i++) {
    const channel_decl_t *ch = scripts_channel(e->scripts, i);
    if (!strcmp(ch->name, channel)) kinds = json_object_get(ch->opts, "kinds");
  }
  if (!kinds) return !is_change(kind);
  size_t i;
  json_t *k;
  json_array_foreach(kinds, i, k) if (json_is_string(k) && !strcmp(json_string_value(k), kind)) return 1;
  return 0;
}

static json_t *action_body(engine_t *e, engine_call_t *c, const action_spec_t *a, const char *id, int status,
                           json_t *fields, json_t *reason) {
  char tbuf[32];
  json_t *body = json_object();
  json_object_set_new(body, "id", json_string(id));
  json_object_set_new(body, "time", json_string(engine_fmt_time(e, e->now, tbuf)));
  json_object_set_new(body, "member", json_string(c->m->id));
  json_object_set_new(body, "campaign", json_string(a->campaign ? a->campaign : c->campaign));
  if (a->step) json_object_set_new(body, "step", json_string(a->step));
  json_object_set_new(body, "action", json_string(a->kind));
  json_object_set_new(body, "status", json_string(action_status_names[status]));
  json_object_update(body, fields);
  if (reason) json_object_set(body, "reason", reason);
  return body;
}

/* Record a change already made (points, tag, untag): queued, as it happened. An outbox
 * row only for a channel that delivers its kind (never from a stale history); else a
 * funnel count under its kind. A keyed one applies once: its key is claimed. */
static int record_change(engine_t *e, engine_call_t *c, action_spec_t *a, int *recorded) {
  json_t *fields = a->fields ? a->fields : json_object();
  json_decref(a->reason);
  a->fields = a->reason = NULL;
  int rc = -1;
  char *id = action_id(e, c, a, 1);
  json_t *body = NULL;
  if (call_write(e, c) < 0) goto out;
  if (a->key && !a->key_claimed) {
    int claimed = store_action_key_claim(e->store, id);
    if (claimed < 0) goto out;
    if (!claimed) { /* the same key again: nothing twice */
      rc = AS_QUEUED;
      goto out;
    }
  }
  const char *campaign = a->campaign ? a->campaign : c->campaign;
  int deliver = channel_delivers(e, a->channel, a->kind) && e->now >= e->expire_before;
  if (deliver || e->on_action) body = action_body(e, c, a, id, AS_QUEUED, fields, NULL); /* else no one reads it */
  char *text = NULL;
  if (deliver) {
    text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text) goto out;
    action_row_t row = {.id = id, .member = c->m->id, .campaign = campaign, .step = a->step, .kind = a->kind,
                        .status = action_status_names[AS_QUEUED], .channel = a->channel, .time = e->now,
                        .body = text, .deliverable = 1};
    if (store_action_add(e->store, &row) < 0) {
      free(text);
      goto out;
    }
  } else {
    funnel_add(e, campaign, a->step ? a->step : "", "", a->kind, 1);
  }
  hold(e, body, text, AS_QUEUED, a->channel);
  *recorded = 1;
  rc = AS_QUEUED;
out:
  if (rc == -1) c->db_failed = 1;
  free(id);
  json_decref(fields);
  json_decref(body);
  return rc;
}

/* Record an action (see engine_act). given_id: the id of a send judged again when its
 * deferral ends (second = 1), else NULL. Returns the status that holds, -1 on a database
 * error, ACT_GUARD_FAILED when a guard raised (*err). */
#define ACT_GUARD_FAILED (-2)
static int act(engine_t *e, engine_call_t *c, action_spec_t *a, const char *given_id, int second, int *recorded,
               char **err) {
  assert(c->m && a->status >= 0 && a->status < AS_COUNT);
  *recorded = 0;
  if (is_change(a->kind)) return record_change(e, c, a, recorded);
  json_t *fields = a->fields ? a->fields : json_object(), *reason = a->reason, *body = NULL;
  a->fields = a->reason = NULL;
  int status = a->status, rc = -1;
  char *id = given_id ? xstrdup(given_id) : action_id(e, c, a, 1);
  if (call_write(e, c) < 0) goto out;
  char stored[16];
  int found = store_action_status(e->store, id, stored, sizeof stored);
  if (found < 0) goto out;
  int existing = found ? action_status_parse(stored) : -1;
  if (found && !(existing == AS_DEFERRED && status != AS_DEFERRED)) {
    /* the same cause again: nothing twice */
    rc = existing < 0 || existing == AS_EXPIRED ? AS_QUEUED : existing;
    goto out;
  }
  if (!found && second) { /* judged meanwhile under the same id: nothing to do */
    rc = AS_QUEUED;
    goto out;
  }
  if (status == AS_QUEUED && is_marketing_send(a, fields)) {
    int64_t until = 0;
    json_decref(reason);
    reason = NULL;
    status = judge_send(e, c, a, id, fields, second, &reason, &until, err);
    if (status < 0) {
      rc = ACT_GUARD_FAILED;
      goto out;
    }
    if (status == AS_DEFERRED) {
      /* once recorded deferred, a send waits for one release timer, set now or when a
       * release meets quiet hours again */
      if ((!found || second) && defer_send(e, c, a, id, fields, until) < 0) goto out;
      if (found) {
        rc = AS_DEFERRED;
        goto out;
      }
    }
  }
  if (status == AS_QUEUED && e->now < e->expire_before) {
    /* history: judged at its time like any action (the script sees `queued`), stored as
     * expired: due long before the import, it is never delivered now */
    char due[32], cut[32];
    json_decref(reason);
    reason = json_pack("{s:s, s:s, s:s}", "rule", "stale", "due", engine_fmt_time(e, e->now, due),
                       "deliver_after", engine_fmt_time(e, e->expire_before, cut));
    status = AS_EXPIRED;
  }
  if (status != AS_QUEUED && !reason) reason = json_pack("{s:s}", "rule", "script"); /* a status the script chose */
  const char *campaign = a->campaign ? a->campaign : c->campaign;
  body = action_body(e, c, a, id, status, fields, reason);
  char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (!text) goto out;
  action_row_t row = {.id = id, .member = c->m->id, .campaign = campaign, .step = a->step,
                      .kind = a->kind, .status = action_status_names[status], .channel = a->channel,
                      .time = e->now, .body = text, .deliverable = status == AS_QUEUED};
  int w = found ? store_action_rejudge(e->store, &row) : store_action_add(e->store, &row);
  if (w < 0) {
    free(text);
    goto out;
  }
  hold(e, body, text, status, a->channel);
  *recorded = 1;
  rc = status == AS_EXPIRED ? AS_QUEUED : status;
out:
  if (rc == -1) c->db_failed = 1;
  free(id);
  json_decref(fields);
  json_decref(reason);
  json_decref(body);
  return rc;
}

int engine_act(engine_t *e, engine_call_t *c, action_spec_t *a, int *recorded) {
  char *err = NULL;
  int rc = act(e, c, a, NULL, 0, recorded, &err);
  assert(rc != ACT_GUARD_FAILED); /* guards are asked only on a second judgement */
  free(err);
  return rc;
}

/* A release timer fired: judge the deferred send again, as a call of its campaign. */
static int release_send(engine_t *e, member_t *m, const timer_row_t *r, const event_t *ev, const char *key) {
  json_t *d = r->data ? json_loads(r->data, 0, NULL) : NULL;
  const char *id = json_string_value(json_object_get(d, "id"));
  if (!id || !json_is_object(json_object_get(d, "fields"))) {
    log_msg(LOG_ERROR, "a deferred send's timer has no send: dropped", "member", r->member, "data", r->data, NULL);
    json_decref(d);
    return EV_APPLIED;
  }
  const char *campaign = json_string_value(json_object_get(d, "campaign"));
  engine_call_t c = {.m = m, .ev = ev, .event_key = key, .campaign = campaign ? campaign : r->campaign};
  action_spec_t a = {.kind = json_string_value(json_object_get(d, "kind")),
                     .key = json_string_value(json_object_get(d, "key")), .campaign = c.campaign,
                     .step = json_string_value(json_object_get(d, "step")),
                     .channel = json_string_value(json_object_get(d, "channel")), .status = AS_QUEUED,
                     .fields = json_incref(json_object_get(d, "fields"))};
  if (!a.kind) a.kind = "send";
  call_begin(e, &c);
  char *err = NULL;
  int recorded, rc = act(e, &c, &a, id, 1, &recorded, &err);
  int ended = call_end(e, &c, rc == ACT_GUARD_FAILED ? err : NULL);
  free(err);
  json_decref(d);
  if (ended < 0 || rc == -1) return EV_ERROR;
  return ended ? EV_FAILED : EV_APPLIED;
}

/* Record a tag, untag or points action that describes a change already made. */
static int act_done(engine_t *e, engine_call_t *c, action_spec_t *a) {
  int recorded;
  return engine_act(e, c, a, &recorded) < 0 ? -1 : 0;
}

static int tag_change(engine_t *e, engine_call_t *c, const char *tag, action_spec_t *a, int add) {
  json_t *tags = member_tags(c->m);
  int has = json_object_get(tags, tag) != NULL;
  if (has == add) {
    spec_release(a);
    return 0;
  }
  int64_t size = entry_bytes(tag, json_true());
  if (grow(e, c->m, add ? size : -size) < 0) {
    spec_release(a);
    return MEMBER_TOO_BIG;
  }
  if (call_write(e, c) < 0) return -1;
  int rc = add ? store_tag_add(e->store, c->m->id, tag) : store_tag_del(e->store, c->m->id, tag);
  if (rc < 0) {
    spec_release(a);
    return db_error(c);
  }
  member_undo_key(&c->undo, MP_TAGS, tag);
  if (add)
    json_object_set_new(tags, tag, json_true());
  else
    json_object_del(tags, tag);
  return act_done(e, c, a) < 0 ? -1 : 1;
}

int engine_tag(engine_t *e, engine_call_t *c, const char *tag, action_spec_t *a) {
  return tag_change(e, c, tag, a, 1);
}

int engine_untag(engine_t *e, engine_call_t *c, const char *tag, action_spec_t *a) {
  return tag_change(e, c, tag, a, 0);
}

int engine_add_points(engine_t *e, engine_call_t *c, int64_t n, const char *reason, action_spec_t *a) {
  member_t *m = c->m;
  assert(n != 0);
  if (a->key) { /* a keyed grant or spend applies once: claim its key */
    if (call_write(e, c) < 0) {
      spec_release(a);
      return -1;
    }
    char *id = action_id(e, c, a, 0);
    int claimed = store_action_key_claim(e->store, id);
    free(id);
    if (claimed != 1) {
      spec_release(a);
      return claimed < 0 ? db_error(c) : 0;
    }
    a->key_claimed = 1;
  }
  int range = n < 0 && m->points + n < 0 ? POINTS_BELOW_ZERO
              : n > 0 && m->points > INT64_MAX - n ? POINTS_OVERFLOW : 0;
  if (range || call_write(e, c) < 0) {
    spec_release(a);
    return range ? range : -1;
  }
  ledger_row_t row = {.member = m->id, .n = m->ledger_n + 1, .time = e->now, .delta = n,
                      .balance = m->points + n, .reason = reason,
                      .campaign = a->campaign ? a->campaign : c->campaign, .cause = c->event_key};
  if (store_ledger_add(e->store, &row) < 0) {
    spec_release(a);
    return db_error(c);
  }
  m->ledger_n++;
  m->points += n;
  m->dirty = 1;
  json_t *f = json_object();
  json_object_set_new(f, "delta", json_integer(n));
  json_object_set_new(f, "reason", json_string(reason));
  json_object_set_new(f, "balance", json_integer(m->points));
  json_decref(a->fields);
  a->fields = f;
  return act_done(e, c, a);
}

/* The chain a timer due at once continues: the call's, with this step at its end (only
 * the last few steps are kept). */
static char *continue_chain(const engine_call_t *c, const char *type) {
  const char *prev = c->chain ? c->chain : "";
  int steps = 1;
  for (const char *p = prev; *p; p++) steps += *p == '>';
  while (steps > 7 && strchr(prev, '>')) { /* with this step, the last eight */
    prev = strchr(prev, '>') + 2;
    steps--;
  }
  return xasprintf("%s%s%s:%s", prev, *prev ? " > " : "", c->campaign ? c->campaign : "", type);
}

static int add_timer(engine_t *e, engine_call_t *c, timer_row_t *row) {
  if (call_write(e, c) < 0) return -1;
  char *chain = NULL;
  if (row->due <= e->now) { /* caused at once: the chain goes on */
    row->depth = c->depth + 1;
    row->chain = chain = continue_chain(c, row->type);
  }
  row->id = ++e->timer_seq;
  int rc = store_timer_add(e->store, row);
  free(chain);
  if (rc < 0) return db_error(c);
  if (row->due < e->earliest_timer) e->earliest_timer = row->due;
  return 0;
}

int engine_set_timer(engine_t *e, engine_call_t *c, int64_t due, const char *type, const char *data) {
  json_t *gen = json_object_get(member_gens(c->m), type);
  timer_row_t row = {.due = due, .member = c->m->id, .type = (char *)type, .data = (char *)data,
                     .gen = gen ? json_integer_value(gen) : 0, .campaign = (char *)c->campaign};
  return add_timer(e, c, &row);
}

int engine_cancel_timers(engine_t *e, engine_call_t *c, const char *type) {
  (void)e;
  json_t *gen = json_object_get(member_gens(c->m), type);
  json_int_t next = gen ? json_integer_value(gen) + 1 : 1;
  member_undo_key(&c->undo, MP_GENS, type);
  json_object_set_new(member_gens(c->m), type, json_integer(next));
  return 0;
}

int engine_emit(engine_t *e, engine_call_t *c, const char *member, const char *type, const char *data) {
  timer_row_t row = {.due = e->now, .member = (char *)member, .type = (char *)type, .data = (char *)data,
                     .gen = TIMER_NOT_CANCELLABLE, .campaign = (char *)c->campaign};
  return add_timer(e, c, &row);
}

int engine_count(engine_t *e, engine_call_t *c, const char *campaign, const char *step,
                 const char *variant, const char *metric, int64_t n) {
  (void)c; /* held in the batch; a failing call takes its own back */
  funnel_add(e, campaign, step, variant, metric, n);
  return 0;
}

int engine_counter(engine_t *e, const char *metric, const char *campaign, const char *step,
                   const char *variant, int64_t *sum) {
  funnel_key_t key = {.metric = metric, .campaign = campaign, .step = step, .variant = variant};
  if (store_funnel_total(e->store, &key, sum) < 0) return -1;
  *sum += funnel_pending(e, metric, campaign, step, variant);
  return 0;
}

int engine_member_ids(engine_t *e, const char *tag, const char *after, int limit, char ***ids) {
  return store_member_ids(e->store, tag, after, limit, ids);
}

member_t *engine_member(engine_t *e, const char *id) {
  assert(e->in_batch);
  return member_cache_get(&e->members, e->store, id, e->now);
}
