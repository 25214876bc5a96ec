/* timeutil: owns calendar arithmetic (proleptic Gregorian), the TZif zone reader with its
 * POSIX TZ footer rules, local <-> UTC conversion, RFC 3339 parsing/formatting, and the
 * duration and "HH:MM" parsers declared in timeutil.h. Self-contained: libc only. */
#include "timeutil.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECS_PER_DAY 86400
/* Instants are clamped to +-2^55 s (about a billion years) before calendar arithmetic so
 * that absurd inputs cannot overflow. */
#define T_LIMIT ((int64_t)1 << 55)
#define TZIF_MAX_BYTES (1 << 20)
#define TZ_NAME_MAX 255

/* One transition date of a POSIX TZ rule: "Mm.w.d", "Jn" or "n", plus the local time of
 * day (seconds, may be negative or beyond 24h) at which the change happens. */
typedef struct {
  char kind; /* 'M', 'J' or 'N' (zero-based day of year) */
  int mon, week, wday, n;
  int32_t time;
} rule_date_t;

/* A POSIX TZ string such as "EST5EDT,M3.2.0,M11.1.0", offsets in seconds east of UTC. */
typedef struct {
  int32_t std_off, dst_off;
  int has_dst;
  rule_date_t start, end;
} tz_rule_t;

struct tz {
  char *name;
  int64_t *trans;     /* transition instants, ascending */
  uint8_t *trans_idx; /* type index in force from trans[i] */
  size_t ntrans;
  int32_t *type_off; /* UT offset of each local time type */
  size_t ntypes;
  int has_rule; /* footer rule applies after the last transition */
  tz_rule_t rule;
};

static void tu_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void tu_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
  return q;
}

static int64_t clamp_t(int64_t t) {
  if (t > T_LIMIT) return T_LIMIT;
  if (t < -T_LIMIT) return -T_LIMIT;
  return t;
}

/* ---- calendar ---------------------------------------------------------------------- */

static int is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int days_in_month(int64_t y, int m) {
  static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return (m == 2 && is_leap(y)) ? 29 : dim[m - 1];
}

/* 0 = Sunday. 1970-01-01 was a Thursday. */
static int weekday_of(int64_t days) { return (int)(((days % 7) + 7 + 4) % 7); }

/* Days since 1970-01-01. Months outside 1-12 and days outside the month are normalised
 * (month 13 is January of the next year, day 0 the last day of the previous month). The
 * computation counts from 0000-03-01 in 400-year eras so leap days fall at era ends. */
int64_t days_from_civil(int64_t year, int month, int day) {
  int64_t m0 = (int64_t)month - 1;
  year += floor_div(m0, 12);
  int64_t m = m0 - floor_div(m0, 12) * 12 + 1; /* 1..12 */
  int64_t y = year - (m <= 2);
  int64_t era = floor_div(y, 400);
  int64_t yoe = y - era * 400;                  /* 0..399 */
  int64_t mp = (m + 9) % 12;                    /* March = 0 */
  int64_t doy = (153 * mp + 2) / 5;             /* day of year of the 1st, from March */
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468 + ((int64_t)day - 1);
}

/* Inverse of days_from_civil for in-range results. */
void civil_from_days(int64_t days, int64_t *year, int *month, int *day) {
  int64_t z = days + 719468;
  int64_t era = floor_div(z, 146097);
  int64_t doe = z - era * 146097;                                      /* 0..146096 */
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* 0..399 */
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* 0..365 */
  int64_t mp = (5 * doy + 2) / 153;                                    /* March = 0 */
  int d = (int)(doy - (153 * mp + 2) / 5 + 1);
  int m = (int)(mp < 10 ? mp + 3 : mp - 9);
  int64_t y = yoe + era * 400 + (m <= 2);
  if (year) *year = y;
  if (month) *month = m;
  if (day) *day = d;
}

/* ---- POSIX TZ footer rules ------------------------------------------------------- */

