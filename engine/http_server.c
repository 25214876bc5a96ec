/* http_server.c: the HTTP/1.1 server declared in http_server.h. It owns the listening
 * uv_tcp_t, one conn_t per accepted socket (its uv_tcp_t, a uv_timer_t for the header,
 * body and lingering-close deadlines, the http_parser state and the request being
 * assembled) and every response buffer until its write completes. All HTTP parsing is
 * done by http-parser; this file collects what its callbacks report, enforces the limits
 * and writes the responses. Memory is released only from close callbacks: a connection
 * once both of its handles have closed, the server once its listener and every
 * connection are gone after http_server_close. A deferred answer's handle is the one
 * exception: the application owns it until http_server_respond frees it; the connection
 * only points at it, and forgets it when it starts closing, so neither outlives the
 * other's memory.
 *
 * The parser is paused at the end of the headers, at each chunk boundary and at the end
 * of a message, so that the work needing the exact position in the input happens outside
 * its callbacks: the gate and the body limits before any body byte is read, and the
 * framing bytes the system http-parser (built without HTTP_PARSER_STRICT) lets through —
 * CRLF after chunk data, LF after CR at the end of a chunk-size line, of the headers and
 * of the trailers (RFC 9112 sections 2.2 and 7.1). Chunk extensions are ignored, as RFC
 * 9112 7.1.1 asks, but a chunk-size line is bounded (4 KiB, the bound Go's net/http
 * applies to its chunk lines); trailer fields are counted against the header limit and
 * never captured (7.1.2: not merged into the header section). The lingering close after
 * a last response discards at most 256 KiB (the idea of Go's net/http, which reads at
 * most 256 KiB of an unread body before closing). Idle eviction at the connection cap
 * and a per-source-address cap are our own policy against idle-socket lock-out. */

#include "http_server.h"

#include <assert.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MAX_BODY (8u * 1024 * 1024)
#define DEFAULT_MAX_HEADER (16u * 1024)
#define DEFAULT_MAX_CONNECTIONS 1024
#define DEFAULT_HEADER_TIMEOUT_MS 10000u
#define DEFAULT_BODY_TIMEOUT_MS 30000u
#define LISTEN_BACKLOG 511
#define DEFAULT_MAX_PER_CLIENT 64
#define LINGER_MS 2000u          /* how long a closing connection drains unread input */
#define LINGER_MAX_BYTES (256u * 1024) /* and how much of it, at most */
#define MAX_CHUNK_LINE 4096u     /* a chunk size with its extensions and CRLF */
#define HEADER_LINE_OVERHEAD 4u  /* ": " and CRLF, which the parser does not report */

typedef struct {
  char *data;   /* NUL-terminated when non-NULL */
  size_t len, cap;
} buf_t;

/* Request headers whose values are kept; every other header is only counted. */
enum { CAP_AUTHORIZATION, CAP_CONTENT_TYPE, CAP_EXPECT, CAP_COUNT };
static const char *const k_captured[CAP_COUNT] = {"authorization", "content-type", "expect"};

/* Where the header callbacks are: before any header, inside a name, inside a value. */
enum { HS_NONE, HS_FIELD, HS_VALUE };

/* Why the parser paused (see conn_feed). */
enum { AT_NONE, AT_HEADERS, AT_CHUNK_HEADER, AT_CHUNK_END, AT_MESSAGE };

/* A source address, for the per-client cap: IPv4-mapped IPv6 counts as IPv4. */
typedef struct {
  int family;                /* AF_INET, AF_INET6, or 0 when unknown */
  unsigned char addr[16];
} peer_t;

typedef struct conn conn_t;

struct http_deferred {
  conn_t *conn;              /* NULL once the connection started closing */
};

struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t write_req;      /* the response; one at a time */
  uv_write_t continue_req;   /* "100 Continue" */
  uv_shutdown_t shutdown_req;
  http_server_t *srv;
  conn_t *prev, *next;
  int pending_closes;        /* handles still to report their close */
  http_parser parser;

  /* The request being assembled. */
  buf_t url, body;
  buf_t captured[CAP_COUNT]; /* data stays NULL until the header is seen */
  char field[16];            /* current header name; longer names are never captured */
  size_t field_len;
  int field_too_long;
  int hstate;
  int capture;               /* index into captured for the current value, or -1 */
  size_t header_bytes;
  int reject;                /* status to answer with, set by a failing parser callback */
  int message_begun;
  int paused_at;             /* AT_*: what made the parser pause */
  int last_chunk;            /* the chunk being read is the zero-size one */
  int in_chunk_line;         /* the parser is inside a chunk-size line */
  size_t chunk_line_bytes;
  const char *want_lf;       /* the next input byte must be LF; the error if not */
  char tail[2];              /* the last two bytes the parser consumed */

  /* Connection state. */
  char *pending;             /* input received after a request that is being answered */
  size_t pending_len;
  char *out_head, *out_body; /* the response being written */
  http_deferred_t *deferred; /* the answer to the request in hand comes later */
  unsigned long served;
  peer_t peer;
  uint64_t idle_since;       /* uv_now when it last had no request in progress */
  size_t discarded;          /* bytes thrown away while lingering */
  int keep_alive, busy, reading, lingering, closing;
};

