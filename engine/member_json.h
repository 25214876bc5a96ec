/* member_json: one member's full state as a JSON document, as `hearth member` prints it
 * and `GET /v1/members/{id}` returns it. */
#ifndef HEARTH_MEMBER_JSON_H
#define HEARTH_MEMBER_JSON_H

#include <jansson.h>

#include "store.h"
#include "timeutil.h"

/* An instant as RFC 3339 at zone tz's offset then; null for STORE_NO_TIME. */
json_t *member_json_time(const tz_t *tz, int64_t t);

/* Member id as JSON into *out: 1; 0 (and NULL) when there is no such member; -1 (and
 * NULL) on a database error, logged by the store. limit: how many ledger entries,
 * actions and failures (the latest). */
int member_json_read(store_t *s, const tz_t *tz, const char *id, int limit, json_t **out);
/* The same, NULL both when there is no such member and on a database error (logged):
 * for callers that cannot report an error; prefer member_json_read. */
json_t *member_json(store_t *s, const tz_t *tz, const char *id, int limit);

/* The member's own fields (created_at, joined_at, last_active_at, orders, spend, points,
 * attrs, tags sorted) set on j, in that order: the shape of `hearth member` without its
 * rows, shared with `hearth export members`. */
void member_json_fields(json_t *j, const tz_t *tz, const member_view_t *m);
/* An action as `hearth member` lists it: the stored body (an empty object when it does
 * not parse) with its status and, when a channel delivers it, its delivery state. */
json_t *member_json_action(const char *body, const char *status, const char *delivery);

#endif
