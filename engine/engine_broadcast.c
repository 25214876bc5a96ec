/* engine_broadcast: broadcasts (hearth.broadcast) as the clock driver runs them (see
 * engine.h, "broadcasts"): when each is due, its sweep a chunk per transaction, the
 * audience count, and arming one from the CLI.
 *
 * A broadcast's progress is a row of the store's `broadcasts` table. Its sweep walks
 * member ids in order (through the member_tags index when the audience has a tag), a
 * chunk at a time, like hearth.members sweeps; each chunk's sends and the row's cursor
 * (the last id of the chunk) commit in one transaction, so after a crash the sweep
 * starts again after the last committed chunk: no member of it is sent to twice, none
 * skipped. Each member's sends are ordinary sends of an ordinary handler call (caps,
 * quiet hours, quotas) whose default action ids are campaign/member/broadcast:NAME/n,
 * stable for a (broadcast, member). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_private.h"
#include "log.h"

/* On the real clock, a broadcast whose time passed more than this long ago when it comes
 * to run (the daemon was down, or the script was deployed late) is not swept: `expired`.
 * On a history import it runs at its time like the rest of the history, and its sends,
 * judged then, are `expired` when that is before --stale-after (engine_changes.c), so an
 * import records what a dry-run of the same file does. */
#define BROADCAST_STALE_REAL (24 * 3600)

static const char *const ST_SCHEDULED = "scheduled", *const ST_RUNNING = "running", *const ST_DONE = "done",
                         *const ST_EXPIRED = "expired";

static const broadcast_decl_t *decl(engine_t *e, int i) {
  assert(e->scripts && i >= 0 && i < e->nbcast);
  return scripts_broadcast(e->scripts, i);
}

/* When broadcast i is due, from its row (started from the CLI, running, finished) or
 * else its declaration. A failed read is logged and leaves it unscheduled. */
static int64_t due_of(engine_t *e, int i) {
  const broadcast_decl_t *b = decl(e, i);
  broadcast_row_t row;
  int found = store_broadcast_get(e->store, b->name, &row);
  if (found < 0) return INT64_MAX;
  if (!found) return b->at == BROADCAST_NO_TIME ? INT64_MAX : b->at;
  int64_t due = !strcmp(row.state, ST_SCHEDULED) || !strcmp(row.state, ST_RUNNING) ? row.at : INT64_MAX;
  store_broadcast_row_free(&row);
  return due;
}

void eng_schedule_broadcasts(engine_t *e) {
  for (int i = 0; i < e->nbcast; i++)
    if (!e->bcast[i].running) e->bcast[i].due = due_of(e, i);
}

void engine_broadcasts_reload(engine_t *e) {
  assert(!e->in_batch);
  if (e->started) eng_schedule_broadcasts(e);
}

int64_t eng_next_broadcast(engine_t *e) {
  int64_t t = INT64_MAX;
  for (int i = 0; i < e->nbcast; i++)
    if (!e->bcast[i].running && e->bcast[i].due < t) t = e->bcast[i].due;
  return t;
}

int eng_broadcast_in_progress(engine_t *e) {
  for (int i = 0; i < e->nbcast; i++)
    if (e->bcast[i].running) return i;
  return -1;
}

void eng_broadcast_begin(engine_t *e, int64_t t) {
  for (int i = 0; i < e->nbcast; i++)
    if (!e->bcast[i].running && e->bcast[i].due <= t) {
      e->bcast[i].running = 1;
      return;
    }
  assert(0 && "no broadcast due");
}

/* Members' attributes must equal the audience's attrs. */
static int attrs_match(const broadcast_decl_t *b, member_t *m) {
  if (!b->attrs) return 1;
  const char *k;
  json_t *v;
  json_object_foreach(b->attrs, k, v) {
    if (!json_equal(json_object_get(member_attrs(m), k), v)) return 0;
  }
  return 1;
}

