/* cmd_diff: `hearth diff --events FILE --scripts OLD --with NEW [--db SNAPSHOT]
 * [--until ...] [--member ID]... [--format text|ndjson] [--timeline]`. Runs both script
 * folders on the same events, one after the other, each exactly as `hearth dry-run`
 * runs (virtual_run.c: the same snapshot copy, virtual clock and until), and reports
 * what changed: the funnel rows (per campaign, step or variant, metric) that differ,
 * the points per campaign, the totals, and each member whose actions differ with her
 * first differing action (action_diff.c says how actions are matched). Exit 1 when
 * anything differs (or a run failed), 0 when identical, 2 on usage errors. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action_diff.h"
#include "cli.h"
#include "summary.h"
#include "timeline.h"
#include "util.h"
#include "virtual_run.h"

static const char *usage =
    "usage: hearth diff --events FILE|- --scripts OLD --with NEW [--db SNAPSHOT]\n"
    "                   [--until DURATION|TIME] [--max-future DUR] [--member ID]...\n"
    "                   [--format text|ndjson] [--timeline] [--limit N]\n\n"
    "Run the scripts of OLD and of NEW on the same events (and the same snapshot), each\n"
    "as `hearth dry-run` would, and report what changed: the funnel rows per campaign,\n"
    "step and variant that differ (before -> after), points per campaign, the totals, and\n"
    "the members whose actions changed, each with her first differing action. Actions\n"
    "are matched by member, campaign, step, kind and occurrence (the k-th such action in\n"
    "time order); time, final status and what (template, text, tag, delta) are compared.\n"
    "  --format text|ndjson text for people (default; the first --limit members, default\n"
    "                       20), or one JSON object per finding for tools (all of them)\n"
    "  --member ID          only this member's actions (repeatable, up to 64); funnel and\n"
    "                       points rows, which are about everyone, are left out\n"
    "  --timeline           with --member: also print each member's path before and after\n"
    "Each invariant (hearth.invariant) an action breaks in either run is a line on stderr.\n"
    "Nothing is delivered and no file is written. Exit status: 0 identical, 1 something\n"
    "differs, the new scripts break an invariant, or a run failed; 2 usage error.\n";

/* What one run leaves for the report once its engine is closed. */
typedef struct {
  json_t *funnel;                /* summary_json */
  engine_stats_t stats;          /* counters only (by_channel not kept) */
  unsigned long rejected;
  timeline_t *timeline;
} run_result_t;

typedef struct {
  const cli_t *cli;
  action_diff_t *diff;
  int run;
  timeline_t *timeline;
} collector_t;

static void on_action(void *ud, json_t *a, const char *text) {
  (void)text;
  collector_t *col = ud;
  if (!vrun_member_selected(col->cli, json_string_value(json_object_get(a, "member")))) return;
  adiff_add(col->diff, col->run, a);
  if (col->timeline) timeline_action(col->timeline, a);
}

/* A file that can be read twice: the events, or standard input copied to a temporary
 * file. NULL with the reason printed. */
static FILE *rereadable_events(const char *name) {
  if (strcmp(name, "-") != 0) {
    FILE *f = fopen(name, "r");
    if (!f) fprintf(stderr, "hearth: cannot open %s: %s\n", name, strerror(errno));
    return f;
  }
  FILE *tmp = tmpfile();
  if (!tmp) {
    fprintf(stderr, "hearth: cannot make a temporary file for standard input: %s\n", strerror(errno));
    return NULL;
  }
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
    if (fwrite(buf, 1, n, tmp) != n) {
      fprintf(stderr, "hearth: writing the copy of standard input: %s\n", strerror(errno));
      fclose(tmp);
      return NULL;
    }
  }
  if (ferror(stdin)) {
    fprintf(stderr, "hearth: reading standard input: %s\n", strerror(errno));
    fclose(tmp);
    return NULL;
  }
  rewind(tmp);
  return tmp;
}

/* An invariant broken in one of the runs: a line on stderr naming the run, the rule, the
 * action and the member. */
static void on_violation(void *ud, const violation_t *v) {
  const collector_t *col = ud;
  fprintf(stderr, "hearth: %s: invariant '%s' violated by action %s (member %s): %s\n", col->run ? "after" : "before",
          v->rule, v->action_id, v->member, v->message);
}