struct http_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  http_server_opts_t opts;
  int port;
  int listening, draining, close_requested;
  unsigned long live;        /* listener + connections + refused sockets not yet freed */
  conn_t *conns;
  conn_t *dispatching;       /* the connection whose request the handler is handling */
  unsigned long ndeferred;   /* deferred answers on open connections */
  unsigned long nconns;      /* connections held, including ones being closed */
  unsigned long nopen;       /* connections not being closed: what the caps count */
  unsigned long requests, rejected_413, rejected_431, timed_out, refused, evicted;
};

static void conn_close(conn_t *c);
static void conn_feed(conn_t *c, const char *data, size_t len);
static void on_timer(uv_timer_t *t);

/* ---- growable buffers ---- */

static int buf_reserve(buf_t *b, size_t need) {
  size_t cap = b->cap ? b->cap : 64;
  char *p;
  if (need <= b->cap) return 0;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  p = realloc(b->data, cap);
  if (!p) return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}

static int buf_append(buf_t *b, const char *p, size_t n) {
  if (buf_reserve(b, b->len + n + 1) != 0) return -1;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

static int buf_printf(buf_t *b, const char *fmt, ...) {
  va_list ap, again;
  int n;
  va_start(ap, fmt);
  va_copy(again, ap);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || buf_reserve(b, b->len + (size_t)n + 1) != 0) {
    va_end(again);
    return -1;
  }
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, again);
  va_end(again);
  b->len += (size_t)n;
  return 0;
}

static void buf_free(buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

static char *dup_range(const char *p, size_t n) {
  char *s = malloc(n + 1);
  if (!s) return NULL;
  if (n) memcpy(s, p, n);
  s[n] = '\0';
  return s;
}

/* ---- responses ---- */

static const char *reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: break;
  }
  if (status < 300) return "OK";
  if (status < 400) return "Redirection";
  if (status < 500) return "Client Error";
  return "Server Error";
}

static int status_has_body(int status) { return status != 204 && status != 304; }