/* The call for member m of broadcast i; ev and key are the caller's. */
static engine_call_t member_call(engine_t *e, int i, member_t *m, event_t *ev, char *key, size_t keylen) {
  const broadcast_decl_t *b = decl(e, i);
  snprintf(key, keylen, "broadcast:%s", b->name);
  *ev = (event_t){.type = "hearth.broadcast", .member = m->id, .time = e->now, .has_time = 1};
  return (engine_call_t){.m = m, .ev = ev, .event_key = key, .campaign = b->campaign};
}

/* Is m in broadcast i's audience? Tags were matched by the sweep; here attrs and the
 * `where` predicate, whose changes are undone (a failing one is recorded and counts as
 * no). 1, 0, or -1 on a database error. */
static int in_audience(engine_t *e, int i, member_t *m) {
  const broadcast_decl_t *b = decl(e, i);
  if (!attrs_match(b, m)) return 0;
  if (!b->has_where) return 1;
  event_t ev;
  char key[96];
  engine_call_t c = member_call(e, i, m, &ev, key, sizeof key);
  eng_call_begin(e, &c);
  char *err = NULL;
  int in = scripts_broadcast_where(e->scripts, i, &c, &err);
  int rc = in < 0 ? eng_call_end(e, &c, err) : eng_call_discard(e, &c);
  free(err);
  if (rc < 0) return -1;
  return in > 0;
}

/* Run broadcast i's fn for m as a handler call. 0 (ran or failed and recorded), -1. */
static int send_to(engine_t *e, int i, member_t *m) {
  event_t ev;
  char key[96];
  engine_call_t c = member_call(e, i, m, &ev, key, sizeof key);
  e->action_n = 0; /* default ids count per member */
  eng_call_begin(e, &c);
  char *err = NULL;
  int ran = scripts_broadcast_run(e->scripts, i, &c, &err);
  assert(ran == 0 || err);
  int rc = eng_call_end(e, &c, ran == 0 ? NULL : err);
  free(err);
  return rc < 0 ? -1 : 0;
}

/* The next chunk of candidates after cursor: *ids (free them), count, -1. */
static int next_chunk(engine_t *e, int i, const char *cursor, char ***ids) {
  const broadcast_decl_t *b = decl(e, i);
  return engine_member_ids(e, b->tag, cursor, b->chunk, ids);
}

static void free_ids(char **ids, int n) {
  for (int k = 0; k < n; k++) free(ids[k]);
  free(ids);
}

/* Walk one chunk: count the audience into row, and send to it when `send`. 1 when the
 * sweep is at its end, 0 when more is left, -1 on a database error. */
static int sweep_chunk(engine_t *e, int i, broadcast_row_t *row, int send) {
  char **ids;
  int n = next_chunk(e, i, row->cursor, &ids);
  if (n < 0) return -1;
  int rc = 0;
  for (int k = 0; k < n && rc == 0; k++) {
    member_t *m = engine_member(e, ids[k]);
    int in = m ? in_audience(e, i, m) : -1;
    if (in < 0) rc = -1;
    if (in > 0) row->matched++;
    if (in > 0 && send && send_to(e, i, m) < 0) rc = -1;
    e->batch_work++;
  }
  row->seen += n;
  if (n > 0) {
    free(row->cursor);
    row->cursor = xstrdup(ids[n - 1]);
  }
  free_ids(ids, n);
  if (rc < 0) return -1;
  return n < decl(e, i)->chunk;
}

/* Where the sweep of broadcast i stands: its row, or a fresh one due at `due`. */
static int load_row(engine_t *e, int i, int64_t due, broadcast_row_t *row) {
  int found = store_broadcast_get(e->store, decl(e, i)->name, row);
  if (found < 0) return -1;
  if (!found) {
    *row = (broadcast_row_t){.name = xstrdup(decl(e, i)->name), .at = due, .state = xstrdup(ST_SCHEDULED),
                             .cursor = xstrdup(""), .started_at = STORE_NO_TIME, .finished_at = STORE_NO_TIME};
  }
  return 0;
}

static void set_state(broadcast_row_t *row, const char *state) {
  free(row->state);
  row->state = xstrdup(state);
}

/* Too late to be the campaign it was: on the real clock, a day after its time. */
static int is_stale(engine_t *e, int64_t at) {
  return !e->clock.is_virtual && at < e->now - BROADCAST_STALE_REAL;
}

