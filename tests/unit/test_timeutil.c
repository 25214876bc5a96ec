/* test_timeutil: unit tests for engine/timeutil.c — calendar arithmetic, TZif zones
 * (system zones and synthetic files exercising v1/v2/v3 data and POSIX footers), local
 * time conversion across 2026 DST transitions, RFC 3339, durations and "HH:MM". */
#include "timeutil.h"
#include "unit.h"

#include <stdlib.h>
#include <unistd.h>

#define H 3600
#define DAY 86400

/* Instant of an RFC 3339 string known to be valid (the parser is tested below). */
static int64_t T(const char *s) {
  int64_t t = 0;
  char err[160];
  if (rfc3339_parse(s, &t, err, sizeof err) < 0) {
    fprintf(stderr, "bad test time %s: %s\n", s, err);
    unit_failed_checks++;
  }
  return t;
}

static tz_t *load(const char *name) {
  char err[256];
  tz_t *z = tz_load(name, err, sizeof err);
  if (!z) {
    fprintf(stderr, "tz_load(%s): %s\n", name, err);
    unit_failed_checks++;
  }
  return z;
}

/* Local wall time of t formatted at its own offset, for readable comparisons. */
static const char *fmt_local(const tz_t *z, int64_t t, char buf[32]) {
  return rfc3339_format(t, tz_offset_at(z, t), buf);
}

/* ---- calendar ---------------------------------------------------------------------- */

TEST(days_from_civil_known_dates) {
  CHECK_INT(days_from_civil(1970, 1, 1), 0);
  CHECK_INT(days_from_civil(1969, 12, 31), -1);
  CHECK_INT(days_from_civil(2000, 3, 1), 11017);
  CHECK_INT(days_from_civil(2026, 11, 22), 20779);
  CHECK_INT(days_from_civil(1, 1, 1), -719162);
  CHECK_INT(days_from_civil(0, 3, 1), -719468);
  CHECK_INT(days_from_civil(-1, 12, 31), -719529);
  /* leap years: 2000 and 2024 yes, 1900 and 2100 no */
  CHECK_INT(days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28), 2);
  CHECK_INT(days_from_civil(2024, 3, 1) - days_from_civil(2024, 2, 28), 2);
  CHECK_INT(days_from_civil(1900, 3, 1) - days_from_civil(1900, 2, 28), 1);
  CHECK_INT(days_from_civil(2100, 3, 1) - days_from_civil(2100, 2, 28), 1);
}

TEST(days_from_civil_normalises) {
  CHECK_INT(days_from_civil(2026, 13, 1), days_from_civil(2027, 1, 1));
  CHECK_INT(days_from_civil(2026, 0, 1), days_from_civil(2025, 12, 1));
  CHECK_INT(days_from_civil(2026, -11, 1), days_from_civil(2025, 1, 1));
  CHECK_INT(days_from_civil(2026, 3, 0), days_from_civil(2026, 2, 28));
  CHECK_INT(days_from_civil(2024, 2, 30), days_from_civil(2024, 3, 1));
  CHECK_INT(days_from_civil(2026, 1, 32), days_from_civil(2026, 2, 1));
}

TEST(civil_round_trip) {
  int64_t py = 0;
  int pm = 0, pd = 0, bad = 0;
  for (int64_t d = -800000; d <= 800000; d++) {
    int64_t y;
    int m, dd;
    civil_from_days(d, &y, &m, &dd);
    if (days_from_civil(y, m, dd) != d) bad++;
    if (d > -800000) { /* consecutive days advance by one calendar day */
      int next_ok = (y == py && m == pm && dd == pd + 1) ||
                    (y == py && m == pm + 1 && dd == 1) || (y == py + 1 && m == 1 && dd == 1);
      if (!next_ok) bad++;
    }
    py = y, pm = m, pd = dd;
  }
  CHECK_INT(bad, 0);
  int64_t y;
  int m, d;
  civil_from_days(-1, &y, &m, &d);
  CHECK(y == 1969 && m == 12 && d == 31);
  civil_from_days(days_from_civil(2024, 2, 29), &y, &m, &d);
  CHECK(y == 2024 && m == 2 && d == 29);
}

/* ---- zones ------------------------------------------------------------------------- */

TEST(utc_zone) {
  tz_t *z = load("UTC");
  if (!z) return;
  CHECK_STR(tz_name(z), "UTC");
  CHECK_INT(tz_offset_at(z, T("2026-06-01T00:00:00Z")), 0);
  civil_t c;
  tz_to_civil(z, 0, &c);
  CHECK(c.year == 1970 && c.month == 1 && c.day == 1 && c.hour == 0 && c.wday == 4);
  CHECK_INT(c.yday, 0);
  tz_to_civil(z, -1, &c);
  CHECK(c.year == 1969 && c.month == 12 && c.day == 31 && c.hour == 23 && c.min == 59 &&
        c.sec == 59 && c.wday == 3 && c.yday == 364);
  CHECK_INT(tz_from_local(z, 2026, 11, 22, 10, 15, 0), T("2026-11-22T10:15:00Z"));
  tz_free(z);
}

