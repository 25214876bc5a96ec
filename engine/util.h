/* util: allocation that never returns NULL, a growable string buffer, and small string
 * helpers shared by every module. Out of memory in the host (not in Lua) is fatal. */
#ifndef HEARTH_UTIL_H
#define HEARTH_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* prefix then v in decimal into buf (cap >= strlen(prefix) + 21): snprintf's "%s%lld"
 * without its format parser, for keys made on every event. Returns the length. */
size_t prefixed_int(char *buf, size_t cap, const char *prefix, int64_t v);
/* parts[0]/parts[1]/.../number, malloc'd (parts not NULL; no number when it is
 * JOIN_NO_NUMBER): the ids made for every action, without a format parser. */
#define JOIN_NO_NUMBER INT64_MIN
char *join_id(const char *const *parts, int nparts, int64_t number);

typedef struct {
  char *data;
  size_t len, cap;
} strbuf_t;

void sb_init(strbuf_t *sb);
void sb_free(strbuf_t *sb);
void sb_reset(strbuf_t *sb);
void sb_add(strbuf_t *sb, const char *s, size_t n);
void sb_adds(strbuf_t *sb, const char *s);
void sb_addf(strbuf_t *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_vaddf(strbuf_t *sb, const char *fmt, va_list ap);
/* Detach the buffer (NUL-terminated, never NULL); the strbuf is left empty. */
char *sb_take(strbuf_t *sb);

/* UTF-8 as jansson requires it (used by the JSON readers and the Lua conversion).
 * utf8_seq: length of the well-formed sequence starting at s (before end), 0 when
 * malformed (overlong, surrogate, above U+10FFFF, truncated). */
size_t utf8_seq(const char *s, const char *end);
/* 1 when s[0..len) is well-formed UTF-8 (NUL bytes allowed), else 0. */
int utf8_valid(const char *s, size_t len);

/* snprintf into a fixed error buffer, tolerating err == NULL. */
void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Read a whole file; NULL with errno set on failure. */
char *read_file(const char *path, size_t *len);

/* Monotonic clock in nanoseconds. */
uint64_t mono_ns(void);
/* Process CPU time in seconds. */
double cpu_seconds(void);

#endif
