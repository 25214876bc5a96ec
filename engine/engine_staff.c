/* engine_staff: who owns a member and what she has to do (see engine.h, "staff"). Owns
 * the choice of an owner by rule (fixed, round-robin over a named pool's cursor,
 * least-loaded by members owned, ties to the first listed), the per-staff member counts
 * kept in step with every change of a member's `staff` attribute, the log of those
 * changes, the hand-off of a departed staff member's members (staff.left) a bounded
 * window of members per timer batch, and tasks: opened when a task action is queued,
 * closed by task.done, judged overdue on the engine's clock.
 *
 * Everything here is SQL through store.c inside the open batch (and the handler call's
 * savepoint when there is one), so it commits or rolls back with the change that caused
 * it: a retried event is a duplicate and assigns nothing twice; a hand-off's progress is
 * the data of its one pending timer, replaced in the same transaction as each window.
 *
 * The ideas are those of WeCom SCRM practice (channel codes rotating new friends over a
 * guide list, 离职继承 handing a departed guide's customers on, guides judged on overdue
 * follow-ups); the code is our own, on the store's typed functions and the timer driver. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_private.h"
#include "json_read.h"
#include "log.h"

/* Members looked at per hand-off step (one timer batch): bounds the step's work whatever
 * the share of the departed staff member's members. */
#define HANDOFF_WINDOW 500

const char *const owner_rule_names[OWNER_RULES] = {"fixed", "round_robin", "least_loaded"};

int owner_rule_parse(const char *s) {
  for (int i = 0; i < OWNER_RULES; i++)
    if (!strcmp(s, owner_rule_names[i])) return i;
  return -1;
}

