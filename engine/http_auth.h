/* http_auth: bearer-token checks in constant time (compares SHA-256 digests, so neither
 * the content nor the length of the token leaks through timing). */
#ifndef HEARTH_HTTP_AUTH_H
#define HEARTH_HTTP_AUTH_H

/* 1 when header is "Bearer <token>" for the given token, else 0. */
int http_auth_ok(const char *header, const char *token);
/* Read a token file: the first line, trimmed. NULL with a message in err on failure. */
char *http_auth_read_token(const char *path, char *err, size_t errlen);

#endif
