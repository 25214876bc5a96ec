/* clock: real and virtual time, and the seeded generator (see clock.h). The generator is
 * xorshift64* (Marsaglia's xorshift with a multiplicative output step, after Vigna's
 * paper); it only spreads retries, so statistical strength beyond that is not needed. */
#include "clock.h"

#include <assert.h>
#include <time.h>
#include <unistd.h>

static uint64_t seeded(uint64_t seed) { return seed ? seed : 0x9e3779b97f4a7c15ull; }

void clock_init_real(hclock_t *c) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  c->is_virtual = 0;
  c->virtual_ms = 0;
  c->rng = seeded((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40));
}

void clock_init_virtual(hclock_t *c, int64_t start, uint64_t seed) {
  c->is_virtual = 1;
  c->virtual_ms = start * 1000;
  c->rng = seeded(seed);
}

int64_t clock_now_ms(const hclock_t *c) {
  if (c->is_virtual) return c->virtual_ms;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_now(const hclock_t *c) {
  int64_t ms = clock_now_ms(c);
  return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
}

void clock_set(hclock_t *c, int64_t t) {
  if (c->is_virtual && t * 1000 > c->virtual_ms) c->virtual_ms = t * 1000;
}

void clock_restart(hclock_t *c, int64_t t) {
  if (c->is_virtual) c->virtual_ms = t * 1000;
}

void clock_advance_ms(hclock_t *c, int64_t ms) {
  assert(ms >= 0);
  if (c->is_virtual) c->virtual_ms += ms;
}

double clock_uniform(hclock_t *c) {
  uint64_t x = c->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  c->rng = x;
  return (double)((x * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0; /* 2^53 */
}
