/* daemon: the libuv event loop of `hearth run` (see daemon.h). */
#include "daemon.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "http_auth.h"
#include "http_server.h"
#include "ingest.h"
#include "log.h"
#include "delivery.h"
#include "member_json.h"
#include "metrics.h"
#include "summary.h"

typedef struct {
  uv_loop_t loop;
  engine_t *e;
  const daemon_opts_t *o;
  http_server_t *http;
  delivery_t *delivery;
  uv_timer_t due_timer;   /* armed for the earliest timer or cron slot */
  uv_timer_t watch_timer; /* real clock: looks for changes other processes committed */
  uv_idle_t sweep_idle;   /* resumes suspended cron sweeps, a chunk per turn */
  uv_signal_t sig_term, sig_int, sig_hup;
  int64_t armed_for;      /* epoch seconds the due timer is armed for, INT64_MAX if idle */
  int64_t data_version;   /* the store's data_version at the last look */
  int stopping;
  int status;
} daemon_t;

/* What time it is on the engine's clock (real, or virtual with --virtual-clock). */
static int64_t clock_time(daemon_t *d) { return clock_now(&d->e->clock); }

static void arm_due_timer(daemon_t *d);

/* Resume a cron sweep by one chunk per loop turn, so ingest is never starved. */
static void on_sweep_idle(uv_idle_t *h) {
  daemon_t *d = h->data;
  int rc = engine_run_until(d->e, clock_time(d), 1);
  delivery_kick(d->delivery);
  if (rc < 0) log_msg(LOG_ERROR, "database error in a cron sweep", "error", engine_db_error(d->e), NULL);
  if (rc <= 0 || !engine_cron_pending(d->e)) uv_idle_stop(h);
  arm_due_timer(d);
}

/* Fire what is due: a few timer batches per loop turn, so ingest is never starved. */
static void on_due(uv_timer_t *t) {
  daemon_t *d = t->data;
  d->armed_for = INT64_MAX;
  int rc = engine_run_until(d->e, clock_time(d), 4);
  delivery_kick(d->delivery);
  if (rc < 0) log_msg(LOG_ERROR, "database error while firing timers", "error", engine_db_error(d->e), NULL);
  if (engine_cron_pending(d->e)) {
    uv_idle_start(&d->sweep_idle, on_sweep_idle);
    return;
  }
  if (rc == 1) {
    d->armed_for = clock_time(d);
    uv_timer_start(&d->due_timer, on_due, 0, 0);
    return;
  }
  arm_due_timer(d);
}

/* Arm the due timer for the earliest timer or cron slot. On a virtual clock it is armed
 * only for what is already due (at start, or set in the past by a handler): the rest waits
 * for the clock to be moved (POST /v1/clock). */
static void arm_due_timer(daemon_t *d) {
  if (d->stopping) return;
  int64_t next = engine_next_due(d->e);
  if (next == INT64_MAX) {
    uv_timer_stop(&d->due_timer);
    d->armed_for = INT64_MAX;
    return;
  }
  int64_t now = clock_time(d);
  d->armed_for = next;
  if (d->e->clock.is_virtual && next > now) {
    uv_timer_stop(&d->due_timer);
    return;
  }
  uint64_t delay = next <= now ? 0 : (uint64_t)(next - now) * 1000u;
  if (delay > 3600000u) delay = 3600000u; /* re-check hourly: the wall clock may jump */
  uv_timer_start(&d->due_timer, on_due, delay, 0);
}

/* Real clock, every second: when another process committed (hearth import setting a
 * timer or queueing an action, hearth dead-letters re-queueing), re-arm the due timer and
 * wake delivery. Our own commits do not change data_version. */
static void on_watch(uv_timer_t *t) {
  daemon_t *d = t->data;
  int64_t v;
  if (d->stopping || store_data_version(d->e->store, &v) < 0) return; /* a failed read is logged */
  if (v == d->data_version) return;
  d->data_version = v;
  arm_due_timer(d);
  delivery_kick(d->delivery);
}

/* The virtual clock was moved: run everything due up to the clock's time (cron sweeps in
 * hand first, then timers and cron in time order) to completion. -1 on a database error
 * (logged). */
