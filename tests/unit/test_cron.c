/* test_cron: unit tests for engine/cron.c — parsing (fields, names, steps, shorthands,
 * errors) and cron_next in UTC, Asia/Shanghai, America/New_York, Europe/London and
 * Australia/Lord_Howe (30-minute DST), checked against explicit slots and a brute-force
 * reference around the 2026 transitions. */
#include "cron.h"
#include "unit.h"

#include <stdlib.h>

#define H 3600
#define DAY 86400

/* Instant of an RFC 3339 string known to be valid. */
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

static cron_t parse_ok(const char *spec) {
  cron_t c;
  char err[256] = "";
  memset(&c, 0, sizeof c);
  if (cron_parse(spec, &c, err, sizeof err) != 0) {
    fprintf(stderr, "cron_parse(%s): %s\n", spec, err);
    unit_failed_checks++;
  }
  return c;
}

/* Successive slots of spec after `after`, compared with the expected RFC 3339 instants
 * (NULL-terminated; the string "none" expects -1). */
static void expect_slots(const char *spec, const tz_t *z, const char *after,
                         const char *const *want) {
  cron_t c = parse_ok(spec);
  int64_t t = T(after);
  for (int i = 0; want[i]; i++) {
    int64_t next = cron_next(&c, z, t);
    int64_t exp = strcmp(want[i], "none") == 0 ? -1 : T(want[i]);
    if (next != exp) {
      char got[32];
      fprintf(stderr, "  '%s' slot %d after %s: got %s, expected %s\n", spec, i, after,
              next == -1 ? "none" : rfc3339_format(next, tz_offset_at(z, next), got), want[i]);
      unit_failed_checks++;
      return;
    }
    if (next == -1) return;
    t = next;
  }
}

#define SLOTS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- parsing ------------------------------------------------------------------------- */

TEST(parse_star_and_values) {
  cron_t c = parse_ok("* * * * *");
  CHECK(c.minute == ((uint64_t)1 << 60) - 1);
  CHECK_INT(c.hour, (1u << 24) - 1);
  CHECK_INT(c.mday, 0xfffffffeu);
  CHECK_INT(c.month, 0x1ffe);
  CHECK_INT(c.wday, 0x7f);
  CHECK(c.mday_star && c.wday_star);
  c = parse_ok("5 9 1 6 3");
  CHECK(c.minute == (uint64_t)1 << 5);
  CHECK_INT(c.hour, 1u << 9);
  CHECK_INT(c.mday, 1u << 1);
  CHECK_INT(c.month, 1u << 6);
  CHECK_INT(c.wday, 1u << 3);
  CHECK(!c.mday_star && !c.wday_star);
  c = parse_ok("0,30 9-17 1,15 1-3,12 1-5");
  CHECK(c.minute == ((uint64_t)1 | (uint64_t)1 << 30));
  CHECK_INT(c.hour, 0x3fe00);
  CHECK_INT(c.mday, (1u << 1) | (1u << 15));
  CHECK_INT(c.month, 0x100e | 0);
  CHECK_INT(c.wday, 0x3e);
  c = parse_ok("  59\t23  31 12 7 "); /* any whitespace; 7 = Sunday */
  CHECK(c.minute == (uint64_t)1 << 59);
  CHECK_INT(c.wday, 1);
  c = parse_ok("0 0 1-31 * 0-7");
  CHECK(c.mday_star && c.wday_star); /* every value allowed: unrestricted */
  CHECK_INT(c.wday, 0x7f);
  c = parse_ok("0 0 * * 5-7");
  CHECK_INT(c.wday, 0x61);
}