static int format_head(buf_t *h, int status, const char *ctype, size_t body_len,
                       const char *extra, int keep_alive) {
  if (buf_printf(h, "HTTP/1.1 %d %s\r\n", status, reason_phrase(status)) != 0) return -1;
  if (status_has_body(status) &&
      buf_printf(h, "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype, body_len) != 0)
    return -1;
  return buf_printf(h, "%sConnection: %s\r\n\r\n", extra, keep_alive ? "keep-alive" : "close");
}

static void conn_free_output(conn_t *c) {
  free(c->out_head);
  free(c->out_body);
  c->out_head = c->out_body = NULL;
}

static void conn_read_stop(conn_t *c) {
  if (!c->reading) return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

static void conn_arm(conn_t *c, unsigned ms) { uv_timer_start(&c->timer, on_timer, ms, 0); }

static void conn_drop_pending(conn_t *c) {
  free(c->pending);
  c->pending = NULL;
  c->pending_len = 0;
}

/* Close after the last response: send FIN, then read and discard whatever the client is
 * still sending (so the kernel does not answer it with a reset that could destroy the
 * response in flight) until it closes too or LINGER_MS passes. */
static void on_shutdown(uv_shutdown_t *req, int status);

static void conn_finish(conn_t *c) {
  if (c->closing || c->lingering) return;
  c->lingering = 1;
  conn_drop_pending(c);
  uv_timer_stop(&c->timer);
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) conn_close(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static int conn_read_start(conn_t *c) {
  int rc;
  if (c->reading || c->closing) return 0;
  rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc == 0) c->reading = 1;
  return rc;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn_t *c = req->data;
  if (c->closing) return;
  if (status < 0 || conn_read_start(c) != 0) {
    conn_close(c);
    return;
  }
  conn_arm(c, LINGER_MS);
}

/* Next request on a keep-alive connection: parse what was already received, then read. */
static void conn_resume(conn_t *c) {
  char *data = c->pending;
  size_t len = c->pending_len;
  c->pending = NULL;
  c->pending_len = 0;
  if (data) {
    conn_feed(c, data, len);
    free(data);
  }
  if (!c->closing && !c->busy && !c->lingering && conn_read_start(c) != 0) conn_close(c);
}

static void on_response_written(uv_write_t *req, int status) {
  conn_t *c = req->data;
  conn_free_output(c);
  c->busy = 0;
  if (c->closing) return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  if (!c->keep_alive || c->srv->draining) {
    conn_finish(c);
    return;
  }
  http_parser_pause(&c->parser, 0);
  c->idle_since = uv_now(c->srv->loop);
  conn_arm(c, c->srv->opts.header_timeout_ms);
  conn_resume(c);
}

/* Write a response; takes ownership of body. Reading stays stopped until it is written. */
static void conn_send(conn_t *c, int status, const char *ctype, char *body, size_t body_len,
                      const char *extra, int head_only) {
  buf_t head = {0};
  uv_buf_t bufs[2];
  unsigned nbufs = 1;
  if (!status_has_body(status)) body_len = 0;
  if (format_head(&head, status, ctype, body_len, extra, c->keep_alive) != 0) {
    buf_free(&head);
    free(body);
    conn_close(c);
    return;
  }
  bufs[0] = uv_buf_init(head.data, (unsigned)head.len);
  if (body && body_len && !head_only) bufs[nbufs++] = uv_buf_init(body, (unsigned)body_len);
  c->out_head = head.data;
  c->out_body = body;
  c->busy = 1;
  conn_read_stop(c);
  c->write_req.data = c;
  if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, bufs, nbufs, on_response_written) != 0) {
    conn_free_output(c);
    c->busy = 0;
    conn_close(c);
  }
}

/* Answer with an error status and a small JSON body, then close. */
static void conn_reject(conn_t *c, int status, const char *message) {
  http_server_t *s = c->srv;
  buf_t body = {0};
  if (status == 413) s->rejected_413++;
  if (status == 431) s->rejected_431++;
  if (status == 408) s->timed_out++;
  uv_timer_stop(&c->timer);
  conn_drop_pending(c);
  c->keep_alive = 0;
  if (buf_printf(&body, "{\"error\":\"%s\"}", message) != 0) {
    buf_free(&body);
    conn_close(c);
    return;
  }
  conn_send(c, status, "application/json", body.data, body.len, "", 0);
}

static void conn_reject_status(conn_t *c, int status) {
  switch (status) {
    case 413: conn_reject(c, 413, "request body too large"); break;
    case 431: conn_reject(c, 431, "request headers too large"); break;
    default: conn_reject(c, 500, "out of memory"); break;
  }
}

static void conn_bad_request(conn_t *c, enum http_errno e) {
  char msg[160];
  if (e == HPE_HEADER_OVERFLOW) {
    conn_reject_status(c, 431);
    return;
  }
  snprintf(msg, sizeof msg, "bad request: %s", http_errno_description(e));
  conn_reject(c, 400, msg);
}

/* ---- requests ---- */

static void request_reset(conn_t *c) {
  int i;
  buf_free(&c->url);
  buf_free(&c->body);
  for (i = 0; i < CAP_COUNT; i++) buf_free(&c->captured[i]);
  c->field_len = 0;
  c->field_too_long = 0;
  c->hstate = HS_NONE;
  c->capture = -1;
  c->header_bytes = 0;
  c->reject = 0;
  c->message_begun = 0;
  c->paused_at = AT_NONE;
  c->last_chunk = 0;
  c->in_chunk_line = 0;
  c->chunk_line_bytes = 0;
  c->want_lf = NULL;
}

static int split_pair(const char *p, size_t plen, const char *q, size_t qlen,
                      char **path, char **query) {
  *path = dup_range(p, plen);
  *query = dup_range(q, qlen);
  return *path && *query ? 0 : -1;
}

/* Path and query from the request target. Origin form ("/a?b") is split at '?' (a
 * fragment is dropped); absolute form ("http://h/a?b") goes through the parser's URL
 * splitter; a CONNECT authority is kept whole as the path. */
static int split_url(const char *url, size_t len, int is_connect, char **path, char **query) {
  struct http_parser_url u;
  const char *hash, *mark;
  if (!is_connect && len > 0 && len <= UINT16_MAX && url[0] != '/' && url[0] != '*') {
    http_parser_url_init(&u);
    if (http_parser_parse_url(url, len, 0, &u) == 0) {
      const char *p = "/", *q = "";
      size_t plen = 1, qlen = 0;
      if (u.field_set & (1u << UF_PATH)) {
        p = url + u.field_data[UF_PATH].off;
        plen = u.field_data[UF_PATH].len;
      }
      if (u.field_set & (1u << UF_QUERY)) {
        q = url + u.field_data[UF_QUERY].off;
        qlen = u.field_data[UF_QUERY].len;
      }
      return split_pair(p, plen, q, qlen, path, query);
    }
  }
  if (is_connect) return split_pair(url, len, "", 0, path, query);
  hash = memchr(url, '#', len);
  if (hash) len = (size_t)(hash - url);
  mark = memchr(url, '?', len);
  if (!mark) return split_pair(url, len, "", 0, path, query);
  return split_pair(url, (size_t)(mark - url), mark + 1, len - (size_t)(mark - url) - 1,
                    path, query);
}

static void response_sanitize(http_response_t *res) {
  if (res->status < 200 || res->status > 599) res->status = 500;
  if (!res->content_type) res->content_type = "application/json";
  if (!res->body) res->body_len = 0;
  res->extra_headers[sizeof res->extra_headers - 1] = '\0';
}

/* The request as the handler and the gate see it. path and query are malloc'd for the
 * caller to free (also on failure); -1 when they could not be made. */
static int request_view(conn_t *c, http_request_t *req, char **path, char **query) {
  if (split_url(c->url.data ? c->url.data : "", c->url.len,
                c->parser.method == HTTP_CONNECT, path, query) != 0)
    return -1;
  memset(req, 0, sizeof *req);
  req->method = http_method_str((enum http_method)c->parser.method);
  req->path = *path;
  req->query = *query;
  req->body = c->body.data ? c->body.data : "";
  req->body_len = c->body.len;
  req->authorization = c->captured[CAP_AUTHORIZATION].data;
  req->content_type = c->captured[CAP_CONTENT_TYPE].data;
  return 0;
}

void http_response_init(http_response_t *res) {
  memset(res, 0, sizeof *res);
  res->status = 200;
  res->content_type = "application/json";
}

/* Send what a handler or the gate filled in, unless the callback closed the server. */
static void conn_answer(conn_t *c, http_response_t *res, int keep_alive) {
  if (c->closing) {
    free(res->body);
    return;
  }
  response_sanitize(res);
  c->keep_alive = keep_alive;
  conn_send(c, res->status, res->content_type, res->body, res->body_len, res->extra_headers,
            c->parser.method == HTTP_HEAD);
}

/* The handler deferred its answer: keep the connection as it is until
 * http_server_respond; pipelined input stays aside (conn_feed), no deadline runs. */
static void conn_hold(conn_t *c, int keep_alive) {
  c->keep_alive = keep_alive;
  c->busy = 1;
  conn_read_stop(c);
  uv_timer_stop(&c->timer);
}

/* A whole request has been parsed (the parser is paused): call the handler, answer now
 * or hold the connection for a deferred answer. */
static void conn_dispatch(conn_t *c) {
  http_server_t *s = c->srv;
  http_request_t req;
  http_response_t res;
  char *path = NULL, *query = NULL;
  int keep_alive;

  c->served++;
  s->requests++;
  if (request_view(c, &req, &path, &query) != 0) {
    free(path);
    free(query);
    request_reset(c);
    conn_reject_status(c, 500);
    return;
  }
  http_response_init(&res);
  s->dispatching = c;
  s->opts.handler(&req, &res, s->opts.ud);
  s->dispatching = NULL;
  keep_alive = http_should_keep_alive(&c->parser) && !c->parser.upgrade && !s->draining;
  if (c->deferred) {
    free(res.body);
    conn_hold(c, keep_alive);
  } else {
    conn_answer(c, &res, keep_alive);
  }
  free(path);
  free(query);
  request_reset(c);
}

/* The headers of a request with a body are in: ask the gate. 1 when it answered (the
 * answer is on its way and the connection closes after it: the body is never read). */
static int conn_gate(conn_t *c) {
  http_server_t *s = c->srv;
  http_request_t req;
  http_response_t res;
  char *path = NULL, *query = NULL;
  int answered;

  if (!s->opts.gate) return 0;
  if (request_view(c, &req, &path, &query) != 0) {
    free(path);
    free(query);
    conn_reject_status(c, 500);
    return 1;
  }
  req.body = "";
  req.body_len = 0;
  http_response_init(&res);
  answered = s->opts.gate(&req, &res, s->opts.ud);
  if (answered) {
    s->requests++;
    c->served++;
    uv_timer_stop(&c->timer);
    conn_drop_pending(c);
    conn_answer(c, &res, 0);
  } else {
    free(res.body); /* a gate that lets the request through answers nothing */
  }
  free(path);
  free(query);
  return answered;
}

/* ---- parser callbacks ---- */

static conn_t *conn_of(http_parser *p) { return p->data; }

/* Stop the parser: the status is answered once http_parser_execute returns. */
static int fail(conn_t *c, int status) {
  c->reject = status;
  return -1;
}

static int count_header_bytes(conn_t *c, size_t n) {
  c->header_bytes += n;
  return c->header_bytes > c->srv->opts.max_header ? fail(c, 431) : 0;
}

static int on_message_begin(http_parser *p) {
  conn_of(p)->message_begun = 1;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
  conn_t *c = conn_of(p);
  if (count_header_bytes(c, n) != 0) return -1;
  return buf_append(&c->url, at, n) != 0 ? fail(c, 500) : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
  conn_t *c = conn_of(p);
  size_t extra = 0;
  if (c->hstate != HS_FIELD) {
    c->hstate = HS_FIELD;
    c->field_len = 0;
    c->field_too_long = 0;
    extra = HEADER_LINE_OVERHEAD;
  }
  if (count_header_bytes(c, n + extra) != 0) return -1;
  if (c->field_len + n < sizeof c->field) {
    memcpy(c->field + c->field_len, at, n);
    c->field_len += n;
  } else {
    c->field_too_long = 1;
  }
  return 0;
}

static int captured_index(const conn_t *c) {
  int i;
  if (c->field_too_long) return -1;
  for (i = 0; i < CAP_COUNT; i++)
    if (strlen(k_captured[i]) == c->field_len &&
        strncasecmp(k_captured[i], c->field, c->field_len) == 0)
      return i;
  return -1;
}

/* The first occurrence of a captured header wins; repeats are ignored, and so are
 * trailer fields (after a chunked body), which must not stand in for headers. */
static int start_value(conn_t *c) {
  c->hstate = HS_VALUE;
  c->capture = (c->parser.flags & F_TRAILING) ? -1 : captured_index(c);
  if (c->capture < 0) return 0;
  if (c->captured[c->capture].data) {
    c->capture = -1;
    return 0;
  }
  return buf_append(&c->captured[c->capture], "", 0);
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  conn_t *c = conn_of(p);
  if (c->hstate != HS_VALUE && start_value(c) != 0) return fail(c, 500);
  if (count_header_bytes(c, n) != 0) return -1;
  if (c->capture >= 0 && buf_append(&c->captured[c->capture], at, n) != 0) return fail(c, 500);
  return 0;
}

static void on_continue_written(uv_write_t *req, int status) {
  (void)req;
  (void)status; /* a broken socket shows up on the next read or write */
}

static void maybe_send_continue(conn_t *c) {
  static char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
  const char *expect = c->captured[CAP_EXPECT].data;
  uv_buf_t b = uv_buf_init(line, sizeof line - 1);
  if (!expect || strcasecmp(expect, "100-continue") != 0) return;
  if (c->parser.http_major != 1 || c->parser.http_minor < 1) return;
  c->continue_req.data = c;
  uv_write(&c->continue_req, (uv_stream_t *)&c->tcp, &b, 1, on_continue_written);
}

/* The callbacks below only pause the parser; conn_paused does the work. */
static int pause_at(http_parser *p, int at) {
  conn_of(p)->paused_at = at;
  http_parser_pause(p, 1);
  return 0;
}

static int on_headers_complete(http_parser *p) { return pause_at(p, AT_HEADERS); }

static int on_chunk_header(http_parser *p) {
  conn_of(p)->last_chunk = p->content_length == 0;
  return pause_at(p, AT_CHUNK_HEADER);
}

static int on_chunk_complete(http_parser *p) { return pause_at(p, AT_CHUNK_END); }

static int on_body(http_parser *p, const char *at, size_t n) {
  conn_t *c = conn_of(p);
  if (n > c->srv->opts.max_body - c->body.len) return fail(c, 413);
  return buf_append(&c->body, at, n) != 0 ? fail(c, 500) : 0;
}

/* Pause so that pipelined requests wait until this one is answered. */
static int on_message_complete(http_parser *p) {
  uv_timer_stop(&conn_of(p)->timer);
  return pause_at(p, AT_MESSAGE);
}

static const http_parser_settings k_settings = {
  .on_message_begin = on_message_begin,
  .on_url = on_url,
  .on_header_field = on_header_field,
  .on_header_value = on_header_value,
  .on_headers_complete = on_headers_complete,
  .on_body = on_body,
  .on_message_complete = on_message_complete,
  .on_chunk_header = on_chunk_header,
  .on_chunk_complete = on_chunk_complete,
};

/* ---- reading ---- */

static void conn_keep_pending(conn_t *c, const char *data, size_t len) {
  c->pending = dup_range(data, len);
  if (c->pending) c->pending_len = len;
  else c->keep_alive = 0; /* cannot keep it: close after the current response */
}

/* The headers are complete. 0 to go on parsing; -1 when the request has been answered
 * from its headers (by the gate, or 413 for a declared length over the limit) and
 * nothing more of it is read. */
static int conn_headers_done(conn_t *c) {
  const http_parser *p = &c->parser;
  const http_server_opts_t *o = &c->srv->opts;
  int chunked = (p->flags & F_CHUNKED) != 0;
  int sized = !chunked && (p->flags & F_CONTENTLENGTH) && p->content_length > 0;
  c->want_lf = "bad request: LF expected after CR";
  if (!chunked && !sized) {
    uv_timer_stop(&c->timer);
    return 0;
  }
  if (conn_gate(c)) return -1;
  if (sized && p->content_length > o->max_body) {
    conn_reject_status(c, 413);
    return -1;
  }
  if (sized && buf_reserve(&c->body, (size_t)p->content_length + 1) != 0) {
    conn_reject_status(c, 500);
    return -1;
  }
  c->in_chunk_line = chunked;
  c->chunk_line_bytes = 0;
  conn_arm(c, o->body_timeout_ms);
  maybe_send_continue(c);
  return 0;
}

static int framing_error(conn_t *c, const char *message) {
  conn_reject(c, 400, message);
  return -1;
}

/* The last two bytes consumed, which may come from different reads. */
static void remember_tail(conn_t *c, const char *consumed, size_t n) {
  if (n >= 2) {
    c->tail[0] = consumed[n - 2];
    c->tail[1] = consumed[n - 1];
  } else if (n == 1) {
    c->tail[0] = c->tail[1];
    c->tail[1] = consumed[0];
  }
}

/* The parser paused at c->paused_at. 0 to go on (the parser is resumed, or stays paused
 * while a dispatched request is answered); -1 when the connection has been answered and
 * this input is done. The framing checks: a chunk-size line pauses after its last byte,
 * which must be LF (the parser checked the CR before it); a data chunk pauses after the
 * two bytes that must be CRLF; the headers and the trailers pause before their final
 * byte, which must be LF (checked before the next execute). */
static int conn_paused(conn_t *c) {
  int at = c->paused_at;
  c->paused_at = AT_NONE;
  switch (at) {
    case AT_HEADERS:
      if (conn_headers_done(c) != 0) return -1;
      break;
    case AT_CHUNK_HEADER:
      c->in_chunk_line = 0;
      if (c->tail[1] != '\n')
        return framing_error(c, "bad request: LF expected after CR in a chunk-size line");
      break;
    case AT_CHUNK_END:
      if (c->last_chunk) {
        c->want_lf = "bad request: LF expected after CR";
        break;
      }
      if (c->tail[0] != '\r' || c->tail[1] != '\n')
        return framing_error(c, "bad request: chunk data must be followed by CRLF");
      c->in_chunk_line = 1;
      c->chunk_line_bytes = 0;
      break;
    case AT_MESSAGE:
      conn_dispatch(c); /* the parser stays paused until the answer is written */
      return 0;
    default:
      assert(0 && "paused for no reason");
      return framing_error(c, "bad request: parser paused");
  }
  http_parser_pause(&c->parser, 0);
  return 0;
}

/* Chunk extensions are skipped by the parser: bound the line they are on. */
static int count_chunk_line(conn_t *c, size_t n) {
  if (!c->in_chunk_line) return 0;
  c->chunk_line_bytes += n;
  if (c->chunk_line_bytes <= MAX_CHUNK_LINE) return 0;
  return framing_error(c, "bad request: chunk-size line over 4096 bytes");
}

/* Parse input. The parser pauses at the end of the headers, at each chunk boundary and
 * at the end of a message, and conn_paused acts on each; a whole message stays paused,
 * with any input after it kept aside, until its answer has been written. */
static void conn_feed(conn_t *c, const char *data, size_t len) {
  while (len > 0 && !c->closing && !c->busy && !c->lingering) {
    size_t n;
    enum http_errno e;
    if (c->want_lf) {
      if (*data != '\n') {
        framing_error(c, c->want_lf);
        return;
      }
      c->want_lf = NULL;
    }
    n = http_parser_execute(&c->parser, &k_settings, data, len);
    e = HTTP_PARSER_ERRNO(&c->parser);
    remember_tail(c, data, n);
    data += n;
    len -= n;
    if (c->reject) {
      conn_reject_status(c, c->reject);
      return;
    }
    if (count_chunk_line(c, n) != 0) return;
    if (e == HPE_PAUSED && c->paused_at != AT_NONE) {
      if (conn_paused(c) != 0) return;
    } else if (e != HPE_OK) {
      conn_bad_request(c, e);
      return;
    } else if (len > 0) { /* the parser stopped early (protocol upgrade): not ours */
      conn_close(c);
      return;
    }
  }
  if (len > 0 && c->busy && c->keep_alive && !c->closing) conn_keep_pending(c, data, len);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(suggested);
  buf->len = buf->base ? suggested : 0;
}

/* Input after the last response is thrown away, up to LINGER_MAX_BYTES. */
static void conn_discard(conn_t *c, size_t n) {
  c->discarded += n;
  if (c->discarded > LINGER_MAX_BYTES) conn_close(c);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = stream->data;
  if (nread < 0) conn_close(c); /* EOF, reset, or no memory */
  else if (c->lingering && !c->closing) conn_discard(c, (size_t)nread);
  else if (nread > 0 && !c->closing) conn_feed(c, buf->base, (size_t)nread);
  free(buf->base);
}

/* Deadlines: header or body (408, or a quiet close for an idle keep-alive connection),
 * or the end of a lingering close. */
static void on_timer(uv_timer_t *t) {
  conn_t *c = t->data;
  if (c->closing || c->busy) return;
  if (c->lingering) conn_close(c);
  else if (c->served > 0 && !c->message_begun) conn_finish(c);
  else conn_reject(c, 408, "request timeout");
}

/* ---- connection lifetime ---- */

static void server_maybe_free(http_server_t *s) {
  if (s->close_requested && s->live == 0) free(s);
}

static void conn_free(conn_t *c) {
  http_server_t *s = c->srv;
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  request_reset(c);
  conn_drop_pending(c);
  conn_free_output(c);
  free(c);
  s->nconns--;
  s->live--;
  server_maybe_free(s);
}

static void on_conn_handle_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  if (--c->pending_closes == 0) conn_free(c);
}