/* Run one script folder; 0, or 1 when it could not run to its end. */
static int run_one(const cli_t *c, const char *scripts, FILE *in, int run, action_diff_t *diff,
                   int64_t until_abs, int64_t until_rel, run_result_t *res) {
  engine_t *e = vrun_open(c, scripts);
  if (!e) return 1;
  collector_t col = {.cli = c, .diff = diff, .run = run,
                     .timeline = c->timeline ? timeline_new(e, c->members, c->nmembers) : NULL};
  res->timeline = col.timeline;
  e->on_action = on_action;
  e->on_action_ud = &col;
  e->on_violation = on_violation;
  e->on_violation_ud = &col;
  int status = vrun_run(e, in, c->events, c->max_future, until_abs, until_rel, &res->rejected);
  res->funnel = summary_json(e->store);
  if (!res->funnel) {
    fprintf(stderr, "hearth: cannot read the funnel summary: %s\n", store_errmsg(e->store));
    status = 1;
  }
  res->stats = e->stats;
  res->stats.by_channel = NULL, res->stats.nchannels = 0;
  res->stats.by_rule = NULL; /* freed with the engine; the total is kept */
  e->on_trace = NULL;
  engine_close(e);
  if (status) fprintf(stderr, "hearth: the run of %s failed\n", scripts);
  return status;
}

/* ---- funnel rows ---- */

typedef struct {
  char *campaign, *step, *variant, *metric;
  json_int_t n[2];
} diff_row_t;

typedef struct {
  diff_row_t *rows;
  int n, cap;
} funnel_rows_t;

static diff_row_t *row_for(funnel_rows_t *t, const char *c, const char *s, const char *v, const char *m) {
  for (int i = 0; i < t->n; i++) {
    diff_row_t *r = &t->rows[i];
    if (!strcmp(r->campaign, c) && !strcmp(r->step, s) && !strcmp(r->variant, v) && !strcmp(r->metric, m))
      return r;
  }
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 64;
    t->rows = xrealloc(t->rows, (size_t)t->cap * sizeof *t->rows);
  }
  diff_row_t *r = &t->rows[t->n++];
  *r = (diff_row_t){.campaign = xstrdup(c), .step = xstrdup(s), .variant = xstrdup(v), .metric = xstrdup(m)};
  return r;
}

/* The integer members of obj (the conversion, a ratio of two of them, is left out). */
static void add_counts(funnel_rows_t *t, int run, const char *c, const char *s, const char *v, json_t *obj) {
  const char *k;
  json_t *val;
  json_object_foreach(obj, k, val) {
    if (strcmp(k, "name") && json_is_integer(val)) row_for(t, c, s, v, k)->n[run] = json_integer_value(val);
  }
}

static void add_funnel(funnel_rows_t *t, int run, json_t *doc) {
  size_t i, k;
  json_t *c, *x;
  json_array_foreach(json_object_get(doc, "campaigns"), i, c) {
    const char *name = json_string_value(json_object_get(c, "name"));
    add_counts(t, run, name, "", "", json_object_get(c, "metrics"));
    json_array_foreach(json_object_get(c, "steps"), k, x)
      add_counts(t, run, name, json_string_value(json_object_get(x, "name")), "", x);
    json_array_foreach(json_object_get(c, "variants"), k, x)
      add_counts(t, run, name, "", json_string_value(json_object_get(x, "name")), x);
  }
}

static void free_funnel(funnel_rows_t *t) {
  for (int i = 0; i < t->n; i++) {
    free(t->rows[i].campaign), free(t->rows[i].step), free(t->rows[i].variant), free(t->rows[i].metric);
  }
  free(t->rows);
}

/* ---- the report ---- */

typedef struct {
  int ndjson;
  tz_t *tz;
  long shown, limit;
} report_t;

static void print_json(json_t *o) {
  char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (line) puts(line);
  free(line);
  json_decref(o);
}

static char *fmt_time(const report_t *r, int64_t t, char buf[32]) {
  return rfc3339_format(t, r->tz ? tz_offset_at(r->tz, t) : 0, buf);
}

static json_t *side_json(const report_t *r, const adiff_side_t *s) {
  if (!s->campaign) return json_null();
  char tb[32];
  json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "campaign", s->campaign, "step", s->step, "action", s->kind,
                        "what", s->what, "time", fmt_time(r, s->time, tb));
  json_object_set_new(o, "status", json_string(s->status));
  return o;
}

static void print_side(const report_t *r, const char *label, const adiff_side_t *s) {
  char tb[32];
  if (!s->campaign) {
    printf("      %s (none)\n", label);
    return;
  }
  printf("      %s %s%s%s %s%s%s at %s: %s\n", label, s->campaign, *s->step ? "/" : "", s->step, s->kind,
         *s->what ? " " : "", s->what, fmt_time(r, s->time, tb), s->status);
}

static void on_member(void *ud, const adiff_member_t *m) {
  report_t *r = ud;
  if (r->ndjson) {
    json_t *o = json_pack("{s:s, s:s, s:I}", "finding", "member", "member", m->member, "changed", (json_int_t)m->changed);
    json_object_set_new(o, "before", side_json(r, &m->before));
    json_object_set_new(o, "after", side_json(r, &m->after));
    print_json(o);
    return;
  }
  if (r->shown++ >= r->limit) return;
  printf("  %s: %ld action%s differ; the first:\n", m->member, m->changed, m->changed == 1 ? "" : "s");
  print_side(r, "before:", &m->before);
  print_side(r, "after: ", &m->after);
}

