/* timeline: one member's path through a run, as readable text: her events, the timers
 * set for her, fired and voided, the counters her journeys kept (entered, converted,
 * exited...), handler failures, and her actions with their status and reason, in time
 * order. Fed by the engine's tracer (engine_trace_t) and by the actions reported at
 * commit; kept in memory only for the selected members. */
#ifndef HEARTH_TIMELINE_H
#define HEARTH_TIMELINE_H

#include <jansson.h>
#include <stdio.h>

#include "engine.h"

typedef struct timeline timeline_t;

/* A timeline of the members ids[0..n-1] (borrowed, must outlive it), hooked on e's
 * tracer. Actions are added by the caller (timeline_action) from its on_action. */
timeline_t *timeline_new(engine_t *e, const char *const *ids, int n);
/* An action reported at commit: kept when its member is one of the timeline's. */
void timeline_action(timeline_t *tl, const json_t *action);
/* Each member in the order given: a heading line, then one line per entry, by time (ties
 * in the order they happened). `title` (may be NULL) is added to the heading. */
void timeline_print(timeline_t *tl, const char *title, FILE *out);
/* Free it; the engine may be closed already (printing needs it no more either), but an
 * engine still open must not trace into it after (set e->on_trace to NULL first). */
void timeline_free(timeline_t *tl);

#endif
