/* test_invariants: invariants.c on its own — declarations refused with the option named,
 * each built-in rule's judgement, her zone's day and ISO week, the tallies kept in the
 * store across a close and reopen (a restart) and rolled back with a savepoint, and old
 * tallies dropped. The unsubscribed branch of `reachable` is tested here: restraint.c
 * never lets a marketing send to an unsubscribed member be queued, so no script reaches
 * it. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "invariants.h"
#include "unit.h"
#include "util.h"

static tz_t *zone(const char *name) {
  char err[200];
  tz_t *tz = tz_load(name, err, sizeof err);
  if (!tz) fprintf(stderr, "%s\n", err);
  return tz;
}

static int64_t at(const char *rfc3339) {
  int64_t t = 0;
  char err[200];
  CHECK(rfc3339_parse(rfc3339, &t, err, sizeof err) == 0);
  return t;
}

static int add(invariants_t *inv, const char *name, const char *decl_text) {
  json_t *decl = json_loads(decl_text, 0, NULL);
  char err[300];
  int rc = invariants_add(inv, name, "test", decl, -1, err, sizeof err);
  json_decref(decl);
  return rc;
}

static const char *refusal(invariants_t *inv, const char *decl_text) {
  static char err[300];
  json_t *decl = json_loads(decl_text, 0, NULL);
  int rc = invariants_add(inv, "x", "test", decl, -1, err, sizeof err);
  json_decref(decl);
  return rc < 0 ? err : "accepted";
}

TEST(declarations_refused_name_the_option) {
  invariants_t *inv = invariants_new();
  CHECK_STR(refusal(inv, "{}"), "expects one rule: max_marketing, no_quiet, reachable, points_budget or check");
  CHECK_STR(refusal(inv, "{\"max_marketing\": {\"max\": 1, \"per\": \"7d\"}}"),
            "option 'max_marketing.per' must be \"local_day\" or \"local_week\"");
  CHECK_STR(refusal(inv, "{\"max_marketing\": {\"max\": -1, \"per\": \"local_day\"}}"),
            "option 'max_marketing.max' must be a whole number >= 0");
  CHECK_STR(refusal(inv, "{\"no_quiet\": {\"from\": \"21:00\", \"to\": \"21:00\"}}"),
            "option 'no_quiet.to' must be a time other than no_quiet.from");
  CHECK_STR(refusal(inv, "{\"no_quiet\": {\"from\": \"9pm\", \"to\": \"09:00\"}}"),
            "option 'no_quiet.from' must be a local time \"HH:MM\"");
  CHECK_STR(refusal(inv, "{\"reachable\": false}"), "option 'reachable' must be true");
  CHECK_STR(refusal(inv, "{\"points_budget\": {\"max\": 5}}"), "option 'points_budget.campaign' must name a campaign");
  CHECK_STR(refusal(inv, "{\"points_budget\": {\"campaign\": \"c\", \"max\": 5, \"per\": \"week\"}}"),
            "option 'points_budget.per' must be \"day\" (a day in the engine's zone)");
  CHECK_STR(refusal(inv, "{\"no_quiet\": {\"from\": \"21:00\", \"to\": \"09:00\"}, \"reachable\": true}"),
            "one rule per invariant: 'no_quiet' and 'reachable' are both given");
  CHECK_STR(refusal(inv, "{\"max_marketing\": {\"max\": 1, \"per\": \"local_day\", \"channel\": \"x\"}}"),
            "option 'max_marketing.channel' is unknown");
  CHECK_INT(invariants_count(inv), 0);
  CHECK_INT(add(inv, "r", "{\"reachable\": true}"), 0);
  CHECK_STR(refusal(inv, "{\"reachable\": true}"), "accepted");
  char err[300];
  json_t *d = json_loads("{\"reachable\": true}", 0, NULL);
  CHECK_INT(invariants_add(inv, "r", "test", d, -1, err, sizeof err), -1);
  CHECK_STR(err, "an invariant named 'r' is declared already");
  json_decref(d);
  invariants_free(inv);
}

typedef struct {
  invariants_t *inv;
  store_t *store;
  tz_t *tz, *ny;
  json_t *attrs;
} fixture_t;

static void fixture(fixture_t *f, store_t *s) {
  f->inv = invariants_new();
  f->store = s;
  f->tz = zone("Asia/Shanghai");
  f->ny = zone("America/New_York");
  f->attrs = json_object();
}

static void fixture_free(fixture_t *f) {
  invariants_free(f->inv);
  tz_free(f->tz);
  tz_free(f->ny);
  json_decref(f->attrs);
}

/* Judge one action given as JSON at `time`; returns the rules it broke, comma-separated. */
static char *judge(fixture_t *f, const char *member, const tz_t *tz, const char *time, const char *action) {
  json_t *a = json_loads(action, 0, NULL);
  CHECK(a != NULL);
  inv_action_t in = {.action = a, .member = member, .attrs = f->attrs, .tz = tz, .engine_tz = f->tz,
                     .now = at(time), .store = f->store};
  json_t *out = json_array();
  CHECK_INT(invariants_judge(f->inv, &in, out), 0);
  strbuf_t sb;
  sb_init(&sb);
  size_t i;
  json_t *v;
  json_array_foreach(out, i, v) sb_addf(&sb, "%s%s", i ? "," : "", json_string_value(json_object_get(v, "rule")));
  json_decref(out);
  json_decref(a);
  char *r = sb_take(&sb);
  return r ? r : xstrdup("");
}

