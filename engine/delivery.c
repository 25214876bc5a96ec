/* delivery: outbox to channels, libcurl multi on the libuv loop (see delivery.h). */
#include "delivery.h"

#include <curl/curl.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

enum { Q_DUE, Q_LEASE, Q_DONE, Q_RETRY, Q_DEAD, Q_NEXT, Q_BACKLOG, Q_UNLEASE, Q_COUNT };

static const char *const queries[Q_COUNT] = {
    [Q_DUE] = "SELECT seq, id, body, attempts FROM outbox WHERE delivery = 'pending'"
              " AND next_at <= ?1 AND channel = ?2 AND (leased_until IS NULL OR leased_until <= ?1)"
              " ORDER BY next_at, seq LIMIT ?3",
    [Q_LEASE] = "UPDATE outbox SET leased_until = ?2 WHERE seq = ?1",
    [Q_DONE] = "UPDATE outbox SET delivery = 'delivered', attempts = attempts + 1,"
               " leased_until = NULL, last_error = NULL WHERE seq = ?1",
    [Q_RETRY] = "UPDATE outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3,"
                " leased_until = NULL WHERE seq = ?1",
    [Q_DEAD] = "UPDATE outbox SET delivery = 'dead', attempts = attempts + 1, last_error = ?2,"
               " leased_until = NULL WHERE seq = ?1",
    [Q_NEXT] = "SELECT MIN(max(next_at, coalesce(leased_until, 0))) FROM outbox WHERE delivery = 'pending'",
    [Q_UNLEASE] = "UPDATE outbox SET leased_until = NULL WHERE delivery = 'pending' AND leased_until IS NOT NULL",
    [Q_BACKLOG] = "SELECT count(*) FROM outbox WHERE delivery = 'pending'",
};

struct delivery {
  uv_loop_t *loop;
  engine_t *e;
  CURLM *multi;
  uv_timer_t curl_timer, pump_timer;
  sqlite3_stmt *q[Q_COUNT];
  channel_t *ch;
  int nch;
  int stopping, closes;
  transfer_t *transfers;
  sock_t *socks;
  long backlog;
  uint64_t backlog_ns;
};

static int64_t wall(void) { return (int64_t)time(NULL); }

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
static int channel_init(channel_t *c, const char *name, json_t *o, char *err, size_t errlen) {
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
    c->refill_ns = mono_ns();
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
    if (channel_init(&ch[k], s->channels[i].name, s->channels[i].opts, err, errlen) < 0) {
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
    channel_init(&ch[k++], "log", o, err, errlen);
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
  strbuf_t q;
  sb_init(&q);
  sb_adds(&q, "UPDATE outbox SET delivery = 'dead', last_error = 'unknown channel ' || channel"
              " WHERE delivery = 'pending' AND channel NOT IN (");
  for (int i = 0; i < d->nch; i++) sb_addf(&q, "%s?%d", i ? "," : "", i + 1);
  sb_adds(&q, ")");
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(d->e->store->db, q.data, -1, &st, NULL) == SQLITE_OK) {
    for (int i = 0; i < d->nch; i++) sqlite3_bind_text(st, i + 1, d->ch[i].name, -1, SQLITE_STATIC);
    sqlite3_step(st);
    int n = sqlite3_changes(d->e->store->db);
    sqlite3_finalize(st);
    if (n > 0) {
      char buf[32];
      snprintf(buf, sizeof buf, "%d", n);
      log_msg(LOG_WARN, "queued actions for undeclared channels moved to dead letters", "count", buf, NULL);
    }
  }
  sb_free(&q);
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
  for (int i = 0; i < Q_COUNT; i++) sqlite3_finalize(d->q[i]);
  for (int i = 0; i < d->nch; i++) channel_free(&d->ch[i]);
  free(d->ch);
  free(d);
}

/* A handle finished closing; the last one at stop frees everything. */
static void closed_one(delivery_t *d) {
  if (--d->closes == 0 && d->stopping) free_all(d);
}

/* ---- outcomes ---- */

