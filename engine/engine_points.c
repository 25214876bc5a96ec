/* engine_points: points lots, their expiry and notices, and the points mall's redemptions
 * and refunds (see engine.h, engine_private.h). Every grant that expires is a lot in the
 * store (what is left of it, when it expires); points that never expire are NEVER_LOT, no
 * row: the balance less the lots, so the common grant without expiry writes its ledger
 * entry alone. A spend takes from the lots that expire soonest (ties: the oldest grant),
 * then from NEVER_LOT; an expiry, a redemption and a refund are ledger entries of their
 * own, naming the lots they touched. Sum of the ledger = balance = lots left + NEVER_LOT.
 *
 * The clock: one durable timer per member (POINTS_TIMER, in the ordinary timers table),
 * armed for the earliest moment one of her lots expires or its notice is due. A grant
 * that comes due sooner re-arms it (m:cancel's generation voids the old row); when it
 * fires, it expires and notifies what is due and arms the next. So 100k members with
 * expiring points are at most 100k timer rows, and expiry runs on whatever clock drives
 * the timers: real time in the daemon, virtual in dry-run and tests, event time in a
 * history import. Stock is shared across members, so it and each redemption's result
 * live in the store, in the call's transaction. Our own design. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_private.h"
#include "log.h"

/* ---- when a lot expires ---- */

static int64_t days_in(int64_t year, int month) {
  int64_t y2 = month == 12 ? year + 1 : year;
  int m2 = month == 12 ? 1 : month + 1;
  return days_from_civil(y2, m2, 1) - days_from_civil(year, month, 1);
}

/* The instant a grant at `t` expires under x, in the member's zone; STORE_NEVER if never. */
static int64_t expiry_at(const expiry_t *x, const tz_t *tz, int64_t t) {
  civil_t c;
  switch (x->kind) {
  case EXPIRE_AFTER: return t > STORE_NEVER - x->n ? STORE_NEVER : t + x->n;
  case EXPIRE_MONTH_END:
    tz_to_civil(tz, t, &c);
    return tz_from_local(tz, c.year, c.month + 1, 1, 0, 0, 0);
  case EXPIRE_YEAR_END:
    tz_to_civil(tz, t, &c);
    return tz_from_local(tz, c.year + 1, 1, 1, 0, 0, 0);
  case EXPIRE_MONTHS: {
    tz_to_civil(tz, t, &c);
    int64_t months = (int64_t)c.year * 12 + (c.month - 1) + x->n;
    int64_t year = months / 12;
    int month = (int)(months % 12) + 1;
    int64_t dim = days_in(year, month);
    int day = c.day > dim ? (int)dim : c.day;
    return tz_from_local(tz, (int)year, month, day, c.hour, c.min, c.sec);
  }
  default: return STORE_NEVER;
  }
}

/* When a lot next needs the clock: its notice if one is due, else its expiry. */
static int64_t lot_due(const lot_row_t *l) {
  return l->notice_at != STORE_NO_TIME && l->notice_at < l->expires ? l->notice_at : l->expires;
}

/* Arm the member's one points timer for `due`, voiding the one armed before. */
static int arm(engine_t *e, engine_call_t *c, int64_t due) {
  if (engine_cancel_timers(e, c, POINTS_TIMER) < 0) return -1;
  return engine_set_timer(e, c, due, POINTS_TIMER, NULL);
}

/* Add a lot of n points expiring at `expires`, with the rule's notice, and arm the timer
 * when the lot needs the clock sooner than any she has. Points that never expire are no
 * lot row: they are the part of her balance her lots do not hold (NEVER_LOT), so a grant
 * without expiry costs the ledger entry alone. */
