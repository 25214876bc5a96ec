/* event: one member event as SPEC §1 defines it, parsed and validated from JSON.
 * Validation is strict: unknown top-level fields, wrong types and out-of-range values are
 * rejected with a message naming the field. The data of well-known types is checked for
 * what the engine's built-in effects rely on: order.paid / order.refunded need
 * data.amount, a finite number >= 0; member.joined's data.referrer is a member id and
 * data.channel, data.store, data.staff are strings; data.tz of member.joined and
 * member.updated names an IANA zone (member.updated may send null to remove it). */
#ifndef HEARTH_EVENT_H
#define HEARTH_EVENT_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

typedef struct {
  char *id;       /* idempotency key or NULL */
  char *type;     /* [a-z0-9_.]{1,64} */
  char *member;   /* 1-128 bytes UTF-8 */
  int64_t time;   /* epoch seconds */
  int has_time;   /* 0: the receiver fills in the time of receipt */
  json_t *data;   /* object, or NULL when absent */
} event_t;

/* Validate a decoded JSON value as an event. On success fills ev (owned copies) and returns
 * 0; on failure returns -1 with "field: message" in err and leaves ev cleared. */
int event_from_json(json_t *v, event_t *ev, char *err, size_t errlen);
/* Decode one line of NDJSON and validate it. Same contract as event_from_json. */
int event_parse(const char *text, size_t len, event_t *ev, char *err, size_t errlen);
void event_clear(event_t *ev);
/* A validated event with its time as one line of JSON that event_parse reads back into the
 * same event (the time in UTC): malloc'd. Scale-out publishes events in this form. */
char *event_to_text(const event_t *ev);
/* The bound on the future, judged where input is read: an event whose time is more than
 * max_future seconds after now (the real present) is refused with "time: ..." in err
 * and -1. max_future 0 means no bound; an event without a time always passes. */
int event_check_time(const event_t *ev, int64_t now, int64_t max_future, char *err, size_t errlen);
/* Checks used elsewhere too (timer event types, hearth.on). */
int event_type_valid(const char *type);
int member_id_valid(const char *id, size_t len);

#endif
