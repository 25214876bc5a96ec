/* event: owns parsing and validation of one member event (SPEC §1) from JSON into an
 * event_t, the checks of the data that the engine's built-in effects rely on (an
 * order's amount, a join's referrer and attributes, a member's time zone), the bound on
 * how far in the future an event may be dated, and the shared checks for event types
 * and member ids. Every rejection names the field ("type: missing", "data.amount: ...");
 * on failure the event is left cleared and nothing leaks. */
#include "event.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_lua.h" /* JL_MAX_DEPTH */
#include "json_read.h"
#include "timeutil.h"
#include "util.h"

#define EVENT_TYPE_MAX 64
#define EVENT_ID_MAX 128
#define QUOTE_SHOWN 64 /* bytes of an offending value repeated in a message */

static const char *const known_fields[] = {"id", "type", "member", "time", "data"};

/* ---------------------------------------------------------------- helpers */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  if (!err || errlen == 0) return -1;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

/* Copy s[0..len) into out (room for shown + 4 bytes) for showing in a message: control
 * characters and malformed UTF-8 become '?', and a value longer than shown bytes is cut at a
 * character boundary and ends with "...". */
static void sanitize(char *out, size_t shown, const char *s, size_t len) {
  const char *end = s + len;
  size_t o = 0;
  while (s < end) {
    size_t n = utf8_seq(s, end);
    unsigned char b = (unsigned char)*s;
    if (o + (n ? n : 1) > shown) { memcpy(out + o, "...", 3); o += 3; break; }
    if (n == 0 || (n == 1 && (b < 0x20 || b == 0x7F))) { out[o++] = '?'; s += n ? n : 1; continue; }
    memcpy(out + o, s, n);
    o += n;
    s += n;
  }
  out[o] = '\0';
}

/* An offending value as shown between quotes in a message. */
static void quote(char out[QUOTE_SHOWN + 4], const char *s, size_t len) {
  sanitize(out, QUOTE_SHOWN, s, len);
}

static int is_known_field(const char *key, size_t len) {
  for (size_t i = 0; i < sizeof known_fields / sizeof known_fields[0]; i++)
    if (strlen(known_fields[i]) == len && memcmp(known_fields[i], key, len) == 0) return 1;
  return 0;
}

static char *dup_bytes(const char *s, size_t len) {
  char *p = malloc(len + 1);
  if (!p) return NULL;
  memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

/* A UTF-8 control character at s: C0, DEL or C1 (U+0080-U+009F). */
static int is_control(const char *s, size_t n) {
  unsigned char b = (unsigned char)s[0];
  if (n == 1) return b < 0x20 || b == 0x7F;
  return n == 2 && b == 0xC2 && (unsigned char)s[1] <= 0x9F;
}

/* What is wrong with an id (member or event id), or NULL when it is fine. */
static const char *id_problem(const char *s, size_t len) {
  const char *end = s + len;
  if (len == 0) return "must not be empty";
  if (len > EVENT_ID_MAX) return "longer than 128 bytes";
  while (s < end) {
    size_t n = utf8_seq(s, end);
    if (n == 0) return "not valid UTF-8";
    if (is_control(s, n)) return "contains a control character";
    s += n;
  }
  return NULL;
}

/* 1 when a container inside v is nested deeper than max levels (v itself is level 1). */
static int too_deep(json_t *v, int max) {
  if (!json_is_object(v) && !json_is_array(v)) return 0;
  if (max <= 0) return 1;
  if (json_is_array(v)) {
    for (size_t i = 0; i < json_array_size(v); i++)
      if (too_deep(json_array_get(v, i), max - 1)) return 1;
    return 0;
  }
  for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it))
    if (too_deep(json_object_iter_value(it), max - 1)) return 1;
  return 0;
}

/* ---------------------------------------------------------------- public checks */

int event_type_valid(const char *type) {
  size_t len;
  if (!type) return 0;
  len = strlen(type);
  if (len == 0 || len > EVENT_TYPE_MAX) return 0;
  for (size_t i = 0; i < len; i++) {
    char ch = type[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.'))
      return 0;
  }
  return 1;
}

int member_id_valid(const char *id, size_t len) {
  return id != NULL && id_problem(id, len) == NULL;
}

void event_clear(event_t *ev) {
  if (!ev) return;
  free(ev->id);
  free(ev->type);
  free(ev->member);
  json_decref(ev->data);
  memset(ev, 0, sizeof *ev);
}

/* ---------------------------------------------------------------- fields */

static int check_unknown_fields(json_t *v, char *err, size_t errlen) {
  for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
    const char *key = json_object_iter_key(it);
    size_t len = json_object_iter_key_len(it);
    if (!is_known_field(key, len)) {
      char shown[QUOTE_SHOWN + 4];
      quote(shown, key, len);
      return fail(err, errlen, "unknown field '%s'", shown);
    }
  }
  return 0;
}