static int add_lot(engine_t *e, engine_call_t *c, int64_t n, int64_t ledger_n, int64_t expires,
                   const points_rule_t *rule, const char *campaign) {
  if (expires == STORE_NEVER) return 0;
  lot_row_t lot = {.member = c->m->id, .n = ledger_n, .granted = e->now, .expires = expires,
                   .notice_at = STORE_NO_TIME, .amount = n, .remaining = n, .campaign = (char *)campaign};
  if (expires != STORE_NEVER && rule && rule->notice_send && expires - rule->notice_before >= e->now) {
    lot.notice_at = expires - rule->notice_before; /* a lot granted after its notice time has none */
    lot.notice = rule->notice_send;
  }
  int64_t due = lot_due(&lot), before = STORE_NEVER;
  if (due != STORE_NEVER && store_lots_next_due(e->store, c->m->id, &before) < 0) return eng_db_error(c);
  if (store_lot_add(e->store, &lot) < 0) return eng_db_error(c);
  return due < before ? arm(e, c, due) : 0;
}

int eng_lot_grant(engine_t *e, engine_call_t *c, int64_t n, int64_t ledger_n, const expiry_t *expire,
                  const char *campaign) {
  const points_rule_t *rule = e->scripts ? scripts_points_rule(e->scripts, campaign) : NULL;
  const expiry_t *x = expire ? expire : rule ? &rule->expire : NULL;
  int64_t expires = x ? expiry_at(x, engine_member_tz(e, c->m), e->now) : STORE_NEVER;
  return add_lot(e, c, n, ledger_n, expires, rule, campaign);
}

int eng_lots_take(engine_t *e, engine_call_t *c, int64_t amount, char **lots, int64_t *latest_expiry) {
  assert(amount > 0);
  *lots = NULL;
  lot_row_t *live;
  int k = store_lots_live(e->store, c->m->id, &live);
  if (k < 0) return eng_db_error(c);
  json_t *took = json_array();
  int64_t latest = STORE_NO_TIME, left = amount, in_lots = 0;
  for (int i = 0; i < k; i++) in_lots += live[i].remaining;
  int rc = 0;
  for (int i = 0; i < k && left > 0 && rc == 0; i++) {
    int64_t t = live[i].remaining < left ? live[i].remaining : left;
    left -= t;
    if (live[i].expires > latest) latest = live[i].expires;
    json_array_append_new(took, json_pack("[I, I]", (json_int_t)live[i].n, (json_int_t)t));
    rc = store_lot_update(e->store, c->m->id, live[i].n, live[i].remaining - t, live[i].notice_at);
  }
  store_lots_free(live, k);
  int64_t never = c->m->points - in_lots; /* what never expires: taken last */
  if (rc == 0 && left > 0 && never > 0) {
    int64_t t = never < left ? never : left;
    left -= t;
    latest = STORE_NEVER;
    json_array_append_new(took, json_pack("[I, I]", (json_int_t)NEVER_LOT, (json_int_t)t));
  }
  if (rc == 0 && left > 0) {
    log_msg(LOG_ERROR, "points lots hold less than the balance: the ledger and the lots disagree", "member",
            c->m->id, NULL);
    rc = -1;
  }
  if (rc == 0) *lots = json_dumps(took, JSON_COMPACT);
  json_decref(took);
  if (latest_expiry) *latest_expiry = latest;
  return rc < 0 ? eng_db_error(c) : 0;
}

/* ---- the ledger entries the engine makes itself ---- */

static const char *first_channel(engine_t *e) {
  return e->scripts && scripts_channel_count(e->scripts) ? scripts_channel(e->scripts, 0)->name : "log";
}

/* A ledger entry of `type` for delta points, and its points action (fields delta, reason,
 * balance, type, and `extra`'s members; extra stolen). */
static int ledger_entry(engine_t *e, engine_call_t *c, const char *type, int64_t delta, const char *reason,
                        const char *lots, const char *step, const char *key, json_t *extra, int64_t *n_out) {
  member_t *m = c->m;
  ledger_row_t row = {.member = m->id, .n = m->ledger_n + 1, .time = e->now, .delta = delta,
                      .balance = m->points + delta, .reason = reason, .campaign = c->campaign,
                      .cause = c->event_key, .type = type, .lots = lots};
  assert(row.balance >= 0);
  if (store_ledger_add(e->store, &row) < 0) {
    json_decref(extra);
    return eng_db_error(c);
  }
  m->ledger_n++;
  m->points += delta;
  m->dirty = 1;
  json_t *f = json_pack("{s:I, s:s, s:I, s:s}", "delta", (json_int_t)delta, "reason", reason, "balance",
                        (json_int_t)m->points, "type", type);
  if (extra) json_object_update(f, extra);
  json_decref(extra);
  action_spec_t a = {.kind = "points", .step = step, .key = key, .channel = first_channel(e), .status = AS_QUEUED,
                     .fields = f};
  int recorded;
  if (n_out) *n_out = row.n;
  int rc = engine_act(e, c, &a, &recorded);
  return rc == ENGINE_ACT_REPEATED ? rc : rc < 0 ? -1 : 0;
}

