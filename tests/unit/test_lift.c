/* test_lift: Wilson intervals and Newcombe's interval for a difference of proportions,
 * against the worked examples of Newcombe (1998) and the properties any interval must have. */
#include <math.h>

#include "lift.h"
#include "unit.h"

#define NEAR(a, b) (fabs((a) - (b)) < 0.00005)

TEST(newcombe_paper_examples) {
  lift_t l;
  CHECK_INT(lift_compute(56, 70, 48, 80, LIFT_Z95, &l), 0);
  CHECK(NEAR(l.diff, 0.2));
  CHECK(NEAR(l.diff_ci.low, 0.0524) && NEAR(l.diff_ci.high, 0.3339));
  CHECK(l.significant);
  CHECK_INT(lift_compute(9, 10, 3, 10, LIFT_Z95, &l), 0);
  CHECK(NEAR(l.diff_ci.low, 0.1705) && NEAR(l.diff_ci.high, 0.8090));
}

TEST(small_and_extreme_groups_stay_in_bounds) {
  lift_t l;
  CHECK_INT(lift_compute(10, 10, 0, 10, LIFT_Z95, &l), 0);
  CHECK(NEAR(l.diff, 1.0) && NEAR(l.diff_ci.low, 0.6075) && l.diff_ci.high <= 1.0);
  CHECK(isnan(l.relative)); /* nothing to be relative to when the hold-out converted no one */
  CHECK_INT(lift_compute(0, 10, 0, 20, LIFT_Z95, &l), 0);
  CHECK(NEAR(l.diff, 0) && l.diff_ci.low < 0 && l.diff_ci.high > 0 && !l.significant);
  CHECK(NEAR(l.diff_ci.low, -0.1611) && NEAR(l.diff_ci.high, 0.2775));
  /* a tiny hold-out that converted everyone: a wide interval, not a verdict */
  CHECK_INT(lift_compute(33, 54, 4, 4, LIFT_Z95, &l), 0);
  CHECK(NEAR(l.diff_ci.low, -0.5221) && NEAR(l.diff_ci.high, 0.1151) && !l.significant);
  CHECK(NEAR(l.relative, (33.0 / 54 - 1.0) / 1.0));
}

TEST(wilson_interval_contains_the_estimate) {
  for (int n = 1; n <= 40; n++)
    for (int k = 0; k <= n; k++) {
      interval_t w = wilson_interval(k, n, LIFT_Z95);
      double p = (double)k / n;
      CHECK(w.low >= 0 && w.high <= 1 && w.low <= p + 1e-12 && w.high >= p - 1e-12);
    }
}

TEST(empty_or_impossible_counts_refused) {
  lift_t l;
  CHECK_INT(lift_compute(0, 0, 1, 2, LIFT_Z95, &l), -1);
  CHECK_INT(lift_compute(1, 2, 0, 0, LIFT_Z95, &l), -1);
  CHECK_INT(lift_compute(3, 2, 1, 2, LIFT_Z95, &l), -1);
  CHECK_INT(lift_compute(-1, 2, 1, 2, LIFT_Z95, &l), -1);
}

int main(void) {
  RUN(newcombe_paper_examples);
  RUN(small_and_extreme_groups_stay_in_bounds);
  RUN(wilson_interval_contains_the_estimate);
  RUN(empty_or_impossible_counts_refused);
  return UNIT_DONE();
}
