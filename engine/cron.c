/* cron: owns parsing of five-field cron expressions (and the @hourly/@daily/@weekly/
 * @monthly/@yearly shorthands) into bit sets, and finding the next matching slot in a
 * time zone by walking local calendar days and wall times (see cron.h). */
#include "cron.h"

#include <ctype.h>
#include <stdio.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

#define SECS_PER_DAY 86400
/* cron_next answers -1 for instants beyond about +-34,000 years. */
#define CRON_T_LIMIT ((int64_t)1 << 40)
/* "none within 5 years": local days searched past the day of `after`. */
#define CRON_SEARCH_DAYS (5 * 366)

typedef struct {
  const char *name;
  int lo, hi;
  const char *const *names; /* three-letter names for lo.., or NULL */
  int nnames;
} cron_field_t;

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const wday_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static const cron_field_t cron_fields[5] = {
    {"minute", 0, 59, NULL, 0},
    {"hour", 0, 23, NULL, 0},
    {"day-of-month", 1, 31, NULL, 0},
    {"month", 1, 12, month_names, 12},
    {"day-of-week", 0, 7, wday_names, 7},
};

static const struct {
  const char *name, *spec;
} cron_shorthands[] = {
    {"@hourly", "0 * * * *"},  {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
    {"@weekly", "0 0 * * 0"},  {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
};

/* snprintf into the caller's error buffer, tolerating err == NULL. */
static void cron_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cron_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* Text span [s, e) of the spec being parsed. */
typedef struct {
  const char *s, *e;
} span_t;

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
  return q;
}

/* 0 = Sunday. 1970-01-01 was a Thursday. */
static int weekday_of(int64_t days) { return (int)(((days % 7) + 7 + 4) % 7); }

/* One value at *p: digits, or a three-letter name when the field has names. On error
 * writes the reason into why. */
static int parse_value(const char **p, const char *end, const cron_field_t *f, int *v,
                       char *why, size_t whylen) {
  const char *s = *p, *q = s;
  if (q < end && isdigit((unsigned char)*q)) {
    long n = 0;
    while (q < end && isdigit((unsigned char)*q)) {
      if (n < 100000) n = n * 10 + (*q - '0');
      q++;
    }
    if (n < f->lo || n > f->hi) {
      snprintf(why, whylen, "value %.*s out of range %d-%d", (int)(q - s), s, f->lo, f->hi);
      return -1;
    }
    *v = (int)n;
    *p = q;
    return 0;
  }
  while (q < end && isalpha((unsigned char)*q)) q++;
  for (int i = 0; i < f->nnames && q - s == 3; i++) {
    if (strncasecmp(s, f->names[i], 3) == 0) {
      *v = f->lo + i;
      *p = q;
      return 0;
    }
  }
  if (q == s) q = s + 1 < end ? s + 1 : end; /* show the offending character */
  if (f->names)
    snprintf(why, whylen, "expected a number %d-%d or a name %s-%s, got '%.*s'", f->lo,
             f->hi, f->names[0], f->names[f->nnames - 1], (int)(q - s), s);
  else
    snprintf(why, whylen, "expected a number %d-%d, got '%.*s'", f->lo, f->hi, (int)(q - s),
             s);
  return -1;
}

/* One list item: "*", "a", "a-b", each optionally "/step" ("a/n" means a-max/n). */
static int parse_item(span_t item, const cron_field_t *f, uint64_t *bits, char *why,
                      size_t whylen) {
  const char *p = item.s;
  int lo, hi, step = 1;
  if (p == item.e) {
    snprintf(why, whylen, "empty list item");
    return -1;
  }
  if (*p == '*') {
    lo = f->lo, hi = f->hi, p++;
  } else {
    if (parse_value(&p, item.e, f, &lo, why, whylen) < 0) return -1;
    hi = lo;
    if (p < item.e && *p == '-') {
      p++;
      if (parse_value(&p, item.e, f, &hi, why, whylen) < 0) return -1;
      if (hi < lo) {
        snprintf(why, whylen, "range %.*s goes backwards", (int)(p - item.s), item.s);
        return -1;
      }
    } else if (p < item.e && *p == '/') {
      hi = f->hi;
    }
  }
  if (p < item.e && *p == '/') {
    const char *s = ++p;
    long n = 0;
    while (p < item.e && isdigit((unsigned char)*p)) {
      if (n < 100000) n = n * 10 + (*p - '0');
      p++;
    }
    if (p == s || p != item.e) {
      snprintf(why, whylen, "bad step in '%.*s' (expected /N)", (int)(item.e - item.s),
               item.s);
      return -1;
    }
    if (n < 1 || n > f->hi) {
      snprintf(why, whylen, "step %.*s out of range 1-%d", (int)(p - s), s, f->hi);
      return -1;
    }
    step = (int)n;
  }
  if (p != item.e) {
    snprintf(why, whylen, "bad item '%.*s' (expected *, N or N-M, optionally /STEP)",
             (int)(item.e - item.s), item.s);
    return -1;
  }
  for (int v = lo; v <= hi; v += step) *bits |= (uint64_t)1 << v;
  return 0;
}

/* A comma-separated field into a bit set (bit v set when value v matches). */
static int parse_field(span_t field, const cron_field_t *f, uint64_t *bits, char *why,
                       size_t whylen) {
  const char *s = field.s;
  *bits = 0;
  for (;;) {
    const char *comma = memchr(s, ',', (size_t)(field.e - s));
    span_t item = {s, comma ? comma : field.e};
    if (parse_item(item, f, bits, why, whylen) < 0) return -1;
    if (!comma) return 0;
    s = comma + 1;
  }
}

/* Split spec at whitespace into at most 5 fields; returns the number found (6 = more). */
static int split_fields(const char *spec, span_t out[5]) {
  int n = 0;
  const char *p = spec;
  for (;;) {
    while (*p && isspace((unsigned char)*p)) p++;
    if (!*p) return n;
    if (n == 5) return 6;
    out[n].s = p;
    while (*p && !isspace((unsigned char)*p)) p++;
    out[n++].e = p;
  }
}

/* The five-field expansion of an "@name" shorthand, or NULL. */
static const char *shorthand(const char *spec) {
  while (isspace((unsigned char)*spec)) spec++;
  size_t n = strlen(spec);
  while (n > 0 && isspace((unsigned char)spec[n - 1])) n--;
  for (size_t i = 0; i < sizeof cron_shorthands / sizeof cron_shorthands[0]; i++) {
    const char *name = cron_shorthands[i].name;
    if (strlen(name) == n && strncasecmp(spec, name, n) == 0) return cron_shorthands[i].spec;
  }
  return NULL;
}

int cron_parse(const char *spec, cron_t *out, char *err, size_t errlen) {
  span_t fields[5];
  uint64_t bits[5];
  char why[160];
  if (!spec) spec = "";
  const char *text = spec;
  const char *first = spec + strspn(spec, " \t\n\r\f\v");
  if (*first == '@') {
    text = shorthand(spec);
    if (!text) {
      cron_err(err, errlen, "cron '%.64s': unknown shorthand (expected @hourly, @daily, "
               "@weekly, @monthly or @yearly)", spec);
      return -1;
    }
  }
  int n = split_fields(text, fields);
  if (n != 5) {
    cron_err(err, errlen, "cron '%.64s': expected 5 fields (minute hour day-of-month month "
             "day-of-week), got %s%d", spec, n > 5 ? "more than " : "", n > 5 ? 5 : n);
    return -1;
  }
  for (int i = 0; i < 5; i++) {
    if (parse_field(fields[i], &cron_fields[i], &bits[i], why, sizeof why) < 0) {
      cron_err(err, errlen, "cron '%.64s': %s field: %s", spec, cron_fields[i].name, why);
      return -1;
    }
  }
  if (bits[4] & 0x80) bits[4] = (bits[4] | 1) & 0x7f; /* 7 = Sunday */
  memset(out, 0, sizeof *out);
  out->minute = bits[0];
  out->hour = (uint32_t)bits[1];
  out->mday = (uint32_t)bits[2];
  out->month = (uint16_t)bits[3];
  out->wday = (uint8_t)bits[4];
  /* A day field is unrestricted when it allows every value: "*", "1-31", "0-6"... */
  out->mday_star = out->mday == 0xfffffffeu;
  out->wday_star = out->wday == 0x7f;
  return 0;
}

/* Standard rule: with both day fields restricted either may match, else both must. */
static int day_matches(const cron_t *c, int64_t days, int mday) {
  int dom = (c->mday >> mday) & 1, dow = (c->wday >> weekday_of(days)) & 1;
  if (c->mday_star || c->wday_star) return dom && dow;
  return dom || dow;
}

/* First matching wall time (local seconds since the epoch, read as if UTC) strictly after
 * local second `from`, skipping whole months, days and hours that cannot match. -1 when
 * none on or before local day limit_day. */
static int next_wall(const cron_t *c, int64_t from, int64_t limit_day, int64_t *out) {
  int64_t m0 = floor_div(from, 60) + 1;
  int64_t day = floor_div(m0, 1440);
  int h = (int)(m0 - day * 1440) / 60, mi = (int)(m0 - day * 1440) % 60;
  while (day <= limit_day) {
    int64_t y;
    int mo, d;
    civil_from_days(day, &y, &mo, &d);
    if (!((c->month >> mo) & 1)) {
      day = days_from_civil(y, mo + 1, 1), h = mi = 0;
      continue;
    }
    if (day_matches(c, day, d)) {
      for (; h < 24; h++, mi = 0) {
        if (!((c->hour >> h) & 1)) continue;
        for (; mi < 60; mi++) {
          if ((c->minute >> mi) & 1) {
            *out = day * SECS_PER_DAY + h * 3600 + mi * 60;
            return 0;
          }
        }
      }
    }
    day++, h = mi = 0;
  }
  return -1;
}

/* The set of slots is { tz_from_local(w) : w a matching wall time }; the answer is its
 * least element > after. Wall times that exist map to instants in wall-time order, so the
 * walk stops at the first existing one past `after`. Gap wall times map forward by the gap
 * length and may overtake later existing ones, so they are only candidates; the walk
 * starts early enough (using the smallest offset within two days) to see them. */
int64_t cron_next(const cron_t *c, const tz_t *tz, int64_t after) {
  if (!c || after < -CRON_T_LIMIT || after > CRON_T_LIMIT) return -1;
  int o_now = tz_offset_at(tz, after), o_min = o_now;
  int o_before = tz_offset_at(tz, after - 2 * SECS_PER_DAY);
  int o_after = tz_offset_at(tz, after + 2 * SECS_PER_DAY);
  if (o_before < o_min) o_min = o_before;
  if (o_after < o_min) o_min = o_after;
  int64_t from = after + o_min;
  int64_t limit_day = floor_div(after + o_now, SECS_PER_DAY) + CRON_SEARCH_DAYS;
  int64_t best = -1, wall;
  int found = 0;
  while (next_wall(c, from, limit_day, &wall) == 0) {
    int64_t days = floor_div(wall, SECS_PER_DAY), y;
    int secs = (int)(wall - days * SECS_PER_DAY), mo, d;
    civil_from_days(days, &y, &mo, &d);
    int64_t t = tz_from_local(tz, (int)y, mo, d, secs / 3600, secs / 60 % 60, 0);
    if (t > after) {
      if (!found || t < best) best = t, found = 1;
      if (t + tz_offset_at(tz, t) == wall) break; /* exists: later walls come later */
    }
    from = wall;
  }
  return found ? best : -1;
}