/* Fetch a field: 0 absent, 1 a string in *s and *len, -1 present but not a string. */
static int get_string(json_t *v, const char *name, const char **s, size_t *len) {
  json_t *f = json_object_get(v, name);
  if (!f) return 0;
  if (!json_is_string(f)) return -1;
  *s = json_string_value(f);
  *len = json_string_length(f);
  return 1;
}

static int take_type(json_t *v, event_t *ev, char *err, size_t errlen) {
  const char *s;
  size_t len;
  int r = get_string(v, "type", &s, &len);
  if (r == 0) return fail(err, errlen, "type: missing");
  if (r < 0) return fail(err, errlen, "type: must be a string");
  if (strlen(s) != len || !event_type_valid(s)) {
    char shown[QUOTE_SHOWN + 4];
    quote(shown, s, len);
    return fail(err, errlen, "type: must match [a-z0-9_.]{1,64}, got '%s'", shown);
  }
  ev->type = dup_bytes(s, len);
  return ev->type ? 0 : fail(err, errlen, "type: out of memory");
}

/* member (required) and id (optional) share the id rules. */
static int take_id_field(json_t *v, const char *name, int required, char **out, char *err,
                         size_t errlen) {
  const char *s, *problem;
  size_t len;
  int r = get_string(v, name, &s, &len);
  if (r == 0) return required ? fail(err, errlen, "%s: missing", name) : 0;
  if (r < 0) return fail(err, errlen, "%s: must be a string", name);
  if ((problem = id_problem(s, len)) != NULL) return fail(err, errlen, "%s: %s", name, problem);
  *out = dup_bytes(s, len);
  return *out ? 0 : fail(err, errlen, "%s: out of memory", name);
}

static int take_time(json_t *v, event_t *ev, char *err, size_t errlen) {
  const char *s;
  size_t len;
  char why[128];
  int r = get_string(v, "time", &s, &len);
  if (r == 0) return 0;
  if (r < 0) return fail(err, errlen, "time: must be an RFC 3339 string");
  if (strlen(s) != len || rfc3339_parse(s, &ev->time, why, sizeof why) != 0) {
    char shown[QUOTE_SHOWN + 4];
    quote(shown, s, len);
    ev->time = 0;
    return fail(err, errlen, "time: not an RFC 3339 time: '%s'", shown);
  }
  ev->has_time = 1;
  return 0;
}

static int take_data(json_t *v, event_t *ev, char *err, size_t errlen) {
  json_t *d = json_object_get(v, "data");
  if (!d) return 0;
  if (!json_is_object(d)) return fail(err, errlen, "data: must be an object");
  if (too_deep(d, JL_MAX_DEPTH))
    return fail(err, errlen, "data: nested deeper than %d levels", JL_MAX_DEPTH);
  ev->data = json_incref(d);
  return 0;
}

/* ---------------------------------------------------------------- data of well-known types */

/* A data value as shown after "got" in a message: its JSON text, cut and sanitized. */
static void shown_json(char out[QUOTE_SHOWN + 4], json_t *v) {
  char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
  if (!text) {
    snprintf(out, QUOTE_SHOWN + 4, "(a JSON value)");
    return;
  }
  sanitize(out, QUOTE_SHOWN, text, strlen(text));
  free(text);
}