static void conn_close(conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  c->reading = 0;
  assert(c->srv->nopen > 0);
  c->srv->nopen--;
  if (c->deferred) { /* its answer will be dropped: the handle stays the application's */
    c->deferred->conn = NULL;
    c->deferred = NULL;
    c->srv->ndeferred--;
  }
  uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void peer_of(const uv_tcp_t *tcp, peer_t *peer) {
  struct sockaddr_storage ss;
  int len = (int)sizeof ss;
  memset(peer, 0, sizeof *peer);
  if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0) return;
  if (ss.ss_family == AF_INET) {
    peer->family = AF_INET;
    memcpy(peer->addr, &((const struct sockaddr_in *)&ss)->sin_addr, 4);
  } else if (ss.ss_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a)) {
      peer->family = AF_INET;
      memcpy(peer->addr, a->s6_addr + 12, 4);
    } else {
      peer->family = AF_INET6;
      memcpy(peer->addr, a->s6_addr, 16);
    }
  }
}

/* Accept a pending connection into a new conn_t (counted, not yet reading). NULL when it
 * could not be made or accepted (then it is already being closed). */
static conn_t *conn_accept(http_server_t *s) {
  conn_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  if (uv_tcp_init(s->loop, &c->tcp) != 0) {
    free(c);
    return NULL;
  }
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->pending_closes = 2;
  c->srv = s;
  c->capture = -1;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  s->nopen++;
  s->live++;
  if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return NULL;
  }
  peer_of(&c->tcp, &c->peer);
  c->idle_since = uv_now(s->loop);
  return c;
}

