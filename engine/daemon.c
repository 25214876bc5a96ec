/* daemon: the libuv event loop of `hearth run` (see daemon.h): the routes, the queue of
 * POST bodies applied a slice at a time, the due timer and the stop sequence. */
#include "daemon.h"
#include "versions.h"

#include <assert.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "console.h"
#include "console_api.h"
#include "http_auth.h"
#include "http_reply.h"
#include "http_server.h"
#include "ingest.h"
#include "log.h"
#include "delivery.h"
#include "member_json.h"
#include "metrics.h"
#include "retention.h"
#include "summary.h"

/* Timers, cron and POST bodies run in slices of this much wall time (the engine stops
 * between two events or timers once it is spent); the loop serves HTTP, signals and
 * /healthz between them. */
#define DAEMON_SLICE_MS 50
/* POST /v1/events bodies parsed and waiting behind the one being applied; one more gets
 * 503 with Retry-After. */
#define DAEMON_MAX_WAITING_BODIES 8
/* A body up to this size is parsed on the loop at once (less work than the hand-off to the
 * thread pool, and bodies that come together are then applied together); a larger one
 * is parsed on the thread pool while the loop goes on. */
#define DAEMON_PARSE_ON_LOOP_BYTES (64 * 1024)
/* After SIGTERM, how long answers already given may take to be written and read before
 * every connection is closed. */
#define DAEMON_STOP_DRAIN_MS 1000
/* Retention runs this often on the engine's clock; the real clock looks every minute. */
#define DAEMON_RETENTION_EVERY 3600
#define DAEMON_RETENTION_LOOK_MS 60000

/* A POST /v1/events body: parsed and validated whole (a large one on libuv's thread pool),
 * then applied a slice at a time. Until `parsed`, the worker owns body, evs and err. */
typedef struct post_job {
  struct post_job *next;
  struct daemon *d;
  http_deferred_t *reply;  /* the answer, given once the last slice's commit is on disk */
  uv_work_t work;
  char *body;              /* a copy of the request's body, while it is parsed */
  size_t len;
  int64_t received;        /* the daemon's clock when it came (for --max-future) */
  int parse_rc;
  char err[512];           /* why the body was refused (parse_rc < 0) */
  int parsed;
  event_list_t evs;
  int *results;            /* one EV_* per event applied */
  int applied;             /* events applied and committed so far */
  int fed;                 /* events fed to the transaction in progress (>= applied) */
  uint64_t commit;         /* the store's commit that holds its last event (its 202 waits
                              until that commit is on disk) */
} post_job_t;

typedef struct daemon {
  uv_loop_t loop;
  engine_t *e;
  const daemon_opts_t *o;
  http_server_t *http;
  delivery_t *delivery;
  uv_timer_t due_timer;   /* armed for the earliest timer or cron slot */
  uv_timer_t watch_timer; /* real clock: looks for changes other processes committed */
  uv_idle_t due_idle;     /* goes on with what is due, a slice per loop turn */
  uv_idle_t apply_idle;   /* applies the POST bodies in hand, a slice per loop turn */
  uv_timer_t stop_timer;  /* after SIGTERM: closes the HTTP server once answers are out */
  uv_async_t synced;      /* the store's log sync thread: a commit is on disk */
  int sync_behind;        /* commits are synced on that thread (else each syncs itself) */
  post_job_t *jobs, *jobs_last; /* the body being applied first, then those waiting */
  int njobs;
  uint64_t stop_deadline; /* uv_now after which the HTTP server is closed regardless */
  uv_signal_t sig_term, sig_int, sig_hup;
  int64_t armed_for;      /* epoch seconds the due timer is armed for, INT64_MAX if idle */
  int64_t data_version;   /* the store's data_version at the last look */
  uv_timer_t retention_timer; /* real clock: looks whether retention is due */
  uv_idle_t retention_idle;   /* a retention chunk per loop turn */
  retention_opts_t retention_opts;
  retention_run_t retention;
  int64_t retention_next;     /* engine time the next retention is due */
  int retention_phase;        /* 0 idle, 1 purging, 2 giving pages back */
  int stopping;
  int status;
} daemon_t;

/* What time it is on the engine's clock (real, or virtual with --virtual-clock). */
static int64_t clock_time(daemon_t *d) { return clock_now(&d->e->clock); }

