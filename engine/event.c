/* event: owns parsing and validation of one member event (SPEC §1) from JSON into an
 * event_t, and the shared checks for event types and member ids. Every rejection names the
 * field ("type: missing"); on failure the event is left cleared and nothing leaks. */
#include "event.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_lua.h" /* jl_utf8_valid, jl_utf8_seq, JL_MAX_DEPTH */
#include "timeutil.h"

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
    size_t n = jl_utf8_seq(s, end);
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
    size_t n = jl_utf8_seq(s, end);
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
      take_data(v, ev, err, errlen) != 0) {
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
  root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
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
