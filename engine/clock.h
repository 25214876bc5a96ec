/* clock: the one source of time and randomness for the engine and what runs beside it
 * (delivery, the daemon's loop). A real clock reads the system clock; a virtual clock
 * shows the time its driver set (dry-run, hearth test, a daemon started with a virtual
 * clock for tests) and moves only when told, never backwards. Randomness (retry jitter)
 * comes from a small seeded generator held with the clock, so a run on the virtual
 * clock is reproducible. Nothing else in the tree calls time() or rand(). */
#ifndef HEARTH_CLOCK_H
#define HEARTH_CLOCK_H

#include <stdint.h>

typedef struct {
  int is_virtual;
  int64_t virtual_ms;   /* the virtual time, epoch milliseconds */
  uint64_t rng;         /* generator state, never 0 */
} hclock_t;

/* A clock on the system time, its generator seeded from the time and pid. */
void clock_init_real(hclock_t *c);
/* A virtual clock starting at epoch second `start`, its generator seeded with `seed`. */
void clock_init_virtual(hclock_t *c, int64_t start, uint64_t seed);

/* Epoch seconds. */
int64_t clock_now(const hclock_t *c);
/* Epoch milliseconds. */
int64_t clock_now_ms(const hclock_t *c);
/* Move a virtual clock to epoch second t (ignored when t is earlier than now, or when
 * the clock is real). */
void clock_set(hclock_t *c, int64_t t);
/* Start a virtual clock over at epoch second t, backwards too: for its driver only, before
 * anything ran on it (dry-run starts at its first event). */
void clock_restart(hclock_t *c, int64_t t);
/* Move a virtual clock forward by ms milliseconds (ignored when the clock is real). */
void clock_advance_ms(hclock_t *c, int64_t ms);

/* A uniformly distributed number in [0, 1). */
double clock_uniform(hclock_t *c);

#endif