static void log_state(engine_t *e, int level, const broadcast_row_t *row, const char *msg) {
  char tbuf[32], seen[24], matched[24];
  snprintf(seen, sizeof seen, "%lld", (long long)row->seen);
  snprintf(matched, sizeof matched, "%lld", (long long)row->matched);
  log_msg(level, msg, "broadcast", row->name, "at", engine_fmt_time(e, row->at, tbuf), "seen", seen, "matched",
          matched, NULL);
}

int eng_broadcast_step(engine_t *e, int i) {
  bcast_slot_t *bs = &e->bcast[i];
  assert(bs->running && bs->due != INT64_MAX);
  if (e->clock.is_virtual) eng_move_now(e, bs->due);
  if (engine_begin(e) < 0) return -1;
  broadcast_row_t row;
  if (load_row(e, i, bs->due, &row) < 0) {
    engine_rollback(e);
    return -1;
  }
  int end;
  if (strcmp(row.state, ST_RUNNING) && is_stale(e, row.at)) {
    set_state(&row, ST_EXPIRED); /* never swept: nothing is sent */
    end = 1;
  } else {
    if (strcmp(row.state, ST_RUNNING)) {
      set_state(&row, ST_RUNNING);
      row.started_at = e->now;
      log_state(e, LOG_DEBUG, &row, "broadcast started");
    }
    end = sweep_chunk(e, i, &row, 1);
    if (end == 1) {
      set_state(&row, ST_DONE);
      row.finished_at = e->now;
    }
  }
  int rc = end < 0 || store_broadcast_put(e->store, &row) < 0 ? -1 : 0;
  if (rc < 0)
    engine_rollback(e);
  else
    rc = engine_commit(e);
  if (rc == 0 && end == 1) {
    bs->running = 0;
    bs->due = INT64_MAX;
    if (!strcmp(row.state, ST_DONE))
      log_state(e, LOG_INFO, &row, "broadcast done");
    else
      log_state(e, LOG_WARN, &row, "broadcast expired: its time passed more than a day ago, nothing sent");
  }
  if (rc < 0) bs->running = 0, bs->due = due_of(e, i); /* the next try starts from the store */
  store_broadcast_row_free(&row);
  return rc;
}

int engine_broadcast_count(engine_t *e, const char *name, int64_t *seen, int64_t *matched) {
  assert(!e->in_batch);
  int i = e->scripts ? scripts_broadcast_find(e->scripts, name) : -1;
  if (i < 0) return BROADCAST_UNKNOWN;
  broadcast_row_t row = {.cursor = xstrdup("")};
  int end = 0;
  while (end == 0) {
    if (engine_begin(e) < 0) {
      end = -1;
      break;
    }
    end = sweep_chunk(e, i, &row, 0);
    engine_rollback(e); /* a count keeps nothing */
  }
  *seen = row.seen;
  *matched = row.matched;
  free(row.cursor);
  return end < 0 ? -1 : 0;
}

int engine_broadcast_start(engine_t *e, const char *name, int64_t at) {
  assert(!e->in_batch);
  int i = e->scripts ? scripts_broadcast_find(e->scripts, name) : -1;
  if (i < 0) return BROADCAST_UNKNOWN;
  if (engine_begin(e) < 0) return -1;
  broadcast_row_t row;
  if (load_row(e, i, at, &row) < 0) {
    engine_rollback(e);
    return -1;
  }
  int rc = 0;
  if (!strcmp(row.state, ST_RUNNING) || !strcmp(row.state, ST_DONE)) {
    rc = BROADCAST_ALREADY;
  } else {
    row.at = at;
    set_state(&row, ST_SCHEDULED);
    if (store_broadcast_put(e->store, &row) < 0) rc = -1;
  }
  if (rc == 0)
    rc = engine_commit(e);
  else
    engine_rollback(e);
  store_broadcast_row_free(&row);
  if (rc == 0 && e->started && !e->bcast[i].running) e->bcast[i].due = at;
  return rc;
}