TEST(parse_names) {
  cron_t c = parse_ok("0 0 * jan,Jul,DEC mon-FRI");
  CHECK_INT(c.month, (1u << 1) | (1u << 7) | (1u << 12));
  CHECK_INT(c.wday, 0x3e);
  c = parse_ok("0 0 * feb-apr sun,sat");
  CHECK_INT(c.month, 0x1c);
  CHECK_INT(c.wday, 0x41);
  c = parse_ok("0 0 * 3-may 2-thu");
  CHECK_INT(c.month, 0x38);
  CHECK_INT(c.wday, 0x1c);
  c = parse_ok("0 0 * */3 sun/2");
  CHECK_INT(c.month, (1u << 1) | (1u << 4) | (1u << 7) | (1u << 10));
  CHECK_INT(c.wday, (1u << 0) | (1u << 2) | (1u << 4) | (1u << 6));
}

TEST(parse_steps) {
  cron_t c = parse_ok("*/15 */6 */10 */4 */2");
  CHECK(c.minute == ((uint64_t)1 | (uint64_t)1 << 15 | (uint64_t)1 << 30 | (uint64_t)1 << 45));
  CHECK_INT(c.hour, (1u << 0) | (1u << 6) | (1u << 12) | (1u << 18));
  CHECK_INT(c.mday, (1u << 1) | (1u << 11) | (1u << 21) | (1u << 31));
  CHECK_INT(c.month, (1u << 1) | (1u << 5) | (1u << 9));
  CHECK_INT(c.wday, (1u << 0) | (1u << 2) | (1u << 4) | (1u << 6)); /* 0,2,4,6 */
  CHECK(!c.mday_star && !c.wday_star);
  c = parse_ok("10-30/10 5/6 * * *");
  CHECK(c.minute == ((uint64_t)1 << 10 | (uint64_t)1 << 20 | (uint64_t)1 << 30));
  CHECK_INT(c.hour, (1u << 5) | (1u << 11) | (1u << 17) | (1u << 23)); /* 5/6 = 5-23/6 */
  c = parse_ok("*/1 * */1 * *");
  CHECK(c.minute == ((uint64_t)1 << 60) - 1);
  CHECK(c.mday_star);
  c = parse_ok("0 0 * * */7"); /* 0 and 7: Sunday */
  CHECK_INT(c.wday, 1);
}

