/* delivery: takes queued actions out of the outbox and hands them to their channel.
 * Owns the channels' run-time state (declared in scripts with hearth.channel), the
 * libcurl multi handle driven by the libuv loop (uv_poll per socket, one uv_timer for
 * curl's timeouts), a pump timer, and the delivery counters.
 *
 * Channels:
 *   log      {type="log", path="out.ndjson"} (no path: stdout): one NDJSON line per action
 *   webhook  {type="webhook", url=..., secret_env="VAR", rate=50, attempts=8,
 *             backoff="2s", max_backoff="1h", timeout="10s", concurrency=16}
 *            POST of the action JSON with Idempotency-Key: <action id>,
 *            X-Hearth-Timestamp: <unix seconds> and
 *            X-Hearth-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>.
 * Guarantee: each action is queued exactly once (stable id, same transaction as the
 * state change) and delivered at least once: a webhook dispatch first takes a lease on
 * the row (leased_until, past the timeout), and leases are void when the daemon starts,
 * so after a crash the row is sent again at once with
 * the same Idempotency-Key; receivers deduplicate on it. Retries on 5xx, 429 (honouring
 * Retry-After), timeouts and connection errors, with exponential backoff and jitter;
 * other 4xx go straight to dead letters; after `attempts` tries the row is a dead letter
 * keeping its last error (`hearth dead-letters` lists and re-queues them).
 * Time and randomness come from the engine's clock (clock.h): retry times, leases, the
 * signed timestamp and the jitter. On a virtual clock nothing waits for real time: rows
 * due later, retries and the rate limit wait for the clock to be moved (delivery_pump);
 * only curl's own network timeouts stay real. All SQL is in store.c. */
#ifndef HEARTH_DELIVERY_H
#define HEARTH_DELIVERY_H

#include <stddef.h>
#include <uv.h>

#include "engine.h"

typedef struct delivery delivery_t;

typedef struct {
  unsigned long attempts, delivered, retried, failed, dead;
  unsigned long elsewhere;  /* found delivered by another engine (scale-out): not sent */
} delivery_counts_t;

/* Scale-out (cluster_node.c): an action may have been delivered by the engine that owned
 * its partition before this one (state rebuilt from the log queues it again, same id).
 * seen(id) before each send: 1 delivered already (the row is done, nothing sent), 0 send,
 * -1 unknown (left for the next pump); sent(id) after each delivery. Either may be NULL. */
typedef struct {
  int (*seen)(void *ud, const char *action_id);
  void (*sent)(void *ud, const char *action_id);
  void *ud;
} delivery_guard_t;
void delivery_set_guard(delivery_t *d, const delivery_guard_t *g);

/* Check the channels (webhook secrets present in the environment) and start. NULL with a
 * message in err when a channel cannot work. */
delivery_t *delivery_start(uv_loop_t *loop, engine_t *e, char *err, size_t errlen);
/* New queued actions may exist: deliver soon. */
void delivery_kick(delivery_t *d);
/* Start now, before returning, every transfer due at the clock's time (leases committed;
 * the transfers finish later on the loop). Used after a virtual clock was moved. */
void delivery_pump(delivery_t *d);
/* The scripts were reloaded: rebuild the channels. 0 ok; -1 keeps the old ones. */
int delivery_reload(delivery_t *d, char *err, size_t errlen);
/* Stop: abandon transfers in flight (their leases expire, they are sent again later) and
 * close every handle; memory is freed from close callbacks while the loop runs. */
void delivery_stop(delivery_t *d);
/* Queued actions not yet delivered (pending or retrying). */
long delivery_backlog(delivery_t *d);
/* Counters per channel for /metrics; calls fn for each channel. */
void delivery_each_channel(delivery_t *d, void (*fn)(void *ud, const char *channel, const delivery_counts_t *c), void *ud);

/* Sign body at timestamp ts with secret: writes "v1=<64 hex>" into out (68 bytes). */
void delivery_sign(const char *secret, long long ts, const char *body, size_t len, char out[72]);

#endif
