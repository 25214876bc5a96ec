/* engine_load: member records checked and applied in bulk (see engine_load.h). Every change
 * goes through engine_changes.c inside an engine_call marked no_records, so the rules the
 * engine keeps for attributes (the size cap), tags (the tag index) and points (the ledger
 * and whatever it grows) hold for loaded members exactly as for members changed by scripts;
 * no handler runs, because nothing here dispatches. Our own design. */
#include "engine_load.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_private.h"
#include "event.h"
#include "json_read.h"
#include "util.h"

static const char *const known_fields[] = {"member", "attrs", "tags", "points", "staff", "tz", "joined_at", NULL};

/* Longest text of a value quoted back in an error. */
#define SHOWN_MAX 60

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

/* The value as compact JSON, cut to SHOWN_MAX bytes, for an error message. */
static void shown(char out[SHOWN_MAX + 4], json_t *v) {
  char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  snprintf(out, SHOWN_MAX + 4, "%.*s%s", SHOWN_MAX, text ? text : "?", text && strlen(text) > SHOWN_MAX ? "..." : "");
  free(text);
}

static int check_known(json_t *o, char *err, size_t errlen) {
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    (void)v;
    int known = 0;
    for (int i = 0; known_fields[i] && !known; i++) known = !strcmp(k, known_fields[i]);
    if (!known)
      return fail(err, errlen, "%s: not a field of a member record (member, attrs, tags, points, staff, tz, joined_at)", k);
  }
  return 0;
}

static int take_member(json_t *o, load_record_t *r, char *err, size_t errlen) {
  json_t *v = json_object_get(o, "member");
  if (!v) return fail(err, errlen, "member: missing");
  if (!json_is_string(v) || !member_id_valid(json_string_value(v), json_string_length(v)))
    return fail(err, errlen, "member: must be a member id (a non-empty string of at most 128 bytes, no control characters)");
  if (strlen(json_string_value(v)) != json_string_length(v)) return fail(err, errlen, "member: contains a NUL byte");
  r->member = xstrdup(json_string_value(v));
  return 0;
}

/* A zone name, or null (remove the attribute), for field `name`. */
static int check_zone(engine_t *e, const char *name, json_t *v, char *err, size_t errlen) {
  char s[SHOWN_MAX + 4];
  if (json_is_null(v)) return 0;
  if (!json_is_string(v)) {
    shown(s, v);
    return fail(err, errlen, "%s: must be an IANA time zone name (a string) or null, got %s", name, s);
  }
  if (!engine_zone(e, json_string_value(v))) {
    shown(s, v);
    return fail(err, errlen, "%s: %s is not a time zone", name, s);
  }
  return 0;
}

static int take_attrs(engine_t *e, json_t *o, load_record_t *r, char *err, size_t errlen) {
  json_t *v = json_object_get(o, "attrs");
  if (!v) return 0;
  if (!json_is_object(v)) return fail(err, errlen, "attrs: must be an object of attribute values");
  const char *k;
  json_t *x;
  json_object_foreach(v, k, x) {
    if (!*k) return fail(err, errlen, "attrs: an attribute name must not be empty");
    if ((!strcmp(k, "staff") || !strcmp(k, "tz")) && json_object_get(o, k))
      return fail(err, errlen, "attrs.%s: given twice (as the field %s and in attrs)", k, k);
  }
  json_t *tz = json_object_get(v, "tz");
  if (tz && check_zone(e, "attrs.tz", tz, err, errlen) < 0) return -1;
  r->attrs = json_incref(v);
  return 0;
}