/* Zone abbreviation: letters, or "<...>" holding letters, digits, '+' and '-'. */
static int parse_abbr(const char **p) {
  const char *s = *p;
  size_t n = 0;
  if (*s == '<') {
    s++;
    while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
           *s == '+' || *s == '-')
      s++, n++;
    if (*s != '>' || n == 0) return -1;
    *p = s + 1;
    return 0;
  }
  while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')) s++, n++;
  if (n < 3) return -1;
  *p = s;
  return 0;
}

/* "[+-]h[h[h]][:mm[:ss]]" as signed seconds; hours at most max_h. */
static int parse_hms(const char **p, int max_h, int32_t *out) {
  const char *s = *p;
  int sign = 1, part[3] = {0, 0, 0}, i = 0;
  if (*s == '+' || *s == '-') sign = (*s++ == '-') ? -1 : 1;
  for (;;) {
    int digits = 0, v = 0;
    while (*s >= '0' && *s <= '9' && digits < 3) v = v * 10 + (*s++ - '0'), digits++;
    if (digits == 0 || (i > 0 && (digits != 2 || v > 59))) return -1;
    part[i++] = v;
    if (i == 3 || *s != ':') break;
    s++;
  }
  if (part[0] > max_h) return -1;
  *out = sign * (part[0] * 3600 + part[1] * 60 + part[2]);
  *p = s;
  return 0;
}

static int parse_num(const char **p, int lo, int hi, int *out) {
  const char *s = *p;
  int v = 0, digits = 0;
  while (*s >= '0' && *s <= '9' && digits < 4) v = v * 10 + (*s++ - '0'), digits++;
  if (digits == 0 || v < lo || v > hi) return -1;
  *out = v;
  *p = s;
  return 0;
}

/* "Mm.w.d", "Jn" or "n", optionally followed by "/time" (default 02:00). */
static int parse_rule_date(const char **p, rule_date_t *d) {
  memset(d, 0, sizeof *d);
  if (**p == 'M') {
    (*p)++;
    d->kind = 'M';
    if (parse_num(p, 1, 12, &d->mon) < 0 || *(*p)++ != '.') return -1;
    if (parse_num(p, 1, 5, &d->week) < 0 || *(*p)++ != '.') return -1;
    if (parse_num(p, 0, 6, &d->wday) < 0) return -1;
  } else if (**p == 'J') {
    (*p)++;
    d->kind = 'J';
    if (parse_num(p, 1, 365, &d->n) < 0) return -1;
  } else {
    d->kind = 'N';
    if (parse_num(p, 0, 365, &d->n) < 0) return -1;
  }
  d->time = 7200;
  if (**p == '/') {
    (*p)++;
    if (parse_hms(p, 167, &d->time) < 0) return -1; /* RFC 8536 extension: -167..167 h */
  }
  return 0;
}

/* Parse a TZif footer. An empty string means "no rule" (returns 0 with *has_rule = 0). */
static int parse_posix_tz(const char *s, tz_rule_t *r, int *has_rule) {
  int32_t v;
  memset(r, 0, sizeof *r);
  *has_rule = 0;
  if (*s == '\0') return 0;
  if (parse_abbr(&s) < 0 || parse_hms(&s, 24, &v) < 0) return -1;
  r->std_off = r->dst_off = -v; /* POSIX offsets count hours west of Greenwich */
  if (*s != '\0') {
    if (parse_abbr(&s) < 0) return -1;
    r->has_dst = 1;
    r->dst_off = r->std_off + 3600;
    if (*s != ',' && *s != '\0') {
      if (parse_hms(&s, 24, &v) < 0) return -1;
      r->dst_off = -v;
    }
    if (*s++ != ',' || parse_rule_date(&s, &r->start) < 0) return -1;
    if (*s++ != ',' || parse_rule_date(&s, &r->end) < 0) return -1;
    if (*s != '\0') return -1;
  }
  *has_rule = 1;
  return 0;
}

