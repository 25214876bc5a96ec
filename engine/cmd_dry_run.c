/* cmd_dry_run: `hearth dry-run --events FILE [--until DURATION|TIME] [--db SNAPSHOT]`.
 * Runs the scripts against events on a virtual clock, in an in-memory copy of the
 * snapshot (never written). Order is deterministic: events in file order; before each
 * event every timer due at or before its time fires, earliest first, ties in the order
 * they were set, and cron slots run in time order with them. After the last event the
 * clock runs on to --until (default: 30 days after the last event). Actions go to stdout
 * as NDJSON, a summary per campaign and step to stderr, and each invariant an action broke
 * (hearth.invariant) as a line on stderr; any makes the exit status 1. Nothing is
 * delivered. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ingest.h"
#include "summary.h"

static const char *usage =
    "usage: hearth dry-run --events FILE|- [--until DURATION|TIME] [--db SNAPSHOT]\n"
    "                      [--max-future DUR]\n\n"
    "Run the scripts against the events on a virtual clock and print every action as\n"
    "NDJSON on stdout, with a summary per campaign and step on stderr. Timers and cron\n"
    "fire in virtual time up to --until: a duration after the last event (default 30d)\n"
    "or an RFC 3339 time. With --db the run starts from a copy of that database, which\n"
    "is never changed. Nothing is delivered.\n"
    CLI_MAX_FUTURE_HELP
    "                       (the present is the real time of reading, not the virtual clock)\n"
    "Each invariant (hearth.invariant) an action breaks is a line on stderr.\n"
    "Exit status: 0 ok, 1 when a line was rejected, a handler failed, an invariant was\n"
    "violated or the database failed, 2 usage error.\n";

static void on_action(void *ud, json_t *a, const char *text) {
  char *line = text ? NULL : json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (text || line) {
    fputs(text ? text : line, (FILE *)ud);
    fputc('\n', (FILE *)ud);
  }
  free(line);
}

/* One line on stderr per violation: the rule, the action, the member, what broke. */
static void on_violation(void *ud, const violation_t *v) {
  (void)ud;
  fprintf(stderr, "hearth: invariant '%s' violated by action %s (member %s): %s\n", v->rule, v->action_id, v->member,
          v->message);
}

/* Batches of the in-memory store commit every so often, so the actions they hold are
 * printed and freed. */
#define DRY_RUN_BATCH 20000

int cmd_dry_run(int argc, char **argv) {
  cli_t c;
  int rc = cli_parse(&c, argc, argv, "events until max-future", usage);
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
  engine_use_virtual_clock(e);
  hclock_t wall; /* the real present, for --max-future: the engine's clock is virtual */
  clock_init_real(&wall);
  e->on_action = on_action;
  e->on_action_ud = stdout;
  e->on_violation = on_violation;
  ndjson_reader_t rd;
  ndjson_from_stream(&rd, in);
  const char *line;
  size_t len;
  unsigned long rejected = 0;
  int status = 0, more;
  while ((more = ndjson_next(&rd, &line, &len)) > 0) {
    event_t ev;
    char msg[400];
    if (event_parse(line, len, &ev, msg, sizeof msg) < 0 ||
        event_check_time(&ev, clock_now(&wall), c.max_future, msg, sizeof msg) < 0) {
      event_clear(&ev);
      fprintf(stderr, "%s:%lu: rejected: %s\n", c.events, rd.lineno, msg);
      rejected++;
      continue;
    }
    rc = engine_feed(e, &ev);
    event_clear(&ev);
    if (rc == EV_ERROR || (e->batch_work >= DRY_RUN_BATCH && engine_commit(e) < 0)) {
      fprintf(stderr, "hearth: database error: %s\n", engine_db_error(e));
      status = 1;
      break;
    }
  }
  if (more < 0) {
    fprintf(stderr, "hearth: reading %s: %s\n", c.events, strerror(errno));
    status = 1;
  }
  ndjson_close(&rd);
  if (in != stdin) fclose(in);
  if (status == 0 && e->in_batch && engine_commit(e) < 0) status = 1;
  if (status == 0) {
    int64_t until = until_abs != INT64_MIN ? until_abs : e->now + until_rel;
    if (engine_run_until(e, e->now, 0) < 0 || engine_run_until(e, until, 0) < 0) status = 1;
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
  if (e->stats.invariant_violations) {
    fprintf(stderr, "hearth: %lu invariant violations (see above)\n", e->stats.invariant_violations);
    status = 1;
  }
  engine_close(e);
  return status;
}