static int take_tags(json_t *o, load_record_t *r, char *err, size_t errlen) {
  json_t *v = json_object_get(o, "tags");
  if (!v) return 0;
  if (!json_is_array(v)) return fail(err, errlen, "tags: must be an array of tag names");
  size_t i;
  json_t *t;
  json_array_foreach(v, i, t) {
    if (!json_is_string(t) || json_string_length(t) == 0 || strlen(json_string_value(t)) != json_string_length(t)) {
      char s[SHOWN_MAX + 4];
      shown(s, t);
      return fail(err, errlen, "tags[%zu]: must be a non-empty string, got %s", i, s);
    }
  }
  r->tags = json_incref(v);
  return 0;
}

static int take_points(json_t *o, load_record_t *r, char *err, size_t errlen) {
  json_t *v = json_object_get(o, "points");
  if (!v) return 0;
  if (!json_is_integer(v) || json_integer_value(v) < 0) {
    char s[SHOWN_MAX + 4];
    shown(s, v);
    return fail(err, errlen, "points: must be a whole number of points, 0 or more (the balance), got %s", s);
  }
  r->has_points = 1;
  r->points = json_integer_value(v);
  return 0;
}

static int take_staff(json_t *o, load_record_t *r, char *err, size_t errlen) {
  json_t *v = json_object_get(o, "staff");
  if (!v) return 0;
  if (!json_is_null(v) && (!json_is_string(v) || !member_id_valid(json_string_value(v), json_string_length(v))))
    return fail(err, errlen, "staff: must be a staff id (a non-empty string) or null");
  r->staff = json_incref(v);
  return 0;
}

static int take_joined(json_t *o, load_record_t *r, char *err, size_t errlen) {
  json_t *v = json_object_get(o, "joined_at");
  if (!v) return 0;
  char why[160];
  if (!json_is_string(v)) return fail(err, errlen, "joined_at: must be an RFC 3339 time (a string)");
  if (rfc3339_parse(json_string_value(v), &r->joined_at, why, sizeof why) < 0)
    return fail(err, errlen, "joined_at: %s", why);
  return 0;
}

int load_record_parse(engine_t *e, const char *text, size_t len, load_record_t *r, char *err, size_t errlen) {
  memset(r, 0, sizeof *r);
  r->joined_at = STORE_NO_TIME;
  json_error_t je;
  json_t *o = jr_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
  if (!o) {
    snprintf(err, errlen, "not JSON: %s (column %d)", je.text, je.column);
    return -1;
  }
  int rc = -1;
  if (!json_is_object(o)) {
    fail(err, errlen, "a member record must be a JSON object");
    goto out;
  }
  if (check_known(o, err, errlen) < 0 || take_member(o, r, err, errlen) < 0 || take_attrs(e, o, r, err, errlen) < 0 ||
      take_tags(o, r, err, errlen) < 0 || take_points(o, r, err, errlen) < 0 || take_staff(o, r, err, errlen) < 0 ||
      take_joined(o, r, err, errlen) < 0)
    goto out;
  json_t *tz = json_object_get(o, "tz");
  if (tz && check_zone(e, "tz", tz, err, errlen) < 0) goto out;
  r->tz = json_incref(tz);
  rc = 0;
out:
  json_decref(o);
  if (rc < 0) load_record_clear(r);
  return rc;
}

void load_record_clear(load_record_t *r) {
  free(r->member);
  json_decref(r->attrs);
  json_decref(r->tags);
  json_decref(r->staff);
  json_decref(r->tz);
  memset(r, 0, sizeof *r);
  r->joined_at = STORE_NO_TIME;
}

/* ---- applying ---- */

/* Set attribute key to v (null: remove) unless she has that already; 1 changed, 0 not,
 * -1 / MEMBER_TOO_BIG (err names the field). */
static int load_attr(engine_t *e, engine_call_t *c, const char *field, const char *key, json_t *v, char *err,
                     size_t errlen) {
  json_t *old = json_object_get(member_attrs(c->m), key);
  if (json_is_null(v) ? !old : old && json_equal(old, v)) return 0;
  int rc = engine_set_attr(e, c, key, json_is_null(v) ? NULL : json_deep_copy(v));
  if (rc == MEMBER_TOO_BIG)
    snprintf(err, errlen, "%s: the member would hold more than %ld bytes of attributes and tags", field,
             e->max_member_bytes);
  return rc < 0 ? rc : 1;
}

