/* cli: shared flag parsing for every command (see cli.h). */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "timeutil.h"

static const char *common_help =
    "Common options:\n"
    "  --scripts DIR        campaign scripts (default: scripts/)\n"
    "  --db PATH            database (default: hearth.db)\n"
    "  --tz ZONE            IANA time zone of the engine (default: Asia/Shanghai)\n"
    "  --dedupe-window DUR  how long an event id is remembered (default 30d, 0 = forever)\n"
    "  --max-member-bytes N the attributes and tags one member may hold (default 262144)\n"
    "  --member-cache MIB   estimated memory for members kept parsed between batches (default 256)\n"
    "  --log-level LEVEL    debug, info, warn or error (default: info; env HEARTH_LOG)\n"
    "  -h, --help           this help\n";

int cli_usage_error(const char *usage, const char *fmt, ...) {
  va_list ap;
  fputs("hearth: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n%s(see --help)\n", usage);
  return EXIT_USAGE;
}

/* 1 when val is a whole decimal number from lo to hi (*out gets it), else 0. */
static int number_in(const char *val, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(val, &end, 10);
  if (end == val || *end || errno || v < lo || v > hi) return 0;
  *out = v;
  return 1;
}

static int accepts(const char *extra, const char *name) {
  size_t n = strlen(name);
  for (const char *p = extra; p && *p;) {
    const char *sp = strchr(p, ' ');
    size_t len = sp ? (size_t)(sp - p) : strlen(p);
    if (len == n && strncmp(p, name, n) == 0) return 1;
    p = sp ? sp + 1 : NULL;
  }
  return 0;
}

/* Flags that take a value, and where it goes. */
static const char **slot_for(cli_t *c, const char *name) {
  if (!strcmp(name, "scripts")) return &c->scripts;
  if (!strcmp(name, "db")) return &c->db;
  if (!strcmp(name, "tz")) return &c->tz;
  if (!strcmp(name, "stdlib")) return &c->stdlib;
  if (!strcmp(name, "events")) return &c->events;
  if (!strcmp(name, "until")) return &c->until;
  if (!strcmp(name, "stale-after")) return &c->stale_after;
  if (!strcmp(name, "listen")) return &c->listen;
  if (!strcmp(name, "token-file")) return &c->token_file;
  if (!strcmp(name, "requeue")) return &c->requeue;
  if (!strcmp(name, "virtual-clock")) return &c->virtual_clock;
  if (!strcmp(name, "at")) return &c->at;
  if (!strcmp(name, "since")) return &c->since;
  if (!strcmp(name, "format")) return &c->format;
  if (!strcmp(name, "out")) return &c->out;
  if (!strcmp(name, "keep")) return &c->keep;
  if (!strcmp(name, "keep-dead")) return &c->keep_dead;
  if (!strcmp(name, "archive")) return &c->archive;
  if (!strcmp(name, "keep-actions")) return &c->keep_actions;
  if (!strcmp(name, "with")) return &c->with;
  if (!strcmp(name, "cluster")) return &c->cluster;
  if (!strcmp(name, "engine")) return &c->engine_name;
  if (!strcmp(name, "data")) return &c->data;
  if (!strcmp(name, "to")) return &c->to;
  if (!strcmp(name, "timeout")) return &c->timeout;
  if (!strcmp(name, "partitions")) return &c->partitions;
  if (!strcmp(name, "replicas")) return &c->replicas;
  if (!strcmp(name, "snapshot-every")) return &c->snapshot_every;
  return NULL;
}

static int is_common(const char *name) {
  return !strcmp(name, "scripts") || !strcmp(name, "db") || !strcmp(name, "tz") ||
         !strcmp(name, "stdlib") || !strcmp(name, "dedupe-window") || !strcmp(name, "log-level") ||
         !strcmp(name, "max-member-bytes") || !strcmp(name, "member-cache");
}