static void arm_due_timer(daemon_t *d);

/* One slice of what is due: a few timer batches or sweep chunks, within the slice of
 * wall time. Returns engine_run_until's 1 (more is due), 0 or -1 (logged). */
static int run_due_slice(daemon_t *d) {
  int rc = engine_run_until(d->e, clock_time(d), 4);
  delivery_kick(d->delivery);
  if (rc < 0) log_msg(LOG_ERROR, "database error while firing timers", "error", engine_db_error(d->e), NULL);
  return rc;
}

/* More was due than one slice ran: go on a slice per loop turn. An idle handle, so that
 * the loop polls for I/O between slices (a zero-delay timer restarted from its own
 * callback runs again before any I/O on libuv before 1.45). */
static void on_due_idle(uv_idle_t *h) {
  daemon_t *d = h->data;
  if (run_due_slice(d) == 1) return;
  uv_idle_stop(h);
  arm_due_timer(d);
}

/* Fire what is due; what does not fit in one slice goes on from due_idle. */
static void on_due(uv_timer_t *t) {
  daemon_t *d = t->data;
  d->armed_for = INT64_MAX;
  if (run_due_slice(d) == 1) {
    d->armed_for = clock_time(d);
    uv_idle_start(&d->due_idle, on_due_idle);
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
  if (!d->e->in_batch) engine_broadcasts_reload(d->e); /* `hearth broadcast start` */
  arm_due_timer(d);
  delivery_kick(d->delivery);
}

/* The virtual clock was moved: run everything due up to the clock's time (cron sweeps in
 * hand first, then timers and cron in time order) to completion. -1 on a database error
 * (logged). */
static int run_due_now(daemon_t *d) {
  int rc;
  if (!d->e->in_batch) engine_broadcasts_reload(d->e); /* one started from the CLI since */
  while ((rc = engine_run_until(d->e, clock_time(d), 0)) == 1) continue; /* slice after slice */
  if (rc < 0) log_msg(LOG_ERROR, "database error while running what is due", "error", engine_db_error(d->e), NULL);
  return rc < 0 ? -1 : 0;
}

/* ---- retention: hourly on the engine's clock (retention.h) ---- */

static int retention_wanted(daemon_t *d) { return d->e->dedupe_window > 0 || d->o->keep_actions > 0; }

/* Start a purge when one is due: 1 started, 0 not due (or one in hand), -1 (logged). */
static int retention_start(daemon_t *d) {
  int64_t now = clock_time(d);
  if (d->retention_phase || !retention_wanted(d) || now < d->retention_next) return 0;
  d->retention_next = now + DAEMON_RETENTION_EVERY;
  d->retention_opts = (retention_opts_t){
      .actions_before = d->o->keep_actions > 0 ? now - d->o->keep_actions : INT64_MIN,
      .dead_before = INT64_MIN,
      .seen_before = d->e->dedupe_window > 0 ? now - d->e->dedupe_window : INT64_MIN};
  if (retention_begin(d->e->store, &d->retention_opts, &d->retention) < 0) return -1;
  d->retention_phase = 1;
  return 1;
}

static void log_retention(daemon_t *d) {
  const retention_run_t *r = &d->retention;
  if (!r->actions && !r->seen) return;
  char actions[24], seen[24];
  snprintf(actions, sizeof actions, "%lld", (long long)r->actions);
  snprintf(seen, sizeof seen, "%lld", (long long)r->seen);
  log_msg(LOG_INFO, "retention: purged", "actions", actions, "event_ids", seen, NULL);
}

/* One chunk of the purge in hand, then the pages it freed: 1 while more is left, 0 when
 * done, -1 on an error (logged; the purge ends, the next one comes in an hour). */
static int retention_slice(daemon_t *d) {
  char err[600];
  int rc = 0;
  if (d->retention_phase == 1) {
    rc = retention_step(d->e->store, &d->retention_opts, &d->retention, err, sizeof err);
    if (rc < 0) log_msg(LOG_ERROR, "retention failed", "error", err, NULL);
    if (rc == 0) {
      log_retention(d);
      d->retention_phase = 2;
      rc = 1;
    }
  } else if (d->retention_phase == 2) {
    rc = retention_shrink_step(d->e->store);
  }
  if (rc <= 0) d->retention_phase = 0;
  return rc;
}

static void on_retention_idle(uv_idle_t *h) {
  daemon_t *d = h->data;
  if (d->stopping || retention_slice(d) != 1) uv_idle_stop(h);
}

/* Real clock, every minute: start the hourly retention when it is due. */
static void on_retention_timer(uv_timer_t *t) {
  daemon_t *d = t->data;
  if (!d->stopping && retention_start(d) == 1) uv_idle_start(&d->retention_idle, on_retention_idle);
}

/* The virtual clock was moved: the retention due by now runs to its end. -1 (logged). */
static int retention_run_now(daemon_t *d) {
  int rc = retention_start(d);
  while (rc == 1) rc = retention_slice(d);
  return rc;
}

/* ---- HTTP ---- */

static void reply(http_response_t *res, int status, json_t *body) { http_reply_json(res, status, body); }
static void reply_error(http_response_t *res, int status, const char *msg) { http_reply_error(res, status, msg); }
static int refuse_content_type(const http_request_t *req, http_response_t *res) {
  return http_refuse_events_type(req, res);
}
static int refuse_token(daemon_t *d, const http_request_t *req, http_response_t *res) {
  return http_refuse_token(req, res, d->o->token);
}

/* ---- POST /v1/events: bodies applied a slice at a time ---- */

static void on_apply_idle(uv_idle_t *h);

static void job_free(post_job_t *j) {
  event_list_free(&j->evs);
  free(j->results);
  free(j);
}

/* Take job j off the queue and give its answer. */
static void job_answer(daemon_t *d, post_job_t *j, http_response_t *res) {
  assert(j->parsed);
  post_job_t **link = &d->jobs, *prev = NULL;
  while (*link != j) {
    assert(*link);
    prev = *link;
    link = &(*link)->next;
  }
  *link = j->next;
  if (d->jobs_last == j) d->jobs_last = prev;
  d->njobs--;
  http_server_respond(j->reply, res);
  job_free(j);
}

/* The 202 once the last slice's commit is on disk: every event is durable. */
static void job_accepted(daemon_t *d) {
  post_job_t *j = d->jobs;
  json_int_t accepted = 0, dup = 0;
  http_response_t res;
  for (int i = 0; i < j->evs.n; i++) {
    if (j->results[i] == EV_DUPLICATE) dup++;
    else accepted++;
  }
  http_response_init(&res);
  reply(&res, 202, json_pack("{s:I, s:I}", "accepted", accepted, "duplicates", dup));
  job_answer(d, j, &res);
}

/* A body not applied to its end: status (500 after a database error, 503 when stopping)
 * with what was applied. The slices committed before stay; events with ids are
 * duplicates when the whole body is sent again within the dedupe window. */
static void job_failed_one(daemon_t *d, post_job_t *j, int status, const char *why) {
  char msg[400];
  http_response_t res;
  snprintf(msg, sizeof msg,
           "%s: %d of the %d events of this body were applied and committed (the first %d, in "
           "order), the rest were not; sending the body again is safe for events with ids (those "
           "applied are duplicates within the dedupe window)",
           why, j->applied, j->evs.n, j->applied);
  char counts[64];
  snprintf(counts, sizeof counts, "%d of %d", j->applied, j->evs.n);
  log_msg(LOG_WARN, "a body not applied to its end", "why", why, "applied", counts, NULL);
  http_response_init(&res);
  reply(&res, status, json_pack("{s:s, s:i, s:i}", "error", msg, "applied", j->applied, "events", j->evs.n));
  job_answer(d, j, &res);
}

static void job_failed(daemon_t *d, int status, const char *why) { job_failed_one(d, d->jobs, status, why); }

/* The bodies applied whole, in order, whose commit is on disk: 202. When the log could not
 * be synced, those waiting for it get 500 (their events may not be on disk). */
static void answer_durable(daemon_t *d) {
  while (d->jobs && d->jobs->parsed && d->jobs->results && d->jobs->applied == d->jobs->evs.n) {
    int durable = store_durable(d->e->store, d->jobs->commit);
    if (durable == 0) return; /* on_synced comes back */
    if (durable < 0) {
      log_msg(LOG_ERROR, "database error", "error", engine_db_error(d->e), NULL);
      job_failed(d, 500, "database error: the log could not be synced, so what was committed may not be on disk");
      continue;
    }
    job_accepted(d);
  }
}

/* A body has events not yet fed to a transaction. */
static int work_left(daemon_t *d) {
  for (post_job_t *j = d->jobs; j && j->parsed; j = j->next)
    if (j->results && j->fed < j->evs.n) return 1;
  return 0;
}

/* One slice: a transaction over the waiting bodies in order, as many events as the slice
 * of wall time allows, committed before the loop turns (a group commit: bodies posted at
 * once share one commit). A body is answered 202 once the commit that holds its last event
 * is on disk (answer_durable, now or from on_synced); after a database error, every body
 * with events in the rolled-back transaction is answered 500 with what of it was
 * committed before, once that is on disk (or with a warning that it may not be). */
static void on_apply_idle(uv_idle_t *h) {
  daemon_t *d = h->data;
  if (!d->jobs || d->stopping) {
    uv_idle_stop(h);
    return;
  }
  if (!d->jobs->parsed) { /* its parse_done starts the slices again */
    uv_idle_stop(h);
    return;
  }
  assert(!d->e->in_batch);
  uint64_t deadline = d->e->slice_ns ? mono_ns() + d->e->slice_ns : 0;
  int touched = 0, failed = 0;
  for (post_job_t *j = d->jobs; j && j->parsed; j = j->next) {
    if (j->fed == j->evs.n) continue; /* applied whole: waits for its commit's sync */
    if (touched && deadline && mono_ns() >= deadline) break;
    touched++;
    int n = ingest_feed(d->e, j->evs.v + j->fed, j->evs.n - j->fed, deadline, j->results + j->fed);
    if (n < 0) {
      failed = 1;
      break;
    }
    j->fed += n;
    if (j->fed < j->evs.n) break; /* the slice is spent inside this body */
  }
  if (!failed && d->e->in_batch && engine_commit(d->e) < 0) failed = 1;
  if (failed) {
    log_msg(LOG_ERROR, "database error: the rest of a body not applied", "error", engine_db_error(d->e), NULL);
    /* what they had committed before is on disk before they are told so */
    const char *why = engine_sync(d->e) == 0 ? "database error"
                                              : "database error (the log could not be synced: what was "
                                                "committed may not be on disk)";
    /* the touched bodies, after those applied whole that wait for their sync */
    post_job_t *j = d->jobs;
    while (j && j->fed == j->evs.n && j->applied == j->evs.n) j = j->next;
    for (int k = 0; k < touched && j; k++) {
      post_job_t *next = j->next;
      job_failed_one(d, j, 500, why);
      j = next;
    }
    answer_durable(d); /* those before: a failed sync fails them too */
  } else {
    uint64_t commit = store_last_commit(d->e->store);
    for (post_job_t *j = d->jobs; j && j->parsed; j = j->next)
      if (j->fed > j->applied) {
        j->applied = j->fed;
        if (j->applied == j->evs.n) j->commit = commit;
      }
    if (d->e->earliest_timer < d->armed_for) arm_due_timer(d);
    delivery_kick(d->delivery);
    answer_durable(d);
  }
  if (!work_left(d)) uv_idle_stop(h);
}

/* On the loop, after the sync thread has made commits durable: answer the bodies they
 * hold, and deliver the actions the last one queued (delivery held them back till now). */
static void on_synced(uv_async_t *a) {
  daemon_t *d = a->data;
  answer_durable(d);
  if (store_outbox_take_held(d->e->store)) delivery_kick(d->delivery);
}

/* On the sync thread (under its lock): wake the loop. */
static void wake_loop(void *ud) { uv_async_send(ud); }

/* SIGTERM: the body in hand and those waiting get 503 with what was applied; a body still
 * being parsed gets it when its parse is done. */
static void fail_jobs(daemon_t *d) {
  post_job_t *j = d->jobs;
  while (j) {
    post_job_t *next = j->next;
    if (j->parsed) job_failed_one(d, j, 503, "stopping");
    j = next;
  }
}

static void refuse_busy(daemon_t *d, http_response_t *res) {
  char msg[160];
  snprintf(res->extra_headers, sizeof res->extra_headers, "Retry-After: 1\r\n");
  snprintf(msg, sizeof msg, "busy: %d bodies are waiting to be applied; nothing of this one was applied, retry later",
           d->njobs - 1);
  reply_error(res, 503, msg);
}

/* The answer a parsed body gets at once: 400 when it was refused (rc < 0, err says why),
 * 202 when it holds nothing ("[]"; evs freed). 1 when res was filled, 0 when the body is
 * to be applied. */
static int answer_parsed(daemon_t *d, int rc, const char *err, event_list_t *evs, http_response_t *res) {
  if (rc < 0) {
    d->e->stats.rejected++;
    reply_error(res, 400, err);
    return 1;
  }
  if (evs->n) return 0;
  event_list_free(evs);
  reply(res, 202, json_pack("{s:i, s:i}", "accepted", 0, "duplicates", 0));
  return 1;
}

/* On the thread pool: the body into validated events (nothing of the daemon touched). */
static void parse_work(uv_work_t *w) {
  post_job_t *j = w->data;
  j->parse_rc = ingest_parse_body(j->body, j->len, j->received, j->d->o->max_future, &j->evs, j->err, sizeof j->err);
}

/* Back on the loop: a refused body is answered 400, an empty one 202; a valid one waits
 * its turn (the slices start if it is first); after SIGTERM it is answered 503. */
static void parse_done(uv_work_t *w, int status) {
  post_job_t *j = w->data;
  daemon_t *d = j->d;
  assert(status == 0); /* uv_cancel is never called */
  (void)status;
  free(j->body);
  j->body = NULL;
  j->parsed = 1;
  http_response_t res;
  http_response_init(&res);
  if (answer_parsed(d, j->parse_rc, j->err, &j->evs, &res)) {
    job_answer(d, j, &res);
  } else if (d->stopping) {
    job_failed_one(d, j, 503, "stopping");
  } else {
    j->results = xcalloc((size_t)j->evs.n, sizeof *j->results);
  }
  /* the first body may be this one, or one parsed before it that waited for it to go */
  if (!d->stopping && d->jobs && d->jobs->parsed) uv_idle_start(&d->apply_idle, on_apply_idle);
}

static void post_events(daemon_t *d, const http_request_t *req, http_response_t *res) {
  if (refuse_content_type(req, res)) return;
  if (d->stopping) {
    reply_error(res, 503, "stopping: nothing of this body was applied; send it again once the daemon is back");
    return;
  }
  if (d->o->max_backlog > 0 && delivery_backlog(d->delivery) > d->o->max_backlog) {
    snprintf(res->extra_headers, sizeof res->extra_headers, "Retry-After: 5\r\n");
    reply_error(res, 503, "delivery backlog over its bound: retry later");
    return;
  }
  if (d->njobs > DAEMON_MAX_WAITING_BODIES) return refuse_busy(d, res);
  int on_loop = req->body_len <= DAEMON_PARSE_ON_LOOP_BYTES;
  event_list_t evs = {0};
  if (on_loop) {
    char err[512];
    int rc = ingest_parse_body(req->body, req->body_len, clock_now(&d->e->clock), d->o->max_future, &evs, err,
                               sizeof err);
    if (answer_parsed(d, rc, err, &evs, res)) return;
  }
  http_deferred_t *later = http_server_defer(d->http);
  if (!later) {
    event_list_free(&evs);
    reply_error(res, 500, "out of memory: nothing of this body was applied; retry");
    return;
  }
  /* in arrival order, then applied once parsed */
  post_job_t *j = xcalloc(1, sizeof *j);
  j->d = d;
  j->reply = later;
  if (d->jobs_last) d->jobs_last->next = j;
  else d->jobs = j;
  d->jobs_last = j;
  d->njobs++;
  if (on_loop) {
    j->evs = evs;
    j->parsed = 1;
    j->results = xcalloc((size_t)evs.n, sizeof *j->results);
    if (d->jobs->parsed) uv_idle_start(&d->apply_idle, on_apply_idle);
    return;
  }
  j->len = req->body_len;
  j->body = xmalloc(j->len + 1);
  memcpy(j->body, req->body, j->len);
  j->body[j->len] = '\0';
  j->received = clock_now(&d->e->clock);
  j->work.data = j;
  int rc = uv_queue_work(&d->loop, &j->work, parse_work, parse_done);
  assert(rc == 0); /* fails only for a NULL callback */
  (void)rc;
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
  if (retention_run_now(d) < 0) return reply_error(res, 500, "database error in retention; see the log");
  arm_due_timer(d);
  if (engine_sync(d->e) < 0) return reply_error(res, 500, "database error: what ran may not be on disk; see the log");
  delivery_pump(d->delivery);
  reply(res, 200, json_pack("{s:s}", "now", engine_fmt_time(d->e, clock_time(d), buf)));
}

/* POST /v1/dead-letters/requeue {"id": "..."}: one dead letter back in the queue. */
static void post_requeue(daemon_t *d, const http_request_t *req, http_response_t *res) {
  json_t *body = json_loadb(req->body ? req->body : "", req->body_len, 0, NULL);
  const char *id = json_string_value(json_object_get(body, "id"));
  if (!json_is_object(body) || json_object_size(body) != 1 || !id || !*id) {
    json_decref(body);
    return reply_error(res, 400, "the body must be {\"id\":\"<the dead letter's action id>\"}");
  }
  int n = store_dead_requeue(d->e->store, id);
  if (n < 0) {
    json_decref(body);
    return reply_error(res, 500, "database error while requeueing (see the server log)");
  }
  if (n == 0) {
    json_decref(body);
    return reply_error(res, 404, "no dead letter with that id");
  }
  if (engine_sync(d->e) < 0) {
    json_decref(body);
    return reply_error(res, 500, "database error: the requeue may not be on disk (see the server log)");
  }
  log_msg(LOG_INFO, "dead letter requeued from the console", "id", id, NULL);
  reply(res, 200, json_pack("{s:s, s:i}", "id", id, "requeued", n));
  json_decref(body);
  delivery_kick(d->delivery);
}

/* The JSON routes the console reads (console_api.c); 1 when res holds the answer. */
static int console_route(daemon_t *d, const http_request_t *req, http_response_t *res, int get, int post) {
  json_t *doc = NULL;
  if (!strcmp(req->path, "/v1/sends/daily")) {
    if (!get) return reply_error(res, 405, "use GET"), 1;
    char bad[200];
    doc = console_daily_sends(d->e->store, d->e->tz, tz_name(d->e->tz), req->query, bad, sizeof bad);
    if (!doc && *bad) return reply_error(res, 400, bad), 1;
  } else if (!strcmp(req->path, "/v1/operations")) {
    if (!get) return reply_error(res, 405, "use GET"), 1;
    doc = console_operations(d->e->store, d->e->tz);
    if (doc) {
      json_object_set_new(doc, "zone", json_string(tz_name(d->e->tz)));
    }
  } else if (!strncmp(req->path, "/v1/member-timers/", 18)) {
    if (!get) return reply_error(res, 405, "use GET"), 1;
    doc = console_member_timers(d->e->store, d->e->tz, req->path + 18);
  } else if (!strcmp(req->path, "/v1/dead-letters/requeue")) {
    if (!post) return reply_error(res, 405, "use POST"), 1;
    post_requeue(d, req, res);
    return 1;
  } else {
    return 0;
  }
  if (!doc) return reply_error(res, 500, "database error reading the report (see the server log)"), 1;
  reply(res, 200, doc);
  return 1;
}

static void on_request(const http_request_t *req, http_response_t *res, void *ud) {
  daemon_t *d = ud;
  int get = strcmp(req->method, "GET") == 0, post = strcmp(req->method, "POST") == 0;
  if (!strcmp(req->path, "/healthz")) {
    if (!get) return reply_error(res, 405, "use GET");
    return reply(res, 200, json_pack("{s:s}", "status", d->stopping ? "stopping" : "ok"));
  }
  if (console_serve(req->method, req->path, res)) return; /* no data in them: no token */
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
  if (console_route(d, req, res, get, post)) return;
  if (!strcmp(req->path, "/v1/staff")) {
    if (!get) return reply_error(res, 405, "use GET");
    json_t *staff = staff_report_json(d->e->store, d->e->tz, clock_time(d));
    if (!staff) return reply_error(res, 500, "database error reading the staff report (see the server log)");
    return reply(res, 200, staff);
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

/* After SIGTERM: close the HTTP server once every connection has closed (its answer
 * written and read) or DAEMON_STOP_DRAIN_MS have passed; then the loop runs out. */
static void on_stop_timer(uv_timer_t *t) {
  daemon_t *d = t->data;
  http_server_stats_t st;
  http_server_stats(d->http, &st);
  if (st.open_connections > 0 && uv_now(&d->loop) < d->stop_deadline) return;
  http_server_close(d->http);
  uv_close((uv_handle_t *)&d->stop_timer, close_cb);
}

/* Stop taking work, answer what is pending (once on disk), close every handle. The slice
 * in hand (if any) has committed: signals are handled between slices. */
static void begin_stop(daemon_t *d, const char *why) {
  if (d->stopping) return;
  d->stopping = 1;
  log_msg(LOG_INFO, "stopping", "signal", why, NULL);
  http_server_stop_accepting(d->http);
  if (d->sync_behind) { /* bodies applied whole get their 202 once on disk, then no more wakes */
    engine_sync(d->e); /* a failure is logged, and answer_durable answers 500 */
    answer_durable(d);
    store_on_synced(d->e->store, NULL, NULL);
    uv_close((uv_handle_t *)&d->synced, close_cb);
  }
  fail_jobs(d);
  delivery_stop(d->delivery);
  uv_close((uv_handle_t *)&d->due_timer, close_cb);
  uv_close((uv_handle_t *)&d->watch_timer, close_cb);
  uv_close((uv_handle_t *)&d->retention_timer, close_cb);
  uv_close((uv_handle_t *)&d->retention_idle, close_cb);
  uv_close((uv_handle_t *)&d->due_idle, close_cb);
  uv_close((uv_handle_t *)&d->apply_idle, close_cb);
  uv_close((uv_handle_t *)&d->sig_term, close_cb);
  uv_close((uv_handle_t *)&d->sig_int, close_cb);
  uv_close((uv_handle_t *)&d->sig_hup, close_cb);
  d->stop_deadline = uv_now(&d->loop) + DAEMON_STOP_DRAIN_MS;
  uv_timer_start(&d->stop_timer, on_stop_timer, 0, 10);
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
      log_msg(LOG_INFO, "scripts reloaded", "version", engine_script_version(d->e), NULL);
      arm_due_timer(d);
    }
    return;
  }
  begin_stop(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

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
  /* commits are synced on a thread while the loop goes on; a 202 waits for its commit's */
  if (engine_sync_behind(e, DAEMON_UNSYNCED_COMMITS, err, sizeof err) == 0) {
    uv_async_init(&d.loop, &d.synced, on_synced);
    d.synced.data = &d;
    store_on_synced(e->store, wake_loop, &d.synced);
    d.sync_behind = 1;
  } else {
    log_msg(LOG_WARN, "each commit waits for its own sync (synchronous=FULL)", "error", err, NULL);
  }
  uv_timer_init(&d.loop, &d.due_timer);
  d.due_timer.data = &d;
  uv_timer_init(&d.loop, &d.watch_timer);
  d.watch_timer.data = &d;
  if (!e->clock.is_virtual) {
    if (store_data_version(e->store, &d.data_version) < 0) d.data_version = -1; /* logged */
    uv_timer_start(&d.watch_timer, on_watch, 1000, 1000);
  }
  uv_timer_init(&d.loop, &d.retention_timer);
  d.retention_timer.data = &d;
  uv_idle_init(&d.loop, &d.retention_idle);
  d.retention_idle.data = &d;
  d.retention_next = clock_time(&d);
  /* hearth purge forgets no event id this daemon's window still holds (retention.h) */
  if (store_meta_set(e->store, RETENTION_WINDOW_KEY, e->dedupe_window) < 0)
    log_msg(LOG_WARN, "cannot record the dedupe window for hearth purge", NULL);
  if (!e->clock.is_virtual && retention_wanted(&d))
    uv_timer_start(&d.retention_timer, on_retention_timer, DAEMON_RETENTION_LOOK_MS, DAEMON_RETENTION_LOOK_MS);
  uv_idle_init(&d.loop, &d.due_idle);
  d.due_idle.data = &d;
  uv_idle_init(&d.loop, &d.apply_idle);
  d.apply_idle.data = &d;
  uv_timer_init(&d.loop, &d.stop_timer);
  d.stop_timer.data = &d;
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
