/* test_util: unit tests for engine/util.c's prefixed_int, which replaces snprintf's
 * "%s%lld" for keys made on every event: the same bytes and length for integers at
 * their limits, every power of ten and its neighbours, and an empty prefix. */
#include <inttypes.h>
#include <stdio.h>

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

int main(void) {
  RUN(integers_at_their_limits);
  RUN(every_power_of_ten_and_its_neighbours);
  RUN(an_empty_prefix_and_an_exact_buffer);
  return UNIT_DONE();
}
