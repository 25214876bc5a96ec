/* http_auth: constant-time bearer token check and token file reading (see http_auth.h). */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "http_auth.h"
#include "util.h"

static void digest(const char *s, size_t n, unsigned char out[32]) {
  unsigned int len = 32;
  EVP_Digest(s, n, out, &len, EVP_sha256(), NULL);
}

int http_auth_ok(const char *header, const char *token) {
  if (!token) return 1;
  if (!header || strncmp(header, "Bearer ", 7) != 0) return 0;
  unsigned char a[32], b[32];
  digest(header + 7, strlen(header + 7), a);
  digest(token, strlen(token), b);
  return CRYPTO_memcmp(a, b, 32) == 0;
}

char *http_auth_read_token(const char *path, char *err, size_t errlen) {
  size_t len;
  char *text = read_file(path, &len);
  if (!text) {
    set_err(err, errlen, "cannot read token file %s: %s", path, strerror(errno));
    return NULL;
  }
  char *nl = strpbrk(text, "\r\n");
  if (nl) *nl = '\0';
  char *p = text;
  while (*p == ' ' || *p == '\t') p++;
  size_t n = strlen(p);
  while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
  char *tok = xstrndup(p, n);
  free(text);
  if (!*tok) {
    set_err(err, errlen, "token file %s is empty", path);
    free(tok);
    return NULL;
  }
  return tok;
}