/* ---- expiry and notices, when the member's points timer fires ---- */

/* Expire every lot due by now: one ledger entry of type expire naming the lots. */
static int expire_due(engine_t *e, engine_call_t *c, lot_row_t *lots, int n) {
  json_t *ended = json_array();
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    if (lots[i].expires > e->now) continue;
    total += lots[i].remaining;
    json_array_append_new(ended, json_pack("[I, I]", (json_int_t)lots[i].n, (json_int_t)lots[i].remaining));
    if (store_lot_update(e->store, c->m->id, lots[i].n, 0, STORE_NO_TIME) < 0) {
      json_decref(ended);
      return eng_db_error(c);
    }
    lots[i].remaining = 0;
  }
  int rc = 0;
  if (total > 0) {
    char *text = json_dumps(ended, JSON_COMPACT);
    rc = ledger_entry(e, c, "expire", -total, "points expired", text, "expire", NULL,
                      json_pack("{s:O}", "lots", ended), NULL);
    free(text);
  }
  json_decref(ended);
  return rc < 0 ? -1 : 0;
}

/* Send the notices due by now, one per expiry moment: vars points (what expires then) and
 * expires (the moment), key expiry_notice/<her last valid day>. */
static int notify_due(engine_t *e, engine_call_t *c, lot_row_t *lots, int n) {
  const tz_t *tz = engine_member_tz(e, c->m);
  for (int i = 0; i < n;) {
    if (lots[i].remaining == 0 || lots[i].notice_at == STORE_NO_TIME || lots[i].notice_at > e->now) {
      i++;
      continue;
    }
    int64_t expires = lots[i].expires, points = 0;
    const char *tpl = lots[i].notice;
    int j = i;
    for (; j < n && lots[j].expires == expires; j++) { /* live lots come soonest expiry first */
      if (lots[j].remaining == 0 || lots[j].notice_at == STORE_NO_TIME || lots[j].notice_at > e->now) continue;
      points += lots[j].remaining;
      if (store_lot_update(e->store, c->m->id, lots[j].n, lots[j].remaining, STORE_NO_TIME) < 0)
        return eng_db_error(c);
      lots[j].notice_at = STORE_NO_TIME;
    }
    civil_t last;
    tz_to_civil(tz, expires - 1, &last);
    char key[64], when[32];
    snprintf(key, sizeof key, "expiry_notice/%04d-%02d-%02d", last.year, last.month, last.day);
    rfc3339_format(expires, tz_offset_at(tz, expires), when);
    json_t *f = json_pack("{s:s, s:s, s:s, s:{s:I, s:s}}", "template", tpl ? tpl : "points_expiring", "channel",
                          first_channel(e), "category", "marketing", "vars", "points", (json_int_t)points,
                          "expires", when);
    action_spec_t a = {.kind = "send", .key = key, .step = "expiry_notice", .channel = first_channel(e),
                       .status = AS_QUEUED, .fields = f};
    int recorded;
    if (engine_act(e, c, &a, &recorded) < 0) return -1;
    i = j;
  }
  return 0;
}

static int points_due(engine_t *e, engine_call_t *c) {
  if (eng_call_write(e, c) < 0) return -1;
  lot_row_t *lots;
  int n = store_lots_live(e->store, c->m->id, &lots);
  if (n < 0) return eng_db_error(c);
  int rc = expire_due(e, c, lots, n);
  if (rc == 0) rc = notify_due(e, c, lots, n);
  int64_t next = STORE_NEVER;
  for (int i = 0; i < n; i++)
    if (lots[i].remaining > 0 && lot_due(&lots[i]) < next) next = lot_due(&lots[i]);
  store_lots_free(lots, n);
  if (rc == 0 && next != STORE_NEVER) rc = arm(e, c, next);
  return rc;
}