#define EXPECT(f, member, tz, time, action, want) do { char *_r = judge(f, member, tz, time, action); \
    CHECK_STR(_r, want); free(_r); } while (0)

static const char *PROMO = "{\"action\": \"send\", \"category\": \"marketing\"}";
static const char *NOTICE = "{\"action\": \"send\", \"category\": \"service\"}";

TEST(max_marketing_local_day_and_week) {
  char err[200];
  store_t *s = store_open_copy(NULL, err, sizeof err);
  fixture_t f;
  fixture(&f, s);
  CHECK_INT(add(f.inv, "day", "{\"max_marketing\": {\"max\": 1, \"per\": \"local_day\"}}"), 0);
  CHECK_INT(add(f.inv, "week", "{\"max_marketing\": {\"max\": 3, \"per\": \"local_week\"}}"), 0);
  CHECK_INT(store_begin(s), 0);
  EXPECT(&f, "m-1", f.tz, "2026-11-02T23:59:00+08:00", PROMO, "");        /* Monday */
  EXPECT(&f, "m-1", f.tz, "2026-11-02T23:59:30+08:00", NOTICE, "");       /* service: not counted */
  EXPECT(&f, "m-2", f.tz, "2026-11-02T23:59:30+08:00", PROMO, "");        /* another member */
  EXPECT(&f, "m-1", f.tz, "2026-11-03T00:00:00+08:00", PROMO, "");        /* her next day */
  EXPECT(&f, "m-1", f.tz, "2026-11-03T12:00:00+08:00", PROMO, "day");
  EXPECT(&f, "m-1", f.tz, "2026-11-08T23:00:00+08:00", PROMO, "week");    /* Sunday: 4th this week */
  EXPECT(&f, "m-1", f.tz, "2026-11-09T00:00:00+08:00", PROMO, "");        /* Monday again */
  /* New York: 22:00 and 08:00 Shanghai are one New York day */
  EXPECT(&f, "m-3", f.ny, "2026-11-02T22:00:00+08:00", PROMO, "");
  EXPECT(&f, "m-3", f.ny, "2026-11-03T08:00:00+08:00", PROMO, "day");
  CHECK_INT(store_commit(s), 0);
  fixture_free(&f);
  store_close(s);
}

