/* lift: how much better a treated group converted than its hold-out, with a confidence
 * interval that stays honest on the small groups campaigns start with.
 *
 * The interval for a difference of two proportions is Newcombe's hybrid score interval
 * (R. G. Newcombe, "Interval estimation for the difference between independent
 * proportions", Statistics in Medicine 17, 1998, method 10): each group's Wilson score
 * interval, combined by the square-root rule. Unlike the textbook Wald interval
 * (p1 - p2 ± z·se) it never leaves [-1, 1] and keeps close to its nominal coverage at
 * n = 5 or when a group converted 0% or 100%. Written here from the published formulas. */
#ifndef HEARTH_LIFT_H
#define HEARTH_LIFT_H

#include <stdint.h>

/* z for a two-sided 95% interval */
#define LIFT_Z95 1.959963984540054

typedef struct {
  double low, high;
} interval_t;

/* The Wilson score interval of `converted` out of `n` (n > 0, 0 <= converted <= n). */
interval_t wilson_interval(int64_t converted, int64_t n, double z);

typedef struct {
  double treated, holdout;   /* conversion of each group */
  double diff;               /* treated - holdout, in [-1, 1] */
  interval_t diff_ci;        /* Newcombe's interval of diff */
  double relative;           /* diff / holdout; NAN when the hold-out converted no one */
  int significant;           /* the interval excludes 0 */
} lift_t;

/* Lift of treated (ct of nt) over hold-out (ch of nh); -1 when either group is empty or a
 * count is out of range, else 0. */
int lift_compute(int64_t ct, int64_t nt, int64_t ch, int64_t nh, double z, lift_t *out);

#endif