static void exec_or_log(delivery_t *d, sqlite3_stmt *st) {
  if (sqlite3_step(st) != SQLITE_DONE)
    log_msg(LOG_ERROR, "delivery: database error", "error", sqlite3_errmsg(d->e->store->db), NULL);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

static void mark_done(delivery_t *d, int64_t seq) {
  sqlite3_bind_int64(d->q[Q_DONE], 1, seq);
  exec_or_log(d, d->q[Q_DONE]);
}

static void mark_dead(delivery_t *d, int64_t seq, const char *why) {
  sqlite3_bind_int64(d->q[Q_DEAD], 1, seq);
  sqlite3_bind_text(d->q[Q_DEAD], 2, why, -1, SQLITE_STATIC);
  exec_or_log(d, d->q[Q_DEAD]);
}

/* Wall clock with sub-second precision. */
static double wall_precise(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Next try after `attempts` failures: backoff * 2^(attempts-1), capped, with jitter in
 * [half, full] so retries from many actions spread out. retry_after overrides when larger.
 * Rounded up to the next whole second, so a retry never comes before its delay. */
static int64_t next_try(const channel_t *c, int attempts, long retry_after) {
  double delay = (double)c->backoff;
  for (int i = 1; i < attempts && delay < (double)c->max_backoff; i++) delay *= 2;
  if (delay > (double)c->max_backoff) delay = (double)c->max_backoff;
  delay = delay / 2 + (delay / 2) * ((double)rand() / RAND_MAX);
  if (retry_after > 0 && (double)retry_after > delay) delay = (double)retry_after;
  return (int64_t)ceil(wall_precise() + delay);
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
    if (c) c->counts.delivered++;
  } else {
    if (c) c->counts.failed++;
    int max = c ? c->max_attempts : 1;
    if (retry && t->attempts + 1 < max) {
      sqlite3_bind_int64(d->q[Q_RETRY], 1, t->seq);
      sqlite3_bind_int64(d->q[Q_RETRY], 2, next_try(c, t->attempts + 1, retry_after));
      sqlite3_bind_text(d->q[Q_RETRY], 3, why, -1, SQLITE_STATIC);
      exec_or_log(d, d->q[Q_RETRY]);
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
  long long now = (long long)wall();
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

/* ---- the pump ---- */

static void refill(channel_t *c) {
  if (c->rate <= 0) return;
  uint64_t now = mono_ns();
  c->tokens += c->rate * (double)(now - c->refill_ns) / 1e9;
  double burst = c->rate < 1 ? 1 : c->rate;
  if (c->tokens > burst) c->tokens = burst;
  c->refill_ns = now;
}

/* Deliver what is due on one channel. Returns 1 when it stopped at a limit with rows
 * possibly left (pump again soon). */
static int pump_channel(delivery_t *d, channel_t *c, int64_t now) {
  int cap = 500;
  if (c->type == CH_WEBHOOK) {
    refill(c);
    cap = c->concurrency - c->inflight;
    if (c->rate > 0 && (int)c->tokens < cap) cap = (int)c->tokens;
    if (cap <= 0) return c->inflight < c->concurrency; /* rate-limited: come back soon */
  }
  sqlite3_stmt *q = d->q[Q_DUE];
  sqlite3_bind_int64(q, 1, now);
  sqlite3_bind_text(q, 2, c->name, -1, SQLITE_STATIC);
  sqlite3_bind_int(q, 3, cap);
  store_t *st = d->e->store;
  if (store_begin(st) < 0) {
    sqlite3_reset(q);
    return 0;
  }
  int n = 0;
  while (sqlite3_step(q) == SQLITE_ROW) {
    int64_t seq = sqlite3_column_int64(q, 0);
    const char *id = (const char *)sqlite3_column_text(q, 1);
    const char *body = (const char *)sqlite3_column_text(q, 2);
    int attempts = sqlite3_column_int(q, 3);
    n++;
    if (c->type == CH_LOG) {
      fprintf(c->out, "%s\n", body);
      c->counts.attempts++;
      c->counts.delivered++;
      mark_done(d, seq);
    } else {
      sqlite3_bind_int64(d->q[Q_LEASE], 1, seq);
      sqlite3_bind_int64(d->q[Q_LEASE], 2, now + c->timeout + 30);
      exec_or_log(d, d->q[Q_LEASE]);
      start_transfer(d, c, seq, id, body, attempts);
      if (c->rate > 0) c->tokens -= 1;
    }
  }
  sqlite3_reset(q);
  sqlite3_clear_bindings(q);
  if (c->type == CH_LOG) fflush(c->out);
  /* log lines are written before this commit: a crash in between repeats them (at least once) */
  if (store_commit(st) < 0) {
    log_msg(LOG_ERROR, "delivery: commit failed", "error", store_errmsg(st), NULL);
    store_rollback(st);
  }
  return n == cap;
}

static void on_pump(uv_timer_t *t) {
  delivery_t *d = t->data;
  if (d->stopping) return;
  int64_t now = wall();
  int again = 0;
  for (int i = 0; i < d->nch; i++) again |= pump_channel(d, &d->ch[i], now);
  int running;
  curl_multi_socket_action(d->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_multi(d);
  if (again) {
    schedule_pump(d, 20);
    return;
  }
  sqlite3_stmt *q = d->q[Q_NEXT];
  int64_t next = INT64_MAX;
  if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL) next = sqlite3_column_int64(q, 0);
  sqlite3_reset(q);
  /* look again at least every 2 s: another process (hearth dead-letters --requeue) may
   * have queued rows without waking us */
  int64_t delay = next == INT64_MAX ? 2 : next - wall();
  if (delay > 2) delay = 2;
  schedule_pump(d, delay <= 0 ? 200 : (uint64_t)delay * 1000);
}

static void schedule_pump(delivery_t *d, uint64_t ms) {
  if (d->stopping) return;
  if (uv_is_active((uv_handle_t *)&d->pump_timer) && uv_timer_get_due_in(&d->pump_timer) <= ms) return;
  uv_timer_start(&d->pump_timer, on_pump, ms, 0);
}

void delivery_kick(delivery_t *d) { schedule_pump(d, 0); }

long delivery_backlog(delivery_t *d) {
  uint64_t now = mono_ns();
  if (now - d->backlog_ns > 500000000ull) {
    sqlite3_stmt *q = d->q[Q_BACKLOG];
    if (sqlite3_step(q) == SQLITE_ROW) d->backlog = (long)sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
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
  if (build_channels(e, &d->ch, &d->nch, err, errlen) < 0) {
    free(d);
    return NULL;
  }
  for (int i = 0; i < Q_COUNT; i++)
    if (sqlite3_prepare_v3(e->store->db, queries[i], -1, SQLITE_PREPARE_PERSISTENT, &d->q[i], NULL) != SQLITE_OK) {
      set_err(err, errlen, "delivery: %s", sqlite3_errmsg(e->store->db));
      for (int j = 0; j < i; j++) sqlite3_finalize(d->q[j]);
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
  bury_unknown_channels(d);
  /* no transfer of an earlier process can still be in flight: its leases are void */
  exec_or_log(d, d->q[Q_UNLEASE]);
  srand((unsigned)mono_ns());
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
