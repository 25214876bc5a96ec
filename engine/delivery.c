/* delivery: outbox to channels, libcurl multi on the libuv loop (see delivery.h). */
#include "delivery.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "lua_api.h"
#include "util.h"

enum { CH_LOG, CH_WEBHOOK };

typedef struct {
  char *name;
  int type;
  FILE *out;          /* log: the file, or stdout */
  char *url, *secret;
  double rate, tokens;  /* webhook: sends per second (0 = unlimited), bucket */
  uint64_t refill_ns;
  int max_attempts, concurrency, inflight;
  int64_t backoff, max_backoff, timeout;
  delivery_counts_t counts;
} channel_t;

typedef struct transfer {
  delivery_t *d;
  struct transfer *prev, *next; /* transfers in flight */
  char *channel;
  CURL *easy;
  struct curl_slist *headers;
  char *body, *id;
  int64_t seq;
  int attempts;
  strbuf_t response;
  char errbuf[CURL_ERROR_SIZE];
} transfer_t;

typedef struct sock {
  uv_poll_t poll;
  curl_socket_t fd;
  delivery_t *d;
  struct sock *prev, *next; /* sockets being polled */
} sock_t;

struct delivery {
  uv_loop_t *loop;
  engine_t *e;
  hclock_t *clock;    /* the engine's: retries, leases and signatures are on its time */
  CURLM *multi;
  uv_timer_t curl_timer, pump_timer;
  channel_t *ch;
  int nch;
  int stopping, closes;
  transfer_t *transfers;
  sock_t *socks;
  long backlog;
  uint64_t backlog_ns;
  delivery_guard_t guard;  /* scale-out: delivered by any engine (all NULL: none) */
};

/* Nanoseconds for the rate buckets: monotonic on a real clock; on a virtual one its
 * time, so sends refill only as the clock is moved. */
static uint64_t bucket_ns(hclock_t *clock) {
  return clock->is_virtual ? (uint64_t)clock_now_ms(clock) * 1000000u : mono_ns();
}

/* ---- channels ---- */

static int64_t opt_duration(json_t *o, const char *k, int64_t dflt, const char *ch, char *err, size_t errlen, int *bad) {
  json_t *v = json_object_get(o, k);
  if (!v) return dflt;
  int64_t secs;
  char e2[200];
  if (json_is_integer(v)) return json_integer_value(v);
  if (!json_is_string(v) || duration_parse(json_string_value(v), &secs, e2, sizeof e2) < 0) {
    set_err(err, errlen, "channel '%s': %s must be a duration like \"10s\"", ch, k);
    *bad = 1;
    return dflt;
  }
  return secs;
}

static void channel_free(channel_t *c) {
  if (c->out && c->out != stdout) fclose(c->out);
  free(c->name);
  free(c->url);
  free(c->secret);
}

