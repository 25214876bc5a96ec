/* cron: five-field cron expressions (minute hour day-of-month month day-of-week) with
 * ranges, lists, steps, '*', and month/day names (jan-dec, sun-sat, 7 = Sunday too),
 * evaluated in a time zone. Standard rule: when both day fields are restricted, a day
 * matches if either matches (a field is unrestricted when it allows every value, e.g. '*').
 * The shorthands @hourly, @daily (@midnight), @weekly, @monthly and @yearly (@annually)
 * are accepted too. */
#ifndef HEARTH_CRON_H
#define HEARTH_CRON_H

#include <stddef.h>
#include <stdint.h>
#include "timeutil.h"

typedef struct {
  uint64_t minute;  /* bits 0-59 */
  uint32_t hour;    /* bits 0-23 */
  uint32_t mday;    /* bits 1-31 */
  uint16_t month;   /* bits 1-12 */
  uint8_t wday;     /* bits 0-6, 0 = Sunday */
  uint8_t mday_star, wday_star;
} cron_t;

/* Parse SPEC. 0 ok, -1 with a message naming the bad field in err. */
int cron_parse(const char *spec, cron_t *out, char *err, size_t errlen);
/* The first slot strictly after instant `after`, in zone tz; -1 if none within 5 years.
 * Slots are local wall times: one that falls in a DST gap runs at the moved-forward
 * instant, one that falls in an overlap runs once (the first occurrence). */
int64_t cron_next(const cron_t *c, const tz_t *tz, int64_t after);

#endif