/* A string field with no NUL inside it (a C string equal to the JSON one). */
static int is_plain_string(json_t *v) {
  return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

/* order.paid, order.refunded: data.amount is required, a finite JSON number >= 0 (0 is
 * a free order or an empty refund: counted, no spend change). */
static int check_amount(json_t *data, char *err, size_t errlen) {
  json_t *a = data ? json_object_get(data, "amount") : NULL;
  char shown[QUOTE_SHOWN + 4];
  if (!a) return fail(err, errlen, "data.amount: missing");
  if (json_is_number(a) && isfinite(json_number_value(a)) && json_number_value(a) >= 0) return 0;
  shown_json(shown, a);
  return fail(err, errlen, "data.amount: must be a number >= 0, got %s", shown);
}

/* An optional string attribute of member.joined; null counts as present and wrong. */
static int check_string_field(json_t *data, const char *key, char *err, size_t errlen) {
  json_t *v = json_object_get(data, key);
  char shown[QUOTE_SHOWN + 4];
  if (!v || json_is_string(v)) return 0;
  shown_json(shown, v);
  return fail(err, errlen, "data.%s: must be a string, got %s", key, shown);
}

/* member.joined: data.referrer, when present, is a member id. */
static int check_referrer(json_t *data, char *err, size_t errlen) {
  json_t *v = json_object_get(data, "referrer");
  char shown[QUOTE_SHOWN + 4];
  const char *problem;
  if (!v) return 0;
  if (!json_is_string(v)) {
    shown_json(shown, v);
    return fail(err, errlen, "data.referrer: must be a member id (a string), got %s", shown);
  }
  problem = id_problem(json_string_value(v), json_string_length(v));
  return problem ? fail(err, errlen, "data.referrer: %s", problem) : 0;
}

/* data.tz, when present, names an IANA zone that loads. null is allowed only where it
 * means "remove the attribute" (member.updated). The zone file is read once per event
 * that carries the field; nothing is cached. */
static int check_tz(json_t *data, int null_allowed, char *err, size_t errlen) {
  json_t *v = json_object_get(data, "tz");
  char shown[QUOTE_SHOWN + 4], why[256];
  tz_t *tz;
  if (!v || (null_allowed && json_is_null(v))) return 0;
  if (!is_plain_string(v)) {
    shown_json(shown, v);
    return fail(err, errlen, "data.tz: must be an IANA time zone name (a string), got %s", shown);
  }
  tz = tz_load(json_string_value(v), why, sizeof why);
  if (!tz) {
    char safe[sizeof why + 4];
    sanitize(safe, sizeof why - 1, why, strnlen(why, sizeof why));
    return fail(err, errlen, "data.tz: %s", safe);
  }
  tz_free(tz);
  return 0;
}

/* A staff id: a plain string of 1-128 bytes. */
static int check_staff_id(json_t *v, const char *field, char *err, size_t errlen) {
  char shown[QUOTE_SHOWN + 4];
  if (is_plain_string(v) && json_string_length(v) >= 1 && json_string_length(v) <= 128) return 0;
  if (!v) return fail(err, errlen, "data.%s: missing", field);
  shown_json(shown, v);
  return fail(err, errlen, "data.%s: must be a staff id (a string of 1-128 bytes), got %s", field, shown);
}

/* staff.left: data.staff (who left) and either data.to (one staff id) or data.rule
 * ("round_robin" or "least_loaded") with data.pool (1-64 staff ids, not data.staff). */
static int check_staff_left(json_t *d, char *err, size_t errlen) {
  if (check_staff_id(json_object_get(d, "staff"), "staff", err, errlen) != 0) return -1;
  const char *leaving = json_string_value(json_object_get(d, "staff"));
  json_t *to = json_object_get(d, "to"), *rule = json_object_get(d, "rule"), *pool = json_object_get(d, "pool");
  if (to && (rule || pool)) return fail(err, errlen, "data.to: give either data.to or data.rule with data.pool");
  if (to) {
    if (check_staff_id(to, "to", err, errlen) != 0) return -1;
    if (!strcmp(json_string_value(to), leaving)) return fail(err, errlen, "data.to: must not be data.staff");
    return 0;
  }
  const char *r = json_string_value(rule);
  if (!r || (strcmp(r, "round_robin") != 0 && strcmp(r, "least_loaded") != 0))
    return fail(err, errlen, "data.rule: must be \"round_robin\" or \"least_loaded\" (or give data.to)");
  size_t n = json_array_size(pool);
  if (!json_is_array(pool) || n < 1 || n > 64)
    return fail(err, errlen, "data.pool: must be an array of 1-64 staff ids");
  for (size_t i = 0; i < n; i++) {
    char field[32];
    snprintf(field, sizeof field, "pool[%zu]", i);
    if (check_staff_id(json_array_get(pool, i), field, err, errlen) != 0) return -1;
    if (!strcmp(json_string_value(json_array_get(pool, i)), leaving))
      return fail(err, errlen, "data.%s: must not be data.staff", field);
  }
  return 0;
}

/* task.done: data.task is the id of a task action (1-512 bytes). */
static int check_task_done(json_t *d, char *err, size_t errlen) {
  json_t *v = json_object_get(d, "task");
  char shown[QUOTE_SHOWN + 4];
  if (is_plain_string(v) && json_string_length(v) >= 1 && json_string_length(v) <= 512) return 0;
  if (!v) return fail(err, errlen, "data.task: missing (the id of the task action)");
  shown_json(shown, v);
  return fail(err, errlen, "data.task: must be a task action's id (a string), got %s", shown);
}

/* The data fields that the built-in effects of well-known types rely on. */
static int check_known_data(const event_t *ev, char *err, size_t errlen) {
  json_t *d = ev->data;
  if (!strcmp(ev->type, "order.paid") || !strcmp(ev->type, "order.refunded"))
    return check_amount(d, err, errlen);
  if (!strcmp(ev->type, "staff.left")) return d ? check_staff_left(d, err, errlen) : fail(err, errlen, "data.staff: missing");
  if (!strcmp(ev->type, "task.done")) return d ? check_task_done(d, err, errlen) : fail(err, errlen, "data.task: missing");
  if (!d) return 0;
  if (!strcmp(ev->type, "member.joined")) {
    if (check_referrer(d, err, errlen) != 0 || check_string_field(d, "channel", err, errlen) != 0 ||
        check_string_field(d, "store", err, errlen) != 0 ||
        check_string_field(d, "staff", err, errlen) != 0)
      return -1;
    return check_tz(d, 0, err, errlen);
  }
  if (!strcmp(ev->type, "member.updated")) return check_tz(d, 1, err, errlen);
  return 0;
}

/* ---------------------------------------------------------------- the bound on time */

/* A bound in seconds as a duration string ("1h", "1d12h", "90s"). buf holds 48 bytes. */
static const char *fmt_duration(int64_t secs, char buf[48]) {
  static const struct { char unit; int64_t secs; } units[] = {
      {'w', 604800}, {'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};
  size_t o = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < sizeof units / sizeof units[0] && secs > 0; i++) {
    int64_t n = secs / units[i].secs;
    if (n == 0) continue;
    o += (size_t)snprintf(buf + o, 48 - o, "%lld%c", (long long)n, units[i].unit);
    secs -= n * units[i].secs;
  }
  return buf;
}

int event_check_time(const event_t *ev, int64_t now, int64_t max_future, char *err, size_t errlen) {
  char when[32], at[32], bound[48];
  assert(max_future >= 0);
  if (!ev->has_time || max_future == 0 || ev->time <= now || ev->time - now <= max_future) return 0;
  return fail(err, errlen, "time: %s is more than %s after the present (%s); see --max-future",
              rfc3339_format(ev->time, 0, when), fmt_duration(max_future, bound),
              rfc3339_format(now, 0, at));
}

/* ---------------------------------------------------------------- parsing */

int event_from_json(json_t *v, event_t *ev, char *err, size_t errlen) {
  memset(ev, 0, sizeof *ev);
  if (err && errlen) err[0] = '\0';
  if (!json_is_object(v)) return fail(err, errlen, "expected a JSON object");
  if (check_unknown_fields(v, err, errlen) != 0 ||
      take_type(v, ev, err, errlen) != 0 ||
      take_id_field(v, "member", 1, &ev->member, err, errlen) != 0 ||
      take_id_field(v, "id", 0, &ev->id, err, errlen) != 0 ||
      take_time(v, ev, err, errlen) != 0 ||
      take_data(v, ev, err, errlen) != 0 ||
      check_known_data(ev, err, errlen) != 0) {
    event_clear(ev);
    return -1;
  }
  return 0;
}

int event_parse(const char *text, size_t len, event_t *ev, char *err, size_t errlen) {
  json_error_t jerr;
  json_t *root;
  int rc;
  memset(ev, 0, sizeof *ev);
  if (!text) return fail(err, errlen, "expected a JSON object");
  root = jr_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
  if (!root) {
    enum { WHY = JSON_ERROR_TEXT_LENGTH - 1 };
    char why[WHY + 4]; /* jansson may echo the offending bytes */
    sanitize(why, WHY, jerr.text, strnlen(jerr.text, WHY));
    return fail(err, errlen, "invalid JSON at column %d: %s", jerr.column, why);
  }
  rc = event_from_json(root, ev, err, errlen);
  json_decref(root);
  return rc;
}

char *event_to_text(const event_t *ev) {
  assert(ev->has_time);
  char ts[32];
  json_t *o = json_object();
  if (ev->id) json_object_set_new(o, "id", json_string(ev->id));
  json_object_set_new(o, "type", json_string(ev->type));
  json_object_set_new(o, "member", json_string(ev->member));
  json_object_set_new(o, "time", json_string(rfc3339_format(ev->time, 0, ts)));
  if (ev->data) json_object_set(o, "data", ev->data);
  char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(o);
  return text;
}