static void conn_begin(conn_t *c) {
  uv_tcp_nodelay(&c->tcp, 1);
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  conn_arm(c, c->srv->opts.header_timeout_ms);
  if (conn_read_start(c) != 0) conn_close(c);
}

static int same_peer(const peer_t *a, const peer_t *b) {
  return a->family == b->family && memcmp(a->addr, b->addr, sizeof a->addr) == 0;
}

/* Open connections from c's source address, c included. */
static unsigned long peer_count(const http_server_t *s, const conn_t *c) {
  unsigned long n = 0;
  const conn_t *o;
  for (o = s->conns; o; o = o->next)
    if (!o->closing && same_peer(&o->peer, &c->peer)) n++;
  return n;
}

/* No request in progress: never sent a byte, waiting between keep-alive requests, or
 * lingering after its last response. */
static int conn_is_idle(const conn_t *c) {
  return !c->closing && !c->busy && (c->lingering || !c->message_begun);
}

/* Close the connection idle longest, other than keep, to make room. 0 when none is idle. */
static int evict_idle(http_server_t *s, const conn_t *keep) {
  conn_t *o, *victim = NULL;
  for (o = s->conns; o; o = o->next)
    if (o != keep && conn_is_idle(o) && (!victim || o->idle_since <= victim->idle_since)) victim = o;
  if (!victim) return 0;
  s->evicted++;
  conn_close(victim);
  return 1;
}

