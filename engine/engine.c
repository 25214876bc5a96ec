/* engine: batches, dedupe, built-in member fields, dispatch, timers and actions
 * (see engine.h). */
#include "engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "lua_api.h"

const char *const action_status_names[AS_COUNT] = {"queued", "capped", "suppressed",
                                                   "deferred", "skipped", "limited"};

const double handler_bucket_bounds[HANDLER_BUCKETS - 1] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                          0.01, 0.025, 0.05, 0.1, 0.5};

void engine_stats_handler(engine_stats_t *s, double seconds) {
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

int action_status_parse(const char *s) {
  for (int i = 0; i < AS_COUNT; i++)
    if (strcmp(s, action_status_names[i]) == 0) return i;
  return -1;
}

char *engine_fmt_time(engine_t *e, int64_t t, char buf[32]) {
  return rfc3339_format(t, e->tz ? tz_offset_at(e->tz, t) : 0, buf);
}

static void load_seqs(engine_t *e) {
  e->event_seq = store_meta_get(e->store, "event_seq", 0);
  e->timer_seq = store_meta_get(e->store, "timer_seq", 0);
}

engine_t *engine_open(const engine_opts_t *o, char **errp) {
  char err[1024] = "";
  *errp = NULL;
  engine_t *e = xcalloc(1, sizeof *e);
  e->dedupe_window = o->dedupe_window;
  e->earliest_timer = INT64_MAX;
  clock_init_real(&e->clock);
  if (o->limits.max_instructions)
    e->limits = o->limits;
  else
    lua_limits_default(&e->limits);
  e->scripts_dir = o->scripts_dir ? xstrdup(o->scripts_dir) : NULL;
  e->stdlib_dir = o->stdlib_dir ? xstrdup(o->stdlib_dir) : NULL;
  if (o->script_files) {
    size_t n = 0;
    while (o->script_files[n]) n++;
    e->script_files = xcalloc(n + 1, sizeof *e->script_files);
    for (size_t i = 0; i < n; i++) e->script_files[i] = xstrdup(o->script_files[i]);
  }
  member_cache_init(&e->members);
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
    e->scripts = scripts_load(e, &errors);
    if (!e->scripts) {
      *errp = sb_take(&errors);
      engine_close(e);
      return NULL;
    }
    sb_free(&errors);
  }
  return e;
fail:
  *errp = xstrdup(err);
  engine_close(e);
  return NULL;
}

void engine_close(engine_t *e) {
  if (!e) return;
  scripts_free(e->scripts);
  engine_pending_truncate(e, 0);
  free(e->pending);
  for (int i = 0; i < e->stats.nchannels; i++) free(e->stats.by_channel[i].channel);
  free(e->stats.by_channel);
  member_cache_free(&e->members);
  store_close(e->store);
  tz_free(e->tz);
  free(e->scripts_dir);
  free(e->stdlib_dir);
  for (char **f = e->script_files; f && *f; f++) free(*f);
  free(e->script_files);
  free(e);
}

int engine_reload(engine_t *e, char **err) {
  strbuf_t errors;
  sb_init(&errors);
  scripts_t *s = scripts_load(e, &errors);
  if (!s) {
    *err = sb_take(&errors);
    return -1;
  }
  sb_free(&errors);
  scripts_free(e->scripts);
  e->scripts = s;
  cron_schedule(s, e->now);
  *err = NULL;
  return 0;
}

int engine_pending_mark(engine_t *e) { return e->npending; }

void engine_pending_truncate(engine_t *e, int mark) {
  while (e->npending > mark) {
    pending_action_t *p = &e->pending[--e->npending];
    json_decref(p->body);
    free(p->channel);
  }
}

