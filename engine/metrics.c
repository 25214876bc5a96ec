/* metrics: Prometheus text format for /metrics (see metrics.h). */
#include "metrics.h"
#include "versions.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

static void counter(strbuf_t *sb, const char *name, const char *help, unsigned long v) {
  sb_addf(sb, "# HELP %s %s\n# TYPE %s counter\n%s %lu\n", name, help, name, name, v);
}

static void gauge(strbuf_t *sb, const char *name, const char *help, long long v) {
  sb_addf(sb, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", name, help, name, name, v);
}

/* Label values: escape backslash, quote and newline. */
static void label(strbuf_t *sb, const char *v) {
  for (; *v; v++) {
    if (*v == '\\' || *v == '"') sb_addf(sb, "\\%c", *v);
    else if (*v == '\n') sb_adds(sb, "\\n");
    else sb_add(sb, v, 1);
  }
}

typedef struct {
  strbuf_t *sb;
  int which; /* 0 attempts, 1 delivered, 2 retried, 3 failed, 4 dead */
} family_t;

static const char *const delivery_names[5] = {"attempts", "delivered", "retried", "failed", "dead"};
static const char *const delivery_help[5] = {
    "Delivery attempts per channel since start.", "Actions delivered per channel since start.",
    "Failed attempts scheduled for a retry.", "Failed delivery attempts.",
    "Actions that became dead letters since start."};

static void delivery_line(void *ud, const char *channel, const delivery_counts_t *c) {
  family_t *f = ud;
  unsigned long vals[5] = {c->attempts, c->delivered, c->retried, c->failed, c->dead};
  sb_addf(f->sb, "hearth_delivery_%s_total{channel=\"", delivery_names[f->which]);
  label(f->sb, channel);
  sb_addf(f->sb, "\"} %lu\n", vals[f->which]);
}

/* Per staff member, judged on the engine's clock: members owned, open and overdue tasks. */
typedef struct {
  strbuf_t *sb;
  int which; /* 0 members, 1 open tasks, 2 overdue tasks */
} staff_family_t;

static void staff_line(void *ud, const staff_report_t *r) {
  static const char *const names[3] = {"hearth_staff_members", "hearth_staff_tasks_open", "hearth_staff_tasks_overdue"};
  staff_family_t *f = ud;
  int64_t v[3] = {r->members, r->open, r->overdue};
  sb_addf(f->sb, "%s{staff=\"", names[f->which]);
  label(f->sb, r->staff);
  sb_addf(f->sb, "\"} %lld\n", (long long)v[f->which]);
}

static int staff_metrics(engine_t *e, strbuf_t *sb) {
  static const char *const head[3] = {
      "# HELP hearth_staff_members Members each staff member owns.\n# TYPE hearth_staff_members gauge\n",
      "# HELP hearth_staff_tasks_open Tasks not yet done, per staff member.\n# TYPE hearth_staff_tasks_open gauge\n",
      "# HELP hearth_staff_tasks_overdue Tasks not done by their due time (engine clock), per staff member.\n"
      "# TYPE hearth_staff_tasks_overdue gauge\n"};
  int64_t now = clock_now(&e->clock);
  for (int k = 0; k < 3; k++) {
    sb_adds(sb, head[k]);
    staff_family_t f = {sb, k};
    if (engine_staff_report(e, now, staff_line, &f) < 0) return -1;
  }
  return 0;
}

int metrics_render(engine_t *e, delivery_t *d, http_server_t *http, char **text) {
  store_gauges_t g;
  int db_ok = store_gauges(e->store, &g) == 0; /* else the database gauges are left out */
  strbuf_t sb;
  sb_init(&sb);
  engine_stats_t *s = &e->stats;
  sb_adds(&sb, "# HELP hearth_events_total Events by outcome since start.\n# TYPE hearth_events_total counter\n");
  sb_addf(&sb, "hearth_events_total{outcome=\"accepted\"} %lu\n", s->accepted);
  sb_addf(&sb, "hearth_events_total{outcome=\"duplicate\"} %lu\n", s->duplicates);
  sb_addf(&sb, "hearth_events_total{outcome=\"rejected\"} %lu\n", s->rejected);
  sb_addf(&sb, "hearth_events_total{outcome=\"failed\"} %lu\n", s->failed);
  counter(&sb, "hearth_handler_errors_total", "Handler calls that failed (error, CPU or memory budget).", s->handler_errors);
  counter(&sb, "hearth_commits_total",
          "Transactions committed since start: a slice of POST bodies, a batch of timers, a sweep chunk.", s->commits);
  sb_addf(&sb, "# HELP hearth_script_version_info The script set loaded: the SHA-256 of its files.\n"
               "# TYPE hearth_script_version_info gauge\nhearth_script_version_info{version=\"%s\"} 1\n",
          engine_script_version(e));

  sb_adds(&sb, "# HELP hearth_handler_seconds Time spent in one handler call.\n# TYPE hearth_handler_seconds histogram\n");
  unsigned long cum = 0;
  for (int b = 0; b < HANDLER_BUCKETS; b++) {
    cum += s->handler_hist[b];
    if (b < HANDLER_BUCKETS - 1)
      sb_addf(&sb, "hearth_handler_seconds_bucket{le=\"%g\"} %lu\n", handler_bucket_bounds[b], cum);
    else
      sb_addf(&sb, "hearth_handler_seconds_bucket{le=\"+Inf\"} %lu\n", cum);
  }
  sb_addf(&sb, "hearth_handler_seconds_sum %.6f\nhearth_handler_seconds_count %lu\n", s->handler_seconds, s->handler_calls);

  if (db_ok) gauge(&sb, "hearth_timers_pending", "Durable timers not yet due or not yet fired.", g.timers_pending);
  counter(&sb, "hearth_timers_fired_total", "Timers fired since start.", s->timers_fired);
  counter(&sb, "hearth_timers_cancelled_total", "Timers skipped because they were cancelled.", s->timers_cancelled);

  sb_adds(&sb, "# HELP hearth_actions_total Actions recorded since start, by status and channel.\n"
               "# TYPE hearth_actions_total counter\n");
  for (int i = 0; i < s->nchannels; i++)
    for (int st = 0; st < AS_COUNT; st++) {
      if (!s->by_channel[i].by_status[st]) continue;
      sb_addf(&sb, "hearth_actions_total{status=\"%s\",channel=\"", action_status_names[st]);
      label(&sb, s->by_channel[i].channel);
      sb_addf(&sb, "\"} %lu\n", s->by_channel[i].by_status[st]);
    }
  sb_adds(&sb, "# HELP hearth_invariant_violations_total Actions that broke an invariant since start, by rule.\n"
               "# TYPE hearth_invariant_violations_total counter\n");
  for (int i = 0; i < s->nrules; i++) {
    sb_adds(&sb, "hearth_invariant_violations_total{rule=\"");
    label(&sb, s->by_rule[i].rule);
    sb_addf(&sb, "\"} %lu\n", s->by_rule[i].n);
  }
  if (d) {
    for (int k = 0; k < 5; k++) {
      sb_addf(&sb, "# HELP hearth_delivery_%s_total %s\n# TYPE hearth_delivery_%s_total counter\n",
              delivery_names[k], delivery_help[k], delivery_names[k]);
      family_t f = {&sb, k};
      delivery_each_channel(d, delivery_line, &f);
    }
    gauge(&sb, "hearth_outbox_backlog", "Queued actions not yet delivered.", delivery_backlog(d));
  }
  if (db_ok) {
    gauge(&sb, "hearth_dead_letters", "Actions that failed delivery for good.", g.dead_letters);
    gauge(&sb, "hearth_database_bytes", "Size of the database file (pages in use).", g.database_bytes);
    if (staff_metrics(e, &sb) < 0) db_ok = 0; /* logged by the store; the rest is still served */
  }
  if (http) {
    http_server_stats_t hs;
    http_server_stats(http, &hs);
    counter(&sb, "hearth_http_requests_total", "HTTP requests handled.", hs.requests);
    counter(&sb, "hearth_http_rejected_413_total", "Bodies over the limit.", hs.rejected_413);
    counter(&sb, "hearth_http_rejected_431_total", "Headers over the limit.", hs.rejected_431);
    counter(&sb, "hearth_http_timed_out_total", "Slow clients closed at a deadline.", hs.timed_out);
    counter(&sb, "hearth_http_refused_connections_total", "Connections over the cap.", hs.refused_connections);
    counter(&sb, "hearth_http_evicted_idle_total", "Idle connections closed to make room at the cap.", hs.evicted_idle);
    gauge(&sb, "hearth_http_open_connections", "Open connections.", (long long)hs.open_connections);
    gauge(&sb, "hearth_http_deferred", "Requests waiting for their answer (POST bodies being applied or queued).",
          (long long)hs.deferred);
  }
  *text = sb_take(&sb);
  return db_ok ? 0 : -1;
}