TEST(no_quiet_and_reachable) {
  char err[200];
  store_t *s = store_open_copy(NULL, err, sizeof err);
  fixture_t f;
  fixture(&f, s);
  CHECK_INT(add(f.inv, "night", "{\"no_quiet\": {\"from\": \"21:00\", \"to\": \"09:00\"}}"), 0);
  CHECK_INT(add(f.inv, "noon", "{\"no_quiet\": {\"from\": \"12:00\", \"to\": \"13:00\"}}"), 0);
  CHECK_INT(add(f.inv, "reach", "{\"reachable\": true}"), 0);
  EXPECT(&f, "m-1", f.tz, "2026-11-02T20:59:59+08:00", NOTICE, "");
  EXPECT(&f, "m-1", f.tz, "2026-11-02T21:00:00+08:00", NOTICE, "night");
  EXPECT(&f, "m-1", f.tz, "2026-11-03T08:59:00+08:00", PROMO, "night");
  EXPECT(&f, "m-1", f.tz, "2026-11-03T09:00:00+08:00", PROMO, "");
  EXPECT(&f, "m-1", f.tz, "2026-11-03T12:30:00+08:00", PROMO, "noon");
  EXPECT(&f, "m-1", f.tz, "2026-11-03T13:00:00+08:00", PROMO, "");
  EXPECT(&f, "m-1", f.ny, "2026-11-03T10:00:00+08:00", PROMO, "night");  /* 21:00 in New York */
  EXPECT(&f, "m-1", f.tz, "2026-11-03T23:00:00+08:00", "{\"action\": \"task\"}", ""); /* not a send */
  json_object_set_new(f.attrs, "unsubscribed", json_true());
  EXPECT(&f, "m-1", f.tz, "2026-11-03T10:00:00+08:00", PROMO, "reach");
  EXPECT(&f, "m-1", f.tz, "2026-11-03T10:00:00+08:00", "{\"action\": \"send\"}", "reach"); /* no category: marketing */
  EXPECT(&f, "m-1", f.tz, "2026-11-03T10:00:00+08:00", NOTICE, "");
  json_object_set_new(f.attrs, "friend_deleted", json_true());
  EXPECT(&f, "m-1", f.tz, "2026-11-03T10:00:00+08:00", NOTICE, "reach");
  fixture_free(&f);
  store_close(s);
}

TEST(no_quiet_except_passes_service_sends_of_its_campaigns_only) {
  char err[200];
  store_t *s = store_open_copy(NULL, err, sizeof err);
  fixture_t f;
  fixture(&f, s);
  CHECK_INT(add(f.inv, "night", "{\"no_quiet\": {\"from\": \"21:00\", \"to\": \"09:00\", \"except\": [\"welcome\"]}}"), 0);
  CHECK_STR(refusal(f.inv, "{\"no_quiet\": {\"from\": \"21:00\", \"to\": \"09:00\", \"except\": \"welcome\"}}"),
            "option 'no_quiet.except' must be a list of campaign names");
  EXPECT(&f, "m-1", f.tz, "2026-11-02T23:00:00+08:00",
         "{\"action\": \"send\", \"campaign\": \"welcome\", \"category\": \"service\"}", "");
  EXPECT(&f, "m-1", f.tz, "2026-11-02T23:00:00+08:00",
         "{\"action\": \"send\", \"campaign\": \"welcome\", \"category\": \"marketing\"}", "night");
  EXPECT(&f, "m-1", f.tz, "2026-11-02T23:00:00+08:00",
         "{\"action\": \"send\", \"campaign\": \"promo\", \"category\": \"service\"}", "night");
  fixture_free(&f);
  store_close(s);
}

