/* json_read: the JSON reader (see json_read.h). What jansson 2.14 accepts and how it
 * builds each value was learnt by reading its load.c (the number grammar, which escapes
 * and surrogate pairs it takes, integers by strtoll, reals by strtod in the C locale,
 * keys set in text order); the code is our own, and tests/unit/test_json_read.c checks
 * it against json_loadb on chosen texts, random values and random corruptions of them.
 * The reader works on the whole text at once: a run of plain bytes in a string is
 * checked and copied in one go. On anything it does not take on it gives up (NULL) and
 * the caller's text goes to json_loadb whole. */
#include "json_read.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h" /* utf8_seq (the UTF-8 rules jansson applies), strbuf_t */

typedef struct {
  const char *p, *end;
  strbuf_t buf; /* a string with escapes, decoded */
} reader_t;

static void skip_space(reader_t *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* The four hex digits at p (before end) as a code unit, or -1. */
static long hex4(const char *p, const char *end) {
  if (end - p < 4) return -1;
  long v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hex_value(p[i]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

static size_t utf8_put(char *out, unsigned long cp) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* The escape after a backslash at r->p (past the '\\'), decoded onto r->buf. */
static int read_escape(reader_t *r) {
  if (r->p >= r->end) return -1;
  char c = *r->p++, plain = 0;
  switch (c) {
  case '"': plain = '"'; break;
  case '\\': plain = '\\'; break;
  case '/': plain = '/'; break;
  case 'b': plain = '\b'; break;
  case 'f': plain = '\f'; break;
  case 'n': plain = '\n'; break;
  case 'r': plain = '\r'; break;
  case 't': plain = '\t'; break;
  case 'u': {
    long cp = hex4(r->p, r->end);
    if (cp <= 0) return -1; /* not four hex digits, or \u0000 (refused by jansson) */
    r->p += 4;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return -1; /* a low surrogate alone */
    if (cp >= 0xD800 && cp <= 0xDBFF) {          /* a high one: its low one must follow */
      if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u') return -1;
      long lo = hex4(r->p + 2, r->end);
      if (lo < 0xDC00 || lo > 0xDFFF) return -1;
      r->p += 6;
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    char out[4];
    sb_add(&r->buf, out, utf8_put(out, (unsigned long)cp));
    return 0;
  }
  default: return -1;
  }
  sb_add(&r->buf, &plain, 1);
  return 0;
}

/* The string whose opening quote is at r->p: *s, *len point into the text when it has no
 * escape, else into r->buf's data (valid until the next string). */
static int read_string(reader_t *r, const char **s, size_t *len) {
  const char *start = ++r->p;
  for (;;) { /* the common case: no escape */
    if (r->p >= r->end) return -1;
    unsigned char c = (unsigned char)*r->p;
    if (c == '"') {
      *s = start;
      *len = (size_t)(r->p - start);
      r->p++;
      return 0;
    }
    if (c == '\\') break;
    if (c < 0x20) return -1;
    if (c < 0x80) {
      r->p++;
      continue;
    }
    size_t k = utf8_seq(r->p, r->end);
    if (!k) return -1;
    r->p += k;
  }
  sb_reset(&r->buf);
  sb_add(&r->buf, start, (size_t)(r->p - start));
  for (;;) {
    if (r->p >= r->end) return -1;
    unsigned char c = (unsigned char)*r->p;
    if (c == '"') {
      r->p++;
      *s = r->buf.data;
      *len = r->buf.len;
      return 0;
    }
    if (c == '\\') {
      r->p++;
      if (read_escape(r) < 0) return -1;
      continue;
    }
    if (c < 0x20) return -1;
    size_t k = c < 0x80 ? 1 : utf8_seq(r->p, r->end);
    if (!k) return -1;
    sb_add(&r->buf, r->p, k);
    r->p += k;
  }
}

/* A number: jansson's grammar (digits after '.' and after the exponent); an integer
 * unless it has a fraction or an exponent. What follows a value (a leading zero's next
 * digit, a letter after "true") is judged by its container, or by the end of the text. */
static json_t *read_number(reader_t *r) {
  const char *start = r->p, *q = r->p;
  if (q < r->end && *q == '-') q++;
  if (q >= r->end) return NULL;
  if (*q == '0') {
    q++;
  } else if (is_digit(*q)) {
    while (q < r->end && is_digit(*q)) q++;
  } else {
    return NULL;
  }
  int real = 0;
  if (q < r->end && *q == '.') {
    q++;
    if (q >= r->end || !is_digit(*q)) return NULL;
    while (q < r->end && is_digit(*q)) q++;
    real = 1;
  }
  if (q < r->end && (*q == 'e' || *q == 'E')) {
    q++;
    if (q < r->end && (*q == '+' || *q == '-')) q++;
    if (q >= r->end || !is_digit(*q)) return NULL;
    while (q < r->end && is_digit(*q)) q++;
    real = 1;
  }
  size_t n = (size_t)(q - start);
  r->p = q;
  if (!real && n <= 18) { /* fits: no conversion function needed */
    const char *d = start + (*start == '-');
    int64_t v = 0;
    for (; d < q; d++) v = v * 10 + (*d - '0');
    return json_integer(*start == '-' ? -v : v);
  }
  char text[64];
  if (n >= sizeof text) return NULL;
  memcpy(text, start, n);
  text[n] = '\0';
  errno = 0;
  if (!real) {
    long long v = strtoll(text, NULL, 10);
    return errno == ERANGE ? NULL : json_integer((json_int_t)v);
  }
  char *end;
  double v = strtod(text, &end); /* under another locale's decimal point: jansson's */
  return errno == ERANGE || end != text + n ? NULL : json_real(v);
}

/* One of true, false, null. */
static json_t *read_word(reader_t *r) {
  static const struct {
    const char *w;
    size_t n;
  } words[] = {{"true", 4}, {"false", 5}, {"null", 4}};
  for (int i = 0; i < 3; i++) {
    size_t n = words[i].n;
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, words[i].w, n) != 0) continue;
    r->p += n;
    return i == 0 ? json_true() : i == 1 ? json_false() : json_null();
  }
  return NULL;
}

static json_t *read_value(reader_t *r, int depth);

/* depth: containers open around this one, this one included. */
static json_t *read_object(reader_t *r, int depth) {
  json_t *obj = json_object();
  if (!obj) return NULL;
  r->p++;
  skip_space(r);
  if (r->p < r->end && *r->p == '}') {
    r->p++;
    return obj;
  }
  for (;;) {
    const char *key;
    size_t klen;
    if (r->p >= r->end || *r->p != '"' || read_string(r, &key, &klen) < 0) break;
    /* a duplicate goes to jansson, which refuses it or keeps the last in the first's place */
    if (json_object_getn(obj, key, klen)) break;
    char small[64], *k = NULL; /* a decoded key is in r->buf, which the value may reuse */
    if (key == r->buf.data) {
      k = klen < sizeof small ? small : malloc(klen);
      if (!k) break;
      memcpy(k, key, klen);
      key = k;
    }
    skip_space(r);
    json_t *v = NULL;
    if (r->p < r->end && *r->p == ':') {
      r->p++;
      skip_space(r);
      v = read_value(r, depth);
    }
    int rc = v ? json_object_setn_new_nocheck(obj, key, klen, v) : -1;
    if (k && k != small) free(k);
    if (rc < 0) break;
    skip_space(r);
    if (r->p >= r->end) break;
    if (*r->p == '}') {
      r->p++;
      return obj;
    }
    if (*r->p != ',') break;
    r->p++;
    skip_space(r);
  }
  json_decref(obj);
  return NULL;
}

static json_t *read_array(reader_t *r, int depth) {
  json_t *arr = json_array();
  if (!arr) return NULL;
  r->p++;
  skip_space(r);
  if (r->p < r->end && *r->p == ']') {
    r->p++;
    return arr;
  }
  for (;;) {
    json_t *v = read_value(r, depth);
    if (!v || json_array_append_new(arr, v) < 0) break;
    skip_space(r);
    if (r->p >= r->end) break;
    if (*r->p == ']') {
      r->p++;
      return arr;
    }
    if (*r->p != ',') break;
    r->p++;
    skip_space(r);
  }
  json_decref(arr);
  return NULL;
}

/* depth: containers open around the value. */
static json_t *read_value(reader_t *r, int depth) {
  if (r->p >= r->end) return NULL;
  char c = *r->p;
  if (c == '{' || c == '[') {
    if (depth >= JR_MAX_DEPTH) return NULL;
    return c == '{' ? read_object(r, depth + 1) : read_array(r, depth + 1);
  }
  if (c == '"') {
    const char *s;
    size_t n;
    return read_string(r, &s, &n) < 0 ? NULL : json_stringn_nocheck(s, n);
  }
  if (c == '-' || is_digit(c)) return read_number(r);
  return read_word(r);
}

json_t *jr_read(const char *text, size_t len, size_t flags) {
  if (!text || (flags & ~(size_t)(JSON_REJECT_DUPLICATES | JSON_DECODE_ANY))) return NULL;
  reader_t r = {.p = text, .end = text + len};
  json_t *v = NULL;
  skip_space(&r);
  if (r.p < r.end && ((flags & JSON_DECODE_ANY) || *r.p == '{' || *r.p == '[')) v = read_value(&r, 0);
  skip_space(&r);
  if (v && r.p != r.end) { /* something after the value */
    json_decref(v);
    v = NULL;
  }
  sb_free(&r.buf);
  return v;
}

json_t *jr_loadb(const char *text, size_t len, size_t flags, json_error_t *error) {
  json_t *v = jr_read(text, len, flags);
  return v ? v : json_loadb(text, len, flags, error);
}

json_t *jr_loads(const char *text, size_t flags, json_error_t *error) {
  json_t *v = text ? jr_read(text, strlen(text), flags) : NULL;
  return v ? v : json_loads(text, flags, error);
}