int cli_parse(cli_t *c, int argc, char **argv, const char *extra, const char *usage) {
  memset(c, 0, sizeof *c);
  c->scripts = "scripts";
  c->db = "hearth.db";
  c->tz = getenv("HEARTH_TZ") ? getenv("HEARTH_TZ") : "Asia/Shanghai";
  c->stdlib = getenv("HEARTH_STDLIB") ? getenv("HEARTH_STDLIB") : HEARTH_STDLIB_DIR;
  c->dedupe_window = 30 * 86400;
  c->batch = 1000;
  c->limit = 20;
  c->max_backlog = -1;
  c->max_future = 3600;
  for (int i = 1; i < argc; i++) {
    char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      c->help = 1;
      printf("%s\n%s", usage, common_help);
      return 1;
    }
    if (strncmp(a, "--", 2) != 0 || !strcmp(a, "-")) {
      if (a[0] == '-' && a[1]) return cli_usage_error(usage, "unknown option '%s'", a);
      if (c->npositional == 16) return cli_usage_error(usage, "too many arguments");
      c->positional[c->npositional++] = a;
      continue;
    }
    char name[64];
    const char *eq = strchr(a + 2, '=');
    size_t nlen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
    if (nlen >= sizeof name) return cli_usage_error(usage, "unknown option '%s'", a);
    memcpy(name, a + 2, nlen);
    name[nlen] = '\0';
    /* boolean flags */
    if (!strcmp(name, "json") && accepts(extra, "json")) { c->json = 1; continue; }
    if (!strcmp(name, "quiet") && accepts(extra, "quiet")) { c->quiet = 1; continue; }
    if (!strcmp(name, "plan") && accepts(extra, "plan")) { c->plan = 1; continue; }
    if (!strcmp(name, "requeue-all") && accepts(extra, "requeue-all")) { c->requeue_all = 1; continue; }
    if (!strcmp(name, "dry-run") && accepts(extra, "dry-run")) { c->dry_run = 1; continue; }
    if (!strcmp(name, "vacuum") && accepts(extra, "vacuum")) { c->vacuum = 1; continue; }
    if (!strcmp(name, "timeline") && accepts(extra, "timeline")) { c->timeline = 1; continue; }
    if (!is_common(name) && !accepts(extra, name)) return cli_usage_error(usage, "unknown option '--%s'", name);
    const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
    if (!val) return cli_usage_error(usage, "option '--%s' needs a value", name);
    const char **slot = slot_for(c, name);
    if (slot) {
      *slot = val;
      if (slot == &c->db) c->db_set = 1;
    } else if (!strcmp(name, "member")) {
      if (!*val) return cli_usage_error(usage, "--member needs a member id");
      if (c->nmembers == CLI_MAX_MEMBERS) return cli_usage_error(usage, "at most %d --member options", CLI_MAX_MEMBERS);
      c->members[c->nmembers++] = val;
    } else if (!strcmp(name, "dedupe-window")) {
      char err[200];
      if (!strcmp(val, "0")) c->dedupe_window = 0; /* forever, as the help says */
      else if (duration_parse(val, &c->dedupe_window, err, sizeof err) < 0)
        return cli_usage_error(usage, "--dedupe-window: %s", err);
    } else if (!strcmp(name, "header-timeout") || !strcmp(name, "body-timeout")) {
      char err[200];
      int64_t secs;
      if (duration_parse(val, &secs, err, sizeof err) < 0)
        return cli_usage_error(usage, "--%s: %s", name, err);
      if (secs < 1 || secs > 3600) return cli_usage_error(usage, "--%s must be from 1s to 1h", name);
      if (!strcmp(name, "header-timeout")) c->header_timeout = secs; else c->body_timeout = secs;
    } else if (!strcmp(name, "max-connections") || !strcmp(name, "max-connections-per-client")) {
      long v;
      if (!number_in(val, 1, 1000000, &v))
        return cli_usage_error(usage, "--%s must be a number from 1 to 1000000", name);
      if (!strcmp(name, "max-connections")) c->max_connections = v; else c->max_per_client = v;
    } else if (!strcmp(name, "log-level")) {
      int lv = log_level_parse(val);
      if (lv < 0) return cli_usage_error(usage, "--log-level must be debug, info, warn or error");
      log_set_level(lv);
    } else if (!strcmp(name, "max-future")) {
      char err[200];
      if (strcmp(val, "0") == 0)
        c->max_future = 0;
      else if (duration_parse(val, &c->max_future, err, sizeof err) < 0)
        return cli_usage_error(usage, "--max-future: %s (0 = no bound)", err);
    } else if (!strcmp(name, "max-member-bytes")) {
      long v;
      if (!number_in(val, 1024, 1L << 30, &v))
        return cli_usage_error(usage, "--max-member-bytes must be a byte count from 1024 to 1073741824");
      c->max_member_bytes = v;
    } else if (!strcmp(name, "member-cache")) {
      long v;
      if (!number_in(val, 1, 1048576, &v))
        return cli_usage_error(usage, "--member-cache must be a number of MiB from 1 to 1048576");
      c->member_cache_mib = v;
    } else if (!strcmp(name, "max-body")) {
      long v;
      if (!number_in(val, 1024, 1L << 30, &v)) return cli_usage_error(usage, "--max-body must be a byte count from 1024 to 1073741824");
      c->max_body = v;
    } else if (!strcmp(name, "progress")) {
      long v;
      if (!number_in(val, 1, 1000000000, &v))
        return cli_usage_error(usage, "--progress must be a number of rows from 1 to 1000000000");
      c->progress = v;
    } else if (!strcmp(name, "max-backlog")) {
      long v;
      if (!number_in(val, 0, LONG_MAX, &v)) return cli_usage_error(usage, "--max-backlog must be a number (0 = no bound)");
      c->max_backlog = v;
    } else if (!strcmp(name, "batch") || !strcmp(name, "limit")) {
      long v;
      if (!number_in(val, 1, 1000000, &v)) return cli_usage_error(usage, "--%s must be a number from 1 to 1000000", name);
      if (!strcmp(name, "batch")) c->batch = (int)v, c->batch_set = 1; else c->limit = (int)v;
    } else {
      return cli_usage_error(usage, "unknown option '--%s'", name);
    }
  }
  return 0;
}

void cli_engine_opts(const cli_t *c, engine_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->db_path = c->db;
  o->scripts_dir = c->scripts;
  o->stdlib_dir = c->stdlib;
  o->tz_name = c->tz;
  o->dedupe_window = c->dedupe_window;
  o->max_member_bytes = c->max_member_bytes;
  o->member_cache_mib = c->member_cache_mib;
}
