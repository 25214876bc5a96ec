/* test_http_server: the HTTP server on 127.0.0.1 (port 0) with its libuv loop on a
 * separate thread, driven by blocking-socket clients from the test thread. Commands that
 * must run on the loop thread (stats, stop accepting, close) go through a uv_async_t.
 * Responses are read with http-parser in response mode. */
#include "http_server.h"
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ---- the handler ---- */

static char *str_dup(const char *s, size_t *len) {
  char *p = malloc(strlen(s) + 1);
  strcpy(p, s);
  *len = strlen(s);
  return p;
}

/* GET /later defers its answer (ud is then the server's fixture); the test gives it. */
static http_deferred_t *later;
static http_server_t **later_server;

static void test_handler(const http_request_t *req, http_response_t *res, void *ud) {
  char text[512];
  (void)ud;
  if (req->body[req->body_len] != '\0') { /* the body must be NUL-terminated */
    res->status = 500;
    return;
  }
  if (strcmp(req->path, "/echo") == 0) {
    res->content_type = "application/octet-stream";
    res->body = malloc(req->body_len + 1);
    memcpy(res->body, req->body, req->body_len);
    res->body_len = req->body_len;
  } else if (strcmp(req->path, "/info") == 0) {
    snprintf(text, sizeof text, "%s %s %s auth=%s ctype=%s len=%zu", req->method, req->path,
             req->query, req->authorization ? req->authorization : "(none)",
             req->content_type ? req->content_type : "(none)", req->body_len);
    res->content_type = "text/plain";
    res->body = str_dup(text, &res->body_len);
  } else if (strcmp(req->path, "/limited") == 0) {
    res->status = 429;
    snprintf(res->extra_headers, sizeof res->extra_headers, "Retry-After: 3\r\n");
    res->body = str_dup("{\"error\":\"slow down\"}", &res->body_len);
  } else if (strcmp(req->path, "/later") == 0 && later_server) {
    later = http_server_defer(*later_server);
    res->body = str_dup("{\"dropped\":true}", &res->body_len); /* freed by the server */
  } else if (strcmp(req->path, "/empty") == 0) {
    res->status = 204;
  } else if (strcmp(req->path, "/") == 0) {
    res->body = str_dup("{\"ok\":true}", &res->body_len);
  } else {
    res->status = 404;
    res->body = str_dup("{\"error\":\"not found\"}", &res->body_len);
  }
}

/* The gate: POST /guarded needs "Authorization: Bearer ok" before its body is read. */
static int gate_calls;

static int test_gate(const http_request_t *req, http_response_t *res, void *ud) {
  (void)ud;
  gate_calls++;
  if (req->body_len != 0 || req->body[0] != '\0') { /* the body is never shown to the gate */
    res->status = 500;
    return 1;
  }
  if (strcmp(req->path, "/guarded") != 0) return 0;
  if (req->authorization && strcmp(req->authorization, "Bearer ok") == 0) return 0;
  res->status = 401;
  snprintf(res->extra_headers, sizeof res->extra_headers, "WWW-Authenticate: Bearer\r\n");
  res->body = str_dup("{\"error\":\"no token\"}", &res->body_len);
  return 1;
}

/* ---- the server thread ---- */

enum { CMD_NONE, CMD_STATS, CMD_STOP_ACCEPTING, CMD_CLOSE, CMD_RESPOND, CMD_CLOSE_THEN_RESPOND };

typedef struct {
  uv_loop_t loop;
  uv_async_t wake;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  http_server_t *srv;
  int port;
  int cmd;
  http_server_stats_t stats;
  int deferred_open;  /* http_deferred_open(later) just before the last respond_later */
} fixture_t;

/* Give the deferred answer of GET /later: 201 with "later" (on the loop thread). */
static void respond_later(fixture_t *f) {
  http_response_t res;
  http_response_init(&res);
  res.status = 201;
  res.content_type = "text/plain";
  res.body = str_dup("later", &res.body_len);
  f->deferred_open = http_deferred_open(later);
  http_server_respond(later, &res);
  later = NULL;
}

static void on_wake(uv_async_t *a) {
  fixture_t *f = a->data;
  pthread_mutex_lock(&f->mu);
  switch (f->cmd) {
    case CMD_RESPOND: respond_later(f); break;
    case CMD_CLOSE_THEN_RESPOND:
      http_server_close(f->srv);
      respond_later(f);
      uv_close((uv_handle_t *)&f->wake, NULL);
      break;
    case CMD_STATS: http_server_stats(f->srv, &f->stats); break;
    case CMD_STOP_ACCEPTING: http_server_stop_accepting(f->srv); break;
    case CMD_CLOSE:
      http_server_close(f->srv);
      uv_close((uv_handle_t *)&f->wake, NULL);
      break;
    default: break;
  }
  f->cmd = CMD_NONE;
  pthread_cond_broadcast(&f->cv);
  pthread_mutex_unlock(&f->mu);
}

static void *loop_thread(void *arg) {
  fixture_t *f = arg;
  uv_run(&f->loop, UV_RUN_DEFAULT);
  return NULL;
}

static http_server_opts_t default_opts(void) {
  http_server_opts_t o;
  memset(&o, 0, sizeof o);
  o.host = "127.0.0.1";
  o.port = 0;
  o.handler = test_handler;
  return o;
}

static int fixture_start(fixture_t *f, const http_server_opts_t *opts) {
  char err[256] = "";
  memset(f, 0, sizeof *f);
  uv_loop_init(&f->loop);
  f->srv = http_server_start(&f->loop, opts, err, sizeof err);
  if (!f->srv) {
    fprintf(stderr, "server did not start: %s\n", err);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_loop_close(&f->loop);
    return -1;
  }
  f->port = http_server_port(f->srv);
  pthread_mutex_init(&f->mu, NULL);
  pthread_cond_init(&f->cv, NULL);
  uv_async_init(&f->loop, &f->wake, on_wake);
  f->wake.data = f;
  pthread_create(&f->thread, NULL, loop_thread, f);
  return 0;
}