/* Build a channel from its declaration. 0 ok, -1 with err. */
static int channel_init(channel_t *c, const char *name, json_t *o, hclock_t *clock, char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  c->name = xstrdup(name);
  const char *type = json_string_value(json_object_get(o, "type"));
  int bad = 0;
  if (type && !strcmp(type, "webhook")) {
    c->type = CH_WEBHOOK;
    const char *url = json_string_value(json_object_get(o, "url"));
    if (!url || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))) {
      set_err(err, errlen, "channel '%s': url must be an http:// or https:// URL", name);
      return -1;
    }
    c->url = xstrdup(url);
    const char *env = json_string_value(json_object_get(o, "secret_env"));
    if (env) {
      const char *secret = getenv(env);
      if (!secret || !*secret) {
        set_err(err, errlen, "channel '%s': environment variable %s (secret_env) is not set", name, env);
        return -1;
      }
      c->secret = xstrdup(secret);
    }
    json_t *rate = json_object_get(o, "rate");
    c->rate = json_is_number(rate) ? json_number_value(rate) : 0;
    json_t *att = json_object_get(o, "attempts");
    c->max_attempts = json_is_integer(att) ? (int)json_integer_value(att) : 8;
    json_t *conc = json_object_get(o, "concurrency");
    c->concurrency = json_is_integer(conc) ? (int)json_integer_value(conc) : 16;
    c->backoff = opt_duration(o, "backoff", 2, name, err, errlen, &bad);
    c->max_backoff = opt_duration(o, "max_backoff", 3600, name, err, errlen, &bad);
    c->timeout = opt_duration(o, "timeout", 10, name, err, errlen, &bad);
    if (bad) return -1;
    if (c->max_attempts < 1 || c->concurrency < 1 || c->rate < 0 || c->timeout < 1) {
      set_err(err, errlen, "channel '%s': attempts, concurrency and timeout must be positive, rate not negative", name);
      return -1;
    }
    c->tokens = c->rate > 0 ? (c->rate < 1 ? 1 : c->rate) : 0;
    c->refill_ns = bucket_ns(clock);
  } else {
    c->type = CH_LOG;
    const char *path = json_string_value(json_object_get(o, "path"));
    c->out = path ? fopen(path, "a") : stdout;
    if (!c->out) {
      set_err(err, errlen, "channel '%s': cannot open %s for appending", name, path);
      return -1;
    }
  }
  return 0;
}

/* Channels from the loaded scripts plus the implicit "log" (stdout) channel. */
static int build_channels(engine_t *e, channel_t **out, int *n, char *err, size_t errlen) {
  scripts_t *s = e->scripts;
  int cap = (s ? s->nchannels : 0) + 1;
  channel_t *ch = xcalloc((size_t)cap, sizeof *ch);
  int k = 0, has_log = 0;
  for (int i = 0; s && i < s->nchannels; i++) {
    if (channel_init(&ch[k], s->channels[i].name, s->channels[i].opts, &e->clock, err, errlen) < 0) {
      channel_free(&ch[k]);
      for (int j = 0; j < k; j++) channel_free(&ch[j]);
      free(ch);
      return -1;
    }
    has_log |= !strcmp(ch[k].name, "log");
    k++;
  }
  if (!has_log) {
    json_t *o = json_pack("{s:s}", "type", "log");
    channel_init(&ch[k++], "log", o, &e->clock, err, errlen);
    json_decref(o);
  }
  *out = ch;
  *n = k;
  return 0;
}

static channel_t *find_channel(delivery_t *d, const char *name) {
  for (int i = 0; i < d->nch; i++)
    if (!strcmp(d->ch[i].name, name)) return &d->ch[i];
  return NULL;
}

/* Rows for channels that no longer exist become dead letters (at start and reload). */
static void bury_unknown_channels(delivery_t *d) {
  const char **names = xcalloc((size_t)d->nch, sizeof *names);
  for (int i = 0; i < d->nch; i++) names[i] = d->ch[i].name;
  int n = 0;
  if (store_outbox_bury_unknown(d->e->store, names, d->nch, &n) < 0)
    log_msg(LOG_ERROR, "delivery: queued actions of undeclared channels could not be checked", NULL);
  free(names);
  if (n > 0) {
    char buf[32];
    snprintf(buf, sizeof buf, "%d", n);
    log_msg(LOG_WARN, "queued actions for undeclared channels moved to dead letters", "count", buf, NULL);
  }
}

/* ---- signing ---- */

void delivery_sign(const char *secret, long long ts, const char *body, size_t len, char out[72]) {
  char prefix[32];
  int plen = snprintf(prefix, sizeof prefix, "%lld.", ts);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0), OSSL_PARAM_construct_end()};
  size_t outl = 0;
  if (ctx && EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params) &&
      EVP_MAC_update(ctx, (const unsigned char *)prefix, (size_t)plen) &&
      EVP_MAC_update(ctx, (const unsigned char *)body, len) && EVP_MAC_final(ctx, md, &outl, sizeof md))
    mdlen = (unsigned int)outl;
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  strcpy(out, "v1=");
  for (unsigned i = 0; i < mdlen && i < 32; i++) sprintf(out + 3 + 2 * i, "%02x", md[i]);
}

