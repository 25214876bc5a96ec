/* test_action_diff: unit tests for engine/action_diff.c — identical runs report nothing
 * (in any order of recording), a step moved in time is one changed action matched by
 * key, repeated steps pair by occurrence, a deferred send judged again keeps one record
 * with its final status, the first difference is the earliest, a template change is a
 * difference, points per campaign, members in id order. */
#include <stdlib.h>

#include "action_diff.h"
#include "unit.h"

/* One action as the engine reports it; status NULL = queued. */
static void add(action_diff_t *d, int run, const char *id, const char *member, const char *campaign,
                const char *step, const char *kind, const char *time, const char *status, const char *tmpl) {
  json_t *a = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", id, "time", time, "member", member,
                        "campaign", campaign, "step", step, "action", kind, "status", status ? status : "queued");
  if (tmpl) json_object_set_new(a, "template", json_string(tmpl));
  adiff_add(d, run, a);
  json_decref(a);
}

typedef struct {
  int n;
  adiff_member_t seen[8];
  char members[8][32];
} seen_t;

static void collect(void *ud, const adiff_member_t *m) {
  seen_t *s = ud;
  if (s->n == 8) return;
  snprintf(s->members[s->n], sizeof s->members[s->n], "%s", m->member);
  s->seen[s->n++] = *m;
}

#define T(day, hour) "2026-11-" day "T" hour ":00:00+08:00"

TEST(identical_runs_report_nothing_in_any_order) {
  action_diff_t *d = adiff_new();
  add(d, 0, "a/1", "m-1", "c", "s1", "send", T("02", "10"), NULL, "x");
  add(d, 0, "a/2", "m-2", "c", "s1", "send", T("02", "11"), NULL, "x");
  add(d, 1, "a/2", "m-2", "c", "s1", "send", T("02", "11"), NULL, "x");
  add(d, 1, "a/1", "m-1", "c", "s1", "send", T("02", "10"), NULL, "x");
  seen_t s = {0};
  CHECK_INT(adiff_members(d, collect, &s), 0);
  CHECK_INT(adiff_action_count(d, 0), 2);
  CHECK_INT(adiff_member_count(d, 1), 2);
  adiff_free(d);
}

TEST(moved_step_is_one_change_matched_by_key) {
  action_diff_t *d = adiff_new();
  add(d, 0, "onb/m-1/1/day7", "m-1", "onb", "day7", "send", T("08", "10"), NULL, "coupon");
  add(d, 1, "onb/m-1/1/day7", "m-1", "onb", "day7", "send", T("06", "10"), "capped", "coupon");
  seen_t s = {0};
  CHECK_INT(adiff_members(d, collect, &s), 1);
  CHECK_INT(s.seen[0].changed, 1);
  CHECK_STR(s.seen[0].before.status, "queued");
  CHECK_STR(s.seen[0].after.status, "capped");
  CHECK_STR(s.seen[0].after.step, "day7");
  CHECK_STR(s.seen[0].after.what, "coupon");
  CHECK(s.seen[0].before.time > s.seen[0].after.time);
  adiff_free(d);
}

TEST(repeated_steps_pair_by_occurrence) {
  action_diff_t *d = adiff_new();
  /* before: three weekly sends; after: the first two the same, the third a week later */
  add(d, 0, "w/1", "m-1", "w", "weekly", "send", T("02", "10"), NULL, "t");
  add(d, 0, "w/2", "m-1", "w", "weekly", "send", T("09", "10"), NULL, "t");
  add(d, 0, "w/3", "m-1", "w", "weekly", "send", T("16", "10"), NULL, "t");
  add(d, 1, "w/x", "m-1", "w", "weekly", "send", T("02", "10"), NULL, "t");
  add(d, 1, "w/y", "m-1", "w", "weekly", "send", T("09", "10"), NULL, "t");
  add(d, 1, "w/z", "m-1", "w", "weekly", "send", T("23", "10"), NULL, "t");
  seen_t s = {0};
  CHECK_INT(adiff_members(d, collect, &s), 1);
  CHECK_INT(s.seen[0].changed, 1); /* ids differ, but only the third pair's time does */
  adiff_free(d);
}

