/* summary: the funnel per campaign, step and variant, read from the store: actions by
 * status (from the outbox) and the counters scripts keep with hearth.count (entered,
 * converted, ...); queued messages are shown as "sent", other queued actions by kind (task, tag, untag,
 * points, webhook). As JSON for `GET /v1/campaigns` and `hearth stats --json`, as text
 * for the dry-run summary and `hearth stats`. */
#ifndef HEARTH_SUMMARY_H
#define HEARTH_SUMMARY_H

#include <jansson.h>
#include <stdio.h>

#include "engine.h"

/* {"campaigns":[{"name":..., "metrics":{...}, "steps":[{"name":..., "queued":n, ...}],
 *   "variants":[{"name":..., "entered":n, "converted":n, "conversion":0.12}]}]}
 * NULL on a database error (logged by the store). */
json_t *summary_json(store_t *s);
/* The funnel of a cluster: the sum of n partitions' summary_json documents (counts added
 * by campaign, step and variant; conversions and lifts computed from the sums). */
json_t *summary_sum(json_t *const *parts, int n);
/* Print the funnel as text, with a closing line of event counters from stats (may be NULL).
 * 0; -1 when the funnel could not be read (nothing printed). */
int summary_print(store_t *s, const engine_stats_t *stats, unsigned long rejected, FILE *out);
/* The same for a document summary_json returned. */
void summary_print_doc(json_t *summary, const engine_stats_t *stats, unsigned long rejected, FILE *out);

#endif
