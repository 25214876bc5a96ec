/* engine_clock: the clock driver (see engine.h): timers fired in (due, id) order within a
 * batch, causal chains cut at MAX_CAUSAL_DEPTH, cron slots scheduled and run a sweep
 * chunk at a time, broadcasts (engine_broadcast.c) run a chunk at a time at their time,
 * and engine_feed / engine_run_until, which every caller drives time with. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_private.h"
#include "json_read.h"
#include "log.h"

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

void eng_move_now(engine_t *e, int64_t t) { move_now(e, t); }

/* An event at the end of too long a causal chain: recorded as failed, with the chain. */
static int refuse_chain(engine_t *e, member_t *m, const timer_row_t *r, const event_t *ev) {
  (void)m;
  char *msg = xasprintf("causal chain too long: '%s' would be event %lld of a chain in which each was caused at "
                        "once by the one before (hearth.emit, or a timer due at once); the limit is %d, so it "
                        "is not applied. The chain ended: %s > %s:%s",
                        r->type, (long long)r->depth + 1, MAX_CAUSAL_DEPTH, r->chain ? r->chain : "?",
                        r->campaign ? r->campaign : "?", r->type);
  engine_call_t c = {.m = NULL, .ev = ev, .event_key = "chain", .campaign = r->campaign ? r->campaign : ""};
  eng_record_failure(e, &c, msg);
  free(msg);
  e->stats.handler_errors++;
  e->stats.failed++;
  return c.db_failed ? EV_ERROR : EV_FAILED;
}

static void trace_timer(engine_t *e, trace_kind_t kind, const timer_row_t *r) {
  eng_trace(e, &(engine_trace_t){.kind = kind, .member = r->member, .type = r->type, .campaign = r->campaign,
                                 .due = r->due});
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
      trace_timer(e, TRACE_TIMER_VOID, r);
      return EV_APPLIED;
    }
  }
  member_t *m = member_cache_get(&e->members, e->store, r->member, r->due);
  if (!m) return EV_ERROR;
  json_t *gen = json_object_get(member_gens(m), r->type);
  if (r->gen != TIMER_NOT_CANCELLABLE && (gen ? json_integer_value(gen) : 0) != r->gen) {
    e->stats.timers_cancelled++;
    trace_timer(e, TRACE_TIMER_VOID, r);
    return EV_APPLIED;
  }
  trace_timer(e, TRACE_TIMER_FIRED, r);
  event_t ev = {.type = r->type, .member = r->member, .time = r->due, .has_time = 1};
  if (r->data) ev.data = jr_loads(r->data, 0, NULL);
  char key[48];
  prefixed_int(key, sizeof key, "timer:", r->id);
  e->stats.timers_fired++;
  int rc;
  if (r->depth > MAX_CAUSAL_DEPTH)
    rc = refuse_chain(e, m, r, &ev);
  else if (!strcmp(r->type, RELEASE_TIMER))
    rc = eng_release_send(e, m, r, &ev, key);
  else if (!strcmp(r->type, POINTS_TIMER))
    rc = eng_points_due(e, m, &ev, key);
  else if (!strcmp(r->type, HANDOFF_TIMER))
    rc = eng_handoff_step(e, m, r);
  else
    rc = eng_dispatch(e, m, &ev, key, r->depth, r->chain);
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

/* Timers due at or before upto in one transaction of their own: reads of TIMER_BATCH
 * rows, one after the other, until TIMERS_PER_COMMIT have fired, none is due any more or
 * the slice is spent (a commit, its sync above all, is the dearest part of a small
 * batch). 0, or -1 on a database error (rolled back). */
static int fire_timers_in_a_batch(engine_t *e, int64_t upto, uint64_t deadline_ns) {
  if (engine_begin(e) < 0) return -1;
  for (int fired = 0;;) {
    int n = fire_timers(e, upto, TIMER_BATCH, deadline_ns);
    if (n < 0) goto fail;
    fired += n;
    if (n == 0 || fired >= TIMERS_PER_COMMIT || (deadline_ns && mono_ns() > deadline_ns)) break;
    int64_t next = next_timer(e);
    if (next == INT64_MIN) goto fail;
    if (next > upto) break;
  }
  return engine_commit(e);
fail:
  engine_rollback(e);
  return -1;
}

/* ---- cron ---- */

/* Each entry's next slot as of `now`: an entry whose last run (cron_state) is followed by
 * missed slots runs once, for the latest of them; one never run waits for its next slot. */
void eng_schedule_cron(engine_t *e, int64_t now) {
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
  eng_call_begin(e, &c);
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
  eng_schedule_cron(e, t);
  eng_schedule_broadcasts(e);
  if (e->migrations_due) eng_add_migrations(e); /* versions.c: runs to move, due now */
}

int64_t engine_next_due(engine_t *e) {
  start_clock(e, e->clock.is_virtual ? e->now : clock_now(&e->clock));
  if (cron_in_progress(e) >= 0 || eng_broadcast_in_progress(e) >= 0) return e->now;
  int64_t t = next_timer(e), c = next_cron(e), b = eng_next_broadcast(e);
  if (b < c) c = b;
  return c < t ? c : t;
}