TEST(points_budget_per_engine_day) {
  char err[200];
  store_t *s = store_open_copy(NULL, err, sizeof err);
  fixture_t f;
  fixture(&f, s);
  CHECK_INT(add(f.inv, "budget", "{\"points_budget\": {\"campaign\": \"checkin\", \"max\": 10}}"), 0);
  CHECK_INT(store_begin(s), 0);
  EXPECT(&f, "m-1", f.ny, "2026-11-02T23:00:00+08:00", "{\"action\": \"points\", \"campaign\": \"checkin\", \"delta\": 10}", "");
  EXPECT(&f, "m-2", f.ny, "2026-11-02T23:10:00+08:00", "{\"action\": \"points\", \"campaign\": \"other\", \"delta\": 10}", "");
  EXPECT(&f, "m-2", f.ny, "2026-11-02T23:20:00+08:00", "{\"action\": \"points\", \"campaign\": \"checkin\", \"delta\": -5}", "");
  EXPECT(&f, "m-2", f.ny, "2026-11-02T23:30:00+08:00", "{\"action\": \"points\", \"campaign\": \"checkin\", \"delta\": 1}", "budget");
  /* the engine's day (Shanghai) ends at midnight there, whatever her zone */
  EXPECT(&f, "m-2", f.ny, "2026-11-03T00:00:00+08:00", "{\"action\": \"points\", \"campaign\": \"checkin\", \"delta\": 10}", "");
  CHECK_INT(store_commit(s), 0);
  fixture_free(&f);
  store_close(s);
}

TEST(tallies_survive_a_restart_and_roll_back_with_a_savepoint) {
  char path[] = "/tmp/hearth-test-invariants-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  close(fd);
  unlink(path);
  char err[200];
  store_t *s = store_open(path, 0, err, sizeof err);
  CHECK(s != NULL);
  fixture_t f;
  fixture(&f, s);
  CHECK_INT(add(f.inv, "day", "{\"max_marketing\": {\"max\": 1, \"per\": \"local_day\"}}"), 0);
  CHECK_INT(store_begin(s), 0);
  CHECK_INT(store_savepoint(s), 0);
  EXPECT(&f, "m-1", f.tz, "2026-11-02T10:00:00+08:00", PROMO, "");
  CHECK_INT(store_rollback_to(s), 0); /* a handler that failed: its send is not counted */
  EXPECT(&f, "m-1", f.tz, "2026-11-02T10:00:00+08:00", PROMO, "");
  CHECK_INT(store_commit(s), 0);
  fixture_free(&f);
  store_close(s);

  s = store_open(path, 0, err, sizeof err); /* a restart: a new process, the same database */
  CHECK(s != NULL);
  fixture(&f, s);
  CHECK_INT(add(f.inv, "day", "{\"max_marketing\": {\"max\": 1, \"per\": \"local_day\"}}"), 0);
  CHECK_INT(store_begin(s), 0);
  EXPECT(&f, "m-1", f.tz, "2026-11-02T11:00:00+08:00", PROMO, "day");
  /* ten days on, the tallies of 2 November are dropped */
  EXPECT(&f, "m-1", f.tz, "2026-11-12T11:00:00+08:00", PROMO, "");
  CHECK_INT(store_commit(s), 0);
  int64_t n = 0;
  CHECK_INT(store_invariant_add(s, "day", "m-1", at("2026-11-02T00:00:00+08:00"), 0, &n), 0);
  CHECK_INT(n, 0);
  fixture_free(&f);
  store_close(s);
  unlink(path);
  char aux[sizeof path + 8];
  snprintf(aux, sizeof aux, "%s-wal", path);
  unlink(aux);
  snprintf(aux, sizeof aux, "%s-shm", path);
  unlink(aux);
}

int main(void) {
  RUN(declarations_refused_name_the_option);
  RUN(max_marketing_local_day_and_week);
  RUN(no_quiet_and_reachable);
  RUN(no_quiet_except_passes_service_sends_of_its_campaigns_only);
  RUN(points_budget_per_engine_day);
  RUN(tallies_survive_a_restart_and_roll_back_with_a_savepoint);
  return UNIT_DONE();
}