TEST(shanghai_fixed_offset) {
  tz_t *z = load("Asia/Shanghai");
  if (!z) return;
  CHECK_STR(tz_name(z), "Asia/Shanghai");
  int64_t t = T("2026-11-22T10:15:00+08:00");
  CHECK_INT(t, 1795313700);
  CHECK_INT(tz_offset_at(z, t), 8 * H);
  CHECK_INT(tz_offset_at(z, T("2026-07-01T00:00:00Z")), 8 * H); /* no DST today */
  CHECK_INT(tz_offset_at(z, T("1988-07-01T00:00:00Z")), 9 * H); /* China DST 1986-1991 */
  civil_t c;
  tz_to_civil(z, t, &c);
  CHECK(c.year == 2026 && c.month == 11 && c.day == 22 && c.hour == 10 && c.min == 15);
  CHECK_INT(c.wday, 0);
  CHECK_INT(c.yday, 325);
  CHECK_INT(c.offset, 8 * H);
  CHECK_INT(tz_from_local(z, 2026, 11, 22, 10, 15, 0), t);
  /* the local day changes at 16:00 UTC */
  int64_t midnight = T("2026-11-21T16:00:00Z");
  CHECK_INT(midnight, 1795276800);
  CHECK_INT(tz_local_day(z, midnight - 1), days_from_civil(2026, 11, 21));
  CHECK_INT(tz_local_day(z, midnight), days_from_civil(2026, 11, 22));
  CHECK_INT(tz_local_day(z, T("2026-11-22T15:59:59Z")), days_from_civil(2026, 11, 22));
  CHECK_INT(tz_from_local(z, 2026, 11, 22, 0, 0, 0), midnight);
  tz_to_civil(z, midnight - 1, &c);
  CHECK(c.day == 21 && c.hour == 23 && c.min == 59 && c.sec == 59 && c.wday == 6);
  tz_free(z);
}

TEST(new_york_spring_forward_2026) {
  tz_t *z = load("America/New_York");
  if (!z) return;
  char buf[32];
  int64_t tr = T("2026-03-08T07:00:00Z"); /* 02:00 EST -> 03:00 EDT */
  CHECK_INT(tr, 1772953200);
  CHECK_INT(tz_offset_at(z, tr - 1), -5 * H);
  CHECK_INT(tz_offset_at(z, tr), -4 * H);
  CHECK_STR(fmt_local(z, tr - 1, buf), "2026-03-08T01:59:59-05:00");
  CHECK_STR(fmt_local(z, tr, buf), "2026-03-08T03:00:00-04:00");
  /* in the gap: moved forward by the gap length */
  CHECK_INT(tz_from_local(z, 2026, 3, 8, 2, 30, 0), T("2026-03-08T03:30:00-04:00"));
  CHECK_INT(tz_from_local(z, 2026, 3, 8, 2, 0, 0), tr);
  CHECK_INT(tz_from_local(z, 2026, 3, 8, 1, 59, 59), tr - 1);
  CHECK_INT(tz_from_local(z, 2026, 3, 8, 3, 0, 0), tr);
  CHECK_INT(tz_from_local(z, 2026, 3, 8, 3, 30, 0), T("2026-03-08T03:30:00-04:00"));
  /* out-of-range fields normalise before the zone lookup (Mar 7 26:30 = Mar 8 02:30) */
  CHECK_INT(tz_from_local(z, 2026, 3, 7, 26, 30, 0), T("2026-03-08T03:30:00-04:00"));
  /* local day around midnight on both sides of the change */
  CHECK_INT(tz_local_day(z, T("2026-03-08T04:59:59Z")), days_from_civil(2026, 3, 7));
  CHECK_INT(tz_local_day(z, T("2026-03-08T05:00:00Z")), days_from_civil(2026, 3, 8));
  CHECK_INT(tz_local_day(z, T("2026-03-09T03:59:59Z")), days_from_civil(2026, 3, 8));
  CHECK_INT(tz_local_day(z, T("2026-03-09T04:00:00Z")), days_from_civil(2026, 3, 9));
  /* the local day of the change is 23 hours long */
  CHECK_INT(tz_from_local(z, 2026, 3, 9, 0, 0, 0) - tz_from_local(z, 2026, 3, 8, 0, 0, 0),
            23 * H);
  tz_free(z);
}

