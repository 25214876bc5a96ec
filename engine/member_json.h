/* member_json: one member's full state as a JSON document, as `hearth member` prints it
 * and `GET /v1/members/{id}` returns it. */
#ifndef HEARTH_MEMBER_JSON_H
#define HEARTH_MEMBER_JSON_H

#include <jansson.h>

#include "store.h"
#include "timeutil.h"

/* Member id as JSON into *out: 1; 0 (and NULL) when there is no such member; -1 (and
 * NULL) on a database error, logged by the store. limit: how many ledger entries,
 * actions and failures (the latest). */
int member_json_read(store_t *s, const tz_t *tz, const char *id, int limit, json_t **out);
/* The same, NULL both when there is no such member and on a database error (logged):
 * for callers that cannot report an error; prefer member_json_read. */
json_t *member_json(store_t *s, const tz_t *tz, const char *id, int limit);

#endif