static int run_due_now(daemon_t *d) {
  int rc;
  while ((rc = engine_run_until(d->e, clock_time(d), 0)) == 1) continue; /* slice after slice */
  if (rc < 0) log_msg(LOG_ERROR, "database error while running what is due", "error", engine_db_error(d->e), NULL);
  return rc < 0 ? -1 : 0;
}

/* ---- HTTP ---- */

static void reply(http_response_t *res, int status, json_t *body) {
  res->status = status;
  res->body = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
  res->body_len = res->body ? strlen(res->body) : 0;
  json_decref(body);
}

static void reply_error(http_response_t *res, int status, const char *msg) {
  reply(res, status, json_pack("{s:s}", "error", msg));
}

/* Events come as JSON or NDJSON, said so in Content-Type: a browser page can post
 * text/plain across origins without asking, never these. 1 when res holds the 415. */
static int refuse_content_type(const http_request_t *req, http_response_t *res) {
  if (http_content_type_is(req->content_type, "application/json") ||
      http_content_type_is(req->content_type, "application/x-ndjson") ||
      http_content_type_is(req->content_type, "application/ndjson"))
    return 0;
  reply_error(res, 415, "Content-Type must be application/json or application/x-ndjson");
  return 1;
}

/* Everything but /healthz needs the bearer token when one is set. 1 when res holds the 401. */
static int refuse_token(daemon_t *d, const http_request_t *req, http_response_t *res) {
  if (http_auth_ok(req->authorization, d->o->token)) return 0;
  snprintf(res->extra_headers, sizeof res->extra_headers, "WWW-Authenticate: Bearer\r\n");
  reply_error(res, 401, "missing or wrong bearer token");
  return 1;
}

static void post_events(daemon_t *d, const http_request_t *req, http_response_t *res) {
  event_list_t evs;
  char err[512];
  if (refuse_content_type(req, res)) return;
  if (d->o->max_backlog > 0 && delivery_backlog(d->delivery) > d->o->max_backlog) {
    snprintf(res->extra_headers, sizeof res->extra_headers, "Retry-After: 5\r\n");
    reply_error(res, 503, "delivery backlog over its bound: retry later");
    return;
  }
  if (ingest_parse_body(req->body, req->body_len, clock_now(&d->e->clock), d->o->max_future, &evs, err,
                        sizeof err) < 0) {
    d->e->stats.rejected++;
    reply_error(res, 400, err);
    return;
  }
  int *results = xcalloc((size_t)evs.n, sizeof *results);
  if (ingest_batch(d->e, evs.v, evs.n, results) < 0) {
    log_msg(LOG_ERROR, "database error: batch not applied", "error", engine_db_error(d->e), NULL);
    reply_error(res, 500, "database error: nothing of this batch was applied; retry");
  } else {
    json_int_t accepted = 0, dup = 0;
    for (int i = 0; i < evs.n; i++) {
      if (results[i] == EV_DUPLICATE) dup++;
      else accepted++;
    }
    reply(res, 202, json_pack("{s:I, s:I}", "accepted", accepted, "duplicates", dup));
    if (d->e->earliest_timer < d->armed_for) arm_due_timer(d);
    delivery_kick(d->delivery);
  }
  free(results);
  event_list_free(&evs);
}

/* The time a POST /v1/clock body asks for: {"advance":"<duration>"} or {"to":"<RFC 3339>"},
 * never before now. 0, or -1 with a message for the 400. */
static int clock_target(daemon_t *d, const http_request_t *req, int64_t *to, char *err, size_t errlen) {
  json_error_t jerr;
  json_t *body = json_loadb(req->body ? req->body : "", req->body_len, 0, &jerr);
  const char *adv = json_string_value(json_object_get(body, "advance"));
  const char *at = json_string_value(json_object_get(body, "to"));
  int64_t now = clock_time(d), secs;
  int rc = -1;
  char why[200];
  if (!json_is_object(body) || json_object_size(body) != 1 || !(adv || at))
    set_err(err, errlen, "the body must be {\"advance\":\"<duration>\"} or {\"to\":\"<RFC 3339 time>\"}");
  else if (adv && duration_parse(adv, &secs, why, sizeof why) < 0)
    set_err(err, errlen, "advance: %s", why);
  else if (at && rfc3339_parse(at, to, why, sizeof why) < 0)
    set_err(err, errlen, "to: %s", why);
  else if (at && *to < now) {
    char buf[32];
    set_err(err, errlen, "the clock cannot go back (it is %s)", engine_fmt_time(d->e, now, buf));
  } else {
    if (adv) *to = now + secs;
    rc = 0;
  }
  json_decref(body);
  return rc;
}