const char *eng_member_staff(const member_t *m) {
  json_t *v = json_object_get(member_attrs((member_t *)m), "staff");
  return json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

static int same(const char *a, const char *b) { return a == b || (a && b && !strcmp(a, b)); }

int eng_owner_moved(engine_t *e, const char *member, const char *from, const char *to, const char *rule,
                    const char *cause) {
  if (same(from, to)) return 0;
  if (from && (store_staff_load_add(e->store, from, -1) < 0 ||
               (to && store_tasks_move(e->store, member, from, to) < 0)))
    return -1;
  if (to && store_staff_load_add(e->store, to, 1) < 0) return -1;
  if (!to) return 0; /* removed: nothing to log as an owner */
  staff_log_row_t row = {.member = member, .time = e->now, .from = from, .to = to, .rule = rule, .cause = cause};
  return store_staff_log_add(e->store, &row);
}

/* The pick of `rule` over list[0..n): fixed the first, round-robin the pool cursor's turn,
 * least-loaded the fewest members (ties: the first listed). NULL on a database error. */
static const char *pick(engine_t *e, int rule, const char *const *list, int n, const char *pool) {
  assert(n > 0);
  if (rule == OWNER_FIXED) return list[0];
  if (rule == OWNER_ROUND_ROBIN) {
    int64_t turn;
    if (store_staff_cursor_take(e->store, pool, &turn) < 0) return NULL;
    return list[turn % n];
  }
  int best = 0;
  int64_t best_load = INT64_MAX;
  for (int i = 0; i < n; i++) {
    int64_t load;
    if (store_staff_load(e->store, list[i], &load) < 0) return NULL;
    if (load < best_load) {
      best = i;
      best_load = load;
    }
  }
  return list[best];
}

int engine_assign_owner(engine_t *e, engine_call_t *c, const owner_rule_t *r, const char **owner, int *assigned) {
  assert(r->nstaff > 0 && r->rule >= 0 && r->rule < OWNER_RULES);
  assert(r->pool || r->rule != OWNER_ROUND_ROBIN);
  *assigned = 0;
  *owner = eng_member_staff(c->m);
  if (*owner) return 0; /* she has an owner (data.staff, an earlier code, a script): kept */
  if (eng_call_write(e, c) < 0) return -1;
  const char *to = pick(e, r->rule, r->staff, r->nstaff, r->pool);
  if (!to) return eng_db_error(c);
  member_undo_key(&c->undo, MP_ATTRS, "staff");
  member_touch(c->m, MP_ATTRS);
  json_object_set_new(member_attrs(c->m), "staff", json_string(to));
  if (eng_owner_moved(e, c->m->id, NULL, to, owner_rule_names[r->rule], c->event_key) < 0) return eng_db_error(c);
  *owner = eng_member_staff(c->m);
  *assigned = 1;
  return 0;
}

/* ---- hand-off (staff.left) ---- */

/* A timer of the engine's own, due at once, with depth 0: a hand-off step is not a
 * causal chain of scripts and may take as many steps as there are members. */
static int add_engine_timer(engine_t *e, const char *member, const char *type, json_t *data) {
  char *text = json_dumps(data, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (!text) return -1;
  timer_row_t row = {.due = e->now, .id = ++e->timer_seq, .member = (char *)member, .type = (char *)type,
                     .data = text, .gen = TIMER_NOT_CANCELLABLE};
  int rc = store_timer_add(e->store, &row);
  free(text);
  if (rc == 0 && row.due < e->earliest_timer) e->earliest_timer = row.due;
  return rc;
}

/* Her record's summary of the hand-off, as `hearth member` shows it. */
static void note_handoff(member_t *who, json_t *job, int done) {
  json_t *note = json_pack("{s:O, s:O, s:b}", "staff", json_object_get(job, "staff"), "moved",
                           json_object_get(job, "moved"), "done", done);
  member_touch(who, MP_ATTRS);
  json_object_set_new(member_attrs(who), "staff_left", note);
  who->dirty = 1;
}

static int handoff_start(engine_t *e, member_t *who, const event_t *ev, const char *key) {
  json_t *d = ev->data, *job = json_object();
  json_object_set(job, "staff", json_object_get(d, "staff"));
  const char *fields[] = {"to", "rule", "pool"};
  for (int i = 0; i < 3; i++)
    if (json_object_get(d, fields[i])) json_object_set(job, fields[i], json_object_get(d, fields[i]));
  json_object_set_new(job, "after", json_string(""));
  json_object_set_new(job, "moved", json_integer(0));
  json_object_set_new(job, "cause", json_string(key));
  note_handoff(who, job, 0);
  int rc = add_engine_timer(e, who->id, HANDOFF_TIMER, job);
  json_decref(job);
  log_msg(LOG_INFO, "staff hand-off started", "member", who->id, "staff",
          json_string_value(json_object_get(d, "staff")), NULL);
  return rc;
}

/* The new owner of one member of the departed staff member, by the job's rule. */
static const char *handoff_pick(engine_t *e, json_t *job, const char *pool_key) {
  const char *to = json_string_value(json_object_get(job, "to"));
  if (to) return to;
  json_t *pool = json_object_get(job, "pool");
  int n = (int)json_array_size(pool);
  const char *list[64];
  assert(n > 0 && n <= 64); /* event.c checks the pool */
  for (int i = 0; i < n; i++) list[i] = json_string_value(json_array_get(pool, i));
  return pick(e, owner_rule_parse(json_string_value(json_object_get(job, "rule"))), list, n, pool_key);
}

/* Move one member from `from` by the job's rule. -1 on a database error. */
static int handoff_member(engine_t *e, json_t *job, const char *id, const char *from, const char *pool_key,
                          const char *rule) {
  member_t *m = member_cache_get(&e->members, e->store, id, e->now);
  if (!m) return -1;
  if (!same(eng_member_staff(m), from)) return 0; /* changed in this batch: not hers any more */
  const char *to = handoff_pick(e, job, pool_key);
  if (!to) return -1;
  char *copy = xstrdup(to);
  member_touch(m, MP_ATTRS);
  json_object_set_new(member_attrs(m), "staff", json_string(copy));
  m->dirty = 1;
  int rc = eng_owner_moved(e, id, from, copy, rule, json_string_value(json_object_get(job, "cause")));
  free(copy);
  if (rc == 0) json_object_set_new(job, "moved", json_integer(json_integer_value(json_object_get(job, "moved")) + 1));
  return rc;
}

int eng_handoff_step(engine_t *e, member_t *who, const timer_row_t *r) {
  json_t *job = r->data ? jr_loads(r->data, 0, NULL) : NULL;
  const char *from = json_string_value(json_object_get(job, "staff"));
  if (!from) {
    log_msg(LOG_ERROR, "unreadable staff hand-off timer dropped", "member", r->member, "data", r->data, NULL);
    json_decref(job);
    return EV_APPLIED;
  }
  char *leaving = xstrdup(from), *pool_key = xasprintf("staff.left:%s", leaving);
  char *rule = xasprintf("staff.left:%s", json_object_get(job, "to") ? "to"
                                          : json_string_value(json_object_get(job, "rule")));
  staff_window_t w;
  int rc = store_staff_window(e->store, json_string_value(json_object_get(job, "after")), HANDOFF_WINDOW, &w);
  for (int i = 0; rc >= 0 && i < w.n; i++)
    if (same(w.staff[i], leaving)) rc = handoff_member(e, job, w.ids[i], leaving, pool_key, rule);
  if (rc >= 0 && w.n == HANDOFF_WINDOW) { /* more members after this window: one more step */
    json_object_set_new(job, "after", json_string(w.ids[w.n - 1]));
    note_handoff(who, job, 0);
    rc = add_engine_timer(e, who->id, HANDOFF_TIMER, job);
  } else if (rc >= 0) {
    note_handoff(who, job, 1);
    char moved[24];
    snprintf(moved, sizeof moved, "%lld", (long long)json_integer_value(json_object_get(job, "moved")));
    log_msg(LOG_INFO, "staff hand-off done", "member", who->id, "staff", leaving, "moved", moved, NULL);
  }
  if (w.ids) store_staff_window_free(&w);
  free(leaving);
  free(pool_key);
  free(rule);
  json_decref(job);
  return rc < 0 ? EV_ERROR : EV_APPLIED;
}

/* ---- tasks ---- */

int eng_task_open(engine_t *e, const char *id, const char *member, json_t *fields, int64_t due) {
  const char *staff = json_string_value(json_object_get(fields, "staff"));
  if (!staff || due == 0) return 0; /* no owner: recorded with its reason, never a job */
  return store_task_add(e->store, id, member, staff, due);
}

/* task.done: close the task named by data.task; a task that is not this member's is a
 * failure of the event (recorded, the handlers still run). */
static int task_done(engine_t *e, member_t *m, const event_t *ev, const char *key) {
  const char *id = json_string_value(json_object_get(ev->data, "task"));
  int rc = store_task_done(e->store, id, m->id, e->now);
  if (rc != TASK_UNKNOWN) return rc < 0 ? -1 : 0;
  char *msg = xasprintf("task.done: '%s' is not a task of member '%s' (data.task is the id of a task action)",
                        id, m->id);
  engine_call_t c = {.m = m, .ev = ev, .event_key = key, .campaign = ""};
  eng_record_failure(e, &c, msg);
  free(msg);
  return c.db_failed ? -1 : 0;
}

int eng_staff_builtins(engine_t *e, member_t *m, const event_t *ev, const char *key, int owner_event,
                       const char *staff_before) {
  if (owner_event && !same(staff_before, eng_member_staff(m)) &&
      eng_owner_moved(e, m->id, staff_before, eng_member_staff(m), ev->type, key) < 0)
    return -1;
  if (!strcmp(ev->type, "staff.left")) return handoff_start(e, m, ev, key);
  if (!strcmp(ev->type, "task.done")) return task_done(e, m, ev, key);
  return 0;
}

/* ---- reports ---- */

int engine_staff_report(engine_t *e, int64_t now, void (*each)(void *ud, const staff_report_t *r), void *ud) {
  return store_staff_report(e->store, now, each, ud);
}

static void add_report_row(void *ud, const staff_report_t *r) {
  json_array_append_new(ud, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "staff", r->staff, "members",
                                      (json_int_t)r->members, "open_tasks", (json_int_t)r->open, "overdue",
                                      (json_int_t)r->overdue, "done", (json_int_t)r->done, "done_late",
                                      (json_int_t)r->done_late));
}

json_t *staff_report_json(store_t *s, const tz_t *tz, int64_t now) {
  json_t *rows = json_array();
  if (store_staff_report(s, now, add_report_row, rows) < 0) {
    json_decref(rows);
    return NULL;
  }
  char buf[32];
  return json_pack("{s:s, s:o}", "now", rfc3339_format(now, tz_offset_at(tz, now), buf), "staff", rows);
}
