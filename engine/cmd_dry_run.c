/* cmd_dry_run: `hearth dry-run --events FILE [--until DURATION|TIME] [--db SNAPSHOT]`.
 * Runs the scripts against events on a virtual clock, in an in-memory copy of the
 * snapshot (never written). Order is deterministic: events in file order; before each
 * event every timer due at or before its time fires, earliest first, ties in the order
 * they were set, and cron slots run in time order with them. After the last event the
 * clock runs on to --until (default: 30 days after the last event). Actions go to stdout
 * as NDJSON, a summary per campaign and step to stderr. Nothing is delivered. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "ingest.h"
#include "summary.h"

static const char *usage =
    "usage: hearth dry-run --events FILE|- [--until DURATION|TIME] [--db SNAPSHOT]\n\n"
    "Run the scripts against the events on a virtual clock and print every action as\n"
    "NDJSON on stdout, with a summary per campaign and step on stderr. Timers and cron\n"
    "fire in virtual time up to --until: a duration after the last event (default 30d)\n"
    "or an RFC 3339 time. With --db the run starts from a copy of that database, which\n"
    "is never changed. Nothing is delivered.\n"
    "Exit status: 0 ok, 1 when a line was rejected, a handler failed or the database\n"
    "failed, 2 usage error.\n";

static void on_action(void *ud, json_t *a) {
  char *line = json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (line) {
    fputs(line, (FILE *)ud);
    fputc('\n', (FILE *)ud);
    free(line);
  }
}

typedef struct {
  engine_t *e;
  int open, started;
  unsigned long in_batch;
} runner_t;

static int close_batch(runner_t *r) {
  if (!r->open) return 0;
  r->open = 0;
  r->in_batch = 0;
  return engine_commit(r->e);
}

/* Apply one event at virtual time ev->time after everything due before it. */
static int feed(runner_t *r, event_t *ev) {
  engine_t *e = r->e;
  if (!ev->has_time) ev->time = e->now, ev->has_time = 1;
  if (!r->started) {
    r->started = 1;
    e->now = ev->time;
    engine_schedule_cron(e, ev->time);
  }
  if (engine_next_cron(e) <= ev->time) {
    /* a cron run (a sweep commits per chunk) needs the batch closed */
    if (close_batch(r) < 0 || engine_advance(e, ev->time, 1, 0) < 0) return -1;
  }
  if (!r->open) {
    if (engine_begin(e) < 0) return -1;
    r->open = 1;
  }
  /* timers due before the event fire inside the open batch, earliest first */
  while (engine_next_timer(e) <= ev->time) {
    int n = engine_fire_timers_open(e, ev->time, 1000);
    if (n < 0) return -1;
    r->in_batch += (unsigned long)n;
  }
  if (ev->time > e->now) e->now = ev->time;
  if (engine_apply(e, ev) == EV_ERROR) return -1;
  /* long batches: the store is in memory and ours alone; a commit now and then reports
   * the batch's actions (they are held in memory until then) */
  if (++r->in_batch >= 20000) return close_batch(r);
  return 0;
}

int cmd_dry_run(int argc, char **argv) {
  cli_t c;
  int rc = cli_parse(&c, argc, argv, "events until", usage);
  if (rc) return c.help ? 0 : rc;
  if (c.npositional) return cli_usage_error(usage, "unexpected argument '%s'", c.positional[0]);
  if (!c.events) return cli_usage_error(usage, "--events FILE is required");
  int64_t until_abs = INT64_MIN, until_rel = 30 * 86400;
  if (c.until) {
    char err1[200], err2[200];
    if (duration_parse(c.until, &until_rel, err1, sizeof err1) < 0 &&
        rfc3339_parse(c.until, &until_abs, err2, sizeof err2) < 0)
      return cli_usage_error(usage, "--until must be a duration (30d) or an RFC 3339 time, got '%s'", c.until);
  }
  if (c.db_set && access(c.db, F_OK) != 0) {
    fprintf(stderr, "hearth: no snapshot database at %s\n", c.db);
    return 1;
  }
  FILE *in = strcmp(c.events, "-") == 0 ? stdin : fopen(c.events, "r");
  if (!in) {
    fprintf(stderr, "hearth: cannot open %s: %s\n", c.events, strerror(errno));
    return 1;
  }
  engine_opts_t eo;
  cli_engine_opts(&c, &eo);
  eo.memory_db = 1;
  eo.db_path = c.db_set ? c.db : NULL;
  char *err;
  engine_t *e = engine_open(&eo, &err);
  if (!e) {
    fprintf(stderr, "hearth: %s%s", err, *err && err[strlen(err) - 1] == '\n' ? "" : "\n");
    free(err);
    if (in != stdin) fclose(in);
    return 1;
  }
  e->virtual_clock = 1;
  e->on_action = on_action;
  e->on_action_ud = stdout;
  e->now = (int64_t)time(NULL);
  runner_t r = {.e = e};
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  unsigned long lineno = 0, rejected = 0;
  int status = 0;
  while ((len = getline(&line, &cap, in)) >= 0) {
    lineno++;
    size_t l = (size_t)len;
    while (l && (line[l - 1] == '\n' || line[l - 1] == '\r')) l--;
    if (strspn(line, " \t") >= l) continue;
    event_t ev;
    char msg[400];
    if (event_parse(line, l, &ev, msg, sizeof msg) < 0) {
      fprintf(stderr, "%s:%lu: rejected: %s\n", c.events, lineno, msg);
      rejected++;
      continue;
    }
    rc = feed(&r, &ev);
    event_clear(&ev);
    if (rc < 0) {
      fprintf(stderr, "hearth: database error: %s\n", store_errmsg(e->store));
      status = 1;
      break;
    }
  }
  free(line);
  if (in != stdin) fclose(in);
  if (status == 0 && close_batch(&r) < 0) status = 1;
  if (status == 0) {
    int64_t until = until_abs != INT64_MIN ? until_abs : e->now + until_rel;
    if (!r.started) engine_schedule_cron(e, e->now);
    if (engine_advance(e, until, 1, 0) < 0) status = 1;
    if (until > e->now) e->now = until;
  }
  fflush(stdout);
  if (summary_print(e->store, &e->stats, rejected, stderr) < 0) {
    fprintf(stderr, "hearth: cannot read the funnel summary: %s\n", store_errmsg(e->store));
    status = 1;
  }
  if (status == 0 && (rejected || e->stats.handler_errors)) {
    fprintf(stderr, "hearth: %lu lines rejected, %lu handler failures (see the log above)\n", rejected,
            e->stats.handler_errors);
    status = 1;
  }
  engine_close(e);
  return status;
}