/* POST /v1/clock (virtual clock only): move the clock, run everything due up to its new
 * time, start the deliveries now due, then answer {"now": ...}: whatever was not started
 * when the answer goes out was not due. */
static void post_clock(daemon_t *d, const http_request_t *req, http_response_t *res) {
  int64_t to;
  char err[300], buf[32];
  if (clock_target(d, req, &to, err, sizeof err) < 0) return reply_error(res, 400, err);
  clock_set(&d->e->clock, to);
  if (run_due_now(d) < 0) return reply_error(res, 500, "database error while running what is due; see the log");
  arm_due_timer(d);
  delivery_pump(d->delivery);
  reply(res, 200, json_pack("{s:s}", "now", engine_fmt_time(d->e, clock_time(d), buf)));
}

static void on_request(const http_request_t *req, http_response_t *res, void *ud) {
  daemon_t *d = ud;
  int get = strcmp(req->method, "GET") == 0, post = strcmp(req->method, "POST") == 0;
  if (!strcmp(req->path, "/healthz")) {
    if (!get) return reply_error(res, 405, "use GET");
    return reply(res, 200, json_pack("{s:s}", "status", d->stopping ? "stopping" : "ok"));
  }
  if (refuse_token(d, req, res)) return;
  if (!strcmp(req->path, "/v1/events")) {
    if (!post) return reply_error(res, 405, "use POST");
    return post_events(d, req, res);
  }
  if (!strncmp(req->path, "/v1/members/", 12)) {
    if (!get) return reply_error(res, 405, "use GET");
    json_t *m;
    int found = member_json_read(d->e->store, d->e->tz, req->path + 12, 20, &m);
    if (found < 0) return reply_error(res, 500, "database error reading the member (see the server log)");
    if (!found) return reply_error(res, 404, "no such member");
    return reply(res, 200, m);
  }
  if (!strcmp(req->path, "/v1/campaigns")) {
    if (!get) return reply_error(res, 405, "use GET");
    json_t *summary = summary_json(d->e->store);
    if (!summary) return reply_error(res, 500, "database error reading the funnel (see the server log)");
    return reply(res, 200, summary);
  }
  if (!strcmp(req->path, "/v1/clock") && d->e->clock.is_virtual) {
    if (!post) return reply_error(res, 405, "use POST");
    return post_clock(d, req, res);
  }
  if (!strcmp(req->path, "/metrics")) {
    if (!get) return reply_error(res, 405, "use GET");
    res->status = 200;
    res->content_type = "text/plain; version=0.0.4";
    metrics_render(d->e, d->delivery, d->http, &res->body); /* -1: partial (logged), still served */
    res->body_len = strlen(res->body);
    return;
  }
  reply_error(res, 404, "not found");
}

/* A request with a body, before any of it is read: refused here when on_request would
 * refuse it on the headers alone (token, content type), so that nobody without the token
 * makes the daemon buffer a body. 1 when res holds the answer. */
static int on_request_head(const http_request_t *req, http_response_t *res, void *ud) {
  daemon_t *d = ud;
  if (!strcmp(req->path, "/healthz")) return 0;
  if (refuse_token(d, req, res)) return 1;
  return !strcmp(req->path, "/v1/events") && !strcmp(req->method, "POST") &&
         refuse_content_type(req, res);
}

/* ---- signals and shutdown ---- */

static void close_cb(uv_handle_t *h) { (void)h; }

