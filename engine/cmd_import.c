/* cmd_import: `hearth import FILE|-`. Reads NDJSON, validates each line, applies the good
 * ones in transactions of --batch events (default 5000), reports each bad line with its
 * number and field, shows progress on stderr for long files, and ends with a summary. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cluster_node.h"
#include "ingest.h"
#include "log.h"

static const char *usage =
    "usage: hearth import FILE|- [--stale-after DURATION] [--batch N] [--max-future DUR]\n"
    "                           [--json] [--quiet]\n\n"
    "Ingest NDJSON events (one JSON object per line) into the database as history, on\n"
    "event time: each event runs the scripts at its own time, after every timer and cron\n"
    "slot due before it; then the clock runs on to now. What comes due is judged at its\n"
    "own time (caps, quiet hours, subscription then) and recorded with that time; what\n"
    "came due more than --stale-after before now is recorded as `expired` and never\n"
    "delivered. Timers still pending go out on time once `hearth run` runs. An event\n"
    "older than the one before it applies at the clock's time (the file is history:\n"
    "keep it in time order). Bad lines are reported with their number and field and skip\n"
    "nothing else; event ids already seen are counted as duplicates and not run again.\n\n"
    "  --stale-after DURATION  how late an action may be and still be delivered (default\n"
    "              1d: a day-3 touchpoint sent a week late is not that touchpoint any more)\n"
    "  --batch N   events per transaction (default 5000; a crash loses nothing: run the\n"
    "              same import again and what was committed counts as duplicates). Each\n"
    "              batch is synced to disk while the next one runs, and is on disk before\n"
    "              the next commits; all of them are before the summary is printed\n"
    CLI_MAX_FUTURE_HELP
    "  --cluster URL  publish the events to a cluster's partitions instead (NATS\n"
    "              JetStream, see docs/SCALE.md): each is stored in JetStream before the\n"
    "              command returns, and its partition's engine applies it on event time,\n"
    "              with --stale-after as here; --batch is the events per publish round\n"
    "  --json      print the summary as JSON on stdout\n"
    "  --quiet     no progress lines\n"
    "Exit status: 0 all lines taken, 1 some lines rejected or failed (or a database\n"
    "error), 2 usage error.\n";

typedef struct {
  engine_t *e;
  int *results;
  unsigned long lines, rejected, failed_events;
  int db_error;
} importer_t;

/* One chunk read ahead: its refused lines reported, its events applied in a transaction. */
static void apply_chunk(importer_t *im, const char *name, ingest_chunk_t *ch) {
  for (int i = 0; i < ch->nrefused; i++) {
    im->rejected++;
    fprintf(stderr, "%s:%lu: rejected: %s\n", name, ch->refused[i].lineno, ch->refused[i].msg);
  }
  if (ch->lines) im->lines = ch->lines;
  event_list_t *batch = &ch->events;
  if (!batch->n) return;
  if (ingest_batch(im->e, batch->v, batch->n, im->results) < 0) {
    fprintf(stderr, "hearth: database error, batch of %d events not applied: %s\n", batch->n,
            engine_db_error(im->e));
    im->db_error = 1;
  } else {
    for (int i = 0; i < batch->n; i++) im->failed_events += im->results[i] == EV_FAILED;
  }
}

static void print_summary(importer_t *im, const char *name, double secs, int json) {
  engine_stats_t *s = &im->e->stats;
  if (json) {
    json_t *acts = json_object();
    for (int i = 0; i < AS_COUNT; i++) json_object_set_new(acts, action_status_names[i], json_integer((json_int_t)s->actions[i]));
    json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:o, s:f}", "file", name, "lines", (json_int_t)im->lines,
                          "accepted", (json_int_t)s->accepted, "duplicates", (json_int_t)s->duplicates,
                          "rejected", (json_int_t)im->rejected, "failed", (json_int_t)im->failed_events,
                          "actions", acts, "seconds", secs);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    printf("%s\n", text ? text : "{}");
    free(text);
    json_decref(o);
    return;
  }
  printf("%s: %lu events accepted, %lu duplicates, %lu rejected, %lu failed\n", name, s->accepted,
         s->duplicates, im->rejected, im->failed_events);
  printf("actions:");
  for (int i = 0; i < AS_COUNT; i++) printf(" %s %lu%s", action_status_names[i], s->actions[i], i + 1 < AS_COUNT ? "," : "");
  printf("\n");
  if (im->failed_events)
    printf("failed events are kept with their tracebacks: see 'hearth stats' and the log above\n");
}

