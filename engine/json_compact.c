/* json_compact: the compact JSON writer (see json_compact.h). The rules it follows are
 * those of jansson 2.14's compact output, learnt by reading jansson's dump.c (what it
 * escapes and how, the order of keys, the separators); the code is our own, and
 * tests/unit/test_json_compact.c checks it against json_dumps. Reals, rare in member
 * parts, are written by jansson itself so that their digits can never differ. */
#include "json_compact.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Deeper than this, the writer leaves the whole value to json_dumps (which also refuses
 * a value that contains itself). json_lua.c caps what scripts store at 32 levels. */
#define JC_MAX_DEPTH 64

typedef struct {
  char *data;
  size_t len, cap;
  int failed; /* out of memory, or a value the writer leaves to jansson */
} jc_buf_t;

static int buf_reserve(jc_buf_t *b, size_t more) {
  if (b->failed) return -1;
  if (b->len + more <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + more) cap *= 2;
  char *data = realloc(b->data, cap);
  if (!data) {
    b->failed = 1;
    return -1;
  }
  b->data = data;
  b->cap = cap;
  return 0;
}

static void buf_put(jc_buf_t *b, const char *s, size_t n) {
  if (buf_reserve(b, n) < 0) return;
  memcpy(b->data + b->len, s, n);
  b->len += n;
}

static void buf_putc(jc_buf_t *b, char c) {
  if (buf_reserve(b, 1) < 0) return;
  b->data[b->len++] = c;
}

/* The escape of byte c in a JSON string ("\\n", "\\u001F", ...) into out; its length, or
 * 0 when c goes out as it is. */
static size_t escape_of(unsigned char c, char out[8]) {
  static const char hex[] = "0123456789ABCDEF";
  char shortcut = 0;
  switch (c) {
  case '"': shortcut = '"'; break;
  case '\\': shortcut = '\\'; break;
  case '\b': shortcut = 'b'; break;
  case '\f': shortcut = 'f'; break;
  case '\n': shortcut = 'n'; break;
  case '\r': shortcut = 'r'; break;
  case '\t': shortcut = 't'; break;
  default:
    if (c >= 0x20) return 0;
    memcpy(out, "\\u00", 4);
    out[4] = hex[c >> 4];
    out[5] = hex[c & 0xF];
    return 6;
  }
  out[0] = '\\';
  out[1] = shortcut;
  return 2;
}

/* A string, quoted; runs of bytes that need no escape are copied whole. Strings held by
 * jansson are valid UTF-8, which goes out unchanged. */
static void put_string(jc_buf_t *b, const char *s, size_t n) {
  buf_putc(b, '"');
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    char esc[8];
    size_t elen = escape_of((unsigned char)s[i], esc);
    if (!elen) continue;
    buf_put(b, s + run, i - run);
    buf_put(b, esc, elen);
    run = i + 1;
  }
  buf_put(b, s + run, n - run);
  buf_putc(b, '"');
}

static void put_integer(jc_buf_t *b, json_int_t v) {
  char digits[24];
  size_t n = sizeof digits;
  /* the magnitude as unsigned, so the most negative value has one too */
  unsigned long long mag = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
  do {
    digits[--n] = (char)('0' + mag % 10);
    mag /= 10;
  } while (mag);
  if (v < 0) digits[--n] = '-';
  buf_put(b, digits + n, sizeof digits - n);
}

/* A real exactly as jansson writes it (its digits depend on how it was built). */
static void put_real(jc_buf_t *b, const json_t *v) {
  char text[64];
  size_t n = json_dumpb(v, text, sizeof text, JSON_COMPACT | JSON_ENCODE_ANY);
  if (n == 0 || n > sizeof text) {
    b->failed = 1;
    return;
  }
  buf_put(b, text, n);
}

static void put_value(jc_buf_t *b, const json_t *v, int depth);

static void put_object(jc_buf_t *b, const json_t *obj, int depth) {
  buf_putc(b, '{');
  int first = 1;
  for (void *it = json_object_iter((json_t *)obj); it && !b->failed;
       it = json_object_iter_next((json_t *)obj, it)) {
    if (!first) buf_putc(b, ',');
    first = 0;
    put_string(b, json_object_iter_key(it), json_object_iter_key_len(it));
    buf_putc(b, ':');
    put_value(b, json_object_iter_value(it), depth + 1);
  }
  buf_putc(b, '}');
}

static void put_array(jc_buf_t *b, const json_t *arr, int depth) {
  size_t n = json_array_size(arr);
  buf_putc(b, '[');
  for (size_t i = 0; i < n && !b->failed; i++) {
    if (i) buf_putc(b, ',');
    put_value(b, json_array_get(arr, i), depth + 1);
  }
  buf_putc(b, ']');
}

/* depth: containers already open around v. */
static void put_value(jc_buf_t *b, const json_t *v, int depth) {
  if (depth > JC_MAX_DEPTH) {
    b->failed = 1;
    return;
  }
  switch (json_typeof(v)) {
  case JSON_OBJECT: put_object(b, v, depth); break;
  case JSON_ARRAY: put_array(b, v, depth); break;
  case JSON_STRING: put_string(b, json_string_value(v), json_string_length(v)); break;
  case JSON_INTEGER: put_integer(b, json_integer_value(v)); break;
  case JSON_REAL: put_real(b, v); break;
  case JSON_TRUE: buf_put(b, "true", 4); break;
  case JSON_FALSE: buf_put(b, "false", 5); break;
  case JSON_NULL: buf_put(b, "null", 4); break;
  }
}

char *jc_dumps(const json_t *v) {
  assert(json_is_object(v) || json_is_array(v));
  jc_buf_t b = {0};
  put_value(&b, v, 0);
  buf_putc(&b, '\0');
  if (b.failed) { /* what this writer leaves alone, jansson writes or refuses */
    free(b.data);
    return json_dumps(v, JSON_COMPACT);
  }
  return b.data;
}