int eng_points_due(engine_t *e, member_t *m, const event_t *ev, const char *key) {
  engine_call_t c = {.m = m, .ev = ev, .event_key = key, .campaign = "points"};
  e->action_n = 0;
  eng_call_begin(e, &c);
  int rc = points_due(e, &c);
  int ended = eng_call_end(e, &c, NULL);
  return rc < 0 || ended < 0 ? EV_ERROR : EV_APPLIED;
}

/* ---- redemption ---- */

static json_t *item_reason(const char *rule, const item_decl_t *item) {
  return json_pack("{s:s, s:s}", "rule", rule, "item", item->name);
}

/* Why qty units of the item cannot be redeemed now, or NULL when they can (*ok -1 on a
 * database error). */
static json_t *refusal(engine_t *e, engine_call_t *c, const item_decl_t *item, int64_t qty, int64_t cost,
                       int *ok) {
  char t1[32], t2[32];
  *ok = 0;
  if (e->now < item->from || e->now >= item->to) {
    json_t *r = item_reason("window", item);
    if (item->from != INT64_MIN) json_object_set_new(r, "from", json_string(engine_fmt_time(e, item->from, t1)));
    if (item->to != INT64_MAX) json_object_set_new(r, "to", json_string(engine_fmt_time(e, item->to, t2)));
    json_object_set_new(r, "now", json_string(engine_fmt_time(e, e->now, t1)));
    return r;
  }
  if (item->stock >= 0) {
    int64_t used;
    if (store_item_used(e->store, item->name, &used) < 0) return (*ok = -1, NULL);
    if (used + qty > item->stock) {
      json_t *r = item_reason("stock", item);
      json_object_set_new(r, "stock", json_integer(item->stock));
      json_object_set_new(r, "left", json_integer(item->stock - used));
      json_object_set_new(r, "qty", json_integer(qty));
      return r;
    }
  }
  if (item->per_member >= 0) {
    int64_t held;
    if (store_redeemed_qty(e->store, c->m->id, item->name, &held) < 0) return (*ok = -1, NULL);
    if (held + qty > item->per_member) {
      json_t *r = item_reason("per_member", item);
      json_object_set_new(r, "limit", json_integer(item->per_member));
      json_object_set_new(r, "redeemed", json_integer(held));
      json_object_set_new(r, "qty", json_integer(qty));
      return r;
    }
  }
  if (cost < 0 || c->m->points < cost) {
    json_t *r = item_reason("balance", item);
    json_object_set_new(r, "cost", json_integer(item->cost));
    json_object_set_new(r, "qty", json_integer(qty));
    json_object_set_new(r, "need", cost < 0 ? json_null() : json_integer(cost));
    json_object_set_new(r, "balance", json_integer(c->m->points));
    return r;
  }
  return NULL;
}

/* Spend the points and the stock of an allowed redemption: the ledger entry (type redeem)
 * and the expiry a refund will give back (the latest of the lots it took). */
static int spend_for(engine_t *e, engine_call_t *c, const item_decl_t *item, int64_t qty, int64_t cost,
                     int64_t *expires) {
  char *lots;
  if (eng_lots_take(e, c, cost, &lots, expires) < 0) return -1;
  char reason[200];
  snprintf(reason, sizeof reason, "redeem %s x%lld", item->name, (long long)qty);
  member_t *m = c->m;
  ledger_row_t row = {.member = m->id, .n = m->ledger_n + 1, .time = e->now, .delta = -cost,
                      .balance = m->points - cost, .reason = reason, .campaign = c->campaign,
                      .cause = c->event_key, .type = "redeem", .lots = lots};
  int rc = store_ledger_add(e->store, &row);
  free(lots);
  if (rc < 0 || store_item_add_used(e->store, item->name, qty) < 0) return eng_db_error(c);
  m->ledger_n++;
  m->points -= cost;
  m->dirty = 1;
  return 0;
}

