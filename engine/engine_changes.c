/* engine_changes: every change a script may ask for (see engine.h): attributes within the
 * member size cap, actions with their stable ids (marketing sends judged by restraint.c,
 * deferred ones judged again when their release timer fires), the records of tags and
 * points, the points ledger (a grant's lot and a spend's lots are engine_points.c's),
 * timers and emits with their causal depth, funnel counters. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_private.h"
#include "json_compact.h"
#include "json_read.h"
#include "log.h"
#include "restraint.h"

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

/* m:set("staff", ...) changes her owner: the per-staff counts and the log follow. */
static int set_owner_attr(engine_t *e, engine_call_t *c, const char *before) {
  if (eng_call_write(e, c) < 0) return -1;
  if (eng_owner_moved(e, c->m->id, before, eng_member_staff(c->m), "m:set", c->event_key) < 0)
    return eng_db_error(c);
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
  int owner = !strcmp(key, "staff");
  char *before = owner && eng_member_staff(c->m) ? xstrdup(eng_member_staff(c->m)) : NULL;
  member_undo_key(&c->undo, MP_ATTRS, key);
  if (value)
    json_object_set_new(attrs, key, value);
  else
    json_object_del(attrs, key);
  int rc = owner ? set_owner_attr(e, c, before) : 0;
  free(before);
  return rc;
}

/* Release what a spec still owns (its change was not made). */
static void spec_release(action_spec_t *a) {
  json_decref(a->fields);
  json_decref(a->reason);
  a->fields = a->reason = NULL;
}

/* Hold an action for the commit's report; text (taken, may be NULL) is its stored form.
 * A queued one is judged by the invariants now (engine_invariants.c): -1 on a database
 * error (the call is marked failed), else 0. */
static int hold(engine_t *e, engine_call_t *c, json_t *body, char *text, int status, const char *channel) {
  if (e->npending == e->cappending)
    e->pending = xrealloc(e->pending, (size_t)(e->cappending = e->cappending ? e->cappending * 2 : 64) * sizeof *e->pending);
  pending_action_t *p = &e->pending[e->npending++];
  p->body = json_incref(body);
  p->text = text;
  p->status = status;
  p->channel = channel ? xstrdup(channel) : NULL;
  p->violations = p->member_view = NULL;
  return eng_invariants_judge(e, c, p);
}