static int by_row_name(const void *pa, const void *pb) {
  const diff_row_t *a = pa, *b = pb;
  int d = strcmp(a->campaign, b->campaign);
  if (!d) d = strcmp(a->step, b->step);
  if (!d) d = strcmp(a->variant, b->variant);
  return d ? d : strcmp(a->metric, b->metric);
}

/* The funnel rows that differ, by campaign, step, variant and metric; returns how many. */
static int report_funnel(const report_t *r, funnel_rows_t *rows) {
  int n = 0;
  if (rows->n > 1) qsort(rows->rows, (size_t)rows->n, sizeof *rows->rows, by_row_name);
  for (int i = 0; i < rows->n; i++) {
    diff_row_t *x = &rows->rows[i];
    if (x->n[0] == x->n[1]) continue;
    if (!n++ && !r->ndjson) puts("funnel (before -> after):");
    if (r->ndjson) {
      json_t *o = json_pack("{s:s, s:s}", "finding", "count", "campaign", x->campaign);
      if (*x->step) json_object_set_new(o, "step", json_string(x->step));
      if (*x->variant) json_object_set_new(o, "variant", json_string(x->variant));
      json_object_set_new(o, "metric", json_string(x->metric));
      json_object_set_new(o, "before", json_integer(x->n[0]));
      json_object_set_new(o, "after", json_integer(x->n[1]));
      print_json(o);
    } else {
      printf("  campaign %s%s%s%s%s: %s %lld -> %lld (%+lld)\n", x->campaign, *x->step ? " step " : "", x->step,
             *x->variant ? " variant " : "", x->variant, x->metric, (long long)x->n[0], (long long)x->n[1],
             (long long)(x->n[1] - x->n[0]));
    }
  }
  return n;
}

/* Points per campaign that differ; returns how many. */
static int report_points(const report_t *r, const action_diff_t *d) {
  int np, n = 0;
  const adiff_points_t *p = adiff_points(d, &np);
  for (int i = 0; i < np; i++) {
    if (!p[i].campaign || (p[i].granted[0] == p[i].granted[1] && p[i].spent[0] == p[i].spent[1])) continue;
    if (!n++ && !r->ndjson) puts("points (before -> after):");
    if (r->ndjson) {
      print_json(json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "finding", "points", "campaign", p[i].campaign,
                           "granted_before", (json_int_t)p[i].granted[0], "granted_after", (json_int_t)p[i].granted[1],
                           "spent_before", (json_int_t)p[i].spent[0], "spent_after", (json_int_t)p[i].spent[1]));
    } else {
      printf("  campaign %s: granted %lld -> %lld, spent %lld -> %lld\n", p[i].campaign, (long long)p[i].granted[0],
             (long long)p[i].granted[1], (long long)p[i].spent[0], (long long)p[i].spent[1]);
    }
  }
  return n;
}

static json_t *statuses_json(const engine_stats_t *s) {
  json_t *o = json_object();
  for (int i = 0; i < AS_COUNT; i++) json_object_set_new(o, action_status_names[i], json_integer((json_int_t)s->actions[i]));
  return o;
}

static void report_totals(const report_t *r, const cli_t *c, const run_result_t res[2], const action_diff_t *d,
                          long members_changed, int identical) {
  if (r->ndjson) {
    json_t *o = json_pack("{s:s, s:b, s:I}", "finding", "total", "identical", identical, "members_changed",
                          (json_int_t)members_changed);
    json_object_set_new(o, "members_with_actions_before", json_integer(adiff_member_count(d, 0)));
    json_object_set_new(o, "members_with_actions_after", json_integer(adiff_member_count(d, 1)));
    json_object_set_new(o, "actions_before", statuses_json(&res[0].stats));
    json_object_set_new(o, "actions_after", statuses_json(&res[1].stats));
    json_object_set_new(o, "events", json_integer((json_int_t)res[0].stats.accepted));
    json_object_set_new(o, "failed_before", json_integer((json_int_t)res[0].stats.failed));
    json_object_set_new(o, "failed_after", json_integer((json_int_t)res[1].stats.failed));
    json_object_set_new(o, "invariant_violations_before", json_integer((json_int_t)res[0].stats.invariant_violations));
    json_object_set_new(o, "invariant_violations_after", json_integer((json_int_t)res[1].stats.invariant_violations));
    print_json(o);
    return;
  }
  if (members_changed > r->limit) printf("  ... and %ld more (--limit N, or --format ndjson for all)\n", members_changed - r->limit);
  printf("totals (before -> after%s):", c->nmembers ? ", all members" : "");
  for (int i = 0; i < AS_COUNT; i++)
    if (res[0].stats.actions[i] || res[1].stats.actions[i])
      printf(" %s %lu -> %lu;", action_status_names[i], res[0].stats.actions[i], res[1].stats.actions[i]);
  printf(" handler failures %lu -> %lu; invariant violations %lu -> %lu\n", res[0].stats.failed, res[1].stats.failed,
         res[0].stats.invariant_violations, res[1].stats.invariant_violations);
  printf("members with actions: %ld -> %ld; members changed: %ld%s\n", adiff_member_count(d, 0),
         adiff_member_count(d, 1), members_changed, c->nmembers ? " (of those selected)" : "");
  printf("%s\n", identical ? "identical" : "different");
}