/* Report the batch's actions: counters, then the on_action callback, in order. */
static void report_pending(engine_t *e) {
  for (int i = 0; i < e->npending; i++) {
    pending_action_t *p = &e->pending[i];
    e->stats.actions[p->status]++;
    count_channel_action(&e->stats, p->channel, p->status);
    if (e->on_action) e->on_action(e->on_action_ud, p->body);
  }
  engine_pending_truncate(e, 0);
}

int engine_begin(engine_t *e) {
  e->earliest_timer = INT64_MAX;
  if (store_begin(e->store) < 0) return -1;
  load_seqs(e); /* another process (an import beside the daemon) may have moved them */
  return 0;
}

int engine_commit(engine_t *e) {
  if (member_cache_flush(&e->members, e->store) < 0 ||
      store_meta_set(e->store, "event_seq", e->event_seq) < 0 ||
      store_meta_set(e->store, "timer_seq", e->timer_seq) < 0 || store_commit(e->store) < 0) {
    log_msg(LOG_ERROR, "commit failed", "error", store_errmsg(e->store), NULL);
    engine_rollback(e);
    return -1;
  }
  member_cache_clear(&e->members);
  report_pending(e);
  return 0;
}

void engine_rollback(engine_t *e) {
  engine_pending_truncate(e, 0);
  store_rollback(e->store);
  member_cache_clear(&e->members);
  load_seqs(e);
}

/* 1 when the id was seen inside the dedupe window, 0 when new (now marked), -1 error. */
static int seen_before(engine_t *e, const char *id) {
  sqlite3_stmt *st = store_stmt(e->store, ST_SEEN_MARK);
  bind_text(st, 1, id);
  bind_int(st, 2, e->now);
  bind_int(st, 3, e->dedupe_window > 0 ? e->now - e->dedupe_window : INT64_MIN);
  if (store_exec_stmt(e->store, st) != SQLITE_DONE) return -1;
  return sqlite3_changes(e->store->db) == 0;
}

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
    const char *keys[] = {"channel", "store", "staff", "referrer"};
    for (int i = 0; i < 4; i++) set_attr_string(m, keys[i], json_object_get(data, keys[i]));
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

/* Dispatch a validated event for member m. */
static int dispatch(engine_t *e, member_t *m, event_t *ev, const char *key) {
  if (!e->scripts) return EV_APPLIED;
  int failed = scripts_dispatch(e->scripts, m, ev, key);
  if (failed < 0) return EV_ERROR;
  if (failed > 0) {
    e->stats.failed++;
    return EV_FAILED;
  }
  return EV_APPLIED;
}