/* The stable id of an action: campaign/member/key, or campaign/member/event/n. */
char *eng_action_id(engine_t *e, engine_call_t *c, const action_spec_t *a, int count) {
  const char *campaign = a->campaign ? a->campaign : c->campaign;
  if (a->key) return join_id((const char *[]){campaign, c->m->id, a->key}, 3, JOIN_NO_NUMBER);
  return join_id((const char *[]){campaign, c->m->id, c->event_key}, 3, count ? ++e->action_n : e->action_n);
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

/* An action whose id is in the outbox already although nothing said it could be (a default
 * id, campaign/member/event/n): the event ran before, and its id came again after the
 * dedupe window (or the database was restored from an older copy). Nothing is recorded
 * twice: the handler is stopped with this message (its changes roll back, the failure is
 * kept with its traceback) and the rest of the batch goes on. */
static int repeated(engine_call_t *c, const char *id) {
  free(c->refusal);
  c->refusal = xasprintf("action '%s' was recorded before: this event ran already (its id came again after "
                         "the dedupe window, or the database is older than the events); nothing is done twice",
                         id);
  return ENGINE_ACT_REPEATED;
}

/* Record a change already made (points, tag, untag): queued, as it happened. An outbox
 * row only for a channel that delivers its kind (never from a stale history); else a
 * funnel count under its kind. A keyed one applies once: its key is claimed. */
static int record_change(engine_t *e, engine_call_t *c, action_spec_t *a, int *recorded) {
  json_t *fields = a->fields ? a->fields : json_object();
  json_decref(a->reason);
  a->fields = a->reason = NULL;
  int rc = -1;
  char *id = eng_action_id(e, c, a, 1);
  json_t *body = NULL;
  if (eng_call_write(e, c) < 0) goto out;
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
  if (deliver || e->on_action || eng_invariants_on(e)) /* else no one reads it */
    body = action_body(e, c, a, id, AS_QUEUED, fields, NULL);
  char *text = NULL;
  if (deliver) {
    text = jc_dumps(body);
    if (!text) goto out;
    action_row_t row = {.id = id, .member = c->m->id, .campaign = campaign, .step = a->step, .kind = a->kind,
                        .status = action_status_names[AS_QUEUED], .channel = a->channel, .time = e->now,
                        .body = text, .deliverable = 1, .keyed = a->key != NULL};
    int w = store_action_add(e->store, &row);
    if (w == STORE_EXISTS) {
      free(text);
      rc = repeated(c, id);
      goto out;
    }
    if (w < 0) {
      free(text);
      goto out;
    }
  } else {
    eng_funnel_add(e, campaign, a->step ? a->step : "", "", a->kind, 1);
  }
  *recorded = 1;
  if (hold(e, c, body, text, AS_QUEUED, a->channel) < 0) goto out;
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
  char *id = given_id ? xstrdup(given_id) : eng_action_id(e, c, a, 1);
  if (eng_call_write(e, c) < 0) goto out;
  /* Only a key, or a send judged again, can name an id recorded before: a default id
   * (campaign/member/event/n) is new by construction, and if it were not (its event came
   * again after the dedupe window), the outbox's unique (member, id) refuses it: repeated(). */
  char stored[16];
  int found = a->key || given_id ? store_action_status(e->store, c->m->id, id, stored, sizeof stored) : 0;
  if (found < 0) goto out;
  int existing = found ? action_status_parse(stored) : -1;
  if (found && !(existing == AS_DEFERRED && status != AS_DEFERRED)) {
    /* the same cause again: nothing twice */
    rc = existing < 0 || existing == AS_EXPIRED ? AS_QUEUED : existing;
    goto out;
  }
  if (!found && a->key && !given_id) { /* recorded, then purged (hearth purge): nothing twice */
    int purged = store_purged_key_known(e->store, id);
    if (purged < 0) goto out;
    if (purged) {
      rc = AS_QUEUED;
      goto out;
    }
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
  char *text = jc_dumps(body);
  if (!text) goto out;
  action_row_t row = {.id = id, .member = c->m->id, .campaign = campaign, .step = a->step,
                      .kind = a->kind, .status = action_status_names[status], .channel = a->channel,
                      .time = e->now, .body = text, .deliverable = status == AS_QUEUED,
                      .keyed = a->key != NULL};
  int w = found ? store_action_rejudge(e->store, &row) : store_action_add(e->store, &row);
  if (w == STORE_EXISTS) {
    free(text);
    rc = repeated(c, id);
    goto out;
  }
  if (w == 0 && status == AS_QUEUED && !strcmp(a->kind, "task"))
    w = eng_task_open(e, id, c->m->id, fields, a->task_due);
  if (w < 0) {
    free(text);
    goto out;
  }
  *recorded = 1;
  if (hold(e, c, body, text, status, a->channel) < 0) goto out;
  rc = status == AS_EXPIRED ? AS_QUEUED : status;
out:
  if (rc == -1) c->db_failed = 1;
  free(id);
  json_decref(fields);
  json_decref(reason);
  json_decref(body);
  return rc;
}

int eng_act_with_id(engine_t *e, engine_call_t *c, action_spec_t *a, const char *id, int *recorded) {
  char *err = NULL;
  int rc = act(e, c, a, id, 0, recorded, &err);
  assert(rc != ACT_GUARD_FAILED);
  free(err);
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
int eng_release_send(engine_t *e, member_t *m, const timer_row_t *r, const event_t *ev, const char *key) {
  json_t *d = r->data ? jr_loads(r->data, 0, NULL) : NULL;
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
  eng_call_begin(e, &c);
  char *err = NULL;
  int recorded, rc = act(e, &c, &a, id, 1, &recorded, &err);
  int ended = eng_call_end(e, &c, rc == ACT_GUARD_FAILED ? err : NULL);
  free(err);
  if (ended == 1 && rc == ACT_GUARD_FAILED) {
    /* the guard raised (recorded with its traceback): the send does not wait for ever,
     * it is skipped, saying why, in a call of its own */
    engine_call_t again = {.m = m, .ev = ev, .event_key = key, .campaign = c.campaign};
    action_spec_t s2 = a;
    s2.status = AS_SKIPPED;
    s2.fields = json_incref(json_object_get(d, "fields"));
    s2.reason = json_pack("{s:s, s:s}", "rule", "guard_failed", "campaign", c.campaign);
    eng_call_begin(e, &again);
    char *err2 = NULL;
    int rc2 = act(e, &again, &s2, id, 1, &recorded, &err2);
    if (eng_call_end(e, &again, NULL) < 0 || rc2 == -1) ended = -1;
    free(err2);
  }
  json_decref(d);
  if (ended < 0 || rc == -1) return EV_ERROR;
  return ended ? EV_FAILED : EV_APPLIED;
}

/* Record a tag, untag or points action that describes a change already made. */
static int act_done(engine_t *e, engine_call_t *c, action_spec_t *a) {
  if (c->no_records) { /* a bulk load: the data, not a campaign's doing */
    spec_release(a);
    return 0;
  }
  int recorded, rc = engine_act(e, c, a, &recorded);
  return rc == ENGINE_ACT_REPEATED ? rc : rc < 0 ? -1 : 0;
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
  if (eng_call_write(e, c) < 0) return -1;
  int rc = add ? store_tag_add(e->store, c->m->id, tag) : store_tag_del(e->store, c->m->id, tag);
  if (rc < 0) {
    spec_release(a);
    return eng_db_error(c);
  }
  member_undo_key(&c->undo, MP_TAGS, tag);
  if (add)
    json_object_set_new(tags, tag, json_true());
  else
    json_object_del(tags, tag);
  int done = act_done(e, c, a);
  return done == ENGINE_ACT_REPEATED ? done : done < 0 ? -1 : 1;
}

int engine_tag(engine_t *e, engine_call_t *c, const char *tag, action_spec_t *a) {
  return tag_change(e, c, tag, a, 1);
}

int engine_untag(engine_t *e, engine_call_t *c, const char *tag, action_spec_t *a) {
  return tag_change(e, c, tag, a, 0);
}

int engine_add_points(engine_t *e, engine_call_t *c, int64_t n, const char *reason, const expiry_t *expire,
                      action_spec_t *a) {
  member_t *m = c->m;
  assert(n != 0);
  if (a->key) { /* a keyed grant or spend applies once: claim its key */
    if (eng_call_write(e, c) < 0) {
      spec_release(a);
      return -1;
    }
    char *id = eng_action_id(e, c, a, 0);
    int claimed = store_action_key_claim(e->store, id);
    free(id);
    if (claimed != 1) {
      spec_release(a);
      return claimed < 0 ? eng_db_error(c) : 0;
    }
    a->key_claimed = 1;
  }
  int range = n < 0 && m->points + n < 0 ? POINTS_BELOW_ZERO
              : n > 0 && m->points > INT64_MAX - n ? POINTS_OVERFLOW : 0;
  if (range || eng_call_write(e, c) < 0) {
    spec_release(a);
    return range ? range : -1;
  }
  const char *campaign = a->campaign ? a->campaign : c->campaign;
  char *lots = NULL; /* a spend: the lots it took from, soonest expiry first */
  if (n < 0 && eng_lots_take(e, c, -n, &lots, NULL) < 0) {
    spec_release(a);
    return -1;
  }
  ledger_row_t row = {.member = m->id, .n = m->ledger_n + 1, .time = e->now, .delta = n,
                      .balance = m->points + n, .reason = reason, .campaign = campaign,
                      .cause = c->event_key, .type = n > 0 ? "grant" : "spend", .lots = lots};
  int added = store_ledger_add(e->store, &row);
  free(lots);
  if (added < 0 || (n > 0 && eng_lot_grant(e, c, n, row.n, expire, campaign) < 0)) {
    spec_release(a);
    return eng_db_error(c);
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
  if (eng_call_write(e, c) < 0) return -1;
  char *chain = NULL;
  if (row->due <= e->now) { /* caused at once: the chain goes on */
    row->depth = c->depth + 1;
    row->chain = chain = continue_chain(c, row->type);
  }
  row->id = ++e->timer_seq;
  int rc = store_timer_add(e->store, row);
  free(chain);
  if (rc < 0) return eng_db_error(c);
  if (row->due < e->earliest_timer) e->earliest_timer = row->due;
  eng_trace(e, &(engine_trace_t){.kind = TRACE_TIMER_SET, .member = row->member, .type = row->type,
                                 .campaign = row->campaign, .due = row->due,
                                 .detail = row->gen == TIMER_NOT_CANCELLABLE ? "emit" : NULL});
  return 0;
}

int engine_set_timer(engine_t *e, engine_call_t *c, int64_t due, const char *type, const char *data) {
  json_t *gen = json_object_get(member_gens(c->m), type);
  timer_row_t row = {.due = due, .member = c->m->id, .type = (char *)type, .data = (char *)data,
                     .gen = gen ? json_integer_value(gen) : 0, .campaign = (char *)c->campaign};
  return add_timer(e, c, &row);
}

int engine_cancel_timers(engine_t *e, engine_call_t *c, const char *type) {
  json_t *gen = json_object_get(member_gens(c->m), type);
  json_int_t next = gen ? json_integer_value(gen) + 1 : 1;
  member_undo_key(&c->undo, MP_GENS, type);
  json_object_set_new(member_gens(c->m), type, json_integer(next));
  eng_trace(e, &(engine_trace_t){.kind = TRACE_CANCEL, .member = c->m->id, .type = type, .campaign = c->campaign});
  return 0;
}

/* An emit to a member of another partition (scale-out): a forward row in the call's
 * transaction, published to her partition by the node after the commit. Its id names its
 * cause (the event, the emitting member and campaign, the how-many-th emit of the call), so
 * the same cause gives the same id on any engine, and her partition applies it once. */
static int forward_emit(engine_t *e, engine_call_t *c, int partition, const char *member, const char *type,
                        const char *data) {
  if (eng_call_write(e, c) < 0) return -1;
  char *chain = continue_chain(c, type);
  char *id = xasprintf("%s/%s/%s/emit/%d", c->campaign ? c->campaign : "", c->m ? c->m->id : "", c->event_key,
                       ++c->emits);
  json_t *body = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:s}", "id", id, "member", member, "type", type,
                           "at", (json_int_t)e->now, "after", (json_int_t)e->forward_epoch, "depth",
                           (json_int_t)(c->depth + 1), "chain", chain, "campaign", c->campaign ? c->campaign : "");
  if (data) json_object_set_new(body, "data", jr_loads(data, JSON_DECODE_ANY, NULL));
  char *text = json_dumps(body, JSON_COMPACT);
  int rc = store_forward_add(e->store, partition, id, text);
  eng_trace(e, &(engine_trace_t){.kind = TRACE_TIMER_SET, .member = member, .type = type, .campaign = c->campaign,
                                 .due = e->now, .detail = "emit"});
  free(text);
  json_decref(body);
  free(id);
  free(chain);
  return rc < 0 ? eng_db_error(c) : 0;
}

int engine_emit(engine_t *e, engine_call_t *c, const char *member, const char *type, const char *data) {
  int partition = e->foreign_partition ? e->foreign_partition(e->foreign_ud, member) : -1;
  if (partition >= 0) return forward_emit(e, c, partition, member, type, data);
  timer_row_t row = {.due = e->now, .member = (char *)member, .type = (char *)type, .data = (char *)data,
                     .gen = TIMER_NOT_CANCELLABLE, .campaign = (char *)c->campaign};
  return add_timer(e, c, &row);
}

int engine_count(engine_t *e, engine_call_t *c, const char *campaign, const char *step,
                 const char *variant, const char *metric, int64_t n) {
  /* held in the batch; a failing call takes its own back */
  eng_funnel_add(e, campaign, step, variant, metric, n);
  if (c->m)
    eng_trace(e, &(engine_trace_t){.kind = TRACE_COUNT, .member = c->m->id, .campaign = campaign, .step = step,
                                   .variant = variant, .detail = metric, .n = n});
  return 0;
}

int engine_counter(engine_t *e, const char *metric, const char *campaign, const char *step,
                   const char *variant, int64_t *sum) {
  funnel_key_t key = {.metric = metric, .campaign = campaign, .step = step, .variant = variant};
  if (store_funnel_total(e->store, &key, sum) < 0) return -1;
  *sum += eng_funnel_pending(e, metric, campaign, step, variant);
  return 0;
}

int engine_member_ids(engine_t *e, const char *tag, const char *after, int limit, char ***ids) {
  return store_member_ids(e->store, tag, after, limit, ids);
}

member_t *engine_member(engine_t *e, const char *id) {
  assert(e->in_batch);
  return member_cache_get(&e->members, e->store, id, e->now);
}