/* Over the per-client cap, or over the total cap with nothing idle to evict: the new
 * connection is closed at once. */
static void on_connection(uv_stream_t *listener, int status) {
  http_server_t *s = listener->data;
  conn_t *c;
  if (status < 0 || !s->listening) return;
  c = conn_accept(s);
  if (!c) return;
  if (peer_count(s, c) > (unsigned long)s->opts.max_per_client ||
      (s->nopen > (unsigned long)s->opts.max_connections && !evict_idle(s, c))) {
    s->refused++;
    conn_close(c);
    return;
  }
  conn_begin(c);
}

/* ---- server ---- */

static void on_listener_closed(uv_handle_t *h) {
  http_server_t *s = h->data;
  s->live--;
  server_maybe_free(s);
}

static void listener_close(http_server_t *s) {
  if (!s->listening) return;
  s->listening = 0;
  uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}

static void opts_apply_defaults(http_server_opts_t *o) {
  if (!o->host) o->host = "127.0.0.1";
  if (!o->max_body) o->max_body = DEFAULT_MAX_BODY;
  if (!o->max_header) o->max_header = DEFAULT_MAX_HEADER;
  if (o->max_connections <= 0) o->max_connections = DEFAULT_MAX_CONNECTIONS;
  if (o->max_per_client <= 0) o->max_per_client = DEFAULT_MAX_PER_CLIENT;
  if (!o->header_timeout_ms) o->header_timeout_ms = DEFAULT_HEADER_TIMEOUT_MS;
  if (!o->body_timeout_ms) o->body_timeout_ms = DEFAULT_BODY_TIMEOUT_MS;
}

