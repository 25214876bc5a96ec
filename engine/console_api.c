/* console_api: JSON for the console's views that the funnel and member reports do not
 * give (see console_api.h). */
#include "console_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "member_json.h"
#include "util.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* ---- days ---- */

static json_t *refuse(char *bad, size_t badlen, const char *msg) {
  set_err(bad, badlen, "%s", msg);
  return NULL;
}

static void day_text(int64_t day, char out[16]) {
  int64_t y;
  int m, d;
  civil_from_days(day, &y, &m, &d);
  snprintf(out, 16, "%04lld-%02d-%02d", (long long)y, m, d);
}

/* The value of `key` in a query string (not percent-decoded: dates need none), or NULL. */
static const char *query_value(const char *query, const char *key, size_t *len) {
  size_t klen = strlen(key);
  for (const char *p = query; p && *p;) {
    const char *end = strchr(p, '&');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n > klen && !strncmp(p, key, klen) && p[klen] == '=') {
      *len = n - klen - 1;
      return p + klen + 1;
    }
    p = end ? end + 1 : NULL;
  }
  return NULL;
}

typedef struct {
  const tz_t *tz;
  int64_t first_day, ndays;
  json_t *channels;
} daily_t;

static void add_to(json_t *channel, const char *metric, int64_t ndays, int64_t i, int64_t n) {
  json_t *arr = json_object_get(channel, metric);
  if (!arr) {
    arr = json_array();
    for (int64_t k = 0; k < ndays; k++) json_array_append_new(arr, json_integer(0));
    json_object_set_new(channel, metric, arr);
  }
  json_array_set_new(arr, (size_t)i, json_integer(json_integer_value(json_array_get(arr, (size_t)i)) + n));
}

static void add_bucket(void *ud, const send_bucket_t *b) {
  daily_t *d = ud;
  int64_t i = tz_local_day(d->tz, b->start) - d->first_day;
  if (i < 0 || i >= d->ndays) return; /* a quarter hour on the edge of the range */
  json_t *ch = json_object_get(d->channels, b->channel);
  if (!ch) {
    ch = json_object();
    json_object_set_new(d->channels, b->channel, ch);
  }
  add_to(ch, b->status, d->ndays, i, b->n);
  if (!strcmp(b->status, "queued") && *b->delivery)
    add_to(ch, !strcmp(b->delivery, "dead") ? "failed" : b->delivery, d->ndays, i, b->n);
}

json_t *console_daily_sends(store_t *s, const tz_t *tz, const char *zone_name, const char *query, char *bad,
                            size_t badlen) {
  *bad = 0;
  size_t len;
  const char *v;
  int64_t from = 0, to = 0;
  int has_from = 0, has_to = 0;
  if ((v = query_value(query, "from", &len))) {
    if (date_parse(v, len, &from) < 0) return refuse(bad, badlen, "from: expected a date YYYY-MM-DD");
    has_from = 1;
  }
  if ((v = query_value(query, "to", &len))) {
    if (date_parse(v, len, &to) < 0) return refuse(bad, badlen, "to: expected a date YYYY-MM-DD");
    has_to = 1;
  }
  if (!has_from || !has_to) {
    int64_t first, last;
    if (store_send_span(s, &first, &last) < 0) return NULL;
    if (first < 0) first = last = 0; /* no sends: the epoch's day, an empty chart */
    if (!has_to) to = tz_local_day(tz, last);
    if (!has_from) from = tz_local_day(tz, first);
    if (!has_from && to - from >= CONSOLE_MAX_DAYS) from = to - CONSOLE_MAX_DAYS + 1;
  }
  if (to < from) return refuse(bad, badlen, "to is before from");
  if (to - from >= CONSOLE_MAX_DAYS) return refuse(bad, badlen, "at most " STR(CONSOLE_MAX_DAYS) " days at a time");
  daily_t d = {.tz = tz, .first_day = from, .ndays = to - from + 1, .channels = json_object()};
  /* every quarter hour that may hold a send of those local days (zones are within ±1 day) */
  if (store_send_buckets(s, (from - 1) * 86400, (to + 2) * 86400, add_bucket, &d) < 0) {
    json_decref(d.channels);
    return NULL;
  }
  json_t *days = json_array();
  char buf[16];
  for (int64_t i = 0; i < d.ndays; i++) {
    day_text(from + i, buf);
    json_array_append_new(days, json_string(buf));
  }
  json_t *out = json_object();
  json_object_set_new(out, "zone", json_string(zone_name));
  day_text(from, buf);
  json_object_set_new(out, "from", json_string(buf));
  day_text(to, buf);
  json_object_set_new(out, "to", json_string(buf));
  json_object_set_new(out, "days", days);
  json_object_set_new(out, "channels", d.channels);
  return out;
}