TEST(new_york_fall_back_2026) {
  tz_t *z = load("America/New_York");
  if (!z) return;
  char buf[32];
  int64_t tr = T("2026-11-01T06:00:00Z"); /* 02:00 EDT -> 01:00 EST */
  CHECK_INT(tr, 1793512800);
  CHECK_INT(tz_offset_at(z, tr - 1), -4 * H);
  CHECK_INT(tz_offset_at(z, tr), -5 * H);
  CHECK_STR(fmt_local(z, tr - 1, buf), "2026-11-01T01:59:59-04:00");
  CHECK_STR(fmt_local(z, tr, buf), "2026-11-01T01:00:00-05:00");
  /* in the overlap: the first (EDT) occurrence */
  CHECK_INT(tz_from_local(z, 2026, 11, 1, 1, 30, 0), T("2026-11-01T01:30:00-04:00"));
  CHECK_INT(tz_from_local(z, 2026, 11, 1, 1, 0, 0), T("2026-11-01T01:00:00-04:00"));
  CHECK_INT(tz_from_local(z, 2026, 11, 1, 0, 59, 59), T("2026-11-01T00:59:59-04:00"));
  CHECK_INT(tz_from_local(z, 2026, 11, 1, 2, 0, 0), T("2026-11-01T02:00:00-05:00"));
  civil_t c;
  tz_to_civil(z, T("2026-11-01T01:30:00-05:00"), &c);
  CHECK(c.hour == 1 && c.min == 30 && c.offset == -5 * H && c.wday == 0);
  CHECK_INT(tz_local_day(z, T("2026-11-01T03:59:59Z")), days_from_civil(2026, 10, 31));
  CHECK_INT(tz_local_day(z, T("2026-11-01T04:00:00Z")), days_from_civil(2026, 11, 1));
  CHECK_INT(tz_local_day(z, T("2026-11-02T04:59:59Z")), days_from_civil(2026, 11, 1));
  CHECK_INT(tz_local_day(z, T("2026-11-02T05:00:00Z")), days_from_civil(2026, 11, 2));
  CHECK_INT(tz_from_local(z, 2026, 11, 2, 0, 0, 0) - tz_from_local(z, 2026, 11, 1, 0, 0, 0),
            25 * H);
  tz_free(z);
}

/* Every quarter hour of 2026: local -> instant -> local is the identity, except for the
 * second pass through the fall-back hour, which maps to the first. */
TEST(new_york_round_trip_2026) {
  tz_t *z = load("America/New_York");
  if (!z) return;
  int bad = 0, second_pass = 0;
  for (int64_t t = T("2026-01-01T00:00:00Z"); t < T("2027-01-01T00:00:00Z"); t += 900) {
    civil_t c;
    tz_to_civil(z, t, &c);
    int64_t back = tz_from_local(z, c.year, c.month, c.day, c.hour, c.min, c.sec);
    if (back == t - H && c.offset == -5 * H && c.month == 11 && c.day == 1 && c.hour == 1)
      second_pass++;
    else if (back != t)
      bad++;
  }
  CHECK_INT(bad, 0);
  CHECK_INT(second_pass, 4);
  tz_free(z);
}

/* After 2037 the fat zone files have no transitions left: the footer rule applies. */
TEST(new_york_footer_rule_2040) {
  tz_t *z = load("America/New_York");
  if (!z) return;
  CHECK_INT(tz_offset_at(z, T("2040-03-11T06:59:59Z")), -5 * H);
  CHECK_INT(tz_offset_at(z, T("2040-03-11T07:00:00Z")), -4 * H);
  CHECK_INT(tz_offset_at(z, T("2040-11-04T05:59:59Z")), -4 * H);
  CHECK_INT(tz_offset_at(z, T("2040-11-04T06:00:00Z")), -5 * H);
  CHECK_INT(tz_from_local(z, 2040, 3, 11, 2, 30, 0), T("2040-03-11T03:30:00-04:00"));
  CHECK_INT(tz_from_local(z, 2040, 11, 4, 1, 30, 0), T("2040-11-04T01:30:00-04:00"));
  CHECK_INT(tz_offset_at(z, T("2300-07-01T00:00:00Z")), -4 * H);
  tz_free(z);
}

