/* metrics: the Prometheus text exposition of GET /metrics: events accepted / duplicate /
 * rejected / failed, the handler time histogram, timers pending and fired, actions by
 * status and channel, delivery attempts and failures per channel, the outbox backlog,
 * HTTP counters and the database size. */
#ifndef HEARTH_METRICS_H
#define HEARTH_METRICS_H

#include "delivery.h"
#include "engine.h"
#include "http_server.h"

/* The document, malloc'd into *text: 0; -1 when the database gauges (timers pending, dead
 * letters, database size) could not be read: *text is then everything else, and the
 * error is logged by the store. */
int metrics_render(engine_t *e, delivery_t *d, http_server_t *http, char **text);

#endif
