/* log: structured logs, one JSON object per line on stderr:
 * {"ts":"2026-11-22T10:15:00Z","level":"warn","msg":"...", ...extra fields}.
 * The level threshold comes from --log-level or HEARTH_LOG (debug, info, warn, error). */
#ifndef HEARTH_LOG_H
#define HEARTH_LOG_H

enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Parse "debug"/"info"/"warn"/"error"; -1 if unknown. */
int log_level_parse(const char *s);
void log_set_level(int level);
int log_enabled(int level);
/* Log msg with optional extra fields given as key/value string pairs ending in NULL. */
void log_msg(int level, const char *msg, ...);

#endif
