/* restraint: rules and verdicts for marketing sends (see restraint.h). */
#include "restraint.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* How a cap window is measured. */
enum { PER_ROLLING, PER_DAY, PER_WEEK, PER_MONTH };

typedef struct {
  char *channel;     /* NULL: every channel */
  int max;
  int per_kind;      /* PER_* */
  int64_t per;       /* PER_ROLLING: seconds */
  char *per_text;    /* as configured, for reasons */
} cap_t;

typedef struct {
  char *channel;
  int per_staff_day, per_month; /* 0: no such bound */
} quota_t;

struct restraint {
  int has_quiet;
  int quiet_from, quiet_to;     /* minutes after local midnight; [from, to) is quiet */
  cap_t *caps;
  int ncaps;
  quota_t *quotas;
  int nquotas;
};

restraint_t *restraint_new(void) { return xcalloc(1, sizeof(restraint_t)); }

static void clear_caps(restraint_t *r) {
  for (int i = 0; i < r->ncaps; i++) free(r->caps[i].channel), free(r->caps[i].per_text);
  free(r->caps);
  r->caps = NULL;
  r->ncaps = 0;
}

void restraint_free(restraint_t *r) {
  if (!r) return;
  clear_caps(r);
  for (int i = 0; i < r->nquotas; i++) free(r->quotas[i].channel);
  free(r->quotas);
  free(r);
}

/* ---- configuration ---- */

static int wall(json_t *v, const char *path, int *minutes, char *err, size_t errlen) {
  char msg[200];
  if (!json_is_string(v) || wallclock_parse(json_string_value(v), minutes, msg, sizeof msg) < 0) {
    set_err(err, errlen, "option '%s' must be a local time \"HH:MM\"", path);
    return -1;
  }
  return 0;
}

static int parse_cap(json_t *c, int i, cap_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  const char *k;
  json_t *v;
  json_object_foreach(c, k, v) {
    if (strcmp(k, "max") && strcmp(k, "per") && strcmp(k, "channel")) {
      set_err(err, errlen, "option 'caps[%d].%s' is unknown (known: max, per, channel)", i, k);
      return -1;
    }
  }
  json_t *max = json_object_get(c, "max"), *per = json_object_get(c, "per"), *ch = json_object_get(c, "channel");
  if (!json_is_integer(max) || json_integer_value(max) < 0 || json_integer_value(max) > 1000000) {
    set_err(err, errlen, "option 'caps[%d].max' must be a whole number >= 0", i);
    return -1;
  }
  out->max = (int)json_integer_value(max);
  const char *p = json_string_value(per);
  char msg[200];
  if (p && !strcmp(p, "day")) out->per_kind = PER_DAY;
  else if (p && !strcmp(p, "week")) out->per_kind = PER_WEEK;
  else if (p && !strcmp(p, "month")) out->per_kind = PER_MONTH;
  else if (json_is_integer(per) && json_integer_value(per) > 0) out->per = json_integer_value(per);
  else if (!p || duration_parse(p, &out->per, msg, sizeof msg) < 0 || out->per <= 0) {
    set_err(err, errlen, "option 'caps[%d].per' must be a duration like \"7d\" or one of \"day\", \"week\", \"month\"", i);
    return -1;
  }
  if (p)
    out->per_text = xstrdup(p);
  else
    out->per_text = xasprintf("%llds", (long long)out->per);
  if (ch && !json_is_string(ch)) {
    set_err(err, errlen, "option 'caps[%d].channel' must be a channel name", i);
    free(out->per_text);
    return -1;
  }
  out->channel = ch ? xstrdup(json_string_value(ch)) : NULL;
  return 0;
}