/* ---- lists ---- */

#define LIST_ADD(head, x) do { (x)->prev = NULL; (x)->next = (head); if (head) (head)->prev = (x); (head) = (x); } while (0)
#define LIST_DEL(head, x) do { if ((x)->prev) (x)->prev->next = (x)->next; else (head) = (x)->next; \
    if ((x)->next) (x)->next->prev = (x)->prev; } while (0)

static void transfer_free(delivery_t *d, transfer_t *t) {
  LIST_DEL(d->transfers, t);
  curl_multi_remove_handle(d->multi, t->easy);
  curl_easy_cleanup(t->easy);
  curl_slist_free_all(t->headers);
  sb_free(&t->response);
  free(t->body);
  free(t->id);
  free(t->channel);
  free(t);
}

static void free_all(delivery_t *d) {
  for (int i = 0; i < d->nch; i++) channel_free(&d->ch[i]);
  free(d->ch);
  free(d);
}

/* A handle finished closing; the last one at stop frees everything. */
static void closed_one(delivery_t *d) {
  if (--d->closes == 0 && d->stopping) free_all(d);
}

/* ---- outcomes ---- */

/* Record an outcome; a failed write is logged by the store and the row stays pending
 * with its lease, so it is tried again once the lease ends (at least once). */
static void mark_done(delivery_t *d, int64_t seq) {
  if (store_outbox_done(d->e->store, seq) < 0)
    log_msg(LOG_ERROR, "delivery: outcome not recorded; the action will be sent again", NULL);
}

static void mark_dead(delivery_t *d, int64_t seq, const char *why) {
  if (store_outbox_dead(d->e->store, seq, why) < 0)
    log_msg(LOG_ERROR, "delivery: dead letter not recorded; the action will be sent again", NULL);
}

static void mark_retry(delivery_t *d, int64_t seq, int64_t next_at, const char *why) {
  if (store_outbox_retry(d->e->store, seq, next_at, why) < 0)
    log_msg(LOG_ERROR, "delivery: retry not recorded; the action will be sent again", NULL);
}

/* Next try after `attempts` failures: backoff * 2^(attempts-1), capped, with jitter in
 * [half, full] so retries from many actions spread out. retry_after overrides when larger.
 * Rounded up to the next whole second, so a retry never comes before its delay. */
static int64_t next_try(hclock_t *clock, const channel_t *c, int attempts, long retry_after) {
  double delay = (double)c->backoff;
  for (int i = 1; i < attempts && delay < (double)c->max_backoff; i++) delay *= 2;
  if (delay > (double)c->max_backoff) delay = (double)c->max_backoff;
  delay = delay / 2 + (delay / 2) * clock_uniform(clock);
  if (retry_after > 0 && (double)retry_after > delay) delay = (double)retry_after;
  return (int64_t)ceil((double)clock_now_ms(clock) / 1000.0 + delay);
}

static void schedule_pump(delivery_t *d, uint64_t ms);