TEST(london_2026) {
  tz_t *z = load("Europe/London");
  if (!z) return;
  char buf[32];
  int64_t spring = T("2026-03-29T01:00:00Z"), autumn = T("2026-10-25T01:00:00Z");
  CHECK_INT(spring, 1774746000);
  CHECK_INT(autumn, 1792890000);
  CHECK_INT(tz_offset_at(z, spring - 1), 0);
  CHECK_INT(tz_offset_at(z, spring), H);
  CHECK_INT(tz_offset_at(z, autumn - 1), H);
  CHECK_INT(tz_offset_at(z, autumn), 0);
  CHECK_STR(fmt_local(z, spring, buf), "2026-03-29T02:00:00+01:00");
  CHECK_STR(fmt_local(z, autumn, buf), "2026-10-25T01:00:00+00:00");
  /* gap 01:00-02:00 GMT: 01:30 becomes 02:30 BST */
  CHECK_INT(tz_from_local(z, 2026, 3, 29, 1, 30, 0), T("2026-03-29T02:30:00+01:00"));
  /* overlap 01:00-02:00: the BST occurrence */
  CHECK_INT(tz_from_local(z, 2026, 10, 25, 1, 30, 0), T("2026-10-25T01:30:00+01:00"));
  CHECK_INT(tz_from_local(z, 2026, 10, 25, 2, 0, 0), T("2026-10-25T02:00:00+00:00"));
  /* summer midnight is 23:00 UTC */
  CHECK_INT(tz_local_day(z, T("2026-06-30T22:59:59Z")), days_from_civil(2026, 6, 30));
  CHECK_INT(tz_local_day(z, T("2026-06-30T23:00:00Z")), days_from_civil(2026, 7, 1));
  CHECK_INT(tz_local_day(z, T("2026-12-31T23:59:59Z")), days_from_civil(2026, 12, 31));
  CHECK_INT(tz_local_day(z, T("2027-01-01T00:00:00Z")), days_from_civil(2027, 1, 1));
  tz_free(z);
}

TEST(tz_load_errors) {
  char err[256];
  err[0] = '\0';
  CHECK(tz_load("../etc/passwd", err, sizeof err) == NULL);
  CHECK(strstr(err, "'../etc/passwd'") != NULL);
  CHECK(tz_load("/etc/localtime", err, sizeof err) == NULL);
  CHECK(strstr(err, "'/etc/localtime'") != NULL);
  CHECK(tz_load("America/../../etc/passwd", err, sizeof err) == NULL);
  CHECK(strstr(err, "invalid time zone name") != NULL);
  CHECK(tz_load("", err, sizeof err) == NULL);
  CHECK(tz_load("Nowhere/Atlantis", err, sizeof err) == NULL);
  CHECK(strstr(err, "unknown time zone 'Nowhere/Atlantis'") != NULL);
  CHECK(tz_load("America", err, sizeof err) == NULL); /* a directory */
  CHECK(strstr(err, "'America'") != NULL);
  CHECK(tz_load("Nowhere/Atlantis", NULL, 0) == NULL); /* no error buffer is fine */
  tz_free(NULL);
}

/* ---- synthetic TZif files ----------------------------------------------------------- */

typedef struct {
  unsigned char b[1024];
  size_t n;
} tzbuf_t;

static void put32(tzbuf_t *w, uint32_t v) {
  for (int i = 3; i >= 0; i--) w->b[w->n++] = (unsigned char)(v >> (i * 8));
}
static void put64(tzbuf_t *w, int64_t v) {
  put32(w, (uint32_t)((uint64_t)v >> 32));
  put32(w, (uint32_t)v);
}

/* Header plus data block; tsize 4 or 8. Types are (offset, isdst), abbreviations "ZZZ". */
static void put_block(tzbuf_t *w, char ver, int tsize, int ntrans, const int64_t *trans,
                      const unsigned char *idx, int ntypes, const int32_t *offs) {
  memcpy(w->b + w->n, "TZif", 4);
  w->n += 4;
  w->b[w->n++] = (unsigned char)ver;
  memset(w->b + w->n, 0, 15);
  w->n += 15;
  put32(w, 0), put32(w, 0), put32(w, 0);
  put32(w, (uint32_t)ntrans), put32(w, (uint32_t)ntypes), put32(w, 4);
  for (int i = 0; i < ntrans; i++) {
    if (tsize == 8) put64(w, trans[i]);
    else put32(w, (uint32_t)trans[i]);
  }
  for (int i = 0; i < ntrans; i++) w->b[w->n++] = idx[i];
  for (int i = 0; i < ntypes; i++) {
    put32(w, (uint32_t)offs[i]);
    w->b[w->n++] = i > 0; /* isdst */
    w->b[w->n++] = 0;     /* abbreviation index */
  }
  memcpy(w->b + w->n, "ZZZ", 4);
  w->n += 4;
}

/* A v2+ file: a minimal v1 block, then the 64-bit block and the footer line. */
static void make_v2(tzbuf_t *w, char ver, int ntrans, const int64_t *trans,
                    const unsigned char *idx, int ntypes, const int32_t *offs,
                    const char *footer) {
  w->n = 0;
  put_block(w, ver, 4, 0, NULL, NULL, 1, offs);
  put_block(w, ver, 8, ntrans, trans, idx, ntypes, offs);
  w->b[w->n++] = '\n';
  memcpy(w->b + w->n, footer, strlen(footer));
  w->n += strlen(footer);
  w->b[w->n++] = '\n';
}

static char tzdir[64];

static void write_zone(const char *name, const tzbuf_t *w) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", tzdir, name);
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (!f) return;
  CHECK_INT(fwrite(w->b, 1, w->n, f), w->n);
  fclose(f);
}

static const char *const synthetic_zones[] = {"V1", "Footer", "Fixed", "South", "Quoted",
                                              "AllDst", "Old64", "Bad", "Truncated"};