/* hearth import --cluster: validate as the local import does, publish in rounds. */
static int import_to_cluster(const cli_t *c, const char *name, FILE *in, int64_t stale_after) {
  char err[512] = "";
  cluster_t *cl = cluster_connect(c->cluster, "hearth-import", err, sizeof err);
  cluster_layout_t l;
  if (!cl || cluster_layout(cl, &l, err, sizeof err) < 0) {
    fprintf(stderr, "hearth: %s\n", err);
    if (cl) cluster_close(cl);
    return 1;
  }
  hclock_t wall;
  clock_init_real(&wall);
  event_list_t batch = {0};
  ndjson_reader_t rd;
  ndjson_from_stream(&rd, in);
  const char *line;
  size_t len;
  int more, failed = 0;
  unsigned long published = 0, rejected = 0;
  uint64_t start = mono_ns(), last_progress = start;
  while (!failed && (more = ndjson_next(&rd, &line, &len)) > 0) {
    char msg[400];
    event_t *ev = event_list_push(&batch);
    int64_t now = clock_now(&wall);
    if (event_parse(line, len, ev, msg, sizeof msg) < 0 || event_check_time(ev, now, c->max_future, msg, sizeof msg) < 0) {
      event_clear(ev);
      batch.n--;
      rejected++;
      fprintf(stderr, "%s:%lu: rejected: %s\n", name, rd.lineno, msg);
      continue;
    }
    if (!ev->has_time) ev->time = now, ev->has_time = 1;
    if (batch.n >= c->batch) {
      if (cluster_publish_events(cl, l.partitions, batch.v, batch.n, clock_now(&wall), stale_after, err, sizeof err) < 0) failed = 1;
      else published += (unsigned long)batch.n;
      event_list_reset(&batch);
    }
    uint64_t t = mono_ns();
    if (!c->quiet && t - last_progress > 2000000000ull) {
      fprintf(stderr, "hearth: %lu events published (%.0f/s)\n", published, (double)published / ((double)(t - start) / 1e9));
      last_progress = t;
    }
  }
  if (more < 0) {
    fprintf(stderr, "hearth: reading %s: %s\n", name, strerror(errno));
    failed = 1;
  }
  if (!failed && batch.n) {
    if (cluster_publish_events(cl, l.partitions, batch.v, batch.n, clock_now(&wall), stale_after, err, sizeof err) < 0) failed = 1;
    else published += (unsigned long)batch.n;
  }
  if (failed && *err) fprintf(stderr, "hearth: publishing failed after %lu events: %s (running the import again is safe for events with an id)\n", published, err);
  ndjson_close(&rd);
  event_list_free(&batch);
  cluster_close(cl);
  double secs = (double)(mono_ns() - start) / 1e9;
  if (c->json) {
    json_t *o = json_pack("{s:s, s:I, s:I, s:i, s:f}", "file", name, "published", (json_int_t)published, "rejected",
                          (json_int_t)rejected, "partitions", l.partitions, "seconds", secs);
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    printf("%s\n", text);
    free(text);
    json_decref(o);
  } else
    printf("%s: %lu events published to %d partitions, %lu rejected (%.1f s)\n", name, published, l.partitions,
           rejected, secs);
  return failed || rejected ? 1 : 0;
}