static void finish(delivery_t *d, transfer_t *t, CURLcode res) {
  channel_t *c = find_channel(d, t->channel);
  long status = 0, retry_after = 0;
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_off_t ra = 0;
  if (curl_easy_getinfo(t->easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK) retry_after = (long)ra;
  char why[400];
  int retry = 0, ok = 0;
  if (res != CURLE_OK) {
    snprintf(why, sizeof why, "%s", t->errbuf[0] ? t->errbuf : curl_easy_strerror(res));
    retry = 1;
  } else if (status >= 200 && status < 300) {
    ok = 1;
  } else {
    snprintf(why, sizeof why, "HTTP %ld: %.200s", status, t->response.data ? t->response.data : "");
    retry = status >= 500 || status == 429 || status == 408;
  }
  if (c) {
    c->inflight--;
    c->counts.attempts++;
  }
  if (ok) {
    mark_done(d, t->seq);
    if (d->guard.sent) d->guard.sent(d->guard.ud, t->id);
    if (c) c->counts.delivered++;
  } else {
    if (c) c->counts.failed++;
    int max = c ? c->max_attempts : 1;
    if (retry && t->attempts + 1 < max) {
      mark_retry(d, t->seq, next_try(d->clock, c, t->attempts + 1, retry_after), why);
      if (c) c->counts.retried++;
    } else {
      mark_dead(d, t->seq, why);
      if (c) c->counts.dead++;
      log_msg(LOG_WARN, "delivery failed for good: dead letter", "channel", t->channel, "action", t->id,
              "error", why, NULL);
    }
  }
  transfer_free(d, t);
  schedule_pump(d, 0);
}

static void check_multi(delivery_t *d) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(d->multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE) continue;
    transfer_t *t;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
    finish(d, t, m->data.result);
  }
}

/* ---- libcurl on libuv ---- */

static void sock_closed(uv_handle_t *h) {
  sock_t *s = h->data;
  delivery_t *d = s->d;
  free(s);
  closed_one(d);
}

static void sock_close(delivery_t *d, sock_t *s) {
  uv_poll_stop(&s->poll);
  curl_multi_assign(d->multi, s->fd, NULL);
  LIST_DEL(d->socks, s);
  d->closes++;
  uv_close((uv_handle_t *)&s->poll, sock_closed);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  sock_t *s = p->data;
  int flags = status < 0 ? CURL_CSELECT_ERR : 0;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  int running;
  curl_multi_socket_action(s->d->multi, s->fd, flags, &running);
  check_multi(s->d);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  (void)easy;
  delivery_t *d = userp;
  sock_t *s = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (s) sock_close(d, s);
    return 0;
  }
  if (!s) {
    s = xcalloc(1, sizeof *s);
    s->fd = fd;
    s->d = d;
    uv_poll_init_socket(d->loop, &s->poll, fd);
    s->poll.data = s;
    curl_multi_assign(d->multi, fd, s);
    LIST_ADD(d->socks, s);
  }
  int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
  uv_poll_start(&s->poll, ev, on_poll);
  return 0;
}

static void on_curl_timer(uv_timer_t *t) {
  delivery_t *d = t->data;
  int running;
  curl_multi_socket_action(d->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_multi(d);
}

static int on_timer_request(CURLM *multi, long ms, void *userp) {
  (void)multi;
  delivery_t *d = userp;
  if (d->stopping) return 0;
  if (ms < 0)
    uv_timer_stop(&d->curl_timer);
  else
    uv_timer_start(&d->curl_timer, on_curl_timer, (uint64_t)ms, 0);
  return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  transfer_t *t = ud;
  if (t->response.len < 1024) sb_add(&t->response, p, size * n);
  return size * n;
}

/* "Idempotency-Key: <id>" with bytes outside printable ASCII percent-encoded. */
static struct curl_slist *add_key_header(struct curl_slist *h, const char *id) {
  strbuf_t sb;
  sb_init(&sb);
  sb_adds(&sb, "Idempotency-Key: ");
  for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
    if (*p < 0x21 || *p > 0x7e || *p == '%')
      sb_addf(&sb, "%%%02X", *p);
    else
      sb_add(&sb, (const char *)p, 1);
  }
  h = curl_slist_append(h, sb.data);
  sb_free(&sb);
  return h;
}

