/* test_util: unit tests for engine/util.c's prefixed_int and join_id, which replace
 * snprintf for the keys and ids made on every event and action: the same bytes as
 * snprintf's "%s%lld" and "%s/%s/%s[/%d]" for integers at their limits, every power of
 * ten and its neighbours, empty parts and an empty prefix. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "unit.h"
#include "util.h"

static void check_same(const char *prefix, int64_t v) {
  char ours[64], theirs[64];
  size_t n = prefixed_int(ours, sizeof ours, prefix, v);
  int m = snprintf(theirs, sizeof theirs, "%s%" PRId64, prefix, v);
  CHECK_STR(ours, theirs);
  CHECK_INT(n, m);
}

TEST(integers_at_their_limits) {
  const int64_t v[] = {0, 1, -1, 9, 10, -10, INT64_MAX, INT64_MIN, INT64_MIN + 1, INT64_MAX - 1};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) check_same("timer:", v[i]);
}

TEST(every_power_of_ten_and_its_neighbours) {
  for (int64_t p = 1; p <= INT64_MAX / 10; p *= 10)
    for (int64_t d = -1; d <= 1; d++) {
      check_same("k", p + d);
      check_same("k", -(p + d));
    }
}

TEST(an_empty_prefix_and_an_exact_buffer) {
  check_same("", 42);
  char buf[6 + 21];
  CHECK_INT(prefixed_int(buf, sizeof buf, "timer:", INT64_MIN), 26);
  CHECK_STR(buf, "timer:-9223372036854775808");
}

static void check_id(const char *a, const char *b, const char *c, int64_t n) {
  char theirs[256];
  if (n == JOIN_NO_NUMBER)
    snprintf(theirs, sizeof theirs, "%s/%s/%s", a, b, c);
  else
    snprintf(theirs, sizeof theirs, "%s/%s/%s/%" PRId64, a, b, c, n);
  char *ours = join_id((const char *[]){a, b, c}, 3, n);
  CHECK_STR(ours, theirs);
  free(ours);
}

TEST(action_ids_as_snprintf_made_them) {
  check_id("onboarding", "m-000123", "e-42", JOIN_NO_NUMBER);
  check_id("onboarding", "m-000123", "timer:7", 0);
  check_id("onboarding", "m-000123", "timer:7", 1);
  check_id("c", "m", "@99", 2147483647);
  check_id("", "", "", JOIN_NO_NUMBER);
  check_id("", "", "", INT64_MAX);
  check_id("a-campaign-name-of-some-length", "\xe4\xbc\x9a\xe5\x91\x98-1", "key/with/slashes", -1);
  char *one = join_id((const char *[]){"alone"}, 1, JOIN_NO_NUMBER);
  CHECK_STR(one, "alone");
  free(one);
}

int main(void) {
  RUN(integers_at_their_limits);
  RUN(every_power_of_ten_and_its_neighbours);
  RUN(an_empty_prefix_and_an_exact_buffer);
  RUN(action_ids_as_snprintf_made_them);
  return UNIT_DONE();
}
