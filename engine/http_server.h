/* http_server: a small HTTP/1.1 server on a libuv loop, parsing with the system
 * http-parser library. It owns its listening handle and every connection. Requests are
 * handed to one callback once headers and body are complete; the callback answers
 * synchronously by filling in the response, or defers the answer (http_server_defer) and
 * gives it later on the loop (http_server_respond). An optional gate sees a request's headers
 * before any byte of its body is read, and may answer at once (401 before an 8 MB body
 * is buffered). Limits: body size (413, a declared Content-Length before any of it is
 * read), header size (431), chunk framing checked strictly (400), a connection cap with
 * a per-client (source address) cap, idle connections evicted oldest first when the
 * cap is reached, a header deadline and a body deadline after which a slow client is
 * closed (408 when possible). Keep-alive is supported; "Connection: close" is honoured. */
#ifndef HEARTH_HTTP_SERVER_H
#define HEARTH_HTTP_SERVER_H

#include <stddef.h>
#include <uv.h>

typedef struct http_server http_server_t;

typedef struct {
  const char *method;      /* "GET", "POST", ... */
  const char *path;        /* path without the query string, NUL-terminated */
  const char *query;       /* query string without '?', or "" */
  const char *body;        /* NUL-terminated copy of the body (may contain NULs) */
  size_t body_len;
  const char *authorization; /* value of the Authorization header or NULL */
  const char *content_type;  /* value of Content-Type or NULL */
} http_request_t;

typedef struct {
  int status;                /* default 200 */
  const char *content_type;  /* default "application/json" */
  char *body;                /* malloc'd by the handler, freed by the server; may be NULL */
  size_t body_len;
  char extra_headers[256];   /* extra header lines, each ending in "\r\n" (e.g. Retry-After) */
} http_response_t;

/* Called on the loop thread once a request is complete. The request strings live only for
 * the call; content_type and extra_headers are copied as soon as the handler returns, so
 * they may point into the request. An out-of-range status becomes 500. The handler may
 * instead defer its answer (http_server_defer). */
typedef void (*http_handler_fn)(const http_request_t *req, http_response_t *res, void *ud);
/* Called on the loop thread when the headers of a request that announces a body
 * (Content-Length above 0, or chunked) are complete, before any byte of the body is read;
 * body is "" and body_len 0. Return 0 to read the body and go on to the handler, or fill
 * in res (as the handler would) and return 1: that answer goes out at once, the body is
 * never read into memory, and the connection is closed after the answer. */
typedef int (*http_gate_fn)(const http_request_t *req, http_response_t *res, void *ud);

typedef struct {
  const char *host;          /* "127.0.0.1" */
  int port;                  /* 0 = pick a free port (see http_server_port) */
  size_t max_body;           /* bytes; default 8 MiB */
  size_t max_header;         /* bytes; default 16 KiB */
  int max_connections;       /* default 1024; at the cap, a new connection evicts the
                                connection idle longest (connected, no request begun),
                                and is refused when none is idle */
  int max_per_client;        /* connections from one source address; default 64 */
  unsigned header_timeout_ms;/* default 10000 */
  unsigned body_timeout_ms;  /* default 30000 */
  http_handler_fn handler;
  http_gate_fn gate;         /* optional */
  void *ud;
} http_server_opts_t;

/* Start listening. Returns NULL with a message in err on failure (bad address, port busy),
 * e.g. "cannot listen on 127.0.0.1:8707: address already in use". A failure after the
 * listening handle was created leaves its close pending: run the loop before
 * uv_loop_close. The process must ignore SIGPIPE (libuv writes with plain write()). */
http_server_t *http_server_start(uv_loop_t *loop, const http_server_opts_t *opts, char *err, size_t errlen);
/* The bound port (useful with port 0). */
int http_server_port(const http_server_t *s);
/* Stop accepting new connections (SIGTERM); connections in flight finish their request
 * and are then closed; idle keep-alive connections are closed at once. */
void http_server_stop_accepting(http_server_t *s);
/* Close every handle; the memory is freed from the close callbacks, so run the loop
 * afterwards until it has no more active handles. */
void http_server_close(http_server_t *s);
/* A response given later: the handler calls http_server_defer and keeps the handle; the
 * server keeps the connection until http_server_respond. */
typedef struct http_deferred http_deferred_t;

/* Only from inside the handler, for the request it is handling: its answer comes later,
 * through http_server_respond on the handle returned (calling it again returns the same
 * handle). Whatever the handler leaves in res is then dropped (its body freed). Until the
 * answer, the connection reads nothing more (pipelined requests behind it wait and are
 * answered after it, in order) and no deadline applies to it; other connections are
 * served as usual. NULL when out of memory: the handler then answers at once. */
http_deferred_t *http_server_defer(http_server_t *s);
/* Give a deferred answer, res filled in as a handler does (body taken; content_type and
 * extra_headers copied), and release the handle: call it exactly once per handle, never
 * from inside the handler that deferred it. When the connection was closed meanwhile
 * (the client reset it, http_server_close), the answer is dropped and only the handle is
 * freed. The connection is kept alive after the answer as the request asked, unless the
 * server has stopped accepting meanwhile. */
void http_server_respond(http_deferred_t *h, http_response_t *res);
/* 1 while the connection of a deferred answer is open, 0 once it was closed. */
int http_deferred_open(const http_deferred_t *h);
/* A response as the server hands it to a handler: status 200, JSON, no body. */
void http_response_init(http_response_t *res);

/* Counters for /metrics. requests: requests answered by the handler or the gate;
 * rejected_413/431: requests refused for body or header size; timed_out: 408s sent on a header or body
 * deadline (an idle keep-alive connection reaching the header deadline is closed quietly
 * and not counted); refused_connections: connections closed at once over the cap or the
 * per-client cap; evicted_idle: idle connections closed to make room for a new one;
 * open_connections: connections currently held, including ones being closed;
 * deferred: answers deferred and not yet given on connections still open. */
typedef struct {
  unsigned long requests, rejected_413, rejected_431, timed_out, refused_connections,
      evicted_idle, open_connections, deferred;
} http_server_stats_t;
void http_server_stats(const http_server_t *s, http_server_stats_t *out);

/* 1 when a Content-Type value names media_type ("application/json"): the type and
 * subtype compared without regard to case, optional whitespace around them, any
 * parameters after ';' (charset=...) ignored. 0 otherwise, and for NULL. */
int http_content_type_is(const char *value, const char *media_type);

#endif