static int check_args(const cli_t *c, int *ndjson) {
  if (c->npositional) return cli_usage_error(usage, "unexpected argument '%s'", c->positional[0]);
  if (!c->events) return cli_usage_error(usage, "--events FILE is required");
  if (!c->with) return cli_usage_error(usage, "--with NEW (the changed scripts folder) is required");
  if (!c->format || !strcmp(c->format, "text")) *ndjson = 0;
  else if (!strcmp(c->format, "ndjson")) *ndjson = 1;
  else return cli_usage_error(usage, "--format must be text or ndjson, got '%s'", c->format);
  if (c->timeline && !c->nmembers) return cli_usage_error(usage, "--timeline needs --member ID");
  if (c->timeline && *ndjson) return cli_usage_error(usage, "--timeline is text: leave out --format ndjson");
  return 0;
}

int cmd_diff(int argc, char **argv) {
  cli_t c;
  int rc = cli_parse(&c, argc, argv, "events until max-future member timeline with format limit", usage);
  if (rc) return c.help ? 0 : rc;
  report_t rep = {.limit = c.limit};
  if ((rc = check_args(&c, &rep.ndjson))) return rc;
  int64_t until_abs, until_rel;
  if (vrun_parse_until(c.until, &until_abs, &until_rel) < 0)
    return cli_usage_error(usage, "--until must be a duration (30d) or an RFC 3339 time, got '%s'", c.until);
  char tzerr[200];
  rep.tz = tz_load(c.tz, tzerr, sizeof tzerr);
  if (!rep.tz) {
    fprintf(stderr, "hearth: --tz: %s\n", tzerr);
    return 1;
  }
  FILE *in = rereadable_events(c.events);
  if (!in) {
    tz_free(rep.tz);
    return 1;
  }
  action_diff_t *d = adiff_new();
  run_result_t res[2] = {{0}, {0}};
  const char *folders[2] = {c.scripts, c.with};
  int status = 0;
  for (int run = 0; run < 2 && status == 0; run++) {
    if (run == 1) rewind(in);
    status = run_one(&c, folders[run], in, run, d, until_abs, until_rel, &res[run]);
  }
  fclose(in);
  if (status == 0) {
    if (res[0].rejected) fprintf(stderr, "hearth: %lu lines rejected (the same in both runs)\n", res[0].rejected);
    funnel_rows_t rows = {0};
    add_funnel(&rows, 0, res[0].funnel);
    add_funnel(&rows, 1, res[1].funnel);
    if (!rep.ndjson) printf("hearth diff: %s -> %s on %s\n", c.scripts, c.with, c.events);
    int differs = 0;
    if (!c.nmembers) differs += report_funnel(&rep, &rows) + report_points(&rep, d);
    if (!rep.ndjson) puts("members whose actions changed:");
    long changed = adiff_members(d, on_member, &rep);
    if (!changed && !rep.ndjson) puts("  (none)");
    differs += changed > 0;
    /* the new scripts breaking an invariant fails the comparison even when the old ones did too */
    differs += res[1].stats.invariant_violations > 0 || res[0].stats.invariant_violations != res[1].stats.invariant_violations;
    report_totals(&rep, &c, res, d, changed, !differs);
    if (c.timeline) {
      timeline_print(res[0].timeline, "before", stdout);
      timeline_print(res[1].timeline, "after", stdout);
    }
    fprintf(stderr, "hearth diff: compared %ld and %ld actions (%.1f MiB of records)\n", adiff_action_count(d, 0),
            adiff_action_count(d, 1), (double)adiff_bytes(d) / (1024.0 * 1024.0));
    status = differs ? 1 : 0;
    free_funnel(&rows);
  }
  for (int run = 0; run < 2; run++) {
    json_decref(res[run].funnel);
    timeline_free(res[run].timeline);
  }
  adiff_free(d);
  tz_free(rep.tz);
  return status;
}