int engine_redeem(engine_t *e, engine_call_t *c, const item_decl_t *item, int64_t qty, action_spec_t *a,
                  int *recorded) {
  assert(qty > 0 && !a->fields && !a->reason);
  *recorded = 0;
  if (eng_call_write(e, c) < 0) return -1;
  char *id = eng_action_id(e, c, a, 1);
  redemption_row_t was;
  int found = store_redemption_get(e->store, id, &was);
  if (found != 0) { /* the same key again: the earlier result, nothing changed */
    int status = found < 0 ? -1 : action_status_parse(was.status);
    if (found > 0) store_redemption_free(&was);
    free(id);
    return found < 0 ? eng_db_error(c) : status;
  }
  int64_t cost = qty > INT64_MAX / item->cost ? -1 : qty * item->cost;
  int ok;
  json_t *reason = refusal(e, c, item, qty, cost, &ok);
  int64_t expires = STORE_NEVER;
  if (ok < 0 || (!reason && spend_for(e, c, item, qty, cost, &expires) < 0)) {
    free(id);
    return eng_db_error(c);
  }
  int status = reason ? AS_LIMITED : AS_QUEUED;
  char *reason_text = reason ? json_dumps(reason, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  redemption_row_t row = {.id = id, .member = c->m->id, .item = (char *)item->name,
                          .campaign = (char *)(a->campaign ? a->campaign : c->campaign),
                          .status = (char *)action_status_names[status], .reason = reason_text, .time = e->now,
                          .qty = qty, .cost = reason ? 0 : cost, .expires = expires};
  int added = store_redemption_add(e->store, &row);
  free(reason_text);
  if (added < 0) {
    json_decref(reason);
    free(id);
    return eng_db_error(c);
  }
  a->fields = json_pack("{s:s, s:I, s:I, s:I}", "item", item->name, "qty", (json_int_t)qty, "cost",
                        (json_int_t)(reason ? 0 : cost), "balance", (json_int_t)c->m->points);
  a->status = status;
  a->reason = reason;
  int rc = eng_act_with_id(e, c, a, id, recorded);
  free(id);
  return rc < 0 ? -1 : status;
}

/* ---- refund ---- */

static int refund(engine_t *e, engine_call_t *c, redemption_row_t *r) {
  if (eng_call_write(e, c) < 0) return -1;
  int now = store_redemption_refund(e->store, r->id, e->now);
  if (now < 0) return eng_db_error(c);
  if (!now) return 0; /* refunded before: once only */
  if (store_item_add_used(e->store, r->item, -r->qty) < 0) return eng_db_error(c);
  char reason[200], key[300];
  snprintf(reason, sizeof reason, "refund %s x%lld", r->item, (long long)r->qty);
  snprintf(key, sizeof key, "refund/%s", r->id);
  int64_t n;
  if (ledger_entry(e, c, "refund", r->cost, reason, NULL, "refund", key, json_pack("{s:s}", "redemption", r->id),
                   &n) < 0)
    return -1;
  const points_rule_t *rule = e->scripts ? scripts_points_rule(e->scripts, r->campaign) : NULL;
  return add_lot(e, c, r->cost, n, r->expires, rule, r->campaign);
}

int eng_refund(engine_t *e, member_t *m, const event_t *ev, const char *key) {
  const char *id = json_string_value(json_object_get(ev->data, "redemption"));
  redemption_row_t r;
  int found = id ? store_redemption_get(e->store, id, &r) : 0;
  if (found < 0) return EV_ERROR;
  if (!found || strcmp(r.member, m->id) || strcmp(r.status, "queued") || r.refunded != STORE_NO_TIME) {
    log_msg(LOG_WARN, "redemption.refunded: nothing to refund (no such redemption of this member, not redeemed, "
                      "or refunded before)", "member", m->id, "redemption", id ? id : "(data.redemption missing)",
            NULL);
    if (found) store_redemption_free(&r);
    return EV_APPLIED;
  }
  engine_call_t c = {.m = m, .ev = ev, .event_key = key, .campaign = r.campaign};
  eng_call_begin(e, &c);
  int rc = refund(e, &c, &r);
  int ended = eng_call_end(e, &c, NULL);
  store_redemption_free(&r);
  return rc < 0 || ended < 0 ? EV_ERROR : EV_APPLIED;
}