/* Days since the epoch of a rule date in year y. */
static int64_t rule_day(const rule_date_t *d, int64_t y) {
  int64_t jan1 = days_from_civil(y, 1, 1);
  if (d->kind == 'J') return jan1 + d->n - 1 + (is_leap(y) && d->n >= 60);
  if (d->kind == 'N') return jan1 + d->n;
  int64_t first = days_from_civil(y, d->mon, 1);
  int day = (d->wday - weekday_of(first) + 7) % 7 + (d->week - 1) * 7;
  while (day >= days_in_month(y, d->mon)) day -= 7; /* week 5 = last */
  return first + day;
}

/* Offset a footer rule gives at instant t. DST starts at a local standard time and ends
 * at a local daylight time; a start later than the end in the year means the southern
 * hemisphere (DST spans New Year). */
static int rule_offset(const tz_rule_t *r, int64_t t) {
  if (!r->has_dst) return r->std_off;
  int64_t y;
  civil_from_days(floor_div(t + r->std_off, SECS_PER_DAY), &y, NULL, NULL);
  int64_t start = rule_day(&r->start, y) * SECS_PER_DAY + r->start.time - r->std_off;
  int64_t end = rule_day(&r->end, y) * SECS_PER_DAY + r->end.time - r->dst_off;
  int dst = start < end ? (t >= start && t < end) : !(t >= end && t < start);
  return dst ? r->dst_off : r->std_off;
}

/* ---- TZif reader ----------------------------------------------------------------- */

typedef struct {
  uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
} tzif_counts_t;

static uint32_t be32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int64_t be64(const unsigned char *p) {
  return (int64_t)(((uint64_t)be32(p) << 32) | be32(p + 4));
}

/* Read a 44-byte TZif header at buf[off]; returns the version character or -1. */
static int tzif_header(const unsigned char *buf, size_t len, size_t off, tzif_counts_t *c) {
  if (len < off || len - off < 44 || memcmp(buf + off, "TZif", 4) != 0) return -1;
  const unsigned char *h = buf + off + 20;
  c->isutcnt = be32(h), c->isstdcnt = be32(h + 4), c->leapcnt = be32(h + 8);
  c->timecnt = be32(h + 12), c->typecnt = be32(h + 16), c->charcnt = be32(h + 20);
  if (c->typecnt == 0 || c->typecnt > 256 || c->charcnt == 0 || c->timecnt > 100000 ||
      c->leapcnt > 100000 || c->charcnt > 10000 ||
      (c->isutcnt != 0 && c->isutcnt != c->typecnt) ||
      (c->isstdcnt != 0 && c->isstdcnt != c->typecnt))
    return -1;
  return buf[off + 4];
}

/* Size of the data block after a header; tsize is 4 (v1) or 8 (v2+). */
static size_t tzif_block_size(const tzif_counts_t *c, size_t tsize) {
  return (size_t)c->timecnt * tsize + c->timecnt + (size_t)c->typecnt * 6 + c->charcnt +
         (size_t)c->leapcnt * (tsize + 4) + c->isstdcnt + c->isutcnt;
}

/* Fill the transitions and types of z from the data block at p. */
static int tzif_read_block(tz_t *z, const unsigned char *p, const tzif_counts_t *c,
                           size_t tsize) {
  z->ntrans = c->timecnt;
  z->ntypes = c->typecnt;
  z->trans = calloc(c->timecnt ? c->timecnt : 1, sizeof *z->trans);
  z->trans_idx = calloc(c->timecnt ? c->timecnt : 1, 1);
  z->type_off = calloc(c->typecnt, sizeof *z->type_off);
  if (!z->trans || !z->trans_idx || !z->type_off) return -1;
  for (uint32_t i = 0; i < c->timecnt; i++) {
    z->trans[i] = tsize == 8 ? be64(p + i * 8) : (int32_t)be32(p + i * 4);
    if (i > 0 && z->trans[i] <= z->trans[i - 1]) return -1;
  }
  p += (size_t)c->timecnt * tsize;
  for (uint32_t i = 0; i < c->timecnt; i++) {
    if (p[i] >= c->typecnt) return -1;
    z->trans_idx[i] = p[i];
  }
  p += c->timecnt;
  for (uint32_t i = 0; i < c->typecnt; i++) {
    int32_t off = (int32_t)be32(p + i * 6);
    if (off < -25 * 3600 || off > 26 * 3600 || p[i * 6 + 4] > 1) return -1;
    z->type_off[i] = off;
  }
  return 0;
}