int engine_apply(engine_t *e, event_t *ev) {
  if (!ev->has_time) ev->time = e->now, ev->has_time = 1;
  if (ev->id) {
    int seen = seen_before(e, ev->id);
    if (seen < 0) return EV_ERROR;
    if (seen) {
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
  return dispatch(e, m, ev, key);
}

int64_t engine_next_timer(engine_t *e) {
  sqlite3_stmt *st = store_stmt(e->store, ST_TIMER_NEXT);
  int64_t t = INT64_MAX;
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
    t = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return t;
}

typedef struct {
  int64_t due, id, gen;
  char *member, *type, *data, *campaign;
} timer_row_t;

static void free_rows(timer_row_t *rows, int n) {
  for (int i = 0; i < n; i++) free(rows[i].member), free(rows[i].type), free(rows[i].data), free(rows[i].campaign);
  free(rows);
}

static char *col_dup(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return t ? xstrdup((const char *)t) : NULL;
}

/* Read up to max due rows, in (due, id) order. Returns the count, -1 on error. */
static int read_due(engine_t *e, int64_t upto, int max, timer_row_t **out) {
  sqlite3_stmt *st = store_stmt(e->store, ST_TIMER_DUE);
  bind_int(st, 1, upto);
  bind_int(st, 2, max);
  timer_row_t *rows = xcalloc((size_t)max, sizeof *rows);
  int n = 0, rc;
  while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    timer_row_t *r = &rows[n++];
    r->due = sqlite3_column_int64(st, 0);
    r->id = sqlite3_column_int64(st, 1);
    r->member = col_dup(st, 2);
    r->type = col_dup(st, 3);
    r->data = col_dup(st, 4);
    r->gen = sqlite3_column_int64(st, 5);
    r->campaign = col_dup(st, 6);
  }
  sqlite3_reset(st);
  *out = rows;
  return n;
}

/* 1 when the member has a row or is in this batch's cache. */
static int member_known(engine_t *e, const char *id) {
  if (member_cache_find(&e->members, id)) return 1;
  sqlite3_stmt *st = store_stmt(e->store, ST_MEMBER_EXISTS);
  bind_text(st, 1, id);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_ROW;
}

/* Fire one timer row inside the open batch. */
static int fire_one(engine_t *e, timer_row_t *r) {
  if (e->virtual_clock || e->now < r->due) e->now = r->due;
  if (r->gen == TIMER_NOT_CANCELLABLE && !member_known(e, r->member)) {
    e->stats.timers_cancelled++; /* hearth.emit to a member who does not exist */
    return EV_APPLIED;
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
  int rc = dispatch(e, m, &ev, key);
  json_decref(ev.data);
  return rc;
}

/* Fire due timers in (due, id) order inside the open transaction. Rows are read a batch
 * at a time; the batch stops early when a handler sets a timer due before the next row,
 * so the order stays earliest first. Only rows that existed when the batch was read
 * (id <= the sequence at that moment) are deleted: timers set by the batch's own handlers
 * stay. Returns the number fired, -1 on a database error. */
int engine_fire_timers_open(engine_t *e, int64_t upto, int max) {
  timer_row_t *rows;
  int64_t seq_at_read = e->timer_seq, earliest_before = e->earliest_timer;
  e->earliest_timer = INT64_MAX; /* only timers set from here on may cut the batch */
  int n = read_due(e, upto, max, &rows);
  int rc = 0, fired = 0;
  while (fired < n && rc == 0) {
    if (fire_one(e, &rows[fired]) == EV_ERROR) rc = -1;
    fired++;
    if (fired < n && e->earliest_timer < rows[fired].due) break;
  }
  if (rc == 0 && fired > 0) {
    sqlite3_stmt *st = store_stmt(e->store, ST_TIMER_DEL_UPTO);
    bind_int(st, 1, rows[fired - 1].due);
    bind_int(st, 2, rows[fired - 1].id);
    bind_int(st, 3, seq_at_read);
    if (store_exec_stmt(e->store, st) != SQLITE_DONE) rc = -1;
  }
  free_rows(rows, n);
  if (earliest_before < e->earliest_timer) e->earliest_timer = earliest_before;
  return rc < 0 ? -1 : fired;
}

int engine_fire_timers(engine_t *e, int64_t upto, int max) {
  if (engine_begin(e) < 0) return -1;
  int fired = engine_fire_timers_open(e, upto, max);
  if (fired < 0) {
    engine_rollback(e);
    return -1;
  }
  if (engine_commit(e) < 0) return -1;
  return fired;
}

int64_t engine_next_cron(engine_t *e) { return e->scripts ? cron_next_due(e->scripts) : INT64_MAX; }

void engine_schedule_cron(engine_t *e, int64_t now) {
  if (e->scripts) cron_schedule(e->scripts, now);
}

int64_t engine_next_due(engine_t *e) {
  int64_t t = engine_next_timer(e);
  int64_t c = e->scripts ? cron_next_due(e->scripts) : INT64_MAX;
  return c < t ? c : t;
}

int engine_advance(engine_t *e, int64_t upto, int sync, int max_batches) {
  int batches = 0;
  for (;;) {
    int64_t t = engine_next_timer(e);
    int64_t c = e->scripts ? cron_next_due(e->scripts) : INT64_MAX;
    if (t > upto && c > upto) return 0;
    if (max_batches && batches >= max_batches) return 1;
    if (t <= c) {
      int64_t limit = c < upto ? c : upto;
      if (engine_fire_timers(e, limit, 1000) < 0) return -1;
      batches++;
    } else {
      if (cron_run_due(e->scripts, c, sync) < 0) return -1;
    }
  }
}

int engine_cron_pending(engine_t *e) { return e->scripts && cron_pending(e->scripts); }

int engine_step_cron(engine_t *e) {
  if (!e->scripts || !cron_pending(e->scripts)) return 0;
  if (cron_resume_one(e->scripts) < 0) return -1;
  return cron_pending(e->scripts);
}

static void hold(engine_t *e, json_t *body, int status, const char *channel) {
  if (e->npending == e->cappending)
    e->pending = xrealloc(e->pending, (size_t)(e->cappending = e->cappending ? e->cappending * 2 : 64) * sizeof *e->pending);
  pending_action_t *p = &e->pending[e->npending++];
  p->body = json_incref(body);
  p->status = status;
  p->channel = channel ? xstrdup(channel) : NULL;
}

int engine_action(engine_t *e, action_req_t *r) {
  char tbuf[32];
  int rc = -1;
  json_t *body = json_object();
  json_object_set_new(body, "id", json_string(r->id));
  json_object_set_new(body, "time", json_string(engine_fmt_time(e, e->now, tbuf)));
  json_object_set_new(body, "member", json_string(r->m->id));
  json_object_set_new(body, "campaign", json_string(r->campaign));
  if (r->step) json_object_set_new(body, "step", json_string(r->step));
  json_object_set_new(body, "action", json_string(r->kind));
  json_object_set_new(body, "status", json_string(action_status_names[r->status]));
  json_object_update(body, r->fields);
  json_decref(r->fields);
  r->fields = NULL;
  r->recorded = 0;

  sqlite3_stmt *st = store_stmt(e->store, ST_ACTION_GET);
  bind_text(st, 1, r->id);
  int step = sqlite3_step(st);
  int existing = -1;
  if (step == SQLITE_ROW) existing = action_status_parse((const char *)sqlite3_column_text(st, 0));
  sqlite3_reset(st);
  if (step != SQLITE_ROW && step != SQLITE_DONE) goto out;
  if (step == SQLITE_ROW && !(existing == AS_DEFERRED && r->status != AS_DEFERRED)) {
    rc = existing < 0 ? AS_QUEUED : existing; /* the same cause again: nothing twice */
    goto out;
  }
  char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (!text) goto out;
  const char *delivery = r->status == AS_QUEUED ? "pending" : NULL;
  if (step == SQLITE_ROW) {
    st = store_stmt(e->store, ST_ACTION_RESTATUS);
    bind_text(st, 1, r->id);
    bind_text(st, 2, action_status_names[r->status]);
    bind_int(st, 3, e->now);
    bind_text(st, 4, text);
    bind_text(st, 5, delivery);
    bind_int(st, 6, e->now);
  } else {
    st = store_stmt(e->store, ST_ACTION_ADD);
    bind_text(st, 1, r->id);
    bind_text(st, 2, r->m->id);
    bind_text(st, 3, r->campaign);
    bind_text(st, 4, r->step);
    bind_text(st, 5, r->kind);
    bind_text(st, 6, action_status_names[r->status]);
    bind_text(st, 7, r->channel);
    bind_int(st, 8, e->now);
    bind_text(st, 9, text);
    bind_text(st, 10, delivery);
    bind_int(st, 11, e->now);
  }
  int done = store_exec_stmt(e->store, st);
  sqlite3_clear_bindings(st);
  free(text);
  if (done != SQLITE_DONE) goto out;
  hold(e, body, r->status, r->channel);
  r->recorded = 1;
  rc = r->status;
out:
  json_decref(body);
  return rc;
}