static void start_transfer(delivery_t *d, channel_t *c, int64_t seq, const char *id, const char *body, int attempts) {
  transfer_t *t = xcalloc(1, sizeof *t);
  t->d = d;
  t->channel = xstrdup(c->name);
  t->seq = seq;
  t->id = xstrdup(id);
  t->body = xstrdup(body);
  t->attempts = attempts;
  sb_init(&t->response);
  t->easy = curl_easy_init();
  char ts[64], sig[72], hdr[128];
  long long now = (long long)clock_now(d->clock);
  t->headers = curl_slist_append(NULL, "Content-Type: application/json");
  t->headers = curl_slist_append(t->headers, "User-Agent: hearth/" HEARTH_VERSION);
  t->headers = curl_slist_append(t->headers, "Expect:");
  t->headers = add_key_header(t->headers, id);
  snprintf(ts, sizeof ts, "X-Hearth-Timestamp: %lld", now);
  t->headers = curl_slist_append(t->headers, ts);
  if (c->secret) {
    delivery_sign(c->secret, now, t->body, strlen(t->body), sig);
    snprintf(hdr, sizeof hdr, "X-Hearth-Signature: %s", sig);
    t->headers = curl_slist_append(t->headers, hdr);
  }
  curl_easy_setopt(t->easy, CURLOPT_URL, c->url);
  curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
  curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, t->body);
  curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(t->body));
  curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, (long)(c->timeout * 1000));
  curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(c->timeout * 1000));
  curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
  curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
  curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
  curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
  c->inflight++;
  LIST_ADD(d->transfers, t);
  curl_multi_add_handle(d->multi, t->easy);
}

void delivery_set_guard(delivery_t *d, const delivery_guard_t *g) { d->guard = *g; }

/* ---- the pump ---- */

static void refill(delivery_t *d, channel_t *c) {
  if (c->rate <= 0) return;
  uint64_t now = bucket_ns(d->clock);
  if (now > c->refill_ns) c->tokens += c->rate * (double)(now - c->refill_ns) / 1e9;
  double burst = c->rate < 1 ? 1 : c->rate;
  if (c->tokens > burst) c->tokens = burst;
  c->refill_ns = now;
}

/* 1 when a transfer of row seq is in flight in this process. Its lease keeps it from being
 * picked again, unless the clock passed the lease (a virtual clock moved far, or the wall
 * clock jumped): then this keeps it from being sent twice at once. */
static int in_flight(delivery_t *d, int64_t seq) {
  for (transfer_t *t = d->transfers; t; t = t->next)
    if (t->seq == seq) return 1;
  return 0;
}

/* What pump_channel left behind. */
enum { PUMP_IDLE, PUMP_MORE, PUMP_RATE };

typedef struct {
  delivery_t *d;
  channel_t *c;
  int64_t now;
  int skipped;   /* due rows passed over because their transfer is still in flight */
} pump_t;

/* Hand one due row to its channel: a log line now, or a leased webhook transfer. */
static int dispatch_row(void *ud, const outbox_row_t *row) {
  pump_t *p = ud;
  channel_t *c = p->c;
  delivery_guard_t *g = &p->d->guard;
  if (in_flight(p->d, row->seq)) {
    p->skipped++;
    return 0;
  }
  if (g->seen) {
    int seen = g->seen(g->ud, row->id);
    if (seen < 0) { /* not known: left for the next pump (logged by the guard) */
      p->skipped++;
      return 0;
    }
    if (seen) { /* another engine delivered it before this one took the partition over */
      c->counts.elsewhere++;
      return store_outbox_done(p->d->e->store, row->seq);
    }
  }
  if (c->type == CH_LOG) {
    fprintf(c->out, "%s\n", row->body);
    c->counts.attempts++;
    c->counts.delivered++;
    if (g->sent) {
      /* out of our buffer before another engine can learn it was sent: killed between the
       * two, the line would be lost and the engine taking the partition over skip it */
      if (fflush(c->out) != 0) {
        log_msg(LOG_ERROR, "delivery: cannot write a log line; it is sent again later", "channel", c->name,
                "action", row->id, "error", strerror(errno), NULL);
        return -1;
      }
      g->sent(g->ud, row->id);
    }
    return store_outbox_done(p->d->e->store, row->seq);
  }
  if (store_outbox_lease(p->d->e->store, row->seq, p->now + c->timeout + 30) < 0) return -1;
  start_transfer(p->d, c, row->seq, row->id, row->body, row->attempts);
  if (c->rate > 0) c->tokens -= 1;
  return 0;
}