static void make_synthetic_zones(void) {
  tzbuf_t w;
  int32_t offs[2] = {3600, 7200};
  int64_t trans[2] = {T("2026-03-29T01:00:00Z"), T("2026-10-25T01:00:00Z")};
  unsigned char idx[2] = {1, 0};
  w.n = 0; /* version 1: 32-bit data only, no footer */
  put_block(&w, 0, 4, 2, trans, idx, 2, offs);
  write_zone("V1", &w);
  int32_t gmt[1] = {0};
  make_v2(&w, '2', 0, NULL, NULL, 1, gmt, "GMT0BST,M3.5.0/1,M10.5.0");
  write_zone("Footer", &w);
  int32_t cst[1] = {8 * H};
  make_v2(&w, '2', 0, NULL, NULL, 1, cst, "CST-8");
  write_zone("Fixed", &w);
  int32_t aest[1] = {10 * H};
  make_v2(&w, '2', 0, NULL, NULL, 1, aest, "AEST-10AEDT,M10.1.0,M4.1.0/3");
  write_zone("South", &w);
  int32_t irst[1] = {12600};
  make_v2(&w, '2', 0, NULL, NULL, 1, irst, "<+0330>-3:30");
  write_zone("Quoted", &w);
  int32_t edt[1] = {-4 * H};
  make_v2(&w, '3', 0, NULL, NULL, 1, edt, "EST5EDT4,0/0,J365/25");
  write_zone("AllDst", &w);
  /* a transition before 1901 only fits the 64-bit section */
  int32_t lmt[2] = {-17762, -5 * H};
  int64_t old[1] = {-5000000000LL};
  unsigned char one[1] = {1};
  make_v2(&w, '2', 1, old, one, 2, lmt, "EST5");
  write_zone("Old64", &w);
  memcpy(w.b, "NotATZifFileAtAll", 17);
  w.n = 17;
  write_zone("Bad", &w);
  make_v2(&w, '2', 1, old, one, 2, lmt, "EST5");
  w.n -= 20;
  write_zone("Truncated", &w);
}

