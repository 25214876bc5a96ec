/* restraint: the one judge of every marketing send (不要过度骚扰). Owns the rules of a
 * script set (quiet hours, cap windows per category and per channel, channel quotas such
 * as WeCom's) and decides, for one send to one member at one time, whether it goes out,
 * waits, or is held back, with a reason object naming the rule and its numbers. It reads
 * the member's state (subscription, reachability, her log of queued sends, her zone) and
 * changes nothing: the engine records the verdict and keeps the log. Knows nothing of
 * Lua or the store.
 *
 * Order: quiet hours (deferred to their end, judged again then) -> unsubscribed
 * (suppressed) -> friend deleted (suppressed) -> [the engine asks the campaign's guard on
 * a second judgement] -> every cap window (capped) -> the channel's quota (limited). */
#ifndef HEARTH_RESTRAINT_H
#define HEARTH_RESTRAINT_H

#include <jansson.h>
#include <stdint.h>

#include "timeutil.h"

typedef struct restraint restraint_t;

restraint_t *restraint_new(void);
void restraint_free(restraint_t *r);
/* Take the rules from cfg (hearth.restraint's table as JSON):
 *   {"quiet": {"from": "21:00", "to": "09:00"},
 *    "caps": [{"max": 2, "per": "7d"}, {"max": 1, "per": "day"},
 *             {"channel": "wecom", "max": 3, "per": "7d"}]}
 * `per` is a duration (rolling window) or "day" / "week" / "month" (her local calendar
 * day, ISO week, month). Replaces earlier rules. 0, or -1 with a message naming the
 * option in err. */
int restraint_configure(restraint_t *r, json_t *cfg, char *err, size_t errlen);
/* A channel's quota from its declaration's "quota" option: "wecom" (WeCom's published
 * limits for mass messages: per customer, 1 per staff member per day and 4 per month) or
 * {"per_staff_day": n, "per_month": m}. No "quota": no quota. 0, or -1 with a message. */
int restraint_channel(restraint_t *r, const char *channel, json_t *opts, char *err, size_t errlen);

/* One send to one member, now. */
typedef struct {
  const tz_t *tz;          /* her zone */
  int64_t now;
  const char *channel;
  const char *staff;       /* her owner for quotas (may be NULL) */
  json_t *attrs;           /* her attributes: unsubscribed, friend_deleted */
  json_t *sends;           /* her log: action id -> [time, channel, staff] */
} restraint_send_t;

enum { VERDICT_QUEUED, VERDICT_DEFERRED, VERDICT_SUPPRESSED, VERDICT_CAPPED, VERDICT_LIMITED };

typedef struct {
  int verdict;
  json_t *reason;          /* new reference, NULL for VERDICT_QUEUED */
  int64_t until;           /* VERDICT_DEFERRED: the end of quiet hours */
} verdict_t;

/* Quiet hours and reachability: VERDICT_DEFERRED or _SUPPRESSED, else _QUEUED. */
void restraint_first(const restraint_t *r, const restraint_send_t *s, verdict_t *v);
/* Cap windows and quotas: VERDICT_CAPPED or _LIMITED, else _QUEUED. */
void restraint_limits(const restraint_t *r, const restraint_send_t *s, verdict_t *v);
/* 1 when a cap window or a quota counts sends (the engine keeps the log only then). */
int restraint_counts_sends(const restraint_t *r);
/* The earliest time a rule may still count a send at `now`: log entries before it can go. */
int64_t restraint_keep_since(const restraint_t *r, const tz_t *tz, int64_t now);

#endif