/* Parse a whole TZif file (versions 1-4; the 64-bit section and footer when present). */
static int tzif_parse(tz_t *z, const unsigned char *buf, size_t len) {
  tzif_counts_t c;
  int ver = tzif_header(buf, len, 0, &c);
  if (ver < 0) return -1;
  size_t off = 44 + tzif_block_size(&c, 4);
  if (off > len) return -1;
  if (ver == 0) return tzif_read_block(z, buf + 44, &c, 4);
  if (tzif_header(buf, len, off, &c) < 0) return -1;
  off += 44;
  size_t bsize = tzif_block_size(&c, 8);
  if (bsize > len - off) return -1;
  if (tzif_read_block(z, buf + off, &c, 8) < 0) return -1;
  off += bsize;
  if (off >= len) return 0; /* no footer */
  if (buf[off] != '\n') return -1;
  const unsigned char *nl = memchr(buf + off + 1, '\n', len - off - 1);
  if (!nl) return -1;
  size_t flen = (size_t)(nl - (buf + off + 1));
  char footer[256];
  if (flen >= sizeof footer) return -1;
  memcpy(footer, buf + off + 1, flen);
  footer[flen] = '\0';
  return parse_posix_tz(footer, &z->rule, &z->has_rule);
}

/* Read at most TZIF_MAX_BYTES of path into a fresh buffer. */
static unsigned char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  unsigned char *buf = malloc(TZIF_MAX_BYTES);
  size_t n = buf ? fread(buf, 1, TZIF_MAX_BYTES, f) : 0;
  int e = !buf ? ENOMEM : ferror(f) ? (errno ? errno : EIO) : 0;
  fclose(f);
  if (e) {
    free(buf);
    errno = e;
    return NULL;
  }
  *len = n;
  return buf;
}

static int valid_zone_name(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > TZ_NAME_MAX || name[0] == '/' || strstr(name, "..")) return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)name[i] < 0x20 || name[i] == '\\') return 0;
  return 1;
}

/* A built-in UTC so that "UTC" works even without a zoneinfo database. */
static tz_t *tz_builtin_utc(tz_t *z) {
  z->type_off = calloc(1, sizeof *z->type_off);
  z->trans = calloc(1, sizeof *z->trans);
  z->trans_idx = calloc(1, 1);
  if (!z->type_off || !z->trans || !z->trans_idx) return NULL;
  z->ntypes = 1;
  return z;
}

tz_t *tz_load(const char *name, char *err, size_t errlen) {
  if (!name || !valid_zone_name(name)) {
    tu_err(err, errlen, "invalid time zone name '%.64s'", name ? name : "(null)");
    return NULL;
  }
  const char *dir = getenv("TZDIR");
  if (!dir || !*dir) dir = "/usr/share/zoneinfo";
  char path[4096];
  if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
    tu_err(err, errlen, "time zone '%s': path too long", name);
    return NULL;
  }
  tz_t *z = calloc(1, sizeof *z);
  if (!z || !(z->name = strdup(name))) {
    free(z);
    tu_err(err, errlen, "time zone '%s': out of memory", name);
    return NULL;
  }
  size_t len = 0;
  unsigned char *buf = slurp(path, &len);
  if (!buf) {
    int e = errno;
    if (strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0) {
      if (tz_builtin_utc(z)) return z;
    }
    tz_free(z);
    if (e == ENOENT || e == ENOTDIR)
      tu_err(err, errlen, "unknown time zone '%s' (no such zone in %s)", name, dir);
    else
      tu_err(err, errlen, "time zone '%s': cannot read %s: %s", name, path, strerror(e));
    return NULL;
  }
  int rc = tzif_parse(z, buf, len);
  free(buf);
  if (rc < 0) {
    tz_free(z);
    tu_err(err, errlen, "time zone '%s': %s is not a valid TZif file", name, path);
    return NULL;
  }
  return z;
}