int cmd_import(int argc, char **argv) {
  cli_t c;
  int rc = cli_parse(&c, argc, argv, "batch json quiet stale-after max-future cluster", usage);
  if (rc) return c.help ? 0 : rc;
  int64_t stale_after = 86400;
  if (c.stale_after) {
    char derr[200];
    if (duration_parse(c.stale_after, &stale_after, derr, sizeof derr) < 0 || stale_after <= 0)
      return cli_usage_error(usage, "--stale-after must be a positive duration such as 1d or 12h, got '%s'",
                             c.stale_after);
  }
  if (!c.batch_set) c.batch = 5000;
  if (c.npositional != 1) return cli_usage_error(usage, "import takes one FILE (or - for standard input)");
  const char *name = c.positional[0];
  FILE *in = strcmp(name, "-") == 0 ? stdin : fopen(name, "r");
  if (!in) {
    fprintf(stderr, "hearth: cannot open %s: %s\n", name, strerror(errno));
    return 1;
  }
  if (c.cluster) {
    int status = import_to_cluster(&c, name, in, stale_after);
    if (in != stdin) fclose(in);
    return status;
  }
  engine_opts_t eo;
  cli_engine_opts(&c, &eo);
  char *err;
  engine_t *e = engine_open(&eo, &err);
  if (!e) {
    fprintf(stderr, "hearth: %s%s", err, err[strlen(err) - 1] == '\n' ? "" : "\n");
    free(err);
    if (in != stdin) fclose(in);
    return 1;
  }
  engine_use_history_clock(e, stale_after);
  char why[400];
  if (engine_sync_behind(e, 1, why, sizeof why) < 0) /* each commit then waits for its own sync */
    log_msg(LOG_WARN, "each batch's commit waits for its own sync (synchronous=FULL)", "error", why, NULL);
  hclock_t wall; /* the real present: the engine's clock is history's */
  clock_init_real(&wall);
  importer_t im = {.e = e};
  im.results = xcalloc((size_t)c.batch, sizeof *im.results);
  uint64_t start = mono_ns(), last_progress = start;
  int show_progress = !c.quiet;
  /* the next batch is read and parsed while this one is applied */
  ingest_ahead_t *ahead = ingest_ahead_start(in, c.batch, c.max_future);
  for (;;) {
    ingest_chunk_t *ch = ingest_ahead_next(ahead);
    apply_chunk(&im, name, ch);
    if (ch->read_errno && !im.db_error) {
      fprintf(stderr, "hearth: reading %s: %s\n", name, strerror(ch->read_errno));
      im.db_error = 1;
    }
    if (ch->end || im.db_error) break;
    uint64_t now = mono_ns();
    if (show_progress && now - last_progress > 2000000000ull) {
      double secs = (double)(now - start) / 1e9;
      fprintf(stderr, "hearth: %lu lines, %lu events accepted (%.0f lines/s)\n", im.lines,
              e->stats.accepted, (double)im.lines / secs);
      last_progress = now;
    }
  }
  ingest_ahead_stop(ahead);
  /* the history is in: run the clock on to now; what is due later waits for the daemon */
  int64_t now = clock_now(&wall);
  if (!im.db_error && engine_run_until(e, now > e->now ? now : e->now, 0) < 0) {
    fprintf(stderr, "hearth: database error while running the clock to now: %s\n", engine_db_error(e));
    im.db_error = 1;
  }
  if (in != stdin) fclose(in);
  if (engine_sync(e) < 0 && !im.db_error) { /* the summary counts what is on disk */
    fprintf(stderr, "hearth: database error: %s; run the import again\n", engine_db_error(e));
    im.db_error = 1;
  }
  print_summary(&im, name, (double)(mono_ns() - start) / 1e9, c.json);
  /* handlers of timers and cron runs fail too (a causal chain cut short, a cron run) */
  int status = im.db_error || im.rejected || im.failed_events || e->stats.handler_errors ? 1 : 0;
  free(im.results);
  engine_close(e);
  return status;
}
