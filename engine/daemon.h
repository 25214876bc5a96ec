/* daemon: `hearth run`. One libuv loop owning the HTTP server, one uv_timer armed for
 * the earliest due timer or cron slot, an idle handle that resumes cron sweeps a chunk
 * per loop turn, the signal handles, and the delivery of queued actions. Nothing runs
 * longer than a slice (50 ms of wall time plus the handler calls of one event or timer,
 * each bounded by its budget): timers, cron and POST bodies go on a slice per loop turn,
 * and HTTP and signals are served between slices. A POST /v1/events body is validated
 * whole, queued (8 may wait; one more gets 503), applied a slice at a time, each slice
 * committed, and answered 202 after its last slice (a deferred HTTP answer). SIGTERM/SIGINT:
 * stop accepting, let the slice in hand commit, answer pending bodies 503 with what was
 * applied, give written answers up to a second to be read, close every handle, exit 0. SIGHUP: reload the scripts atomically,
 * keeping the old ones when the new ones fail to load. Time is the engine's clock: real,
 * or virtual (`--virtual-clock`, for tests and rehearsals), where nothing happens by the
 * passage of real time and POST /v1/clock moves the clock, runs what is due and starts
 * the deliveries due before it answers. On a real clock a one-second tick notices what
 * other processes committed (PRAGMA data_version) and re-arms timers and delivery.
 * Retention (retention.h), hourly on the engine's clock: event ids older than the dedupe
 * window are forgotten, and with keep_actions final actions older than it are purged
 * (no archive; dead letters stay), a chunk per loop turn; on a virtual clock it runs to
 * its end inside POST /v1/clock, when an hour has passed since the last one. */
#ifndef HEARTH_DAEMON_H
#define HEARTH_DAEMON_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/* Commits that may wait for the sync of their log at once (the loop goes on meanwhile;
 * a body's 202 and the delivery of an action wait for their commit's sync). A slice's
 * commit and delivery's commits after it come faster than one sync: with one, each would
 * wait for the sync of the one before. bench_timers syncs as the daemon does. */
#define DAEMON_UNSYNCED_COMMITS 8

typedef struct {
  const char *host;
  int port;
  const char *token;        /* bearer token, or NULL for none */
  size_t max_body;
  int max_connections;
  int max_connections_per_client;
  unsigned header_timeout_ms, body_timeout_ms;
  long max_backlog;         /* queued-but-undelivered actions before 503 (0 = no limit) */
  int64_t max_future;       /* seconds an event may be dated after receipt (0 = no bound) */
  int64_t keep_actions;     /* retention: purge final actions older than this, hourly (0 = off) */
} daemon_opts_t;

/* Run until a stop signal. Returns the process exit status. */
int daemon_run(engine_t *e, const daemon_opts_t *o);

#endif
