/* timeutil: calendar arithmetic, IANA time zones read from the system zoneinfo (TZif),
 * RFC 3339 parsing and formatting, and duration strings ("30s", "1d12h").
 * All instants are int64_t seconds since the Unix epoch (UTC). Pure C, no libuv, no Lua. */
#ifndef HEARTH_TIMEUTIL_H
#define HEARTH_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

/* A loaded time zone. Opaque. */
typedef struct tz tz_t;

/* Broken-down local time. month 1-12, day 1-31, wday 0=Sunday..6, yday 0-365. */
typedef struct {
  int year, month, day, hour, min, sec, wday, yday;
  int offset; /* seconds east of UTC in force at that instant */
} civil_t;

/* Load IANA zone NAME ("Asia/Shanghai", "UTC") from $TZDIR or /usr/share/zoneinfo.
 * Returns NULL and writes a message naming the zone into err on failure. */
tz_t *tz_load(const char *name, char *err, size_t errlen);
void tz_free(tz_t *tz);
const char *tz_name(const tz_t *tz);

/* UTC offset in seconds in force at instant t. */
int tz_offset_at(const tz_t *tz, int64_t t);
/* Local civil time of instant t. */
void tz_to_civil(const tz_t *tz, int64_t t, civil_t *out);
/* Instant of a local wall time. A wall time that does not exist (DST gap) moves forward by
 * the length of the gap; one that exists twice (overlap) takes the first occurrence.
 * Fields may be out of range (day 32, hour 25) and are normalised like mktime. */
int64_t tz_from_local(const tz_t *tz, int year, int month, int day, int hour, int min, int sec);
/* Days since 1970-01-01 of the local calendar date of t (for "same day", "yesterday"). */
int64_t tz_local_day(const tz_t *tz, int64_t t);

/* Proleptic Gregorian calendar helpers. */
int64_t days_from_civil(int64_t year, int month, int day);
void civil_from_days(int64_t days, int64_t *year, int *month, int *day);
/* A calendar date "YYYY-MM-DD" (exactly len bytes, no more): its day number since
 * 1970-01-01. 0, or -1 when it is not one (2026-02-30 is not). */
int date_parse(const char *s, size_t len, int64_t *day);

/* Parse RFC 3339 ("2026-11-22T10:15:00+08:00", "...Z", fractional seconds truncated,
 * 't'/'z' and a space separator accepted). 0 ok, -1 with a message in err. */
int rfc3339_parse(const char *s, int64_t *t, char *err, size_t errlen);
/* Format t at the given UTC offset: "2026-11-22T10:15:00+08:00" ("Z" when offset 0 is not
 * used: offset 0 prints "+00:00"). buf must hold 32 bytes. Returns buf. */
char *rfc3339_format(int64_t t, int offset, char buf[32]);

/* Parse a duration: one or more <integer><unit> groups, units s m h d w, largest first,
 * each unit at most once ("30s", "15m", "2h", "3d", "2w", "1d12h"). "0s" is allowed.
 * 0 ok, -1 with a message naming the bad text in err. */
int duration_parse(const char *s, int64_t *secs, char *err, size_t errlen);
/* Parse "HH:MM" (00:00-23:59) into minutes since midnight. 0 ok, -1 with message. */
int wallclock_parse(const char *s, int *minutes, char *err, size_t errlen);

#endif