/* ---- operations ---- */

static int add_dead(void *ud, const dead_letter_t *dl) {
  json_t *body = json_loads(dl->body, 0, NULL);
  json_t *row = json_pack("{s:s, s:s, s:i, s:s}", "id", dl->id, "channel", dl->channel, "attempts", dl->attempts,
                          "last_error", dl->last_error);
  if (body) {
    json_t *member = json_object_get(body, "member"), *campaign = json_object_get(body, "campaign");
    if (member) json_object_set(row, "member", member);
    if (campaign) json_object_set(row, "campaign", campaign);
    json_decref(body);
  }
  json_array_append_new(ud, row);
  return 0;
}

static void add_failure_count(void *ud, const char *campaign, int64_t n) {
  json_array_append_new(ud, json_pack("{s:s, s:I}", "campaign", campaign, "n", (json_int_t)n));
}

json_t *console_operations(store_t *s, const tz_t *tz) {
  store_totals_t t;
  if (store_totals(s, &t) < 0) return NULL;
  json_t *dead = json_array(), *failures = json_array();
  if (store_dead_letters(s, 50, add_dead, dead) < 0 || store_failures_by_campaign(s, add_failure_count, failures) < 0) {
    json_decref(dead);
    json_decref(failures);
    return NULL;
  }
  json_t *out = json_object();
  json_object_set_new(out, "backlog", json_integer(t.pending_delivery));
  json_object_set_new(out, "dead_letters", json_pack("{s:I, s:o}", "count", (json_int_t)t.dead_letters, "latest", dead));
  json_object_set_new(out, "failures_by_campaign", failures);
  script_version_t v;
  int got = store_script_version_latest(s, &v);
  if (got < 0) {
    json_decref(out);
    return NULL;
  }
  json_object_set_new(out, "script_version",
                      got ? json_pack("{s:s, s:o, s:I}", "hash", v.hash, "loaded_at", member_json_time(tz, v.last_loaded_at),
                                      "versions", (json_int_t)v.versions)
                          : json_null());
  json_object_set_new(out, "totals",
                      json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "members", (json_int_t)t.members, "failed_events",
                                (json_int_t)t.failed_events, "timers_pending", (json_int_t)t.timers_pending,
                                "actions", (json_int_t)t.actions, "delivered", (json_int_t)t.delivered,
                                "events_remembered", (json_int_t)t.events_remembered));
  return out;
}

/* ---- one member's timers ---- */

typedef struct {
  const tz_t *tz;
  json_t *list;
} timers_t;

static void add_timer_row(void *ud, const member_timer_t *t) {
  timers_t *d = ud;
  json_t *row = json_pack("{s:o, s:s}", "due", member_json_time(d->tz, t->due), "type", t->type);
  if (*t->campaign) json_object_set_new(row, "campaign", json_string(t->campaign));
  json_array_append_new(d->list, row);
}

json_t *console_member_timers(store_t *s, const tz_t *tz, const char *member) {
  timers_t d = {tz, json_array()};
  if (store_member_timers(s, member, 100, add_timer_row, &d) < 0) {
    json_decref(d.list);
    return NULL;
  }
  return json_pack("{s:o}", "timers", d.list);
}