/* Deliver what is due on one channel at `now`. PUMP_MORE when it stopped at its batch
 * size with rows possibly left, PUMP_RATE when the rate limit holds rows back. */
static int pump_channel(delivery_t *d, channel_t *c, int64_t now) {
  int cap = 500;
  if (c->type == CH_WEBHOOK) {
    refill(d, c);
    cap = c->concurrency - c->inflight;
    if (cap <= 0) return PUMP_IDLE; /* a transfer's end pumps again */
    if (c->rate > 0 && (int)c->tokens < cap) cap = (int)c->tokens;
    if (cap <= 0) return PUMP_RATE;
  }
  store_t *st = d->e->store;
  if (store_begin(st) < 0) {
    log_msg(LOG_ERROR, "delivery: cannot begin a transaction", "error", store_errmsg(st), NULL);
    return PUMP_IDLE;
  }
  pump_t p = {.d = d, .c = c, .now = now};
  int n = store_outbox_due(st, c->name, now, cap, dispatch_row, &p);
  if (c->type == CH_LOG) fflush(c->out);
  if (n < 0) {
    /* logged by the store; leases taken so far are undone, their transfers in flight
     * are known to in_flight(), and log lines written are written again (at least once) */
    store_rollback(st);
    return PUMP_IDLE;
  }
  /* log lines are written before this commit: a crash in between repeats them (at least once) */
  if (store_commit(st) < 0) {
    log_msg(LOG_ERROR, "delivery: commit failed", "error", store_errmsg(st), NULL);
    store_rollback(st);
  }
  if (n < cap || p.skipped) return PUMP_IDLE; /* rows behind one in flight: its end pumps again */
  return c->type == CH_WEBHOOK && c->rate > 0 && (int)c->tokens < 1 ? PUMP_RATE : PUMP_MORE;
}

/* Start everything due now on every channel. Returns PUMP_MORE / PUMP_RATE if any channel
 * left rows behind. */