static int resolve(const char *host, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (port < 0 || port > 65535) return UV_EINVAL;
  if (strchr(host, ':')) return uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss);
  return uv_ip4_addr(host, port, (struct sockaddr_in *)ss);
}

static void listen_error(char *err, size_t errlen, const char *host, int port, int rc) {
  if (!err || !errlen) return;
  if (strchr(host, ':')) snprintf(err, errlen, "cannot listen on [%s]:%d: %s", host, port, uv_strerror(rc));
  else snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port, uv_strerror(rc));
}

static int bound_port(const uv_tcp_t *listener) {
  struct sockaddr_storage ss;
  int len = (int)sizeof ss;
  if (uv_tcp_getsockname(listener, (struct sockaddr *)&ss, &len) != 0) return -1;
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

http_server_t *http_server_start(uv_loop_t *loop, const http_server_opts_t *opts, char *err, size_t errlen) {
  http_server_opts_t o;
  struct sockaddr_storage addr;
  http_server_t *s;
  int rc;

  if (!loop || !opts || !opts->handler) {
    if (err && errlen) snprintf(err, errlen, "http server: no loop or no request handler");
    return NULL;
  }
  o = *opts;
  opts_apply_defaults(&o);
  rc = resolve(o.host, o.port, &addr);
  if (rc != 0) {
    listen_error(err, errlen, o.host, o.port, rc);
    return NULL;
  }
  s = calloc(1, sizeof *s);
  if (!s) {
    listen_error(err, errlen, o.host, o.port, UV_ENOMEM);
    return NULL;
  }
  s->loop = loop;
  s->opts = o;
  rc = uv_tcp_init(loop, &s->listener);
  if (rc != 0) {
    free(s);
    listen_error(err, errlen, o.host, o.port, rc);
    return NULL;
  }
  s->listener.data = s;
  s->listening = 1;
  s->live = 1;
  rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG, on_connection);
  if (rc == 0) {
    s->port = bound_port(&s->listener);
    if (s->port < 0) rc = UV_EINVAL;
  }
  if (rc != 0) {
    listen_error(err, errlen, o.host, o.port, rc);
    s->close_requested = 1;
    listener_close(s); /* s is freed by the close callback */
    return NULL;
  }
  return s;
}

