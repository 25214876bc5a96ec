/* http_reply: shared JSON answers and refusals (see http_reply.h). */
#include "http_reply.h"

#include <stdio.h>
#include <string.h>

#include "http_auth.h"

void http_reply_json(http_response_t *res, int status, json_t *body) {
  res->status = status;
  res->body = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  res->body_len = res->body ? strlen(res->body) : 0;
  json_decref(body);
}

void http_reply_error(http_response_t *res, int status, const char *msg) {
  http_reply_json(res, status, json_pack("{s:s}", "error", msg));
}

int http_refuse_token(const http_request_t *req, http_response_t *res, const char *token) {
  if (http_auth_ok(req->authorization, token)) return 0;
  snprintf(res->extra_headers, sizeof res->extra_headers, "WWW-Authenticate: Bearer\r\n");
  http_reply_error(res, 401, "missing or wrong bearer token");
  return 1;
}

int http_refuse_events_type(const http_request_t *req, http_response_t *res) {
  if (http_content_type_is(req->content_type, "application/json") ||
      http_content_type_is(req->content_type, "application/x-ndjson") ||
      http_content_type_is(req->content_type, "application/ndjson"))
    return 0;
  http_reply_error(res, 415, "Content-Type must be application/json or application/x-ndjson");
  return 1;
}
