/* member_json: a member's state, ledger, actions and failures as JSON (see member_json.h). */
#include "member_json.h"

#include <stdlib.h>
#include <string.h>

#include "member.h"

static json_t *time_json(const tz_t *tz, int64_t t) {
  if (t == NO_TIME) return json_null();
  char buf[32];
  return json_string(rfc3339_format(t, tz_offset_at(tz, t), buf));
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

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

/* Run q with id and limit bound, turning each row into an object via fill(). */
static json_t *rows(store_t *s, const char *q, const char *id, int limit,
                    json_t *(*fill)(sqlite3_stmt *, const tz_t *), const tz_t *tz) {
  sqlite3_stmt *st;
  json_t *arr = json_array();
  if (sqlite3_prepare_v2(s->db, q, -1, &st, NULL) != SQLITE_OK) return arr;
  sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 2, limit);
  while (sqlite3_step(st) == SQLITE_ROW) json_array_append_new(arr, fill(st, tz));
  sqlite3_finalize(st);
  return arr;
}

static const char *col(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return t ? (const char *)t : "";
}

static json_t *ledger_row(sqlite3_stmt *st, const tz_t *tz) {
  return json_pack("{s:o, s:I, s:I, s:s, s:s, s:s}", "time", time_json(tz, sqlite3_column_int64(st, 0)),
                   "delta", (json_int_t)sqlite3_column_int64(st, 1), "balance",
                   (json_int_t)sqlite3_column_int64(st, 2), "reason", col(st, 3), "campaign", col(st, 4),
                   "cause", col(st, 5));
}

static json_t *action_row(sqlite3_stmt *st, const tz_t *tz) {
  (void)tz;
  json_t *a = json_loads(col(st, 0), 0, NULL);
  if (!a) a = json_object();
  json_object_set_new(a, "status", json_string(col(st, 1)));
  const char *delivery = (const char *)sqlite3_column_text(st, 2);
  if (delivery) json_object_set_new(a, "delivery", json_string(delivery));
  return a;
}

static json_t *failure_row(sqlite3_stmt *st, const tz_t *tz) {
  json_t *ev = json_loads(col(st, 1), 0, NULL);
  return json_pack("{s:o, s:o, s:s, s:s}", "at", time_json(tz, sqlite3_column_int64(st, 0)), "event",
                   ev ? ev : json_null(), "campaign", col(st, 2), "error", col(st, 3));
}

json_t *member_json(store_t *s, const tz_t *tz, const char *id, int limit) {
  member_t *m = member_read(s, id);
  if (!m) return NULL;
  json_t *j = json_object();
  json_object_set_new(j, "id", json_string(m->id));
  json_object_set_new(j, "created_at", time_json(tz, m->created_at));
  json_object_set_new(j, "joined_at", time_json(tz, m->joined_at));
  json_object_set_new(j, "last_active_at", time_json(tz, m->last_active_at));
  json_object_set_new(j, "orders", json_integer(m->orders));
  json_object_set_new(j, "spend", json_real(m->spend));
  json_object_set_new(j, "points", json_integer(m->points));
  json_object_set(j, "attrs", member_attrs(m));
  json_object_set_new(j, "tags", sorted_tags(member_tags(m)));
  json_object_set_new(j, "ledger", rows(s,
      "SELECT time, delta, balance, reason, campaign, cause FROM ledger WHERE member = ?1"
      " ORDER BY n DESC LIMIT ?2", id, limit, ledger_row, tz));
  json_object_set_new(j, "actions", rows(s,
      "SELECT body, status, delivery FROM outbox WHERE member = ?1 ORDER BY seq DESC LIMIT ?2",
      id, limit, action_row, tz));
  json_object_set_new(j, "failed", rows(s,
      "SELECT at, event, campaign, error FROM failed_events WHERE member = ?1"
      " ORDER BY seq DESC LIMIT ?2", id, limit, failure_row, tz));
  member_free(m);
  return j;
}