static int load_attrs(engine_t *e, engine_call_t *c, const load_record_t *r, char *err, size_t errlen) {
  int changed = 0;
  const char *k;
  json_t *v;
  json_object_foreach(r->attrs, k, v) {
    char field[160];
    snprintf(field, sizeof field, "attrs.%s", k);
    int rc = load_attr(e, c, field, k, v, err, errlen);
    if (rc < 0) return rc;
    changed |= rc;
  }
  const char *named[2] = {"staff", "tz"};
  json_t *vals[2] = {r->staff, r->tz};
  for (int i = 0; i < 2; i++) {
    if (!vals[i]) continue;
    int rc = load_attr(e, c, named[i], named[i], vals[i], err, errlen);
    if (rc < 0) return rc;
    changed |= rc;
  }
  return changed;
}

static int load_tags(engine_t *e, engine_call_t *c, const load_record_t *r, char *err, size_t errlen) {
  int changed = 0;
  size_t i;
  json_t *t;
  json_array_foreach(r->tags, i, t) {
    action_spec_t a = {.kind = "tag", .status = AS_QUEUED};
    int rc = engine_tag(e, c, json_string_value(t), &a);
    if (rc == MEMBER_TOO_BIG)
      snprintf(err, errlen, "tags[%zu]: the member would hold more than %ld bytes of attributes and tags", i,
               e->max_member_bytes);
    if (rc < 0) return rc;
    changed |= rc;
  }
  return changed;
}

/* Bring her balance to r->points with one ledger entry of the difference. */
static int load_points(engine_t *e, engine_call_t *c, const load_record_t *r, load_stats_t *st) {
  int64_t delta = r->points - c->m->points; /* both 0 or more: cannot overflow */
  if (!r->has_points || delta == 0) return 0;
  action_spec_t a = {.kind = "points", .status = AS_QUEUED};
  int rc = engine_add_points(e, c, delta, LOAD_REASON, NULL, &a); /* a grant expires by the global points rule */
  assert(rc != POINTS_BELOW_ZERO && rc != POINTS_OVERFLOW);
  if (rc < 0) return -1;
  st->ledger_entries++;
  return 1;
}

int engine_load_member(engine_t *e, const load_record_t *r, const char *cause, load_stats_t *st, char *err,
                       size_t errlen) {
  assert(e->in_batch && r->member);
  int cached = member_cache_find(&e->members, r->member) != NULL;
  member_t *m = engine_member(e, r->member);
  if (!m) return -1;
  int created = !cached && m->dirty; /* a member read from the store is clean until changed */
  engine_call_t c = {.m = m, .event_key = cause, .campaign = NULL, .no_records = 1};
  eng_call_begin(e, &c);
  c.savepoint = 1; /* no savepoint of its own, as for a cron chunk: a record that fails
                      fails its whole batch, which the caller rolls back */
  int changed = created, rc = 0;
  if (r->joined_at != STORE_NO_TIME && m->joined_at != r->joined_at) {
    m->joined_at = r->joined_at;
    m->dirty = 1;
    changed = 1;
  }
  if (r->attrs || r->staff || r->tz) changed |= (rc = load_attrs(e, &c, r, err, errlen)) > 0;
  if (rc >= 0 && r->tags) changed |= (rc = load_tags(e, &c, r, err, errlen)) > 0;
  if (rc >= 0) changed |= (rc = load_points(e, &c, r, st)) > 0;
  member_undo_end(&c.undo); /* nothing to undo alone: the batch commits or rolls back whole */
  if (rc < 0 || c.db_failed) return rc < 0 ? rc : -1;
  st->members++;
  st->created += created;
  st->changed += changed;
  return 0;
}
