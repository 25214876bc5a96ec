/* http_reply: the answers the daemon (daemon.c) and an engine of a cluster
 * (cluster_node.c) give alike: a JSON body, an {"error":...} body, the 401 of a missing
 * or wrong bearer token, and the 415 of an events body that is neither JSON nor NDJSON. */
#ifndef HEARTH_HTTP_REPLY_H
#define HEARTH_HTTP_REPLY_H

#include <jansson.h>

#include "http_server.h"

/* body as compact JSON with status (body taken, may be NULL: no body). */
void http_reply_json(http_response_t *res, int status, json_t *body);
/* {"error": msg} with status. */
void http_reply_error(http_response_t *res, int status, const char *msg);
/* Everything but /healthz needs the bearer token when one is set (token NULL: none).
 * 1 when res holds the 401 (with WWW-Authenticate), 0 when the request may go on. */
int http_refuse_token(const http_request_t *req, http_response_t *res, const char *token);
/* Events come as JSON or NDJSON, said so in Content-Type: a browser page can post
 * text/plain across origins without asking, never these. 1 when res holds the 415. */
int http_refuse_events_type(const http_request_t *req, http_response_t *res);

#endif