void tz_free(tz_t *tz) {
  if (!tz) return;
  free(tz->name);
  free(tz->trans);
  free(tz->trans_idx);
  free(tz->type_off);
  free(tz);
}

const char *tz_name(const tz_t *tz) { return tz ? tz->name : "UTC"; }

/* ---- conversions ----------------------------------------------------------------- */

/* A NULL zone is UTC. Before the first transition type 0 applies (RFC 8536); after the
 * last one the footer rule, when there is one. */
int tz_offset_at(const tz_t *tz, int64_t t) {
  if (!tz) return 0;
  t = clamp_t(t);
  if (tz->ntrans == 0 || t >= tz->trans[tz->ntrans - 1]) {
    if (tz->has_rule) return rule_offset(&tz->rule, t);
    return tz->ntrans ? tz->type_off[tz->trans_idx[tz->ntrans - 1]] : tz->type_off[0];
  }
  if (t < tz->trans[0]) return tz->type_off[0];
  size_t lo = 0, hi = tz->ntrans - 1; /* trans[lo] <= t < trans[hi] */
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (tz->trans[mid] <= t) lo = mid;
    else hi = mid;
  }
  return tz->type_off[tz->trans_idx[lo]];
}

void tz_to_civil(const tz_t *tz, int64_t t, civil_t *out) {
  t = clamp_t(t);
  int off = tz_offset_at(tz, t);
  int64_t local = t + off;
  int64_t days = floor_div(local, SECS_PER_DAY);
  int64_t secs = local - days * SECS_PER_DAY;
  int64_t y;
  civil_from_days(days, &y, &out->month, &out->day);
  out->year = (int)y;
  out->hour = (int)(secs / 3600);
  out->min = (int)(secs / 60 % 60);
  out->sec = (int)(secs % 60);
  out->wday = weekday_of(days);
  out->yday = (int)(days - days_from_civil(y, 1, 1));
  out->offset = off;
}

/* Offsets a day either side of the wall time (read as if it were UTC) bracket any single
 * transition near it: candidate instants are wall - offset for each; valid ones map back
 * to the same offset. Two valid: overlap, take the earlier. None: gap, use the offset
 * before it, which lands the wall time gap-length later on the clock. */
int64_t tz_from_local(const tz_t *tz, int year, int month, int day, int hour, int min,
                      int sec) {
  int64_t local = days_from_civil(year, month, day) * SECS_PER_DAY + (int64_t)hour * 3600 +
                  (int64_t)min * 60 + sec;
  local = clamp_t(local);
  int64_t o_early = tz_offset_at(tz, local - SECS_PER_DAY);
  int64_t o_late = tz_offset_at(tz, local + SECS_PER_DAY);
  int64_t t1 = local - o_early, t2 = local - o_late;
  int ok1 = tz_offset_at(tz, t1) == o_early;
  int ok2 = tz_offset_at(tz, t2) == o_late;
  if (ok1 && ok2) return t1 < t2 ? t1 : t2;
  if (ok2) return t2;
  return t1;
}

int64_t tz_local_day(const tz_t *tz, int64_t t) {
  t = clamp_t(t);
  return floor_div(t + tz_offset_at(tz, t), SECS_PER_DAY);
}

/* ---- RFC 3339 -------------------------------------------------------------------- */

/* Exactly n digits at s into *out. */
static int fixed_digits(const char *s, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return 0;
}

#define RFC_SYNTAX "expected YYYY-MM-DDTHH:MM:SS followed by Z or an offset like +08:00"

