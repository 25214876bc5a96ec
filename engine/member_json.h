/* member_json: one member's full state as a JSON document, as `hearth member` prints it
 * and `GET /v1/members/{id}` returns it. */
#ifndef HEARTH_MEMBER_JSON_H
#define HEARTH_MEMBER_JSON_H

#include <jansson.h>

#include "store.h"
#include "timeutil.h"

/* NULL when there is no such member. limit: how many ledger entries and actions. */
json_t *member_json(store_t *s, const tz_t *tz, const char *id, int limit);

#endif