TEST(parse_shorthands) {
  static const struct {
    const char *at, *spec;
  } cases[] = {
      {"@hourly", "0 * * * *"},   {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
      {"@weekly", "0 0 * * 0"},   {"@monthly", "0 0 1 * *"},  {"@yearly", "0 0 1 1 *"},
      {"@annually", "0 0 1 1 *"}, {" @Daily ", "0 0 * * *"},  {"@HOURLY", "0 * * * *"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cron_t a = parse_ok(cases[i].at), b = parse_ok(cases[i].spec);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
  }
}

TEST(parse_errors) {
  static const struct {
    const char *spec, *msg;
  } cases[] = {
      {"61 * * * *", "cron '61 * * * *': minute field: value 61 out of range 0-59"},
      {"* 24 * * *", "cron '* 24 * * *': hour field: value 24 out of range 0-23"},
      {"* * 0 * *", "cron '* * 0 * *': day-of-month field: value 0 out of range 1-31"},
      {"* * 32 * *", "cron '* * 32 * *': day-of-month field: value 32 out of range 1-31"},
      {"* * * 13 *", "cron '* * * 13 *': month field: value 13 out of range 1-12"},
      {"* * * 0 *", "cron '* * * 0 *': month field: value 0 out of range 1-12"},
      {"* * * * 8", "cron '* * * * 8': day-of-week field: value 8 out of range 0-7"},
      {"99999999999 * * * *",
       "cron '99999999999 * * * *': minute field: value 99999999999 out of range 0-59"},
      {"* * * foo *", "cron '* * * foo *': month field: expected a number 1-12 or a name "
                      "jan-dec, got 'foo'"},
      {"* * * * sunday", "cron '* * * * sunday': day-of-week field: expected a number 0-7 "
                         "or a name sun-sat, got 'sunday'"},
      {"x * * * *", "cron 'x * * * *': minute field: expected a number 0-59, got 'x'"},
      {"mon * * * *", "cron 'mon * * * *': minute field: expected a number 0-59, got 'mon'"},
      {"*/0 * * * *", "cron '*/0 * * * *': minute field: step 0 out of range 1-59"},
      {"*/60 * * * *", "cron '*/60 * * * *': minute field: step 60 out of range 1-59"},
      {"5-2 * * * *", "cron '5-2 * * * *': minute field: range 5-2 goes backwards"},
      {"* * * * fri-mon", "cron '* * * * fri-mon': day-of-week field: range fri-mon goes "
                          "backwards"},
      {"1,,2 * * * *", "cron '1,,2 * * * *': minute field: empty list item"},
      {"1, * * * *", "cron '1, * * * *': minute field: empty list item"},
      {",1 * * * *", "cron ',1 * * * *': minute field: empty list item"},
      {"1-2-3 * * * *", "cron '1-2-3 * * * *': minute field: bad item '1-2-3' (expected *, "
                        "N or N-M, optionally /STEP)"},
      {"*/ * * * *", "cron '*/ * * * *': minute field: bad step in '*/' (expected /N)"},
      {"1/2/3 * * * *", "cron '1/2/3 * * * *': minute field: bad step in '1/2/3' (expected "
                        "/N)"},
      {"** * * * *", "cron '** * * * *': minute field: bad item '**' (expected *, N or N-M, "
                     "optionally /STEP)"},
      {"1- * * * *", "cron '1- * * * *': minute field: expected a number 0-59, got ''"},
      {"-1 * * * *", "cron '-1 * * * *': minute field: expected a number 0-59, got '-'"},
      {"* * * *", "cron '* * * *': expected 5 fields (minute hour day-of-month month "
                  "day-of-week), got 4"},
      {"* * * * * *", "cron '* * * * * *': expected 5 fields (minute hour day-of-month month "
                      "day-of-week), got more than 5"},
      {"", "cron '': expected 5 fields (minute hour day-of-month month day-of-week), got 0"},
      {"@reboot", "cron '@reboot': unknown shorthand (expected @hourly, @daily, @weekly, "
                  "@monthly or @yearly)"},
      {"@daily 0", "cron '@daily 0': unknown shorthand (expected @hourly, @daily, @weekly, "
                   "@monthly or @yearly)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char err[256] = "";
    cron_t c;
    memset(&c, 0x5a, sizeof c);
    cron_t before = c;
    int rc = cron_parse(cases[i].spec, &c, err, sizeof err);
    CHECK_INT(rc, -1);
    CHECK_STR(err, cases[i].msg);
    CHECK(memcmp(&c, &before, sizeof c) == 0); /* untouched on error */
  }
  cron_t c;
  CHECK_INT(cron_parse("61 * * * *", &c, NULL, 0), -1);
  CHECK_INT(cron_parse(NULL, &c, NULL, 0), -1);
}

/* ---- next slot ----------------------------------------------------------------------- */

TEST(next_utc_basics) {
  tz_t *z = load("UTC");
  if (!z) return;
  /* strictly after: a slot equal to `after` is skipped */
  expect_slots("0 9 * * 1-5", z, "2026-11-20T09:00:00Z",
               SLOTS("2026-11-23T09:00:00Z", "2026-11-24T09:00:00Z"));
  expect_slots("0 9 * * 1-5", z, "2026-11-20T08:59:59Z", SLOTS("2026-11-20T09:00:00Z"));
  expect_slots("* * * * *", z, "2026-11-20T08:59:30Z",
               SLOTS("2026-11-20T09:00:00Z", "2026-11-20T09:01:00Z"));
  expect_slots("59 23 31 12 *", z, "2026-06-01T00:00:00Z",
               SLOTS("2026-12-31T23:59:00Z", "2027-12-31T23:59:00Z"));
  expect_slots("@yearly", z, "2026-06-01T00:00:00Z",
               SLOTS("2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"));
  expect_slots("@monthly", z, "2026-12-15T00:00:00Z", SLOTS("2027-01-01T00:00:00Z"));
  expect_slots("*/20 */12 * * *", z, "2026-11-20T12:40:00Z",
               SLOTS("2026-11-21T00:00:00Z", "2026-11-21T00:20:00Z", "2026-11-21T00:40:00Z",
                     "2026-11-21T12:00:00Z"));
  expect_slots("0 0 1 1 *", z, "1969-06-01T00:00:00Z", SLOTS("1970-01-01T00:00:00Z"));
  expect_slots("30 12 * * *", z, "1901-03-01T00:00:00Z", SLOTS("1901-03-01T12:30:00Z"));
  tz_free(z);
}

TEST(next_shanghai) {
  tz_t *z = load("Asia/Shanghai");
  if (!z) return;
  expect_slots("30 8 * * *", z, "2026-11-22T08:00:00+08:00",
               SLOTS("2026-11-22T08:30:00+08:00", "2026-11-23T08:30:00+08:00"));
  /* local midnight is 16:00 UTC */
  expect_slots("@daily", z, "2026-11-21T16:00:00Z",
               SLOTS("2026-11-22T16:00:00Z", "2026-11-23T16:00:00Z"));
  expect_slots("@daily", z, "2026-11-21T15:59:59Z", SLOTS("2026-11-21T16:00:00Z"));
  /* Monday in Shanghai is still Sunday in UTC */
  expect_slots("0 1 * * mon", z, "2026-11-22T00:00:00Z", SLOTS("2026-11-22T17:00:00Z"));
  tz_free(z);
}

TEST(next_skips_months_and_rare_days) {
  tz_t *z = load("UTC");
  if (!z) return;
  expect_slots("0 0 29 2 *", z, "2026-01-01T00:00:00Z",
               SLOTS("2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"));
  /* 2100 is not a leap year: 2096 -> 2104 is more than five years */
  expect_slots("0 0 29 2 *", z, "2096-03-01T00:00:00Z", SLOTS("none"));
  expect_slots("0 0 30 2 *", z, "2026-01-01T00:00:00Z", SLOTS("none"));
  expect_slots("0 0 31 4,6,9,11 *", z, "2026-01-01T00:00:00Z", SLOTS("none"));
  expect_slots("0 0 31 * *", z, "2026-04-01T00:00:00Z",
               SLOTS("2026-05-31T00:00:00Z", "2026-07-31T00:00:00Z", "2026-08-31T00:00:00Z"));
  expect_slots("15 10 13 * fri", z, "2026-01-01T00:00:00Z", /* 13th or Friday */
               SLOTS("2026-01-02T10:15:00Z", "2026-01-09T10:15:00Z", "2026-01-13T10:15:00Z",
                     "2026-01-16T10:15:00Z"));
  /* successive leap days, then nothing within five years of 2096 */
  cron_t c = parse_ok("0 0 29 2 *");
  int64_t t = T("2000-01-01T00:00:00Z");
  for (int i = 0; i < 25; i++) t = cron_next(&c, z, t);
  CHECK_INT(t, T("2096-02-29T00:00:00Z"));
  CHECK_INT(cron_next(&c, z, t), -1);
  cron_t never = parse_ok("0 0 31 2 *");
  CHECK_INT(cron_next(&never, z, 0), -1);
  CHECK_INT(cron_next(&c, z, INT64_MAX), -1);
  CHECK_INT(cron_next(&c, z, INT64_MIN), -1);
  tz_free(z);
}

TEST(next_both_day_fields) {
  tz_t *z = load("UTC");
  if (!z) return;
  /* 2026-11-01 is a Sunday */
  expect_slots("0 12 1 * 1", z, "2026-10-31T12:00:00Z", /* the 1st or a Monday */
               SLOTS("2026-11-01T12:00:00Z", "2026-11-02T12:00:00Z", "2026-11-09T12:00:00Z",
                     "2026-11-16T12:00:00Z", "2026-11-23T12:00:00Z", "2026-11-30T12:00:00Z",
                     "2026-12-01T12:00:00Z", "2026-12-07T12:00:00Z"));
  expect_slots("0 12 * * 1", z, "2026-10-31T12:00:00Z",
               SLOTS("2026-11-02T12:00:00Z", "2026-11-09T12:00:00Z"));
  expect_slots("0 12 1 * *", z, "2026-10-31T12:00:00Z",
               SLOTS("2026-11-01T12:00:00Z", "2026-12-01T12:00:00Z"));
  /* a field allowing every value is unrestricted: only the other one counts */
  expect_slots("0 12 1-31 * mon", z, "2026-10-31T12:00:00Z",
               SLOTS("2026-11-02T12:00:00Z", "2026-11-09T12:00:00Z"));
  expect_slots("0 12 1 * 0-6", z, "2026-10-31T12:00:00Z",
               SLOTS("2026-11-01T12:00:00Z", "2026-12-01T12:00:00Z"));
  /* a stepped field is restricted: odd days or Mondays */
  expect_slots("0 12 */2 * 1", z, "2026-10-31T12:00:00Z",
               SLOTS("2026-11-01T12:00:00Z", "2026-11-02T12:00:00Z", "2026-11-03T12:00:00Z",
                     "2026-11-05T12:00:00Z"));
  tz_free(z);
}

TEST(next_names) {
  tz_t *z = load("UTC");
  if (!z) return;
  expect_slots("0 6 * dec sun", z, "2026-11-01T00:00:00Z",
               SLOTS("2026-12-06T06:00:00Z", "2026-12-13T06:00:00Z", "2026-12-20T06:00:00Z",
                     "2026-12-27T06:00:00Z", "2027-12-05T06:00:00Z"));
  expect_slots("0 6 * * 7", z, "2026-11-01T06:00:00Z", SLOTS("2026-11-08T06:00:00Z"));
  expect_slots("30 18 * Feb-Mar Sat", z, "2026-03-28T18:30:00Z",
               SLOTS("2027-02-06T18:30:00Z"));
  tz_free(z);
}

TEST(next_new_york_gap) {
  tz_t *z = load("America/New_York");
  if (!z) return;
  /* 02:30 does not exist on 2026-03-08: it runs at 03:30 EDT, once */
  expect_slots("30 2 * * *", z, "2026-03-07T12:00:00Z",
               SLOTS("2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00",
                     "2026-03-10T02:30:00-04:00"));
  /* 02:30 (moved) and 03:30 name the same instant: one slot, not two */
  expect_slots("30 2,3 * * *", z, "2026-03-08T00:00:00-05:00",
               SLOTS("2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00",
                     "2026-03-09T03:30:00-04:00"));
  expect_slots("@hourly", z, "2026-03-08T01:30:00-05:00",
               SLOTS("2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"));
  /* asked from inside the moved hour, the moved 02:30 slot is still ahead */
  expect_slots("30 2 * * *", z, "2026-03-08T03:10:00-04:00",
               SLOTS("2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00"));
  expect_slots("30 2 * * *", z, "2026-03-08T03:30:00-04:00",
               SLOTS("2026-03-09T02:30:00-04:00"));
  expect_slots("0 0 * * *", z, "2026-03-07T12:00:00Z",
               SLOTS("2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00"));
  tz_free(z);
}

TEST(next_new_york_overlap) {
  tz_t *z = load("America/New_York");
  if (!z) return;
  /* 01:30 happens twice on 2026-11-01: the slot runs at the first (EDT) one only */
  expect_slots("30 1 * * *", z, "2026-11-01T00:00:00-04:00",
               SLOTS("2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"));
  expect_slots("*/30 1-2 * * *", z, "2026-11-01T00:00:00-04:00",
               SLOTS("2026-11-01T01:00:00-04:00", "2026-11-01T01:30:00-04:00",
                     "2026-11-01T02:00:00-05:00", "2026-11-01T02:30:00-05:00",
                     "2026-11-02T01:00:00-05:00"));
  /* asked from the second 01:xx hour, the next slot is 02:00 EST */
  expect_slots("*/15 * * * *", z, "2026-11-01T01:10:00-05:00",
               SLOTS("2026-11-01T02:00:00-05:00", "2026-11-01T02:15:00-05:00"));
  expect_slots("0 0 * * *", z, "2026-10-31T12:00:00Z",
               SLOTS("2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"));
  tz_free(z);
}

TEST(next_london_and_lord_howe) {
  tz_t *z = load("Europe/London");
  if (z) {
    expect_slots("30 1 * * sun", z, "2026-03-28T00:00:00Z",
                 SLOTS("2026-03-29T02:30:00+01:00", "2026-04-05T01:30:00+01:00"));
    expect_slots("30 1 * * sun", z, "2026-10-24T00:00:00Z",
                 SLOTS("2026-10-25T01:30:00+01:00", "2026-11-01T01:30:00+00:00"));
    tz_free(z);
  }
  /* a 30-minute gap, 02:00-02:30 on 2026-10-04: moved slots interleave with real ones */
  z = load("Australia/Lord_Howe");
  if (z) {
    expect_slots("0,20,40 2 * * *", z, "2026-10-04T01:30:00+10:30",
                 SLOTS("2026-10-04T02:30:00+11:00", "2026-10-04T02:40:00+11:00",
                       "2026-10-04T02:50:00+11:00", "2026-10-05T02:00:00+11:00"));
    tz_free(z);
  }
}

/* ---- brute-force reference --------------------------------------------------------- */

static int ref_day_matches(const cron_t *c, int64_t days, int mday) {
  int wday = (int)(((days % 7) + 11) % 7);
  int dom = (c->mday >> mday) & 1, dow = (c->wday >> wday) & 1;
  return (c->mday_star || c->wday_star) ? (dom && dow) : (dom || dow);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Every slot instant from local days [d0, d1): each matching wall minute through
 * tz_from_local, sorted, duplicates removed. Caller frees. */
static int64_t *ref_slots(const cron_t *c, const tz_t *z, int64_t d0, int64_t d1,
                          size_t *count) {
  size_t n = 0, cap = 1024;
  int64_t *v = malloc(cap * sizeof *v);
  for (int64_t day = d0; day < d1 && v; day++) {
    int64_t y;
    int mo, d;
    civil_from_days(day, &y, &mo, &d);
    if (!((c->month >> mo) & 1) || !ref_day_matches(c, day, d)) continue;
    for (int h = 0; h < 24; h++) {
      for (int mi = 0; mi < 60; mi++) {
        if (!((c->hour >> h) & 1) || !((c->minute >> mi) & 1)) continue;
        if (n == cap) {
          int64_t *nv = realloc(v, (cap *= 2) * sizeof *v);
          if (!nv) {
            free(v);
            return NULL;
          }
          v = nv;
        }
        v[n++] = tz_from_local(z, (int)y, mo, d, h, mi, 0);
      }
    }
  }
  if (!v) return NULL;
  qsort(v, n, sizeof *v, cmp_i64);
  size_t u = 0;
  for (size_t i = 0; i < n; i++)
    if (u == 0 || v[i] != v[u - 1]) v[u++] = v[i];
  *count = u;
  return v;
}

/* 1000 successive slots of every-seventh-minute from `start`: strictly increasing and
 * equal to the reference list. */
static void iterate_every_7(const char *zone, const char *start) {
  tz_t *z = load(zone);
  if (!z) return;
  cron_t c = parse_ok("*/7 * * * *");
  int64_t t0 = T(start), t = t0;
  size_t n = 0;
  int64_t *ref = ref_slots(&c, z, tz_local_day(z, t0) - 1, tz_local_day(z, t0) + 12, &n);
  size_t i = 0;
  while (i < n && ref[i] <= t0) i++;
  CHECK(ref != NULL && n - i >= 1000);
  int bad_order = 0, bad_ref = 0;
  for (int k = 0; k < 1000; k++) {
    int64_t next = cron_next(&c, z, t);
    if (next <= t) bad_order++;
    if (ref && i + (size_t)k < n && next != ref[i + (size_t)k]) bad_ref++;
    t = next;
  }
  CHECK_INT(bad_order, 0);
  CHECK_INT(bad_ref, 0);
  free(ref);
  tz_free(z);
}

TEST(iterate_1000_every_7_minutes) {
  iterate_every_7("America/New_York", "2026-03-06T00:00:00Z"); /* across the gap */
  iterate_every_7("America/New_York", "2026-10-30T00:00:00Z"); /* across the overlap */
  iterate_every_7("Asia/Shanghai", "2026-11-20T00:00:00Z");
  iterate_every_7("Australia/Lord_Howe", "2026-10-02T00:00:00Z");
}

/* For many instants around each transition, cron_next equals the first reference slot
 * strictly after it. */
TEST(next_matches_reference_near_transitions) {
  static const char *const specs[] = {"*/7 * * * *", "30 2 * * *",   "30 1 * * *",
                                      "0,20,40 2 * * *", "*/20 1-3 * * *", "0 0 * * *",
                                      "59 23 * * *", "15 */2 * * *", "45 1 * * 0"};
  static const struct {
    const char *zone, *when;
  } around[] = {
      {"America/New_York", "2026-03-08T07:00:00Z"}, {"America/New_York", "2026-11-01T06:00:00Z"},
      {"Europe/London", "2026-03-29T01:00:00Z"},    {"Europe/London", "2026-10-25T01:00:00Z"},
      {"Australia/Lord_Howe", "2026-10-03T15:30:00Z"},
      {"Australia/Lord_Howe", "2026-04-04T15:00:00Z"}, {"Asia/Shanghai", "2026-11-22T00:00:00Z"},
  };
  int mismatches = 0, checked = 0;
  for (size_t a = 0; a < sizeof around / sizeof around[0]; a++) {
    tz_t *z = load(around[a].zone);
    if (!z) continue;
    int64_t tr = T(around[a].when), day = tz_local_day(z, tr);
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
      cron_t c = parse_ok(specs[s]);
      size_t n = 0;
      int64_t *ref = ref_slots(&c, z, day - 10, day + 10, &n);
      if (!ref) continue;
      for (int64_t after = tr - 2 * DAY; after <= tr + 2 * DAY; after += 311) {
        size_t i = 0;
        while (i < n && ref[i] <= after) i++;
        int64_t got = cron_next(&c, z, after);
        checked++;
        if (i == n || got != ref[i]) {
          if (mismatches++ < 5)
            fprintf(stderr, "  %s '%s' after %lld: got %lld want %lld\n", around[a].zone,
                    specs[s], (long long)after, (long long)got,
                    (long long)(i < n ? ref[i] : -1));
        }
      }
      free(ref);
    }
    tz_free(z);
  }
  CHECK_INT(mismatches, 0);
  CHECK(checked > 5000);
}

int main(void) {
  RUN(parse_star_and_values);
  RUN(parse_names);
  RUN(parse_steps);
  RUN(parse_shorthands);
  RUN(parse_errors);
  RUN(next_utc_basics);
  RUN(next_shanghai);
  RUN(next_skips_months_and_rare_days);
  RUN(next_both_day_fields);
  RUN(next_names);
  RUN(next_new_york_gap);
  RUN(next_new_york_overlap);
  RUN(next_london_and_lord_howe);
  RUN(iterate_1000_every_7_minutes);
  RUN(next_matches_reference_near_transitions);
  return UNIT_DONE();
}