int engine_run_until(engine_t *e, int64_t upto, int max_batches) {
  assert(!e->in_batch);
  start_clock(e, e->clock.is_virtual ? upto : clock_now(&e->clock));
  uint64_t deadline = e->slice_ns ? mono_ns() + e->slice_ns : 0;
  for (int batches = 0;; batches++) {
    int i = cron_in_progress(e), j = i >= 0 ? -1 : eng_broadcast_in_progress(e), busy = i >= 0 || j >= 0;
    int64_t t = busy ? INT64_MAX : next_timer(e), c = busy ? INT64_MAX : next_cron(e);
    int64_t b = busy ? INT64_MAX : eng_next_broadcast(e);
    if (!busy && t > upto && c > upto && b > upto) break;
    if ((max_batches && batches >= max_batches) || (deadline && batches && mono_ns() > deadline)) return 1;
    int64_t cut = c < b ? c : b; /* timers first on a tie, then cron, then broadcasts */
    if (i >= 0) {
      if (cron_step(e, i) < 0) return -1;
    } else if (j >= 0) {
      if (eng_broadcast_step(e, j) < 0) return -1;
    } else if (t <= cut) {
      if (fire_timers_in_a_batch(e, cut < upto ? cut : upto, deadline) < 0) return -1;
    } else if (b < c) {
      eng_broadcast_begin(e, b);
    } else {
      /* every entry due at this slot runs, in declaration order, each to its end */
      for (int k = 0; k < e->ncron; k++)
        if (e->cron[k].next_slot <= c) e->cron[k].running = e->cron[k].next_slot;
    }
  }
  if (e->clock.is_virtual && upto > e->now) move_now(e, upto);
  return 0;
}

/* Before something arrives at time t: on a virtual clock, what is due at or before t
 * runs first (a cron run or a broadcast commits per chunk, so the batch is closed for
 * them; timers fire inside the batch), and the clock moves to t. Leaves a batch open.
 * 0, or EV_ERROR (rolled back). */
static int arrive_at(engine_t *e, int64_t t) {
  start_clock(e, e->clock.is_virtual ? t : clock_now(&e->clock));
  if (e->clock.is_virtual) {
    if (cron_in_progress(e) >= 0 || next_cron(e) <= t || eng_broadcast_in_progress(e) >= 0 ||
        eng_next_broadcast(e) <= t) {
      if (e->in_batch && engine_commit(e) < 0) return EV_ERROR;
      if (engine_run_until(e, t, 0) < 0) return EV_ERROR;
    }
  }
  if (!e->in_batch && engine_begin(e) < 0) return EV_ERROR;
  if (e->clock.is_virtual) {
    int64_t due;
    while ((due = next_timer(e)) <= t) {
      if (due == INT64_MIN || fire_timers(e, t, TIMER_BATCH, 0) < 0) goto fail;
    }
    if (t > e->now) move_now(e, t);
  }
  return 0;
fail:
  engine_rollback(e);
  return EV_ERROR;
}

int engine_feed(engine_t *e, event_t *ev) {
  if (!ev->has_time) ev->time = e->clock.is_virtual ? e->now : clock_now(&e->clock), ev->has_time = 1;
  if (arrive_at(e, ev->time) == EV_ERROR) return EV_ERROR;
  int rc = eng_apply_event(e, ev);
  if (rc == EV_ERROR) engine_rollback(e);
  return rc;
}

/* A forwarded emit inside the open batch: dedupe on its id, then as fire_one treats a
 * local emit (no such member: void; too deep a chain: refused), with its id as the key. */
static int apply_emit(engine_t *e, const engine_emit_in_t *in) {
  int fresh = store_seen_mark(e->store, in->id, e->now > e->seen_floor ? e->now : e->seen_floor,
                              e->dedupe_window > 0 ? e->now - e->dedupe_window : INT64_MIN);
  if (fresh < 0) return EV_ERROR;
  if (!fresh) {
    e->stats.duplicates++;
    eng_trace(e, &(engine_trace_t){.kind = TRACE_DUPLICATE, .member = in->member, .type = in->type, .detail = in->id});
    return EV_DUPLICATE;
  }
  timer_row_t r = {.due = e->now, .member = (char *)in->member, .type = (char *)in->type,
                   .campaign = (char *)in->campaign, .gen = TIMER_NOT_CANCELLABLE, .depth = in->depth,
                   .chain = (char *)in->chain};
  e->batch_work++;
  int known = member_known(e, in->member);
  if (known < 0) return EV_ERROR;
  if (!known) {
    e->stats.timers_cancelled++;
    trace_timer(e, TRACE_TIMER_VOID, &r);
    return EV_APPLIED;
  }
  member_t *m = member_cache_get(&e->members, e->store, in->member, e->now);
  if (!m) return EV_ERROR;
  trace_timer(e, TRACE_TIMER_FIRED, &r);
  event_t ev = {.type = (char *)in->type, .member = (char *)in->member, .time = e->now, .has_time = 1,
                .data = in->data};
  e->stats.timers_fired++;
  if (in->depth > MAX_CAUSAL_DEPTH) return refuse_chain(e, m, &r, &ev);
  return eng_dispatch(e, m, &ev, in->id, in->depth, in->chain);
}

int engine_feed_emit(engine_t *e, const engine_emit_in_t *in) {
  assert(in->id && in->member && in->type);
  if (arrive_at(e, in->at) == EV_ERROR) return EV_ERROR;
  int rc = apply_emit(e, in);
  if (rc == EV_ERROR) engine_rollback(e);
  return rc;
}

