/* log: structured logs, one JSON object per line on stderr:
 * {"ts":"2026-11-22T10:15:00Z","level":"warn","msg":"...", ...extra fields}.
 * The level threshold comes from --log-level or HEARTH_LOG (debug, info, warn, error).
 * `ts` is the real time, unless a virtual clock was handed over with log_use_clock: then
 * it is that clock's time and the line says "clock":"virtual" (dry-run, diff, tests and
 * a daemon on --virtual-clock, whose logs then read in the time of the run). */
#ifndef HEARTH_LOG_H
#define HEARTH_LOG_H

enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Parse "debug"/"info"/"warn"/"error"; -1 if unknown. */
int log_level_parse(const char *s);
void log_set_level(int level);
int log_enabled(int level);
/* Take `ts` from this clock from now on (NULL: the real time again). Only a virtual clock
 * changes anything; the pointer must stay valid until it is handed back with NULL. */
void log_use_clock(const void *hclock);
/* The clock log_use_clock was given, or NULL. */
const void *log_clock(void);
/* Log msg with optional extra fields given as key/value string pairs ending in NULL. */
void log_msg(int level, const char *msg, ...);

#endif