static void begin_stop(daemon_t *d, const char *why) {
  if (d->stopping) return;
  d->stopping = 1;
  log_msg(LOG_INFO, "stopping", "signal", why, NULL);
  http_server_stop_accepting(d->http);
  http_server_close(d->http);
  delivery_stop(d->delivery);
  uv_close((uv_handle_t *)&d->due_timer, close_cb);
  uv_close((uv_handle_t *)&d->watch_timer, close_cb);
  uv_close((uv_handle_t *)&d->sweep_idle, close_cb);
  uv_close((uv_handle_t *)&d->sig_term, close_cb);
  uv_close((uv_handle_t *)&d->sig_int, close_cb);
  uv_close((uv_handle_t *)&d->sig_hup, close_cb);
}

static void on_signal(uv_signal_t *s, int signum) {
  daemon_t *d = s->data;
  if (signum == SIGHUP) {
    char *err = NULL;
    if (engine_reload(d->e, &err) < 0) {
      log_msg(LOG_ERROR, "reload failed; keeping the scripts already loaded", "errors", err, NULL);
      free(err);
    } else {
      char derr[512];
      if (delivery_reload(d->delivery, derr, sizeof derr) < 0)
        log_msg(LOG_ERROR, "reload: channels not changed", "error", derr, NULL);
      log_msg(LOG_INFO, "scripts reloaded", NULL);
      arm_due_timer(d);
    }
    return;
  }
  begin_stop(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* Timers and cron run in slices of this much wall time; the loop serves HTTP, signals
 * and /healthz between them. */
#define DAEMON_SLICE_MS 50

int daemon_run(engine_t *e, const daemon_opts_t *o) {
  daemon_t d = {.e = e, .o = o, .armed_for = INT64_MAX};
  e->slice_ns = (uint64_t)DAEMON_SLICE_MS * 1000000u;
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&d.loop);
  http_server_opts_t ho = {.host = o->host, .port = o->port, .max_body = o->max_body,
                           .max_connections = o->max_connections,
                           .max_per_client = o->max_connections_per_client,
                           .header_timeout_ms = o->header_timeout_ms,
                           .body_timeout_ms = o->body_timeout_ms,
                           .handler = on_request, .gate = on_request_head, .ud = &d};
  char err[256];
  d.http = http_server_start(&d.loop, &ho, err, sizeof err);
  if (!d.http) {
    fprintf(stderr, "hearth: %s\n", err);
    uv_run(&d.loop, UV_RUN_DEFAULT);
    uv_loop_close(&d.loop);
    return 1;
  }
  d.delivery = delivery_start(&d.loop, e, err, sizeof err);
  if (!d.delivery) {
    fprintf(stderr, "hearth: %s\n", err);
    http_server_close(d.http);
    uv_run(&d.loop, UV_RUN_DEFAULT);
    uv_loop_close(&d.loop);
    return 1;
  }
  uv_timer_init(&d.loop, &d.due_timer);
  d.due_timer.data = &d;
  uv_timer_init(&d.loop, &d.watch_timer);
  d.watch_timer.data = &d;
  if (!e->clock.is_virtual) {
    if (store_data_version(e->store, &d.data_version) < 0) d.data_version = -1; /* logged */
    uv_timer_start(&d.watch_timer, on_watch, 1000, 1000);
  }
  uv_idle_init(&d.loop, &d.sweep_idle);
  d.sweep_idle.data = &d;
  uv_signal_t *sigs[3] = {&d.sig_term, &d.sig_int, &d.sig_hup};
  int nums[3] = {SIGTERM, SIGINT, SIGHUP};
  for (int i = 0; i < 3; i++) {
    uv_signal_init(&d.loop, sigs[i]);
    sigs[i]->data = &d;
    uv_signal_start(sigs[i], on_signal, nums[i]);
  }
  char addr[128];
  snprintf(addr, sizeof addr, "%s:%d", o->host, http_server_port(d.http));
  log_msg(LOG_INFO, "listening", "addr", addr, "db", store_path(e->store), "tz", tz_name(e->tz), NULL);
  if (e->clock.is_virtual) {
    char now[32];
    log_msg(LOG_INFO, "on a virtual clock: time moves only with POST /v1/clock", "now",
            engine_fmt_time(e, e->now, now), NULL);
  }
  arm_due_timer(&d);
  uv_run(&d.loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&d.loop);
  if (rc != 0) log_msg(LOG_WARN, "loop closed with handles still open", NULL);
  log_msg(LOG_INFO, "stopped", NULL);
  return d.status;
}