int http_server_port(const http_server_t *s) { return s ? s->port : -1; }

void http_server_stop_accepting(http_server_t *s) {
  conn_t *c;
  if (!s || s->draining) return;
  s->draining = 1;
  listener_close(s);
  /* Idle keep-alive connections have no request in flight: close them now. */
  for (c = s->conns; c; c = c->next)
    if (!c->closing && !c->lingering && !c->busy && !c->message_begun && c->served > 0)
      conn_finish(c);
}

void http_server_close(http_server_t *s) {
  conn_t *c;
  if (!s || s->close_requested) return;
  s->close_requested = 1;
  s->draining = 1;
  listener_close(s);
  for (c = s->conns; c; c = c->next) conn_close(c);
  server_maybe_free(s);
}

http_deferred_t *http_server_defer(http_server_t *s) {
  conn_t *c = s ? s->dispatching : NULL;
  assert(c && "http_server_defer called outside the handler");
  if (!c || c->closing) return NULL;
  if (c->deferred) return c->deferred;
  c->deferred = calloc(1, sizeof *c->deferred);
  if (!c->deferred) return NULL;
  c->deferred->conn = c;
  s->ndeferred++;
  return c->deferred;
}

void http_server_respond(http_deferred_t *h, http_response_t *res) {
  conn_t *c;
  assert(h);
  c = h->conn;
  free(h);
  if (!c) { /* closed while the answer was being prepared */
    free(res->body);
    return;
  }
  assert(c->srv->dispatching != c && "a deferred answer given inside its own handler");
  assert(c->deferred == h && c->busy && !c->closing);
  c->deferred = NULL;
  c->srv->ndeferred--;
  c->busy = 0; /* conn_send sets it again while the answer is written */
  conn_answer(c, res, c->keep_alive && !c->srv->draining);
}

int http_deferred_open(const http_deferred_t *h) { return h && h->conn != NULL; }

void http_server_stats(const http_server_t *s, http_server_stats_t *out) {
  memset(out, 0, sizeof *out);
  if (!s) return;
  out->requests = s->requests;
  out->rejected_413 = s->rejected_413;
  out->rejected_431 = s->rejected_431;
  out->timed_out = s->timed_out;
  out->refused_connections = s->refused;
  out->evicted_idle = s->evicted;
  out->open_connections = s->nconns;
  out->deferred = s->ndeferred;
}

int http_content_type_is(const char *value, const char *media_type) {
  size_t n = strlen(media_type);
  const char *end;
  if (!value) return 0;
  while (*value == ' ' || *value == '\t') value++;
  end = value + strcspn(value, ";");
  while (end > value && (end[-1] == ' ' || end[-1] == '\t')) end--;
  return (size_t)(end - value) == n && strncasecmp(value, media_type, n) == 0;
}
