/* member_json: a member's state, points lots, ledger, actions and failures as JSON (see member_json.h).
 * Reads through the store's typed member reads (store.h, the reports section). */
#include "member_json.h"

#include <stdlib.h>
#include <string.h>

json_t *member_json_time(const tz_t *tz, int64_t t) {
  if (t == STORE_NO_TIME) return json_null();
  char buf[32];
  return json_string(rfc3339_format(t, tz_offset_at(tz, t), buf));
}

static const char *or_empty(const char *s) { return s ? s : ""; }

/* A stored JSON object; an empty object when absent, unreadable or not an object. */
static json_t *stored_object(const char *text) {
  json_t *v = text ? json_loads(text, 0, NULL) : NULL;
  if (json_is_object(v)) return v;
  json_decref(v);
  return json_object();
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* The keys of tags (tag -> true), sorted, as an array. */
static json_t *sorted_tags(json_t *tags) {
  size_t n = json_object_size(tags), i = 0;
  const char **v = calloc(n ? n : 1, sizeof *v);
  const char *k;
  json_t *x;
  json_object_foreach(tags, k, x) {
    (void)x;
    v[i++] = k;
  }
  if (n) qsort(v, n, sizeof *v, cmp_str);
  json_t *arr = json_array();
  for (i = 0; i < n; i++) json_array_append_new(arr, json_string(v[i]));
  free(v);
  return arr;
}

/* What the row callbacks fill: the member object and the arrays of its rows. */
typedef struct {
  const tz_t *tz;
  json_t *obj;
} doc_t;

void member_json_fields(json_t *j, const tz_t *tz, const member_view_t *m) {
  json_object_set_new(j, "created_at", member_json_time(tz, m->created_at));
  json_object_set_new(j, "joined_at", member_json_time(tz, m->joined_at));
  json_object_set_new(j, "last_active_at", member_json_time(tz, m->last_active_at));
  json_object_set_new(j, "orders", json_integer(m->orders));
  json_object_set_new(j, "spend", json_real(m->spend));
  json_object_set_new(j, "points", json_integer(m->points));
  json_object_set_new(j, "attrs", stored_object(m->attrs));
  json_t *tags = stored_object(m->tags);
  json_object_set_new(j, "tags", sorted_tags(tags));
  json_decref(tags);
}

static void add_fields(void *ud, const member_view_t *m) {
  doc_t *d = ud;
  member_json_fields(d->obj, d->tz, m);
}

static void add_ledger_entry(void *ud, const ledger_entry_t *e) {
  doc_t *d = ud;
  const char *type = e->type ? e->type : e->delta > 0 ? "grant" : "spend"; /* before types were kept */
  json_t *j = json_pack("{s:o, s:s, s:I, s:I, s:s, s:s, s:s}", "time", member_json_time(d->tz, e->time), "type", type,
                        "delta", (json_int_t)e->delta, "balance", (json_int_t)e->balance, "reason", e->reason,
                        "campaign", or_empty(e->campaign), "cause", or_empty(e->cause));
  json_t *lots = e->lots ? json_loads(e->lots, 0, NULL) : NULL;
  if (lots) json_object_set_new(j, "lots", lots);
  json_array_append_new(d->obj, j);
}

/* The member's lots with points left, soonest expiry first (expires null: never), then
 * the points that never expire as lot NEVER_LOT ({"n":0, "expires":null, "left":...}: the
 * balance less her lots, which no row holds), when there are any. */
static int add_lots(store_t *s, const tz_t *tz, const char *id, json_t *j) {
  lot_row_t *lots;
  int n = store_lots_live(s, id, &lots);
  if (n < 0) return -1;
  json_t *arr = json_array();
  int64_t never = json_integer_value(json_object_get(j, "points"));
  for (int i = 0; i < n; i++) never -= lots[i].remaining;
  for (int i = 0; i < n; i++) {
    json_t *l = json_pack("{s:I, s:o, s:o, s:I, s:I, s:s}", "n", (json_int_t)lots[i].n, "granted",
                          member_json_time(tz, lots[i].granted), "expires",
                          lots[i].expires == STORE_NEVER ? json_null() : member_json_time(tz, lots[i].expires), "amount",
                          (json_int_t)lots[i].amount, "left", (json_int_t)lots[i].remaining, "campaign",
                          or_empty(lots[i].campaign));
    if (lots[i].notice_at != STORE_NO_TIME) json_object_set_new(l, "notice_at", member_json_time(tz, lots[i].notice_at));
    json_array_append_new(arr, l);
  }
  store_lots_free(lots, n);
  if (never > 0)
    json_array_append_new(arr, json_pack("{s:I, s:n, s:n, s:I, s:I, s:s}", "n", (json_int_t)NEVER_LOT, "granted",
                                         "expires", "amount", (json_int_t)never, "left", (json_int_t)never,
                                         "campaign", ""));
  json_object_set_new(j, "lots", arr);
  return 0;
}

json_t *member_json_action(const char *body, const char *status, const char *delivery) {
  json_t *a = json_loads(body, 0, NULL);
  if (!json_is_object(a)) {
    json_decref(a);
    a = json_object();
  }
  json_object_set_new(a, "status", json_string(status));
  if (delivery) json_object_set_new(a, "delivery", json_string(delivery));
  return a;
}

static void add_action(void *ud, const action_view_t *r) {
  doc_t *d = ud;
  json_array_append_new(d->obj, member_json_action(r->body, r->status, r->delivery));
}

static void add_failure(void *ud, const failure_view_t *f) {
  doc_t *d = ud;
  json_t *ev = json_loads(f->event, 0, NULL);
  json_array_append_new(d->obj, json_pack("{s:o, s:o, s:s, s:s}", "at", member_json_time(d->tz, f->at), "event",
                                          ev ? ev : json_null(), "campaign", or_empty(f->campaign),
                                          "error", f->error));
}

static void add_owner_change(void *ud, const staff_log_view_t *v) {
  doc_t *d = ud;
  json_array_append_new(d->obj, json_pack("{s:o, s:o, s:s, s:s, s:o}", "time", member_json_time(d->tz, v->time), "from",
                                          v->from ? json_string(v->from) : json_null(), "to", v->to, "rule",
                                          v->rule, "cause", v->cause ? json_string(v->cause) : json_null()));
}

static void add_task(void *ud, const task_view_t *v) {
  doc_t *d = ud;
  json_array_append_new(d->obj, json_pack("{s:s, s:s, s:o, s:o}", "id", v->id, "staff", v->staff, "due",
                                          member_json_time(d->tz, v->due), "done_at", member_json_time(d->tz, v->done_at)));
}

/* An empty array set as key of j, for callbacks to fill. */
static doc_t rows_of(json_t *j, const char *key, const tz_t *tz) {
  doc_t d = {tz, json_array()};
  json_object_set_new(j, key, d.obj);
  return d;
}

int member_json_read(store_t *s, const tz_t *tz, const char *id, int limit, json_t **out) {
  *out = NULL;
  json_t *j = json_pack("{s:s}", "id", id);
  doc_t fields = {tz, j};
  int found = store_member_view(s, id, add_fields, &fields);
  if (found <= 0) {
    json_decref(j);
    return found;
  }
  if (add_lots(s, tz, id, j) < 0) {
    json_decref(j);
    return -1;
  }
  doc_t ledger = rows_of(j, "ledger", tz), actions = rows_of(j, "actions", tz), failed = rows_of(j, "failed", tz);
  doc_t owners = rows_of(j, "owners", tz), tasks = rows_of(j, "tasks", tz);
  if (store_member_ledger(s, id, limit, add_ledger_entry, &ledger) < 0 ||
      store_member_actions(s, id, limit, add_action, &actions) < 0 ||
      store_member_failures(s, id, limit, add_failure, &failed) < 0 ||
      store_member_staff_log(s, id, limit, add_owner_change, &owners) < 0 ||
      store_member_tasks(s, id, limit, add_task, &tasks) < 0) {
    json_decref(j);
    return -1;
  }
  /* only when there are any: a member without staff history reads as before */
  if (!json_array_size(owners.obj)) json_object_del(j, "owners");
  if (!json_array_size(tasks.obj)) json_object_del(j, "tasks");
  *out = j;
  return 1;
}

json_t *member_json(store_t *s, const tz_t *tz, const char *id, int limit) {
  json_t *j;
  member_json_read(s, tz, id, limit, &j);
  return j;
}