int restraint_configure(restraint_t *r, json_t *cfg, char *err, size_t errlen) {
  if (!json_is_object(cfg)) {
    set_err(err, errlen, "expects a table { quiet = {...}, caps = {...} }");
    return -1;
  }
  const char *k;
  json_t *v;
  json_object_foreach(cfg, k, v) {
    if (strcmp(k, "quiet") && strcmp(k, "caps")) {
      set_err(err, errlen, "option '%s' is unknown (known: quiet, caps)", k);
      return -1;
    }
  }
  restraint_t fresh = {0};
  json_t *q = json_object_get(cfg, "quiet");
  if (q) {
    if (!json_is_object(q) || json_object_size(q) != 2 ||
        wall(json_object_get(q, "from"), "quiet.from", &fresh.quiet_from, err, errlen) < 0 ||
        wall(json_object_get(q, "to"), "quiet.to", &fresh.quiet_to, err, errlen) < 0) {
      if (!*err || !strstr(err, "quiet")) set_err(err, errlen, "option 'quiet' must be { from = \"HH:MM\", to = \"HH:MM\" }");
      return -1;
    }
    if (fresh.quiet_from == fresh.quiet_to) {
      set_err(err, errlen, "option 'quiet.to' must be a time other than quiet.from");
      return -1;
    }
    fresh.has_quiet = 1;
  }
  json_t *caps = json_object_get(cfg, "caps");
  if (json_is_object(caps) && json_object_size(caps) == 0) caps = NULL; /* {} from an empty Lua table */
  if (caps && !json_is_array(caps)) {
    set_err(err, errlen, "option 'caps' must be a list of { max = n, per = \"7d\" }");
    return -1;
  }
  size_t n = json_array_size(caps);
  fresh.caps = xcalloc(n + 1, sizeof *fresh.caps);
  for (size_t i = 0; i < n; i++) {
    if (parse_cap(json_array_get(caps, i), (int)i + 1, &fresh.caps[i], err, errlen) < 0) {
      clear_caps(&fresh);
      return -1;
    }
    fresh.ncaps++;
  }
  clear_caps(r);
  r->has_quiet = fresh.has_quiet;
  r->quiet_from = fresh.quiet_from;
  r->quiet_to = fresh.quiet_to;
  r->caps = fresh.caps;
  r->ncaps = fresh.ncaps;
  return 0;
}

int restraint_channel(restraint_t *r, const char *channel, json_t *opts, char *err, size_t errlen) {
  json_t *q = json_object_get(opts, "quota");
  if (!q) return 0;
  quota_t quota = {0};
  if (json_is_string(q) && !strcmp(json_string_value(q), "wecom")) {
    quota.per_staff_day = 1; /* WeCom: a customer gets at most one mass message per staff member a day */
    quota.per_month = 4;     /* and at most four enterprise mass messages a month */
  } else if (json_is_object(q)) {
    const char *k;
    json_t *v;
    json_object_foreach(q, k, v) {
      int *slot = !strcmp(k, "per_staff_day") ? &quota.per_staff_day : !strcmp(k, "per_month") ? &quota.per_month : NULL;
      if (!slot || !json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000) {
        set_err(err, errlen, "channel '%s': option 'quota.%s' %s", channel, k,
                slot ? "must be a whole number from 1 to 1000" : "is unknown (known: per_staff_day, per_month)");
        return -1;
      }
      *slot = (int)json_integer_value(v);
    }
  } else {
    set_err(err, errlen, "channel '%s': option 'quota' must be \"wecom\" or { per_staff_day = n, per_month = m }", channel);
    return -1;
  }
  r->quotas = xrealloc(r->quotas, (size_t)(r->nquotas + 1) * sizeof *r->quotas);
  quota.channel = xstrdup(channel);
  r->quotas[r->nquotas++] = quota;
  return 0;
}

/* ---- judging ---- */

static int minute_of_day(const tz_t *tz, int64_t t, civil_t *c) {
  tz_to_civil(tz, t, c);
  return c->hour * 60 + c->min;
}

static int in_quiet(const restraint_t *r, int minute) {
  if (r->quiet_from < r->quiet_to) return minute >= r->quiet_from && minute < r->quiet_to;
  return minute >= r->quiet_from || minute < r->quiet_to;
}

/* The end of the quiet period containing t: the next local `to`. */
static int64_t quiet_end(const restraint_t *r, const tz_t *tz, int64_t t) {
  civil_t c;
  int minute = minute_of_day(tz, t, &c);
  int day = c.day + (minute >= r->quiet_to ? 1 : 0);
  return tz_from_local(tz, c.year, c.month, day, r->quiet_to / 60, r->quiet_to % 60, 0);
}

static json_t *hhmm(int minutes) {
  char b[16];
  snprintf(b, sizeof b, "%02d:%02d", minutes / 60, minutes % 60);
  return json_string(b);
}

void restraint_first(const restraint_t *r, const restraint_send_t *s, verdict_t *v) {
  memset(v, 0, sizeof *v);
  civil_t c;
  if (r->has_quiet && in_quiet(r, minute_of_day(s->tz, s->now, &c))) {
    v->verdict = VERDICT_DEFERRED;
    v->until = quiet_end(r, s->tz, s->now);
    char until[32];
    v->reason = json_pack("{s:s, s:o, s:o, s:s, s:s}", "rule", "quiet", "from", hhmm(r->quiet_from),
                          "to", hhmm(r->quiet_to), "tz", tz_name(s->tz),
                          "until", rfc3339_format(v->until, tz_offset_at(s->tz, v->until), until));
    return;
  }
  if (json_is_true(json_object_get(s->attrs, "unsubscribed"))) {
    v->verdict = VERDICT_SUPPRESSED;
    v->reason = json_pack("{s:s}", "rule", "unsubscribed");
    return;
  }
  if (json_is_true(json_object_get(s->attrs, "friend_deleted"))) {
    v->verdict = VERDICT_SUPPRESSED;
    v->reason = json_pack("{s:s}", "rule", "friend_deleted");
    return;
  }
  v->verdict = VERDICT_QUEUED;
}