/* Syntax: fills the fields and the offset in seconds; returns NULL or a reason. */
static const char *rfc3339_fields(const char *s, int f[6], int *offset) {
  static const int pos[6] = {0, 5, 8, 11, 14, 17}, width[6] = {4, 2, 2, 2, 2, 2};
  static const char sep[5] = {'-', '-', 'T', ':', ':'};
  if (strnlen(s, 20) < 19) return RFC_SYNTAX;
  for (int i = 0; i < 6; i++) {
    if (fixed_digits(s + pos[i], width[i], &f[i]) < 0) return RFC_SYNTAX;
    if (i == 5) break;
    char c = s[pos[i] + width[i]];
    int ok = c == sep[i] || (i == 2 && (c == 't' || c == ' '));
    if (!ok) return RFC_SYNTAX;
  }
  const char *p = s + 19;
  if (*p == '.') {
    if (*++p < '0' || *p > '9') return RFC_SYNTAX;
    while (*p >= '0' && *p <= '9') p++; /* fraction truncated */
  }
  if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
    *offset = 0;
    return NULL;
  }
  int oh, om;
  if ((*p != '+' && *p != '-') || fixed_digits(p + 1, 2, &oh) < 0 || p[3] != ':' ||
      fixed_digits(p + 4, 2, &om) < 0 || p[6] != '\0')
    return RFC_SYNTAX;
  if (oh > 23 || om > 59) return "offset out of range";
  *offset = (*p == '-' ? -1 : 1) * (oh * 3600 + om * 60);
  return NULL;
}

int date_parse(const char *s, size_t len, int64_t *day) {
  if (len != 10 || s[4] != '-' || s[7] != '-') return -1;
  int v[3] = {0, 0, 0}; /* year, month, day */
  const int start[3] = {0, 5, 8}, width[3] = {4, 2, 2};
  for (int f = 0; f < 3; f++)
    for (int i = start[f]; i < start[f] + width[f]; i++) {
      if (s[i] < '0' || s[i] > '9') return -1;
      v[f] = v[f] * 10 + (s[i] - '0');
    }
  if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31) return -1;
  int64_t n = days_from_civil(v[0], v[1], v[2]), y;
  int m, d;
  civil_from_days(n, &y, &m, &d);
  if (y != v[0] || m != v[1] || d != v[2]) return -1; /* a day past the month's end */
  *day = n;
  return 0;
}

int rfc3339_parse(const char *s, int64_t *t, char *err, size_t errlen) {
  int f[6], offset = 0;
  char why[64];
  const char *reason = s ? rfc3339_fields(s, f, &offset) : RFC_SYNTAX;
  if (!reason) {
    reason = why;
    if (f[1] < 1 || f[1] > 12)
      snprintf(why, sizeof why, "month %02d out of range 01-12", f[1]);
    else if (f[2] < 1 || f[2] > days_in_month(f[0], f[1]))
      snprintf(why, sizeof why, "day %02d out of range for %04d-%02d", f[2], f[0], f[1]);
    else if (f[3] > 23)
      snprintf(why, sizeof why, "hour %02d out of range 00-23", f[3]);
    else if (f[4] > 59)
      snprintf(why, sizeof why, "minute %02d out of range 00-59", f[4]);
    else if (f[5] > 59)
      snprintf(why, sizeof why, "second %02d out of range 00-59 (leap seconds unsupported)", f[5]);
    else
      reason = NULL;
  }
  if (reason) {
    tu_err(err, errlen, "not an RFC 3339 time: '%.80s' (%s)", s ? s : "(null)", reason);
    return -1;
  }
  *t = days_from_civil(f[0], f[1], f[2]) * SECS_PER_DAY + f[3] * 3600 + f[4] * 60 + f[5] -
       offset;
  return 0;
}

/* Write v as exactly n zero-padded digits (v >= 0, fits n). */
static char *put_digits(char *p, int v, int n) {
  for (int i = n - 1; i >= 0; i--, v /= 10) p[i] = (char)('0' + v % 10);
  return p + n;
}

/* RFC 3339 offsets have whole minutes, so a seconds part (old LMT offsets) is dropped and
 * the wall time is shown at the truncated offset: the text still names the instant t.
 * Instants outside years 0000-9999 are clamped to that range. */
