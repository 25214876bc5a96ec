/* cmd_dry_run: `hearth dry-run --events FILE [--until DURATION|TIME] [--db SNAPSHOT]
 * [--member ID]... [--timeline]`. Runs the scripts against events on a virtual clock, in
 * an in-memory copy of the snapshot (never written): the run itself is virtual_run.c's.
 * Order is deterministic: events in file order; before each event every timer due at or
 * before its time fires, earliest first, ties in the order they were set, and cron slots
 * run in time order with them. After the last event the clock runs on to --until
 * (default: 30 days after the last event). Actions go to stdout as NDJSON (only the
 * selected members' with --member), or each selected member's timeline (timeline.c);
 * a summary per campaign and step to stderr (and a line per broadcast that ran, with its
 * audience), and each invariant an action broke (hearth.invariant) as a line on stderr:
 * any makes the exit status 1. Nothing is delivered. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json_compact.h"
#include "summary.h"
#include "timeline.h"
#include "virtual_run.h"

static const char *usage =
    "usage: hearth dry-run --events FILE|- [--until DURATION|TIME] [--db SNAPSHOT]\n"
    "                      [--max-future DUR] [--member ID]... [--timeline]\n\n"
    "Run the scripts against the events on a virtual clock and print every action as\n"
    "NDJSON on stdout, with a summary per campaign and step on stderr. Timers and cron\n"
    "fire in virtual time up to --until: a duration after the last event (default 30d)\n"
    "or an RFC 3339 time. With --db the run starts from a copy of that database, which\n"
    "is never changed. Nothing is delivered.\n"
    CLI_MAX_FUTURE_HELP
    "                       (the present is the real time of reading, not the virtual clock)\n"
    "  --member ID          print only this member's actions (repeatable, up to 64)\n"
    "  --timeline           with --member: print each member's path instead, in time\n"
    "                       order: events, timers set/fired/void, counters, failures,\n"
    "                       actions with status and reason\n"
    "Log lines carry the virtual time (and \"clock\":\"virtual\"). Each invariant\n"
    "(hearth.invariant) an action breaks is a line on stderr.\n"
    "Exit status: 0 ok, 1 when a line was rejected, a handler failed, an invariant was\n"
    "violated or the database failed, 2 usage error.\n";

typedef struct {
  const cli_t *cli;
  timeline_t *timeline; /* NULL: print the actions */
  int failed;           /* an action could not be written */
} dry_run_out_t;

static void on_action(void *ud, json_t *a, const char *text) {
  dry_run_out_t *o = ud;
  if (o->cli->nmembers && !vrun_member_selected(o->cli, json_string_value(json_object_get(a, "member")))) return;
  if (o->timeline) {
    timeline_action(o->timeline, a);
    return;
  }
  char *line = text ? NULL : jc_dumps(a); /* json_dumps' compact bytes (keys in their order), cheaper */
  if (!text && !line) { /* out of memory: said, and the run's status says it too */
    const char *id = json_string_value(json_object_get(a, "id"));
    fprintf(stderr, "hearth: cannot write action %s: out of memory\n", id ? id : "(no id)");
    o->failed = 1;
    return;
  }
  fputs(text ? text : line, stdout);
  fputc('\n', stdout);
  free(line);
}

/* One line on stderr per violation: the rule, the action, the member, what broke. */
static void on_violation(void *ud, const violation_t *v) {
  (void)ud;
  fprintf(stderr, "hearth: invariant '%s' violated by action %s (member %s): %s\n", v->rule, v->action_id, v->member,
          v->message);
}

int cmd_dry_run(int argc, char **argv) {
  cli_t c;
  int rc = cli_parse(&c, argc, argv, "events until max-future member timeline", usage);
  if (rc) return c.help ? 0 : rc;
  if (c.npositional) return cli_usage_error(usage, "unexpected argument '%s'", c.positional[0]);
  if (!c.events) return cli_usage_error(usage, "--events FILE is required");
  if (c.timeline && !c.nmembers) return cli_usage_error(usage, "--timeline needs --member ID");
  int64_t until_abs, until_rel;
  if (vrun_parse_until(c.until, &until_abs, &until_rel) < 0)
    return cli_usage_error(usage, "--until must be a duration (30d) or an RFC 3339 time, got '%s'", c.until);
  FILE *in = strcmp(c.events, "-") == 0 ? stdin : fopen(c.events, "r");
  if (!in) {
    fprintf(stderr, "hearth: cannot open %s: %s\n", c.events, strerror(errno));
    return 1;
  }
  engine_t *e = vrun_open(&c, c.scripts);
  if (!e) {
    if (in != stdin) fclose(in);
    return 1;
  }
  dry_run_out_t out = {.cli = &c, .timeline = c.timeline ? timeline_new(e, c.members, c.nmembers) : NULL};
  e->on_action = on_action;
  e->on_action_ud = &out;
  e->on_violation = on_violation;
  unsigned long rejected = 0;
  int status = vrun_run(e, in, c.events, c.max_future, until_abs, until_rel, &rejected);
  if (in != stdin) fclose(in);
  if (out.timeline) timeline_print(out.timeline, NULL, stdout);
  fflush(stdout);
  if (summary_print(e->store, &e->stats, rejected, stderr) < 0) {
    fprintf(stderr, "hearth: cannot read the funnel summary: %s\n", store_errmsg(e->store));
    status = 1;
  }
  if (broadcast_print_rows(e, stderr) < 0) { /* each broadcast that ran, with its audience */
    fprintf(stderr, "hearth: cannot read the broadcasts: %s\n", store_errmsg(e->store));
    status = 1;
  }
  if (status == 0 && (rejected || e->stats.handler_errors)) {
    fprintf(stderr, "hearth: %lu lines rejected, %lu handler failures (see the log above)\n", rejected,
            e->stats.handler_errors);
    status = 1;
  }
  if (out.failed) status = 1;
  if (e->stats.invariant_violations) {
    fprintf(stderr, "hearth: %lu invariant violations (see above)\n", e->stats.invariant_violations);
    status = 1;
  }
  e->on_trace = NULL;
  timeline_free(out.timeline);
  engine_close(e);
  return status;
}