static void fixture_cmd(fixture_t *f, int cmd) {
  pthread_mutex_lock(&f->mu);
  f->cmd = cmd;
  uv_async_send(&f->wake);
  while (f->cmd != CMD_NONE) pthread_cond_wait(&f->cv, &f->mu);
  pthread_mutex_unlock(&f->mu);
}

static http_server_stats_t fixture_stats(fixture_t *f) {
  fixture_cmd(f, CMD_STATS);
  return f->stats;
}

/* Close the server, let the loop run out, and check that nothing is left on it. */
static void fixture_stop_with(fixture_t *f, int cmd) {
  fixture_cmd(f, cmd);
  pthread_join(f->thread, NULL);
  CHECK_INT(uv_loop_close(&f->loop), 0);
  pthread_mutex_destroy(&f->mu);
  pthread_cond_destroy(&f->cv);
}

static void fixture_stop(fixture_t *f) { fixture_stop_with(f, CMD_CLOSE); }

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Waits (bounded) for the server to hold exactly n deferred answers. */
static int wait_deferred(fixture_t *f, unsigned long n) {
  int i;
  for (i = 0; i < 500; i++) {
    if (fixture_stats(f).deferred == n) return 1;
    sleep_ms(10);
  }
  return 0;
}

/* Waits (bounded) for the server to hold exactly n connections. */
static int wait_open_connections(fixture_t *f, unsigned long n) {
  int i;
  for (i = 0; i < 500; i++) {
    if (fixture_stats(f).open_connections == n) return 1;
    sleep_ms(10);
  }
  return 0;
}

/* ---- the client ---- */

typedef struct {
  int status;
  char reason[64];
  char connection[32];
  char content_type[64];
  char retry_after[16];
  char content_length[24];
  char *body;
  size_t body_len;
  int done;
  int skip_body; /* answer to HEAD */
  char field[64];
  size_t field_len;
  int in_value;
  char *dest;
  size_t dest_cap;
} resp_t;

typedef struct {
  int fd;
  http_parser parser;
  char buf[16384];
  size_t off, len;
} client_t;

static void append_bounded(char *dst, size_t cap, const char *at, size_t n) {
  size_t have = strlen(dst);
  if (have + n >= cap) n = cap - have - 1;
  memcpy(dst + have, at, n);
  dst[have + n] = '\0';
}

static int c_on_status(http_parser *p, const char *at, size_t n) {
  resp_t *r = p->data;
  append_bounded(r->reason, sizeof r->reason, at, n);
  return 0;
}

static int c_on_header_field(http_parser *p, const char *at, size_t n) {
  resp_t *r = p->data;
  if (r->in_value) {
    r->in_value = 0;
    r->field[0] = '\0';
  }
  append_bounded(r->field, sizeof r->field, at, n);
  return 0;
}

static int c_on_header_value(http_parser *p, const char *at, size_t n) {
  resp_t *r = p->data;
  if (!r->in_value) {
    r->in_value = 1;
    r->dest = NULL;
    if (strcasecmp(r->field, "connection") == 0) r->dest = r->connection, r->dest_cap = sizeof r->connection;
    if (strcasecmp(r->field, "content-type") == 0) r->dest = r->content_type, r->dest_cap = sizeof r->content_type;
    if (strcasecmp(r->field, "retry-after") == 0) r->dest = r->retry_after, r->dest_cap = sizeof r->retry_after;
    if (strcasecmp(r->field, "content-length") == 0) r->dest = r->content_length, r->dest_cap = sizeof r->content_length;
  }
  if (r->dest) append_bounded(r->dest, r->dest_cap, at, n);
  return 0;
}

static int c_on_headers_complete(http_parser *p) {
  resp_t *r = p->data;
  r->status = (int)p->status_code;
  return r->skip_body ? 1 : 0;
}

static int c_on_body(http_parser *p, const char *at, size_t n) {
  resp_t *r = p->data;
  r->body = realloc(r->body, r->body_len + n + 1);
  memcpy(r->body + r->body_len, at, n);
  r->body_len += n;
  r->body[r->body_len] = '\0';
  return 0;
}