char *rfc3339_format(int64_t t, int offset, char buf[32]) {
  const int64_t lo = days_from_civil(0, 1, 1) * SECS_PER_DAY + 86400;
  const int64_t hi = days_from_civil(9999, 12, 31) * SECS_PER_DAY - 86400;
  if (offset > 23 * 3600 + 59 * 60) offset = 23 * 3600 + 59 * 60;
  if (offset < -(23 * 3600 + 59 * 60)) offset = -(23 * 3600 + 59 * 60);
  offset = offset / 60 * 60;
  if (t < lo) t = lo;
  if (t > hi) t = hi;
  int64_t local = t + offset, days = floor_div(local, SECS_PER_DAY);
  int secs = (int)(local - days * SECS_PER_DAY), month, day;
  int64_t year;
  civil_from_days(days, &year, &month, &day);
  char *p = buf;
  p = put_digits(p, (int)year, 4), *p++ = '-';
  p = put_digits(p, month, 2), *p++ = '-';
  p = put_digits(p, day, 2), *p++ = 'T';
  p = put_digits(p, secs / 3600, 2), *p++ = ':';
  p = put_digits(p, secs / 60 % 60, 2), *p++ = ':';
  p = put_digits(p, secs % 60, 2);
  int a = offset < 0 ? -offset : offset;
  *p++ = offset < 0 ? '-' : '+';
  p = put_digits(p, a / 3600, 2), *p++ = ':';
  p = put_digits(p, a / 60 % 60, 2);
  *p = '\0';
  return buf;
}

/* ---- durations and wall clock ---------------------------------------------------- */

#define DURATION_HELP \
  "expected a number followed by s, m, h, d or w (e.g. 30s, 15m, 2h, 3d, 2w, 1d12h)"

/* Rank and length in seconds of a unit letter; rank -1 for an unknown letter. */
static int unit_of(char c, int64_t *secs) {
  switch (c) {
  case 'w': *secs = 7 * SECS_PER_DAY; return 4;
  case 'd': *secs = SECS_PER_DAY; return 3;
  case 'h': *secs = 3600; return 2;
  case 'm': *secs = 60; return 1;
  case 's': *secs = 1; return 0;
  default: return -1;
  }
}

int duration_parse(const char *s, int64_t *secs, char *err, size_t errlen) {
  const char *p = s;
  int64_t total = 0;
  int last_rank = 5;
  if (!s || !*s) {
    tu_err(err, errlen, "bad duration '%s': " DURATION_HELP, s ? s : "");
    return -1;
  }
  while (*p) {
    int64_t n = 0, unit;
    const char *digits = p;
    while (*p >= '0' && *p <= '9') {
      if (n > (INT64_MAX - 9) / 10) goto too_large;
      n = n * 10 + (*p++ - '0');
    }
    int rank = unit_of(*p, &unit);
    if (p == digits || rank < 0) {
      tu_err(err, errlen, "bad duration '%.64s': " DURATION_HELP, s);
      return -1;
    }
    if (rank >= last_rank) {
      tu_err(err, errlen,
             "bad duration '%.64s': units must go from largest to smallest (w, d, h, m, s), "
             "each at most once", s);
      return -1;
    }
    last_rank = rank;
    p++;
    if (n > INT64_MAX / unit || n * unit > INT64_MAX - total) goto too_large;
    total += n * unit;
  }
  *secs = total;
  return 0;
too_large:
  tu_err(err, errlen, "bad duration '%.64s': too large", s);
  return -1;
}

int wallclock_parse(const char *s, int *minutes, char *err, size_t errlen) {
  int h, m;
  if (!s || strlen(s) != 5 || fixed_digits(s, 2, &h) < 0 || s[2] != ':' ||
      fixed_digits(s + 3, 2, &m) < 0 || h > 23 || m > 59) {
    tu_err(err, errlen, "bad time of day '%.64s': expected HH:MM between 00:00 and 23:59",
           s ? s : "(null)");
    return -1;
  }
  *minutes = h * 60 + m;
  return 0;
}