static int pump_all(delivery_t *d) {
  int64_t now = clock_now(d->clock);
  int more = 0, rate = 0;
  for (int i = 0; i < d->nch; i++) {
    int r = pump_channel(d, &d->ch[i], now);
    more |= r == PUMP_MORE;
    rate |= r == PUMP_RATE;
  }
  int running;
  curl_multi_socket_action(d->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_multi(d);
  return more ? PUMP_MORE : rate ? PUMP_RATE : PUMP_IDLE;
}

/* On a real clock, look again when the next row is due (at most a minute ahead: the wall
 * clock may jump); with nothing pending, sleep until kicked. New rows come with a kick:
 * ours from the daemon's requests, timers and cron, other processes' (hearth import,
 * hearth dead-letters) from the daemon's watch on the database. */
static void schedule_recheck(delivery_t *d) {
  int64_t next;
  if (store_outbox_next_due(d->e->store, &next) < 0) { /* logged */
    schedule_pump(d, 2000);
    return;
  }
  if (next == INT64_MAX) return;
  int64_t delay = next - clock_now(d->clock);
  if (delay > 60) delay = 60;
  schedule_pump(d, delay <= 0 ? 200 : (uint64_t)delay * 1000);
}

static void on_pump(uv_timer_t *t) {
  delivery_t *d = t->data;
  if (d->stopping) return;
  int left = pump_all(d);
  if (d->clock->is_virtual) {
    /* nothing waits for real time: rows left at the batch size go on at once; rows due
     * later, retries and the rate limit wait for the clock to be moved (delivery_pump) */
    if (left == PUMP_MORE) schedule_pump(d, 0);
    return;
  }
  if (left != PUMP_IDLE)
    schedule_pump(d, 20);
  else
    schedule_recheck(d);
}

static void schedule_pump(delivery_t *d, uint64_t ms) {
  if (d->stopping) return;
  if (uv_is_active((uv_handle_t *)&d->pump_timer) && uv_timer_get_due_in(&d->pump_timer) <= ms) return;
  uv_timer_start(&d->pump_timer, on_pump, ms, 0);
}

void delivery_kick(delivery_t *d) { schedule_pump(d, 0); }

void delivery_pump(delivery_t *d) {
  if (d->stopping) return;
  uv_timer_stop(&d->pump_timer);
  on_pump(&d->pump_timer);
}

long delivery_backlog(delivery_t *d) {
  uint64_t now = mono_ns();
  /* on a virtual clock always fresh: a test reads it right after moving the clock */
  if (d->clock->is_virtual || now - d->backlog_ns > 500000000ull) {
    int64_t n;
    if (store_outbox_backlog(d->e->store, &n) == 0) d->backlog = (long)n; /* else logged: keep the last */
    d->backlog_ns = now;
  }
  return d->backlog;
}

void delivery_each_channel(delivery_t *d, void (*fn)(void *, const char *, const delivery_counts_t *), void *ud) {
  for (int i = 0; i < d->nch; i++) fn(ud, d->ch[i].name, &d->ch[i].counts);
}

delivery_t *delivery_start(uv_loop_t *loop, engine_t *e, char *err, size_t errlen) {
  static int curl_ready;
  if (!curl_ready) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    curl_ready = 1;
  }
  delivery_t *d = xcalloc(1, sizeof *d);
  d->loop = loop;
  d->e = e;
  d->clock = &e->clock;
  if (build_channels(e, &d->ch, &d->nch, err, errlen) < 0) {
    free(d);
    return NULL;
  }
  bury_unknown_channels(d);
  /* no transfer of an earlier process can still be in flight: its leases are void */
  if (store_outbox_void_leases(e->store) < 0) {
    set_err(err, errlen, "delivery: cannot void the leases of an earlier run: %s", store_errmsg(e->store));
    for (int j = 0; j < d->nch; j++) channel_free(&d->ch[j]);
    free(d->ch);
    free(d);
    return NULL;
  }
  d->multi = curl_multi_init();
  curl_multi_setopt(d->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(d->multi, CURLMOPT_SOCKETDATA, d);
  curl_multi_setopt(d->multi, CURLMOPT_TIMERFUNCTION, on_timer_request);
  curl_multi_setopt(d->multi, CURLMOPT_TIMERDATA, d);
  uv_timer_init(loop, &d->curl_timer);
  d->curl_timer.data = d;
  uv_timer_init(loop, &d->pump_timer);
  d->pump_timer.data = d;
  schedule_pump(d, 0);
  return d;
}

int delivery_reload(delivery_t *d, char *err, size_t errlen) {
  channel_t *ch;
  int n;
  if (build_channels(d->e, &ch, &n, err, errlen) < 0) return -1;
  for (int i = 0; i < n; i++) {
    channel_t *old = find_channel(d, ch[i].name);
    if (old) ch[i].counts = old->counts, ch[i].inflight = old->inflight;
  }
  for (int i = 0; i < d->nch; i++) channel_free(&d->ch[i]);
  free(d->ch);
  d->ch = ch;
  d->nch = n;
  bury_unknown_channels(d);
  schedule_pump(d, 0);
  return 0;
}

static void timer_closed(uv_handle_t *h) { closed_one(h->data); }

void delivery_stop(delivery_t *d) {
  if (!d || d->stopping) return;
  d->stopping = 1;
  /* abandon transfers: their leases expire and they are sent again after a restart */
  while (d->transfers) transfer_free(d, d->transfers);
  /* stop polling before curl closes the sockets it keeps for reuse */
  while (d->socks) sock_close(d, d->socks);
  curl_multi_cleanup(d->multi);
  d->closes += 2;
  uv_close((uv_handle_t *)&d->curl_timer, timer_closed);
  uv_close((uv_handle_t *)&d->pump_timer, timer_closed);
}
