/* console_api: the JSON the operators' console reads beyond the funnel (summary.c) and the
 * member (member_json.c): sends per local day and channel, the operations view, and one
 * member's pending timers. Each returns a new JSON document, or NULL on a database error
 * (logged by the store); a bad query gets a message for a 400 instead. */
#ifndef HEARTH_CONSOLE_API_H
#define HEARTH_CONSOLE_API_H

#include <jansson.h>

#include "store.h"
#include "timeutil.h"

/* The most days one daily-sends answer covers. */
#define CONSOLE_MAX_DAYS 400

/* GET /v1/sends/daily?from=YYYY-MM-DD&to=YYYY-MM-DD (both inclusive, local dates in zone
 * tz; default: the days from the first to the last send, at most CONSOLE_MAX_DAYS back
 * from the last):
 * {"zone":..., "from":..., "to":..., "days":["2026-11-01", ...],
 *  "channels":{"wecom":{"queued":[n per day], "delivered":[...], "failed":[...], ...}}}
 * Statuses count every send by its status (queued, capped, deferred, suppressed, limited,
 * expired, skipped); "delivered", "pending" and "failed" (dead letters) count the queued
 * ones by delivery state. *bad gets a message (and NULL is returned) for a bad query. */
json_t *console_daily_sends(store_t *s, const tz_t *tz, const char *zone_name, const char *query, char *bad,
                            size_t badlen);

/* GET /v1/operations: {"backlog":n, "dead_letters":{"count":n, "latest":[...]},
 * "failures_by_campaign":[{"campaign":..., "n":n}], "totals":{...}} */
json_t *console_operations(store_t *s, const tz_t *tz);

/* GET /v1/members/{id}/timers: {"timers":[{"due":..., "type":..., "campaign":...}]} (at
 * most 100, earliest first). */
json_t *console_member_timers(store_t *s, const tz_t *tz, const char *member);

#endif
