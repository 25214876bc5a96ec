/* lift: conversion lift against a hold-out and its confidence interval (see lift.h). */
#include "lift.h"

#include <assert.h>
#include <math.h>

interval_t wilson_interval(int64_t converted, int64_t n, double z) {
  assert(n > 0 && converted >= 0 && converted <= n);
  double p = (double)converted / (double)n, nn = (double)n, z2 = z * z;
  double denom = 1.0 + z2 / nn;
  double center = (p + z2 / (2.0 * nn)) / denom;
  double half = z / denom * sqrt(p * (1.0 - p) / nn + z2 / (4.0 * nn * nn));
  interval_t r = {center - half, center + half};
  /* rounding can push an end a hair past the bounds at p = 0 or p = 1 */
  if (r.low < 0) r.low = 0;
  if (r.high > 1) r.high = 1;
  if (converted == 0) r.low = 0;
  if (converted == n) r.high = 1;
  return r;
}

int lift_compute(int64_t ct, int64_t nt, int64_t ch, int64_t nh, double z, lift_t *out) {
  if (nt <= 0 || nh <= 0 || ct < 0 || ch < 0 || ct > nt || ch > nh) return -1;
  double pt = (double)ct / (double)nt, ph = (double)ch / (double)nh;
  interval_t wt = wilson_interval(ct, nt, z), wh = wilson_interval(ch, nh, z);
  double d = pt - ph;
  out->treated = pt;
  out->holdout = ph;
  out->diff = d;
  out->diff_ci.low = d - sqrt((pt - wt.low) * (pt - wt.low) + (wh.high - ph) * (wh.high - ph));
  out->diff_ci.high = d + sqrt((wt.high - pt) * (wt.high - pt) + (ph - wh.low) * (ph - wh.low));
  out->relative = ch > 0 ? d / ph : NAN;
  out->significant = out->diff_ci.low > 0 || out->diff_ci.high < 0;
  return 0;
}
