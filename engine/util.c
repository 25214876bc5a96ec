/* util: checked allocation, string buffers and small helpers (see util.h). */
#include "util.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void oom(void) {
  fputs("hearth: out of memory\n", stderr);
  abort();
}

void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) oom();
  return p;
}

void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) oom();
  return p;
}

void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) oom();
  return p;
}

char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

char *xstrndup(const char *s, size_t n) {
  char *p = xmalloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

size_t prefixed_int(char *buf, size_t cap, const char *prefix, int64_t v) {
  size_t n = strlen(prefix);
  assert(cap >= n + 21); /* 20 characters hold any int64, with its sign */
  (void)cap;
  memcpy(buf, prefix, n);
  /* digits from the last, in unsigned arithmetic so that INT64_MIN negates */
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  char digits[20];
  size_t k = 0;
  do {
    digits[k++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) buf[n++] = '-';
  while (k) buf[n++] = digits[--k];
  buf[n] = '\0';
  return n;
}

char *join_id(const char *const *parts, int nparts, int64_t number) {
  assert(nparts > 0);
  size_t total = 0;
  for (int i = 0; i < nparts; i++) {
    assert(parts[i]);
    total += strlen(parts[i]) + 1; /* and its '/', or the final NUL */
  }
  char *id = xmalloc(total + 21), *p = id; /* 21 more: '/', the number's sign and digits */
  for (int i = 0; i < nparts; i++) {
    if (i) *p++ = '/';
    size_t n = strlen(parts[i]);
    memcpy(p, parts[i], n);
    p += n;
  }
  *p = '\0';
  if (number != JOIN_NO_NUMBER) prefixed_int(p, 22, "/", number); /* 22: total + 21 - (p - id) */
  return id;
}

char *xasprintf(const char *fmt, ...) {
  strbuf_t sb;
  va_list ap;
  sb_init(&sb);
  va_start(ap, fmt);
  sb_vaddf(&sb, fmt, ap);
  va_end(ap);
  return sb_take(&sb);
}

void sb_init(strbuf_t *sb) { sb->data = NULL, sb->len = 0, sb->cap = 0; }
void sb_free(strbuf_t *sb) { free(sb->data); sb_init(sb); }
void sb_reset(strbuf_t *sb) { sb->len = 0; if (sb->data) sb->data[0] = '\0'; }

static void sb_grow(strbuf_t *sb, size_t extra) {
  if (sb->len + extra + 1 <= sb->cap) return;
  size_t cap = sb->cap ? sb->cap : 64;
  while (cap < sb->len + extra + 1) cap *= 2;
  sb->data = xrealloc(sb->data, cap);
  sb->cap = cap;
}

void sb_add(strbuf_t *sb, const char *s, size_t n) {
  sb_grow(sb, n);
  memcpy(sb->data + sb->len, s, n);
  sb->len += n;
  sb->data[sb->len] = '\0';
}

void sb_adds(strbuf_t *sb, const char *s) { sb_add(sb, s, strlen(s)); }

void sb_vaddf(strbuf_t *sb, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) return;
  sb_grow(sb, (size_t)n);
  vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
  sb->len += (size_t)n;
}

void sb_addf(strbuf_t *sb, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sb_vaddf(sb, fmt, ap);
  va_end(ap);
}

char *sb_take(strbuf_t *sb) {
  if (!sb->data) sb_grow(sb, 0), sb->data[0] = '\0';
  char *p = sb->data;
  sb_init(sb);
  return p;
}

void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  strbuf_t sb;
  sb_init(&sb);
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) sb_add(&sb, buf, n);
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    sb_free(&sb);
    errno = EIO;
    return NULL;
  }
  if (len) *len = sb.len;
  return sb_take(&sb);
}

uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Length of the well-formed UTF-8 sequence at s (before end), or 0 if it is malformed:
 * overlong forms, surrogates and code points above U+10FFFF are malformed (the rules
 * jansson applies to the strings it holds). */
size_t utf8_seq(const char *s, const char *end) {
  const unsigned char *p = (const unsigned char *)s;
  size_t n, avail = (size_t)((const unsigned char *)end - p);
  unsigned long cp, min;
  if (avail == 0) return 0;
  if (p[0] < 0x80) return 1;
  if (p[0] >= 0xC2 && p[0] <= 0xDF) { n = 2; cp = p[0] & 0x1Fu; min = 0x80; }
  else if ((p[0] & 0xF0) == 0xE0) { n = 3; cp = p[0] & 0x0Fu; min = 0x800; }
  else if (p[0] >= 0xF0 && p[0] <= 0xF4) { n = 4; cp = p[0] & 0x07u; min = 0x10000; }
  else return 0;
  if (avail < n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

int utf8_valid(const char *s, size_t len) {
  const char *end = s + len;
  while (s < end) {
    size_t n = utf8_seq(s, end);
    if (n == 0) return 0;
    s += n;
  }
  return 1;
}