/* The window [start, now] a cap counts in, as the earliest counted time (rolling windows
 * exclude their start: a send exactly `per` earlier no longer counts). */
static int64_t window_start(const cap_t *cap, const tz_t *tz, int64_t now) {
  civil_t c;
  tz_to_civil(tz, now, &c);
  switch (cap->per_kind) {
  case PER_DAY: return tz_from_local(tz, c.year, c.month, c.day, 0, 0, 0);
  case PER_WEEK: return tz_from_local(tz, c.year, c.month, c.day - (c.wday + 6) % 7, 0, 0, 0); /* Monday */
  case PER_MONTH: return tz_from_local(tz, c.year, c.month, 1, 0, 0, 0);
  default: return now - cap->per + 1;
  }
}

/* Entries of the log: [time, channel, staff]. */
static int entry(json_t *e, int64_t *t, const char **channel, const char **staff) {
  if (!json_is_array(e) || !json_is_integer(json_array_get(e, 0))) return 0;
  *t = json_integer_value(json_array_get(e, 0));
  *channel = json_string_value(json_array_get(e, 1));
  *staff = json_string_value(json_array_get(e, 2));
  return 1;
}

static int same(const char *a, const char *b) { return a && b && !strcmp(a, b); }

static int count_since(json_t *sends, int64_t since, int64_t now, const char *channel, const char *staff) {
  int n = 0;
  const char *id;
  json_t *e;
  json_object_foreach(sends, id, e) {
    int64_t t;
    const char *ch, *st;
    if (!entry(e, &t, &ch, &st) || t < since || t > now) continue;
    if (channel && !same(ch, channel)) continue;
    if (staff && !same(st, staff)) continue;
    n++;
  }
  return n;
}

void restraint_limits(const restraint_t *r, const restraint_send_t *s, verdict_t *v) {
  memset(v, 0, sizeof *v);
  for (int i = 0; i < r->ncaps; i++) {
    const cap_t *cap = &r->caps[i];
    if (cap->channel && !same(cap->channel, s->channel)) continue;
    int sent = count_since(s->sends, window_start(cap, s->tz, s->now), s->now, cap->channel, NULL);
    if (sent < cap->max) continue;
    v->verdict = VERDICT_CAPPED;
    v->reason = json_pack("{s:s, s:i, s:s, s:i}", "rule", "cap", "max", cap->max, "per", cap->per_text, "sent", sent);
    if (cap->channel) json_object_set_new(v->reason, "channel", json_string(cap->channel));
    return;
  }
  for (int i = 0; i < r->nquotas; i++) {
    const quota_t *q = &r->quotas[i];
    if (!same(q->channel, s->channel)) continue;
    cap_t day = {.per_kind = PER_DAY}, month = {.per_kind = PER_MONTH};
    int today = q->per_staff_day ? count_since(s->sends, window_start(&day, s->tz, s->now), s->now, q->channel,
                                               s->staff ? s->staff : "") : 0;
    int this_month = q->per_month ? count_since(s->sends, window_start(&month, s->tz, s->now), s->now, q->channel, NULL) : 0;
    const char *which = q->per_staff_day && today >= q->per_staff_day ? "per_staff_day"
                        : q->per_month && this_month >= q->per_month ? "per_month" : NULL;
    if (!which) continue;
    v->verdict = VERDICT_LIMITED;
    int per_day = !strcmp(which, "per_staff_day");
    v->reason = json_pack("{s:s, s:s, s:s, s:i, s:i}", "rule", "quota", "channel", q->channel, "quota", which,
                          "max", per_day ? q->per_staff_day : q->per_month, "sent", per_day ? today : this_month);
    if (per_day) json_object_set_new(v->reason, "staff", s->staff ? json_string(s->staff) : json_null());
    return;
  }
  v->verdict = VERDICT_QUEUED;
}

int restraint_counts_sends(const restraint_t *r) { return r->ncaps > 0 || r->nquotas > 0; }

int64_t restraint_keep_since(const restraint_t *r, const tz_t *tz, int64_t now) {
  int64_t since = now;
  cap_t month = {.per_kind = PER_MONTH};
  if (r->nquotas) since = window_start(&month, tz, now);
  for (int i = 0; i < r->ncaps; i++) {
    int64_t s = window_start(&r->caps[i], tz, now);
    if (s < since) since = s;
  }
  return since;
}
