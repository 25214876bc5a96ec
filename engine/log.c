/* log: JSON-lines logging on stderr with a level threshold (see log.h). */
#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"

static int threshold = -1;
static const char *names[] = {"debug", "info", "warn", "error"};
static const hclock_t *virtual_clock; /* NULL: the real time */

void log_use_clock(const void *hclock) {
  const hclock_t *c = hclock;
  virtual_clock = c && c->is_virtual ? c : NULL;
}

const void *log_clock(void) { return virtual_clock; }

int log_level_parse(const char *s) {
  for (int i = 0; i < 4; i++)
    if (s && strcmp(s, names[i]) == 0) return i;
  return -1;
}

void log_set_level(int level) { threshold = level; }

int log_enabled(int level) {
  if (threshold < 0) {
    int env = log_level_parse(getenv("HEARTH_LOG"));
    threshold = env >= 0 ? env : LOG_INFO;
  }
  return level >= threshold;
}

void log_msg(int level, const char *msg, ...) {
  if (!log_enabled(level)) return;
  char ts[32];
  time_t now = virtual_clock ? (time_t)clock_now(virtual_clock) : time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
  json_t *o = json_object();
  json_object_set_new(o, "ts", json_string(ts));
  json_object_set_new(o, "level", json_string(names[level]));
  json_object_set_new(o, "msg", json_string(msg));
  if (virtual_clock) json_object_set_new(o, "clock", json_string("virtual"));
  va_list ap;
  va_start(ap, msg);
  const char *k;
  while ((k = va_arg(ap, const char *)) != NULL) {
    const char *v = va_arg(ap, const char *);
    if (v) json_object_set_new(o, k, json_string(v));
  }
  va_end(ap);
  char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (line) {
    fprintf(stderr, "%s\n", line);
    free(line);
  }
  json_decref(o);
}