static void remove_synthetic_zones(void) {
  char path[128];
  for (size_t i = 0; i < sizeof synthetic_zones / sizeof synthetic_zones[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", tzdir, synthetic_zones[i]);
    unlink(path);
  }
  rmdir(tzdir);
}

TEST(synthetic_tzif_files) {
  strcpy(tzdir, "/tmp/hearth-tz-XXXXXX");
  if (!mkdtemp(tzdir)) {
    CHECK(!"mkdtemp failed");
    return;
  }
  const char *saved = getenv("TZDIR");
  char *saved_copy = saved ? strdup(saved) : NULL;
  setenv("TZDIR", tzdir, 1);
  make_synthetic_zones();
  char err[256];
  tz_t *z;

  if ((z = load("V1"))) {
    CHECK_INT(tz_offset_at(z, T("2026-01-01T00:00:00Z")), 3600);
    CHECK_INT(tz_offset_at(z, T("2026-03-29T01:00:00Z")), 7200);
    CHECK_INT(tz_offset_at(z, T("2026-10-25T00:59:59Z")), 7200);
    CHECK_INT(tz_offset_at(z, T("2030-01-01T00:00:00Z")), 3600); /* last type persists */
    tz_free(z);
  }
  if ((z = load("Footer"))) { /* London's rule with no transitions at all */
    CHECK_INT(tz_offset_at(z, T("2026-03-29T00:59:59Z")), 0);
    CHECK_INT(tz_offset_at(z, T("2026-03-29T01:00:00Z")), H);
    CHECK_INT(tz_offset_at(z, T("2026-10-25T00:59:59Z")), H);
    CHECK_INT(tz_offset_at(z, T("2026-10-25T01:00:00Z")), 0);
    CHECK_INT(tz_from_local(z, 2026, 3, 29, 1, 30, 0), T("2026-03-29T02:30:00+01:00"));
    CHECK_INT(tz_from_local(z, 2026, 10, 25, 1, 30, 0), T("2026-10-25T01:30:00+01:00"));
    tz_free(z);
  }
  if ((z = load("Fixed"))) {
    CHECK_INT(tz_offset_at(z, T("2026-07-01T00:00:00Z")), 8 * H);
    CHECK_INT(tz_offset_at(z, T("1900-01-01T00:00:00Z")), 8 * H);
    tz_free(z);
  }
  if ((z = load("South"))) { /* Sydney: DST spans New Year */
    CHECK_INT(tz_offset_at(z, T("2026-01-15T00:00:00Z")), 11 * H);
    CHECK_INT(tz_offset_at(z, T("2026-04-04T15:59:59Z")), 11 * H);
    CHECK_INT(tz_offset_at(z, T("2026-04-04T16:00:00Z")), 10 * H);
    CHECK_INT(tz_offset_at(z, T("2026-10-03T15:59:59Z")), 10 * H);
    CHECK_INT(tz_offset_at(z, T("2026-10-03T16:00:00Z")), 11 * H);
    CHECK_INT(tz_offset_at(z, T("2026-12-31T13:30:00Z")), 11 * H);
    tz_free(z);
  }
  if ((z = load("Quoted"))) {
    CHECK_INT(tz_offset_at(z, T("2026-07-01T00:00:00Z")), 12600);
    tz_free(z);
  }
  if ((z = load("AllDst"))) { /* v3: DST all year */
    CHECK_INT(tz_offset_at(z, T("2026-01-01T04:00:00Z")), -4 * H);
    CHECK_INT(tz_offset_at(z, T("2026-07-01T00:00:00Z")), -4 * H);
    CHECK_INT(tz_offset_at(z, T("2026-12-31T23:59:59Z")), -4 * H);
    CHECK_INT(tz_offset_at(z, T("2028-12-31T12:00:00Z")), -4 * H);
    tz_free(z);
  }
  if ((z = load("Old64"))) {
    CHECK_INT(tz_offset_at(z, -5000000001LL), -17762);
    CHECK_INT(tz_offset_at(z, -5000000000LL), -5 * H);
    CHECK_INT(tz_offset_at(z, 0), -5 * H);
    char buf[32];
    /* LMT's seconds are dropped in RFC 3339 text, which still names the same instant */
    int64_t t = -5000000001LL, back = 0;
    CHECK_INT(rfc3339_parse(rfc3339_format(t, tz_offset_at(z, t), buf), &back, err,
                            sizeof err), 0);
    CHECK_INT(back, t);
    tz_free(z);
  }
  CHECK(tz_load("Bad", err, sizeof err) == NULL);
  CHECK(strstr(err, "time zone 'Bad'") != NULL && strstr(err, "not a valid TZif") != NULL);
  CHECK(tz_load("Truncated", err, sizeof err) == NULL);
  CHECK(strstr(err, "time zone 'Truncated'") != NULL);
  CHECK(tz_load("Missing", err, sizeof err) == NULL);
  CHECK(strstr(err, "unknown time zone 'Missing'") != NULL);
  /* UTC is built in when the database lacks it */
  if ((z = load("UTC"))) {
    CHECK_INT(tz_offset_at(z, 1795313700), 0);
    tz_free(z);
  }

  remove_synthetic_zones();
  if (saved_copy) setenv("TZDIR", saved_copy, 1);
  else unsetenv("TZDIR");
  free(saved_copy);
}

/* ---- RFC 3339 -------------------------------------------------------------------- */

TEST(rfc3339_valid) {
  char err[160];
  int64_t t = 0;
  CHECK_INT(rfc3339_parse("2026-11-22T10:15:00+08:00", &t, err, sizeof err), 0);
  CHECK_INT(t, 1795313700);
  CHECK_INT(rfc3339_parse("2026-11-22T02:15:00Z", &t, err, sizeof err), 0);
  CHECK_INT(t, 1795313700);
  CHECK_INT(rfc3339_parse("2026-11-22t02:15:00z", &t, err, sizeof err), 0);
  CHECK_INT(t, 1795313700);
  CHECK_INT(rfc3339_parse("2026-11-22 02:15:00Z", &t, err, sizeof err), 0);
  CHECK_INT(t, 1795313700);
  CHECK_INT(rfc3339_parse("2026-11-21T21:15:00-05:00", &t, err, sizeof err), 0);
  CHECK_INT(t, 1795313700);
  CHECK_INT(rfc3339_parse("2026-11-22T02:15:00.999999Z", &t, err, sizeof err), 0);
  CHECK_INT(t, 1795313700);
  CHECK_INT(rfc3339_parse("2026-11-22T10:15:00.5+08:00", &t, err, sizeof err), 0);
  CHECK_INT(t, 1795313700);
  CHECK_INT(rfc3339_parse("2026-11-22T02:15:00-00:00", &t, err, sizeof err), 0);
  CHECK_INT(t, 1795313700);
  CHECK_INT(rfc3339_parse("2026-11-22T15:45:00+13:30", &t, err, sizeof err), 0);
  CHECK_INT(t, 1795313700);
  CHECK_INT(rfc3339_parse("1970-01-01T00:00:00Z", &t, err, sizeof err), 0);
  CHECK_INT(t, 0);
  CHECK_INT(rfc3339_parse("1969-12-31T23:59:59Z", &t, err, sizeof err), 0);
  CHECK_INT(t, -1);
  CHECK_INT(rfc3339_parse("2024-02-29T12:00:00Z", &t, err, sizeof err), 0);
  CHECK_INT(t, 1709208000);
  CHECK_INT(rfc3339_parse("2000-02-29T00:00:00Z", &t, err, sizeof err), 0);
  CHECK_INT(rfc3339_parse("2026-12-31T23:59:59Z", &t, err, sizeof err), 0);
  CHECK_INT(rfc3339_parse("0001-01-01T00:00:00Z", &t, err, sizeof err), 0);
  CHECK_INT(t, -62135596800LL);
  CHECK_INT(rfc3339_parse("9999-12-31T23:59:59+23:59", &t, err, sizeof err), 0);
}

TEST(rfc3339_invalid) {
  static const char *const bad[] = {
      "2026-13-01",
      "",
      "2026-13-01T00:00:00Z",
      "2026-00-10T00:00:00Z",
      "2026-11-00T00:00:00Z",
      "2026-02-29T00:00:00Z", /* not a leap year */
      "2100-02-29T00:00:00Z", /* nor is 2100 */
      "2026-04-31T00:00:00Z",
      "2026-11-22T24:00:00Z",
      "2026-11-22T10:60:00Z",
      "2026-11-22T10:15:60Z", /* leap seconds are rejected */
      "2026-11-22T10:15Z",
      "2026-11-22T10:15:00",
      "2026-11-22T10:15:00+0800",
      "2026-11-22T10:15:00+08",
      "2026-11-22T10:15:00+24:00",
      "2026-11-22T10:15:00+08:60",
      "2026-11-22T10:15:00.Z",
      "2026-11-22X10:15:00Z",
      "2026-11-22T10:15:00Z ",
      " 2026-11-22T10:15:00Z",
      "26-11-22T10:15:00Z",
      "2026-1-22T10:15:00Z",
      "2026-11-22T10:15:00+08:00x",
      "2026-11-22T10:15:00ZZ",
      "+2026-11-22T10:15:00Z",
      "2026/11/22T10:15:00Z",
      "2026-11-22T1a:15:00Z",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char err[200] = "";
    int64_t t = 12345;
    int rc = rfc3339_parse(bad[i], &t, err, sizeof err);
    char want[96];
    snprintf(want, sizeof want, "not an RFC 3339 time: '%s'", bad[i]);
    if (rc != -1 || t != 12345 || strncmp(err, want, strlen(want)) != 0) {
      fprintf(stderr, "  accepted or bad message for '%s': rc=%d err=%s\n", bad[i], rc, err);
      CHECK(0);
    }
  }
  char err[200];
  int64_t t;
  CHECK_INT(rfc3339_parse("2026-02-29T00:00:00Z", &t, err, sizeof err), -1);
  CHECK(strstr(err, "day 29 out of range for 2026-02") != NULL);
  CHECK_INT(rfc3339_parse(NULL, &t, err, sizeof err), -1);
  CHECK_INT(rfc3339_parse("2026-13-01", &t, NULL, 0), -1);
}

TEST(rfc3339_format_cases) {
  char buf[32];
  CHECK_STR(rfc3339_format(1795313700, 8 * H, buf), "2026-11-22T10:15:00+08:00");
  CHECK_STR(rfc3339_format(1795313700, 0, buf), "2026-11-22T02:15:00+00:00");
  CHECK_STR(rfc3339_format(1795313700, -5 * H, buf), "2026-11-21T21:15:00-05:00");
  CHECK_STR(rfc3339_format(1795313700, 5 * H + 45 * 60, buf), "2026-11-22T08:00:00+05:45");
  CHECK_STR(rfc3339_format(1795313700, -(3 * H + 30 * 60), buf), "2026-11-21T22:45:00-03:30");
  CHECK_STR(rfc3339_format(0, 0, buf), "1970-01-01T00:00:00+00:00");
  CHECK_STR(rfc3339_format(-1, 0, buf), "1969-12-31T23:59:59+00:00");
  CHECK_STR(rfc3339_format(1709208000, 0, buf), "2024-02-29T12:00:00+00:00");
  CHECK(rfc3339_format(INT64_MAX, 0, buf) == buf);
  CHECK_INT(strlen(buf), 25);
  CHECK(rfc3339_format(INT64_MIN, -99999, buf) == buf);
  CHECK_INT(strlen(buf), 25);
  /* round trip over a spread of instants and offsets */
  int bad = 0;
  for (int64_t t = -5000000000LL; t < 5000000000LL; t += 12345677) {
    for (int off = -12 * H; off <= 14 * H; off += 45 * 60) {
      int64_t back = 0;
      if (rfc3339_parse(rfc3339_format(t, off, buf), &back, NULL, 0) < 0 || back != t) bad++;
    }
  }
  CHECK_INT(bad, 0);
}

/* ---- durations and wall clock ---------------------------------------------------- */

TEST(duration_valid) {
  static const struct {
    const char *s;
    int64_t secs;
  } ok[] = {
      {"30s", 30},          {"15m", 900},         {"2h", 7200},
      {"3d", 259200},       {"2w", 1209600},      {"1d12h", 129600},
      {"0s", 0},            {"1w2d3h4m5s", 788645}, {"90m", 5400},
      {"007s", 7},          {"1h30s", 3630},      {"15250284452471w", 15250284452471LL * 604800},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    char err[200] = "";
    int64_t secs = -1;
    int rc = duration_parse(ok[i].s, &secs, err, sizeof err);
    if (rc != 0 || secs != ok[i].secs) {
      fprintf(stderr, "  duration '%s': rc=%d secs=%lld err=%s\n", ok[i].s, rc,
              (long long)secs, err);
      CHECK(0);
    }
  }
}

TEST(duration_invalid) {
  static const char *const bad[] = {"",     "3",     "d",      "3x",   "1h1d", "1d1d",
                                    "-3d",  " 3d",   "3d ",    "+3d",  "3 d",  "3D",
                                    "1.5h", "1d12",  "h1",     "3dd",  "1s1m", "0x10s",
                                    "99999999999999999999s",  "15250284452472w",
                                    "9223372036854775807s1s"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char err[200] = "";
    int64_t secs = 42;
    int rc = duration_parse(bad[i], &secs, err, sizeof err);
    char want[64];
    snprintf(want, sizeof want, "bad duration '%s'", bad[i]);
    if (rc != -1 || secs != 42 || strncmp(err, want, strlen(want)) != 0) {
      fprintf(stderr, "  duration '%s' accepted or bad message: rc=%d err=%s\n", bad[i], rc,
              err);
      CHECK(0);
    }
  }
  char err[200];
  int64_t secs;
  CHECK_INT(duration_parse("3x", &secs, err, sizeof err), -1);
  CHECK_STR(err, "bad duration '3x': expected a number followed by s, m, h, d or w "
                 "(e.g. 30s, 15m, 2h, 3d, 2w, 1d12h)");
  CHECK_INT(duration_parse("1h1d", &secs, err, sizeof err), -1);
  CHECK(strstr(err, "largest to smallest") != NULL);
  CHECK_INT(duration_parse("99999999999999999999s", &secs, err, sizeof err), -1);
  CHECK(strstr(err, "too large") != NULL);
  CHECK_INT(duration_parse(NULL, &secs, err, sizeof err), -1);
}

TEST(wallclock) {
  char err[160];
  int m = -1;
  CHECK_INT(wallclock_parse("00:00", &m, err, sizeof err), 0);
  CHECK_INT(m, 0);
  CHECK_INT(wallclock_parse("09:30", &m, err, sizeof err), 0);
  CHECK_INT(m, 570);
  CHECK_INT(wallclock_parse("23:59", &m, err, sizeof err), 0);
  CHECK_INT(m, 1439);
  static const char *const bad[] = {"24:00", "12:60", "9:30", "12:3", "", "12:30 ", "ab:cd",
                                    "12-30", "-1:30", "12:30:00"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    m = -1;
    CHECK_INT(wallclock_parse(bad[i], &m, err, sizeof err), -1);
    CHECK_INT(m, -1);
    CHECK(strstr(err, "bad time of day") != NULL);
  }
  CHECK_INT(wallclock_parse("25:00", &m, err, sizeof err), -1);
  CHECK_STR(err, "bad time of day '25:00': expected HH:MM between 00:00 and 23:59");
}

TEST(date_parse_strict) {
  int64_t day = -1;
  CHECK_INT(date_parse("1970-01-01", 10, &day), 0);
  CHECK_INT(day, 0);
  CHECK_INT(date_parse("2026-11-30", 10, &day), 0);
  CHECK_INT(day, days_from_civil(2026, 11, 30));
  CHECK_INT(date_parse("2024-02-29", 10, &day), 0); /* a leap day */
  const char *bad[] = {"2026-02-29", "2026-02-30", "2026-13-01", "2026-00-10", "2026-1-101", "2026/11/30",
                       "2026-11-3x", "20261130xx", "2026-11-30T"};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) CHECK_INT(date_parse(bad[k], strlen(bad[k]), &day), -1);
  CHECK_INT(date_parse("2026-11-30&to=x", 10, &day), 0); /* exactly len bytes are read */
}

int main(void) {
  RUN(days_from_civil_known_dates);
  RUN(days_from_civil_normalises);
  RUN(civil_round_trip);
  RUN(utc_zone);
  RUN(shanghai_fixed_offset);
  RUN(new_york_spring_forward_2026);
  RUN(new_york_fall_back_2026);
  RUN(new_york_round_trip_2026);
  RUN(new_york_footer_rule_2040);
  RUN(london_2026);
  RUN(tz_load_errors);
  RUN(synthetic_tzif_files);
  RUN(rfc3339_valid);
  RUN(rfc3339_invalid);
  RUN(rfc3339_format_cases);
  RUN(duration_valid);
  RUN(duration_invalid);
  RUN(wallclock);
  RUN(date_parse_strict);
  return UNIT_DONE();
}