static int c_on_message_complete(http_parser *p) {
  resp_t *r = p->data;
  r->done = 1;
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings k_client_settings = {
  .on_status = c_on_status,
  .on_header_field = c_on_header_field,
  .on_header_value = c_on_header_value,
  .on_headers_complete = c_on_headers_complete,
  .on_body = c_on_body,
  .on_message_complete = c_on_message_complete,
};

/* Connect from source address src (any 127.x.y.z works on Linux loopback), or from the
 * system's choice when src is NULL. */
static int client_open_from(client_t *cl, int port, const char *src) {
  struct sockaddr_in a;
  struct timeval tv = {5, 0};
  memset(cl, 0, sizeof *cl);
  http_parser_init(&cl->parser, HTTP_RESPONSE);
  cl->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (cl->fd < 0) return -1;
  setsockopt(cl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(cl->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  if (src) { /* port 0: any free source port */
    inet_pton(AF_INET, src, &a.sin_addr);
    if (bind(cl->fd, (struct sockaddr *)&a, sizeof a) != 0) {
      close(cl->fd);
      cl->fd = -1;
      return -1;
    }
  }
  a.sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(cl->fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(cl->fd);
    cl->fd = -1;
    return -1;
  }
  return 0;
}

static int client_open(client_t *cl, int port) { return client_open_from(cl, port, NULL); }

static void client_close(client_t *cl) {
  if (cl->fd >= 0) close(cl->fd);
  cl->fd = -1;
}

static int client_send(client_t *cl, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(cl->fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int client_send_str(client_t *cl, const char *s) { return client_send(cl, s, strlen(s)); }

/* Read one response; 0 when complete. */
static int client_read(client_t *cl, resp_t *r, int head) {
  memset(r, 0, sizeof *r);
  r->skip_body = head;
  cl->parser.data = r;
  for (;;) {
    if (cl->off < cl->len) {
      size_t n = http_parser_execute(&cl->parser, &k_client_settings, cl->buf + cl->off, cl->len - cl->off);
      cl->off += n;
      if (r->done) {
        http_parser_pause(&cl->parser, 0);
        return 0;
      }
      if (HTTP_PARSER_ERRNO(&cl->parser) != HPE_OK || n == 0) return -1;
      continue;
    }
    ssize_t got = recv(cl->fd, cl->buf, sizeof cl->buf, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return -1;
    cl->off = 0;
    cl->len = (size_t)got;
  }
}

static void resp_free(resp_t *r) {
  free(r->body);
  r->body = NULL;
}

/* 1 when the server has closed the connection with nothing more to say. */
static int client_sees_close(client_t *cl) {
  char b[256];
  ssize_t n;
  if (cl->off < cl->len) return 0;
  do n = recv(cl->fd, b, sizeof b, 0); while (n < 0 && errno == EINTR);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* Send a request and read its response on an open client. */
static int roundtrip(client_t *cl, const char *request, resp_t *r) {
  if (client_send_str(cl, request) != 0) return -1;
  return client_read(cl, r, 0);
}

/* ---- tests ---- */

TEST(get_request) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t cl;
  resp_t r;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }
  CHECK(f.port > 0);
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(roundtrip(&cl, "GET /info?a=1&b=two HTTP/1.1\r\nHost: x\r\nauthorization: Bearer tok\r\n"
                           "CONTENT-TYPE: text/plain\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 200);
  CHECK_STR(r.reason, "OK");
  CHECK_STR(r.content_type, "text/plain");
  CHECK_STR(r.connection, "keep-alive");
  CHECK_STR(r.body, "GET /info a=1&b=two auth=Bearer tok ctype=text/plain len=0");
  resp_free(&r);
  CHECK_INT(roundtrip(&cl, "GET /info HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_STR(r.body, "GET /info  auth=(none) ctype=(none) len=0");
  resp_free(&r);
  CHECK_INT(roundtrip(&cl, "GET /nowhere#frag HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 404);
  CHECK_STR(r.reason, "Not Found");
  CHECK_STR(r.content_type, "application/json");
  CHECK_STR(r.body, "{\"error\":\"not found\"}");
  resp_free(&r);
  CHECK_INT(roundtrip(&cl, "DELETE http://example.com/info?x=y HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_STR(r.body, "DELETE /info x=y auth=(none) ctype=(none) len=0");
  resp_free(&r);
  client_close(&cl);
  CHECK_INT(fixture_stats(&f).requests, 4);
  fixture_stop(&f);
}

TEST(post_body) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t cl;
  resp_t r;
  static const char body[] = "abc\0def";
  char req[256];
  int n;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }
  CHECK_INT(client_open(&cl, f.port), 0);
  n = snprintf(req, sizeof req, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n");
  memcpy(req + n, body, 7);
  CHECK_INT(client_send(&cl, req, (size_t)n + 7), 0);
  CHECK_INT(client_read(&cl, &r, 0), 0);
  CHECK_INT(r.status, 200);
  CHECK_INT(r.body_len, 7);
  CHECK(r.body && memcmp(r.body, body, 7) == 0);
  resp_free(&r);
  CHECK_INT(roundtrip(&cl, "POST /info HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           "Content-Length: 2\r\n\r\n{}", &r), 0);
  CHECK_STR(r.body, "POST /info  auth=(none) ctype=application/json len=2");
  resp_free(&r);
  client_close(&cl);
  fixture_stop(&f);
}

TEST(post_large_body) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t cl;
  resp_t r;
  size_t len = 1024 * 1024, i;
  char *body = malloc(len);
  char head[128];
  for (i = 0; i < len; i++) body[i] = (char)((i * 7 + i / 251) & 0xff);
  if (fixture_start(&f, &o) != 0) { CHECK(0); free(body); return; }
  CHECK_INT(client_open(&cl, f.port), 0);
  snprintf(head, sizeof head, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", len);
  CHECK_INT(client_send_str(&cl, head), 0);
  CHECK_INT(client_send(&cl, body, len), 0);
  CHECK_INT(client_read(&cl, &r, 0), 0);
  CHECK_INT(r.status, 200);
  CHECK_INT(r.body_len, len);
  CHECK(r.body && memcmp(r.body, body, len) == 0);
  resp_free(&r);
  client_close(&cl);
  fixture_stop(&f);
  free(body);
}

TEST(post_chunked) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t cl;
  resp_t r;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }
  CHECK_INT(client_open(&cl, f.port), 0);
  /* Sent in pieces so that chunks straddle reads. */
  CHECK_INT(client_send_str(&cl, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"), 0);
  sleep_ms(20);
  CHECK_INT(client_send_str(&cl, "lo\r\n7\r\n, world\r\n"), 0);
  sleep_ms(20);
  CHECK_INT(client_send_str(&cl, "1\r\n!\r\n0\r\n\r\n"), 0);
  CHECK_INT(client_read(&cl, &r, 0), 0);
  CHECK_INT(r.status, 200);
  CHECK_STR(r.body, "hello, world!");
  resp_free(&r);
  client_close(&cl);
  fixture_stop(&f);
}

TEST(keep_alive) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t cl;
  resp_t r;
  http_server_stats_t st;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(roundtrip(&cl, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 200);
  CHECK_STR(r.body, "{\"ok\":true}");
  resp_free(&r);
  CHECK_INT(roundtrip(&cl, "GET /info?second HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 200);
  CHECK_STR(r.body, "GET /info second auth=(none) ctype=(none) len=0");
  CHECK_STR(r.connection, "keep-alive");
  resp_free(&r);
  st = fixture_stats(&f);
  CHECK_INT(st.requests, 2);
  CHECK_INT(st.open_connections, 1);
  client_close(&cl);
  CHECK(wait_open_connections(&f, 0));
  fixture_stop(&f);
}

TEST(pipelined) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t cl;
  resp_t r;
  static char all[64 * 1024];
  char expect[128];
  size_t len = 0;
  int i;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }
  CHECK_INT(client_open(&cl, f.port), 0);
  len += (size_t)snprintf(all + len, sizeof all - len, "GET /info?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                                    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                                    "GET /info?n=3 HTTP/1.1\r\nHost: x\r\n\r\n");
  for (i = 0; i < 200; i++)
    len += (size_t)snprintf(all + len, sizeof all - len, "GET /info?i=%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
  CHECK_INT(client_send(&cl, all, len), 0);
  CHECK_INT(client_read(&cl, &r, 0), 0);
  CHECK_STR(r.body, "GET /info n=1 auth=(none) ctype=(none) len=0");
  resp_free(&r);
  CHECK_INT(client_read(&cl, &r, 0), 0);
  CHECK_STR(r.body, "hello");
  resp_free(&r);
  CHECK_INT(client_read(&cl, &r, 0), 0);
  CHECK_STR(r.body, "GET /info n=3 auth=(none) ctype=(none) len=0");
  resp_free(&r);
  for (i = 0; i < 200; i++) {
    snprintf(expect, sizeof expect, "GET /info i=%d auth=(none) ctype=(none) len=0", i);
    if (client_read(&cl, &r, 0) != 0) { CHECK(0); break; }
    CHECK_STR(r.body, expect);
    resp_free(&r);
  }
  client_close(&cl);
  CHECK_INT(fixture_stats(&f).requests, 203);
  fixture_stop(&f);
}

TEST(connection_close) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t cl;
  resp_t r;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(roundtrip(&cl, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 200);
  CHECK_STR(r.connection, "close");
  resp_free(&r);
  CHECK(client_sees_close(&cl));
  client_close(&cl);

  CHECK_INT(client_open(&cl, f.port), 0); /* HTTP/1.0 closes by default */
  CHECK_INT(roundtrip(&cl, "GET / HTTP/1.0\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 200);
  CHECK_STR(r.connection, "close");
  resp_free(&r);
  CHECK(client_sees_close(&cl));
  client_close(&cl);
  fixture_stop(&f);
}

TEST(head_and_status_codes) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t cl;
  resp_t r;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(client_send_str(&cl, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
  CHECK_INT(client_read(&cl, &r, 1), 0);
  CHECK_INT(r.status, 200);
  CHECK_STR(r.content_length, "11");
  CHECK_INT(r.body_len, 0);
  resp_free(&r);
  CHECK_INT(roundtrip(&cl, "GET /limited HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 429);
  CHECK_STR(r.reason, "Too Many Requests");
  CHECK_STR(r.retry_after, "3");
  CHECK_STR(r.body, "{\"error\":\"slow down\"}");
  resp_free(&r);
  CHECK_INT(roundtrip(&cl, "GET /empty HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 204);
  CHECK_STR(r.reason, "No Content");
  CHECK_INT(r.body_len, 0);
  resp_free(&r);
  /* The connection is still in step after the bodiless answers. */
  CHECK_INT(roundtrip(&cl, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_STR(r.body, "{\"ok\":true}");
  resp_free(&r);
  client_close(&cl);
  fixture_stop(&f);
}

TEST(expect_continue) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t cl;
  resp_t r;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(roundtrip(&cl, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                           "Content-Length: 4\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 100);
  resp_free(&r);
  CHECK_INT(roundtrip(&cl, "ping", &r), 0);
  CHECK_INT(r.status, 200);
  CHECK_STR(r.body, "ping");
  resp_free(&r);
  client_close(&cl);
  fixture_stop(&f);
}

TEST(body_too_large) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t cl;
  resp_t r;
  char *big;
  char head[160];
  size_t n;
  o.max_body = 1024;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }

  /* Oversized Content-Length, no body sent: answered from the headers alone. */
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(roundtrip(&cl, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 413);
  CHECK_STR(r.reason, "Payload Too Large");
  CHECK_STR(r.connection, "close");
  CHECK_STR(r.body, "{\"error\":\"request body too large\"}");
  resp_free(&r);
  CHECK(client_sees_close(&cl));
  client_close(&cl);

  /* Oversized Content-Length with part of the body already on the wire. */
  n = 64 * 1024;
  big = malloc(n);
  memset(big, 'z', n);
  CHECK_INT(client_open(&cl, f.port), 0);
  snprintf(head, sizeof head, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 10 * 1024 * 1024);
  CHECK_INT(client_send_str(&cl, head), 0);
  CHECK_INT(client_send(&cl, big, n), 0);
  CHECK_INT(client_read(&cl, &r, 0), 0);
  CHECK_INT(r.status, 413);
  resp_free(&r);
  CHECK(client_sees_close(&cl));
  client_close(&cl);
  free(big);

  /* A chunked body growing past the limit. */
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(client_send_str(&cl, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
  big = malloc(700);
  memset(big, 'c', 700);
  CHECK_INT(client_send_str(&cl, "2bc\r\n"), 0);
  CHECK_INT(client_send(&cl, big, 700), 0);
  CHECK_INT(client_send_str(&cl, "\r\n2bc\r\n"), 0);
  CHECK_INT(client_send(&cl, big, 700), 0);
  CHECK_INT(client_send_str(&cl, "\r\n0\r\n\r\n"), 0);
  free(big);
  CHECK_INT(client_read(&cl, &r, 0), 0);
  CHECK_INT(r.status, 413);
  resp_free(&r);
  CHECK(client_sees_close(&cl));
  client_close(&cl);

  /* Exactly at the limit is fine. */
  big = malloc(1024);
  memset(big, 'k', 1024);
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(client_send_str(&cl, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n"), 0);
  CHECK_INT(client_send(&cl, big, 1024), 0);
  CHECK_INT(client_read(&cl, &r, 0), 0);
  CHECK_INT(r.status, 200);
  CHECK(r.body_len == 1024 && memcmp(r.body, big, 1024) == 0);
  resp_free(&r);
  client_close(&cl);
  free(big);

  CHECK_INT(fixture_stats(&f).rejected_413, 3);
  fixture_stop(&f);
}

TEST(headers_too_large) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t cl;
  resp_t r;
  char *req = malloc(8192);
  o.max_header = 1024;
  if (fixture_start(&f, &o) != 0) { CHECK(0); free(req); return; }
  CHECK_INT(client_open(&cl, f.port), 0);
  strcpy(req, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
  memset(req + strlen(req), 'a', 4000);
  strcpy(req + strlen("GET / HTTP/1.1\r\nHost: x\r\nX-Big: ") + 4000, "\r\n\r\n");
  CHECK_INT(roundtrip(&cl, req, &r), 0);
  CHECK_INT(r.status, 431);
  CHECK_STR(r.reason, "Request Header Fields Too Large");
  CHECK_STR(r.connection, "close");
  resp_free(&r);
  CHECK(client_sees_close(&cl));
  client_close(&cl);

  /* Well under the limit still works. */
  CHECK_INT(client_open(&cl, f.port), 0);
  strcpy(req, "GET / HTTP/1.1\r\nHost: x\r\nX-Small: ");
  memset(req + strlen(req), 'a', 500);
  strcpy(req + strlen("GET / HTTP/1.1\r\nHost: x\r\nX-Small: ") + 500, "\r\n\r\n");
  CHECK_INT(roundtrip(&cl, req, &r), 0);
  CHECK_INT(r.status, 200);
  resp_free(&r);
  client_close(&cl);
  CHECK_INT(fixture_stats(&f).rejected_431, 1);
  fixture_stop(&f);
  free(req);
}

TEST(bad_request) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t cl;
  resp_t r;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(roundtrip(&cl, "GARBAGE / HTTP/1.1\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 400);
  CHECK_STR(r.reason, "Bad Request");
  CHECK_STR(r.connection, "close");
  CHECK_STR(r.body, "{\"error\":\"bad request: invalid HTTP method\"}");
  resp_free(&r);
  CHECK(client_sees_close(&cl));
  client_close(&cl);

  CHECK_INT(client_open(&cl, f.port), 0); /* a bad request after a good one */
  CHECK_INT(roundtrip(&cl, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 200);
  resp_free(&r);
  CHECK_INT(roundtrip(&cl, "GET / HTTP/1.1\r\nHost x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 400);
  CHECK_STR(r.body, "{\"error\":\"bad request: invalid character in header\"}");
  resp_free(&r);
  CHECK(client_sees_close(&cl));
  client_close(&cl);
  fixture_stop(&f);
}

/* At the cap with every connection in the middle of a request: a new one is refused. */
TEST(connection_cap) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t a, b, c, d;
  resp_t r;
  http_server_stats_t st;
  o.max_connections = 2;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }
  CHECK_INT(client_open(&a, f.port), 0);
  CHECK_INT(client_send_str(&a, "GET / HTTP/1.1\r\n"), 0);
  CHECK_INT(client_open(&b, f.port), 0);
  CHECK_INT(client_send_str(&b, "GET / HTTP/1.1\r\n"), 0);
  CHECK(wait_open_connections(&f, 2));

  CHECK_INT(client_open(&c, f.port), 0); /* accepted by the kernel, closed by the server */
  CHECK(client_sees_close(&c));
  client_close(&c);
  st = fixture_stats(&f);
  CHECK_INT(st.refused_connections, 1);
  CHECK_INT(st.evicted_idle, 0);
  CHECK_INT(st.open_connections, 2);

  /* The requests in progress were not disturbed. */
  CHECK_INT(roundtrip(&a, "Host: x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 200);
  resp_free(&r);
  client_close(&a); /* frees a slot */
  CHECK(wait_open_connections(&f, 1));
  CHECK_INT(client_open(&d, f.port), 0);
  CHECK_INT(roundtrip(&d, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 200);
  resp_free(&r);
  CHECK_INT(roundtrip(&b, "Host: x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 200);
  resp_free(&r);
  client_close(&d);
  client_close(&b);
  fixture_stop(&f);
}

/* Idle lock-out: at the cap, a new client evicts the connection idle longest (here a
 * keep-alive one that was served first) instead of being refused; one mid-request stays. */
TEST(idle_connections_evicted_at_cap) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t served, silent, busy, fresh, next;
  resp_t r;
  http_server_stats_t st;
  o.max_connections = 3;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }
  CHECK_INT(client_open(&served, f.port), 0);
  CHECK_INT(roundtrip(&served, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 200);
  resp_free(&r);
  CHECK_INT(client_open(&busy, f.port), 0);
  CHECK_INT(client_send_str(&busy, "GET /info?busy HTTP/1.1\r\n"), 0);
  CHECK(wait_open_connections(&f, 2));
  CHECK_INT(client_open(&silent, f.port), 0);
  CHECK(wait_open_connections(&f, 3));

  CHECK_INT(client_open(&fresh, f.port), 0);
  CHECK_INT(roundtrip(&fresh, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 200);
  resp_free(&r);
  CHECK(client_sees_close(&served)); /* idle longest */
  client_close(&served);

  /* Next: the silent one (idle since it connected) goes, the busy one still does not. */
  CHECK_INT(client_open(&next, f.port), 0);
  CHECK_INT(roundtrip(&next, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 200);
  resp_free(&r);
  CHECK(client_sees_close(&silent));
  client_close(&silent);
  CHECK_INT(roundtrip(&busy, "Host: x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 200);
  CHECK_STR(r.body, "GET /info busy auth=(none) ctype=(none) len=0");
  resp_free(&r);
  st = fixture_stats(&f);
  CHECK_INT(st.evicted_idle, 2);
  CHECK_INT(st.refused_connections, 0);
  client_close(&busy);
  client_close(&fresh);
  client_close(&next);
  fixture_stop(&f);
}

/* One source address holds at most max_per_client connections; others are not affected. */
TEST(per_client_cap) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t a, b, over, other;
  resp_t r;
  o.max_per_client = 2;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }
  CHECK_INT(client_open_from(&a, f.port, "127.0.0.1"), 0);
  CHECK_INT(client_open_from(&b, f.port, "127.0.0.1"), 0);
  CHECK(wait_open_connections(&f, 2));
  CHECK_INT(client_open_from(&over, f.port, "127.0.0.1"), 0);
  CHECK(client_sees_close(&over));
  client_close(&over);
  CHECK_INT(fixture_stats(&f).refused_connections, 1);

  CHECK_INT(client_open_from(&other, f.port, "127.0.0.2"), 0);
  CHECK_INT(roundtrip(&other, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 200);
  resp_free(&r);
  CHECK_INT(roundtrip(&a, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 200);
  resp_free(&r);
  CHECK_INT(fixture_stats(&f).refused_connections, 1);
  client_close(&a);
  client_close(&b);
  client_close(&other);
  fixture_stop(&f);
}

/* Send n bytes of filler until the server closes; 1 when it did before all were sent. */
static int server_closes_while_sending(client_t *cl, size_t n) {
  static char filler[65536];
  size_t sent = 0;
  memset(filler, 'x', sizeof filler);
  while (sent < n) {
    ssize_t w = send(cl->fd, filler, sizeof filler, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno == EPIPE || errno == ECONNRESET;
    sent += (size_t)w;
  }
  return 0;
}

/* Authentication after buffering: the gate refuses on the headers alone, before a byte of
 * the body is read; the connection closes instead of taking the body in. */
TEST(gate_answers_before_the_body) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t cl;
  resp_t r;
  o.gate = test_gate;
  gate_calls = 0;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }

  /* Only the headers are sent: the 401 comes anyway, then the close. */
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(roundtrip(&cl, "POST /guarded HTTP/1.1\r\nHost: x\r\nContent-Length: 8000000\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 401);
  CHECK_STR(r.connection, "close");
  CHECK_STR(r.body, "{\"error\":\"no token\"}");
  resp_free(&r);
  CHECK(client_sees_close(&cl));
  client_close(&cl);

  /* A client that goes on sending is cut off after a bounded amount (far below 64 MB). */
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(roundtrip(&cl, "POST /guarded HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 401);
  resp_free(&r);
  CHECK(server_closes_while_sending(&cl, 64u << 20));
  client_close(&cl);

  /* Expect: 100-continue is not answered with 100 when the gate refuses. */
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(roundtrip(&cl, "POST /guarded HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                           "Content-Length: 5\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 401);
  resp_free(&r);
  client_close(&cl);

  /* The right token: the body is read and the handler answers. */
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(roundtrip(&cl, "POST /guarded HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ok\r\n"
                           "Content-Length: 5\r\n\r\nhello", &r), 0);
  CHECK_INT(r.status, 404);
  CHECK_STR(r.connection, "keep-alive");
  resp_free(&r);
  /* Requests without a body do not go through the gate. */
  gate_calls = 0;
  CHECK_INT(roundtrip(&cl, "GET /guarded HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 404);
  resp_free(&r);
  CHECK_INT(gate_calls, 0);
  CHECK_INT(roundtrip(&cl, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", &r), 0);
  CHECK_INT(r.status, 200);
  CHECK_STR(r.body, "abc");
  resp_free(&r);
  CHECK_INT(gate_calls, 1);
  client_close(&cl);
  CHECK_INT(fixture_stats(&f).requests, 6);
  fixture_stop(&f);
}

/* One request on a fresh connection; the status, and the body copied into body. */
static int one_request(fixture_t *f, const char *request, char *body, size_t cap) {
  client_t cl;
  resp_t r;
  int status = -1;
  if (client_open(&cl, f->port) != 0) return -1;
  if (roundtrip(&cl, request, &r) == 0) status = r.status;
  snprintf(body, cap, "%s", r.body ? r.body : "");
  resp_free(&r);
  client_close(&cl);
  return status;
}

#define CHUNKED_HEAD "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

/* Strict chunk framing: the system http-parser lets any two bytes stand for the CRLF
 * after chunk data, and any byte for the LF after some CRs. */
TEST(chunk_framing_is_strict) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  char body[256], *longext;
  client_t cl;
  resp_t r;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }
  CHECK_INT(one_request(&f, CHUNKED_HEAD "5\r\nhelloXX0\r\n\r\n", body, sizeof body), 400);
  CHECK_STR(body, "{\"error\":\"bad request: chunk data must be followed by CRLF\"}");
  CHECK_INT(one_request(&f, CHUNKED_HEAD "5\r\nhello\rX0\r\n\r\n", body, sizeof body), 400);
  CHECK_STR(body, "{\"error\":\"bad request: chunk data must be followed by CRLF\"}");
  CHECK_INT(one_request(&f, CHUNKED_HEAD "5\r\nhello\n0\r\n\r\n", body, sizeof body), 400);
  CHECK_INT(one_request(&f, CHUNKED_HEAD "5\rXhello\r\n0\r\n\r\n", body, sizeof body), 400);
  CHECK_STR(body, "{\"error\":\"bad request: LF expected after CR in a chunk-size line\"}");
  CHECK_INT(one_request(&f, CHUNKED_HEAD "5\r\nhello\r\n0\r\nT: v\r\n\rX", body, sizeof body), 400);
  CHECK_STR(body, "{\"error\":\"bad request: LF expected after CR\"}");
  CHECK_INT(one_request(&f, CHUNKED_HEAD "0\r\n\rX", body, sizeof body), 400);
  CHECK_INT(one_request(&f, "GET / HTTP/1.1\r\nHost: x\r\n\rX", body, sizeof body), 400);
  CHECK_STR(body, "{\"error\":\"bad request: LF expected after CR\"}");

  /* Chunk extensions are ignored (RFC 9112 7.1.1), within a bound on the line. */
  CHECK_INT(one_request(&f, CHUNKED_HEAD "5;name=value;q=\"a b\"\r\nhello\r\n0;last\r\n\r\n", body,
                        sizeof body), 200);
  CHECK_STR(body, "hello");
  longext = malloc(8192);
  snprintf(longext, 8192, "%s5;x=", CHUNKED_HEAD);
  memset(longext + strlen(longext), 'e', 5000);
  longext[strlen(CHUNKED_HEAD) + 4 + 5000] = '\0';
  CHECK_INT(one_request(&f, longext, body, sizeof body), 400);
  CHECK_STR(body, "{\"error\":\"bad request: chunk-size line over 4096 bytes\"}");
  free(longext);

  /* Trailer fields are read, and never taken for headers. */
  CHECK_INT(one_request(&f, "POST /info HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "2\r\nab\r\n0\r\nContent-Type: application/json\r\nAuthorization: Bearer t\r\n\r\n",
                        body, sizeof body), 200);
  CHECK_STR(body, "POST /info  auth=(none) ctype=(none) len=2");

  /* CR and LF in different reads are fine. */
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(client_send_str(&cl, CHUNKED_HEAD "5\r\nhello\r"), 0);
  sleep_ms(20);
  CHECK_INT(client_send_str(&cl, "\n3\r"), 0);
  sleep_ms(20);
  CHECK_INT(client_send_str(&cl, "\nabc\r\n0\r\n\r"), 0);
  sleep_ms(20);
  CHECK_INT(roundtrip(&cl, "\n", &r), 0);
  CHECK_INT(r.status, 200);
  CHECK_STR(r.body, "helloabc");
  resp_free(&r);
  CHECK_INT(roundtrip(&cl, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0); /* still in step */
  CHECK_INT(r.status, 200);
  resp_free(&r);
  client_close(&cl);
  fixture_stop(&f);
}

TEST(content_type_is) {
  CHECK(http_content_type_is("application/json", "application/json"));
  CHECK(http_content_type_is("Application/JSON", "application/json"));
  CHECK(http_content_type_is("application/json; charset=utf-8", "application/json"));
  CHECK(http_content_type_is(" application/x-ndjson ;charset=UTF-8", "application/x-ndjson"));
  CHECK(http_content_type_is("application/json\t", "application/json"));
  CHECK(!http_content_type_is("text/plain", "application/json"));
  CHECK(!http_content_type_is("application/jsonp", "application/json"));
  CHECK(!http_content_type_is("application/json x", "application/json"));
  CHECK(!http_content_type_is("application/", "application/json"));
  CHECK(!http_content_type_is("", "application/json"));
  CHECK(!http_content_type_is(NULL, "application/json"));
}

TEST(deadlines) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t cl;
  resp_t r;
  o.header_timeout_ms = 200;
  o.body_timeout_ms = 200;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }

  /* Half the headers, then nothing. */
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(client_send_str(&cl, "GET / HTTP/1.1\r\nHost: x\r\nX-Partial: "), 0);
  CHECK_INT(client_read(&cl, &r, 0), 0);
  CHECK_INT(r.status, 408);
  CHECK_STR(r.reason, "Request Timeout");
  CHECK_STR(r.connection, "close");
  resp_free(&r);
  CHECK(client_sees_close(&cl));
  client_close(&cl);

  /* Headers complete, body stalls. */
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(client_send_str(&cl, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789"), 0);
  CHECK_INT(client_read(&cl, &r, 0), 0);
  CHECK_INT(r.status, 408);
  resp_free(&r);
  CHECK(client_sees_close(&cl));
  client_close(&cl);

  /* An idle keep-alive connection is closed without a 408. */
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(roundtrip(&cl, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 200);
  resp_free(&r);
  CHECK(client_sees_close(&cl));
  client_close(&cl);

  CHECK_INT(fixture_stats(&f).timed_out, 2);
  fixture_stop(&f);
}

TEST(stop_accepting) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t idle, midway, late;
  resp_t r;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }
  CHECK_INT(client_open(&idle, f.port), 0);
  CHECK_INT(roundtrip(&idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_INT(r.status, 200);
  resp_free(&r);
  CHECK_INT(client_open(&midway, f.port), 0);
  CHECK_INT(client_send_str(&midway, "GET /info?late HTTP/1.1\r\nHost: x\r\n"), 0);

  fixture_cmd(&f, CMD_STOP_ACCEPTING);
  CHECK(client_open(&late, f.port) != 0); /* nobody listens any more */
  CHECK(client_sees_close(&idle));        /* idle keep-alive: closed */
  client_close(&idle);

  /* The request in flight completes, answered with Connection: close. */
  CHECK_INT(roundtrip(&midway, "\r\n", &r), 0);
  CHECK_INT(r.status, 200);
  CHECK_STR(r.body, "GET /info late auth=(none) ctype=(none) len=0");
  CHECK_STR(r.connection, "close");
  resp_free(&r);
  CHECK(client_sees_close(&midway));
  client_close(&midway);
  CHECK_INT(fixture_stats(&f).requests, 2);
  fixture_stop(&f);
}

TEST(close_with_open_connections) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t idle, midway, fresh;
  resp_t r;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }
  CHECK_INT(client_open(&idle, f.port), 0);
  CHECK_INT(roundtrip(&idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  resp_free(&r);
  CHECK_INT(client_open(&midway, f.port), 0);
  CHECK_INT(client_send_str(&midway, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"), 0);
  CHECK_INT(client_open(&fresh, f.port), 0);
  CHECK(wait_open_connections(&f, 3));
  fixture_stop(&f); /* checks uv_loop_close() == 0 */
  CHECK(client_sees_close(&idle));
  CHECK(client_sees_close(&midway));
  CHECK(client_sees_close(&fresh));
  client_close(&idle);
  client_close(&midway);
  client_close(&fresh);
}

/* A deferred answer: other connections are served meanwhile; the request pipelined
 * behind it on its own connection is answered after it, in order. */
TEST(deferred_answer) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t waiting, other;
  resp_t r;
  later_server = &f.srv;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }
  CHECK_INT(client_open(&waiting, f.port), 0);
  CHECK_INT(client_send_str(&waiting, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n"
                                      "GET /info HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
  CHECK(wait_deferred(&f, 1));
  CHECK_INT(client_open(&other, f.port), 0);
  CHECK_INT(roundtrip(&other, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_STR(r.body, "{\"ok\":true}");
  resp_free(&r);
  client_close(&other);
  fixture_cmd(&f, CMD_RESPOND);
  CHECK(f.deferred_open);
  CHECK_INT(client_read(&waiting, &r, 0), 0);
  CHECK_INT(r.status, 201);
  CHECK_STR(r.connection, "keep-alive");
  CHECK_STR(r.body, "later");
  resp_free(&r);
  CHECK_INT(client_read(&waiting, &r, 0), 0);
  CHECK_STR(r.body, "GET /info  auth=(none) ctype=(none) len=0");
  resp_free(&r);
  CHECK_INT(roundtrip(&waiting, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  CHECK_STR(r.body, "{\"ok\":true}");
  resp_free(&r);
  client_close(&waiting);
  CHECK_INT(fixture_stats(&f).deferred, 0);
  fixture_stop(&f);
  later_server = NULL;
}

/* The client goes away while its answer is deferred: the answer is written to nobody,
 * and the connection is closed once the server sees it gone. */
TEST(deferred_answer_client_gone) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t cl;
  later_server = &f.srv;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(client_send_str(&cl, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
  CHECK(wait_deferred(&f, 1));
  client_close(&cl);
  fixture_cmd(&f, CMD_RESPOND);
  CHECK(wait_open_connections(&f, 0));
  fixture_stop(&f);
  later_server = NULL;
}

/* The server is closed while an answer is deferred: the handle says so, and answering
 * afterwards only frees it (ASan: no leak, no use after free). */
TEST(deferred_answer_server_closed) {
  fixture_t f;
  http_server_opts_t o = default_opts();
  client_t cl;
  later_server = &f.srv;
  if (fixture_start(&f, &o) != 0) { CHECK(0); return; }
  CHECK_INT(client_open(&cl, f.port), 0);
  CHECK_INT(client_send_str(&cl, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
  CHECK(wait_deferred(&f, 1));
  fixture_stop_with(&f, CMD_CLOSE_THEN_RESPOND);
  CHECK(!f.deferred_open);
  CHECK(client_sees_close(&cl));
  client_close(&cl);
  later_server = NULL;
}

TEST(listen_errors) {
  uv_loop_t loop;
  http_server_opts_t o = default_opts();
  http_server_t *first, *second;
  char err[256] = "", expect[128];
  uv_loop_init(&loop);
  first = http_server_start(&loop, &o, err, sizeof err);
  CHECK(first != NULL);
  if (first) {
    o.port = http_server_port(first);
    second = http_server_start(&loop, &o, err, sizeof err);
    CHECK(second == NULL);
    snprintf(expect, sizeof expect, "cannot listen on 127.0.0.1:%d: address already in use", o.port);
    CHECK_STR(err, expect);
    http_server_close(first);
  }
  o.host = "not-an-address";
  o.port = 8707;
  CHECK(http_server_start(&loop, &o, err, sizeof err) == NULL);
  CHECK_STR(err, "cannot listen on not-an-address:8707: invalid argument");
  CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  CHECK_INT(uv_loop_close(&loop), 0);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  RUN(get_request);
  RUN(post_body);
  RUN(post_large_body);
  RUN(post_chunked);
  RUN(keep_alive);
  RUN(pipelined);
  RUN(connection_close);
  RUN(head_and_status_codes);
  RUN(expect_continue);
  RUN(body_too_large);
  RUN(headers_too_large);
  RUN(bad_request);
  RUN(connection_cap);
  RUN(idle_connections_evicted_at_cap);
  RUN(per_client_cap);
  RUN(gate_answers_before_the_body);
  RUN(chunk_framing_is_strict);
  RUN(content_type_is);
  RUN(deadlines);
  RUN(stop_accepting);
  RUN(close_with_open_connections);
  RUN(deferred_answer);
  RUN(deferred_answer_client_gone);
  RUN(deferred_answer_server_closed);
  RUN(listen_errors);
  return UNIT_DONE();
}