TEST(deferred_judged_again_keeps_its_final_status) {
  action_diff_t *d = adiff_new();
  add(d, 0, "c/m-1/q", "m-1", "c", "q", "send", T("02", "22"), "deferred", "t");
  add(d, 0, "c/m-1/q", "m-1", "c", "q", "send", T("03", "09"), NULL, "t");
  add(d, 1, "c/m-1/q", "m-1", "c", "q", "send", T("03", "09"), NULL, "t");
  seen_t s = {0};
  CHECK_INT(adiff_members(d, collect, &s), 0);
  CHECK_INT(adiff_action_count(d, 0), 1);
  /* the same re-judgement ending capped in the other run is one difference */
  action_diff_t *e = adiff_new();
  add(e, 0, "c/m-1/q", "m-1", "c", "q", "send", T("02", "22"), "deferred", "t");
  add(e, 0, "c/m-1/q", "m-1", "c", "q", "send", T("03", "09"), NULL, "t");
  add(e, 1, "c/m-1/q", "m-1", "c", "q", "send", T("02", "22"), "deferred", "t");
  add(e, 1, "c/m-1/q", "m-1", "c", "q", "send", T("03", "09"), "capped", "t");
  CHECK_INT(adiff_members(e, collect, &s), 1);
  CHECK_STR(s.seen[0].before.status, "queued");
  CHECK_STR(s.seen[0].after.status, "capped");
  adiff_free(d);
  adiff_free(e);
}

TEST(first_difference_is_the_earliest_and_members_come_in_id_order) {
  action_diff_t *d = adiff_new();
  add(d, 0, "1", "m-b", "c", "late", "send", T("20", "10"), NULL, "t");
  add(d, 0, "2", "m-b", "c", "early", "send", T("05", "10"), NULL, "old");
  add(d, 1, "1", "m-b", "c", "late", "send", T("21", "10"), NULL, "t");
  add(d, 1, "2", "m-b", "c", "early", "send", T("05", "10"), NULL, "new");
  add(d, 1, "3", "m-a", "c", "only_after", "task", T("07", "10"), NULL, NULL);
  seen_t s = {0};
  CHECK_INT(adiff_members(d, collect, &s), 2);
  CHECK_STR(s.members[0], "m-a");
  CHECK(s.seen[0].before.campaign == NULL);
  CHECK_STR(s.seen[0].after.kind, "task");
  CHECK_STR(s.members[1], "m-b");
  CHECK_INT(s.seen[1].changed, 2);
  CHECK_STR(s.seen[1].before.step, "early"); /* a template change, and the earlier one */
  CHECK_STR(s.seen[1].before.what, "old");
  CHECK_STR(s.seen[1].after.what, "new");
  adiff_free(d);
}

TEST(points_per_campaign) {
  action_diff_t *d = adiff_new();
  json_t *a = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "id", "p1", "time", T("02", "10"), "member", "m-1",
                        "campaign", "checkin", "action", "points", "status", "queued", "delta", (json_int_t)5);
  adiff_add(d, 0, a);
  adiff_add(d, 1, a);
  json_object_set_new(a, "id", json_string("p2"));
  json_object_set_new(a, "delta", json_integer(-3));
  adiff_add(d, 1, a);
  json_decref(a);
  int n, found = 0;
  const adiff_points_t *p = adiff_points(d, &n);
  for (int i = 0; i < n; i++) {
    if (!p[i].campaign) continue;
    found++;
    CHECK_STR(p[i].campaign, "checkin");
    CHECK_INT(p[i].granted[0], 5);
    CHECK_INT(p[i].granted[1], 5);
    CHECK_INT(p[i].spent[0], 0);
    CHECK_INT(p[i].spent[1], 3);
  }
  CHECK_INT(found, 1);
  CHECK(adiff_bytes(d) > 0);
  adiff_free(d);
}

int main(void) {
  RUN(identical_runs_report_nothing_in_any_order);
  RUN(moved_step_is_one_change_matched_by_key);
  RUN(repeated_steps_pair_by_occurrence);
  RUN(deferred_judged_again_keeps_its_final_status);
  RUN(first_difference_is_the_earliest_and_members_come_in_id_order);
  RUN(points_per_campaign);
  return UNIT_DONE();
}
