/* ingest: from text to committed batches. Parses request bodies (one JSON object, a JSON
 * array, or NDJSON) into validated events, and applies a batch of events in one
 * transaction. Shared by import, the daemon and dry-run. */
#ifndef HEARTH_INGEST_H
#define HEARTH_INGEST_H

#include <stddef.h>

#include "engine.h"
#include "event.h"

typedef struct {
  event_t *v;
  int n, cap;
} event_list_t;

void event_list_free(event_list_t *l);
/* Clear the events but keep the array for the next batch. */
void event_list_reset(event_list_t *l);
event_t *event_list_push(event_list_t *l);

/* Parse a body. All or nothing: on the first bad event returns -1 with
 * "line N: field: problem" (or "item N: ..." in an array) in err and an empty list. */
int ingest_parse_body(const char *body, size_t len, event_list_t *out, char *err, size_t errlen);

/* Apply events in one transaction, at clock time `now`. results (may be NULL) gets one
 * EV_* per event. Returns 0, or -1 on a database error (the batch was rolled back and
 * nothing of it is applied). */
int ingest_batch(engine_t *e, event_t *evs, int n, int *results);

#endif
