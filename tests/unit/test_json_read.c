/* test_json_read: unit tests for engine/json_read.c — the reader takes the texts the
 * engine meets on its own (event lines, escapes, UTF-8, numbers at their limits) and
 * builds what json_loadb builds; what jansson refuses it never accepts, and jr_loadb
 * then answers with jansson's own error; and on thousands of random values and random
 * corruptions of their texts the two never disagree. */
#include <stdlib.h>
#include <string.h>

#include "json_read.h"
#include "unit.h"
#include "unit_json.h"

static const size_t EVENT_FLAGS = JSON_REJECT_DUPLICATES | JSON_DECODE_ANY;

/* v as text that tells every difference apart: types (1 against 1.0), reals to 17
 * digits, strings, key order. NULL stays NULL. */
static char *exact(const json_t *v) {
  return v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17)) : NULL;
}

/* What jansson makes of text (its value as exact text, or NULL) against the reader:
 * the reader alone either leaves the text (NULL) or builds the same value, and jr_loadb
 * always ends where json_loadb does, with its error when it refuses. Returns 1 when the
 * reader took the text on itself. */
static int agree(const char *text, size_t len, size_t flags) {
  json_error_t jerr, rerr;
  json_t *theirs = json_loadb(text, len, flags, &jerr);
  json_t *alone = jr_read(text, len, flags);
  json_t *ours = jr_loadb(text, len, flags, &rerr);
  char *t = exact(theirs), *a = exact(alone), *o = exact(ours);
  int ok = 1;
  if (alone && (!t || strcmp(a, t) != 0)) ok = 0;         /* took on a text and built another value */
  if (!t != !o || (t && strcmp(o, t) != 0)) ok = 0;      /* the loader ended elsewhere */
  if (!theirs && !ours && strcmp(jerr.text, rerr.text) != 0) ok = 0; /* not jansson's error */
  if (!ok)
    fprintf(stderr, "  text %.*s (flags %zu): jansson %s, reader %s, jr_loadb %s\n", (int)len, text, flags,
            t ? t : jerr.text, a ? a : "(left)", o ? o : rerr.text);
  CHECK(ok);
  int took = alone != NULL;
  free(t);
  free(a);
  free(o);
  json_decref(theirs);
  json_decref(alone);
  json_decref(ours);
  return took;
}

/* A text the reader must take on itself, with both sets of flags the engine uses. */
static void taken(const char *text) {
  CHECK(agree(text, strlen(text), EVENT_FLAGS));
  if (text[0] == '{' || text[0] == '[') CHECK(agree(text, strlen(text), 0));
}

/* A text jansson refuses: the reader must leave it, and jr_loadb refuse it too. */
static void refused(const char *text, size_t len, size_t flags) {
  CHECK(json_loadb(text, len, flags, NULL) == NULL);
  CHECK(!agree(text, len, flags));
}
#define REFUSED(lit) refused((lit), sizeof(lit) - 1, EVENT_FLAGS)

TEST(event_lines_and_common_values) {
  taken("{\"id\":\"e-0000001\",\"type\":\"member.joined\",\"member\":\"m-1328\","
        "\"time\":\"2026-01-01T00:10:18+08:00\",\"data\":{\"channel\":\"poster\"}}");
  taken("{\"id\":\"e-2\",\"type\":\"order.paid\",\"member\":\"m-1\",\"time\":\"2026-01-01T00:00:00Z\","
        "\"data\":{\"amount\":99.5,\"order_id\":\"o-1\",\"items\":[1,2,3],\"gift\":true,\"note\":null}}");
  taken(" \t\r\n{ \"a\" : [ 1 , { } , [ ] , \"x\" ] , \"b\" : false }\n");
  taken("{}");
  taken("[]");
  taken("[[[]],{\"\":{}}]");
  taken("\"a string alone\"");
  taken("12");
  taken("null");
}

TEST(escapes_and_utf8) {
  taken("{\"q\\\"uote\":\"back\\\\slash \\/ slash\"}");
  taken("[\"\\b\\f\\n\\r\\t\",\"\\u0001\\u001f\\u007f\"]");
  taken("[\"caf\\u00e9 \\u4F1A\\u5458 \\ud83d\\ude00\"]");
  taken("[\"\xe4\xbc\x9a\xe5\x91\x98 caf\xc3\xa9 \xf0\x9f\x98\x80 \x7f\"]");
  taken("{\"k\\u00e9y\":1,\"k\xc3\xa9y2\":{\"\\n\":[\"\\u4f1a\"]}}"); /* decoded keys, nested */
  taken("[\"a long string with an escape at its very end ................................\\n\"]");
}

TEST(numbers_at_their_limits) {
  taken("[0,-0,1,-1,123456789012345678,-123456789012345678]");
  taken("[9223372036854775807,-9223372036854775808,1234567890123456789]");
  taken("[0.5,-0.0,1e3,1E+3,2.5e-3,67871.18,1.7976931348623157e308,2.2250738585072014e-308,3.141592653589793]");
  REFUSED("[9223372036854775808]");
  REFUSED("[-9223372036854775809]");
  REFUSED("[1e400]");
  REFUSED("[01]");
  REFUSED("[-01]");
  REFUSED("[1.]");
  REFUSED("[.5]");
  REFUSED("[-]");
  REFUSED("[+1]");
  REFUSED("[1e]");
  REFUSED("[1e+]");
  REFUSED("[0x10]");
  /* underflows (to a subnormal or to zero) jansson keeps: the reader leaves them to it */
  CHECK(!agree("[4.9e-324]", 10, EVENT_FLAGS));
  CHECK(!agree("[1e-400]", 8, EVENT_FLAGS));
}

TEST(what_jansson_refuses_is_refused) {
  REFUSED("");
  REFUSED("   ");
  REFUSED("{");
  REFUSED("[1,]");
  REFUSED("{\"a\":1,}");
  REFUSED("{\"a\" 1}");
  REFUSED("{a:1}");
  REFUSED("{\"a\":1 \"b\":2}");
  REFUSED("[1] x");
  REFUSED("[1][2]");
  REFUSED("[tru]");
  REFUSED("[truex]");
  REFUSED("[true1]");
  REFUSED("[nul]");
  REFUSED("[\"\\u0000\"]");
  REFUSED("[\"\\ud800\"]");
  REFUSED("[\"\\udc00\"]");
  REFUSED("[\"\\ud800\\u0041\"]");
  REFUSED("[\"\\u12\"]");
  REFUSED("[\"\\x\"]");
  REFUSED("[\"tab\there\"]");
  REFUSED("[\"\xc0\x80\"]");         /* overlong */
  REFUSED("[\"\xed\xa0\x80\"]");     /* a surrogate in UTF-8 */
  REFUSED("[\"\xf4\x90\x80\x80\"]"); /* above U+10FFFF */
  REFUSED("[\"\xe4\xbc\"]");         /* cut short */
  REFUSED("[\"open]");
  REFUSED("{\"a\":1,\"a\":2}");
  REFUSED("[1,\0]");
  refused("7", 1, 0);    /* a scalar needs JSON_DECODE_ANY */
  refused("{\"a\":1,\"b\":2,\"a\":3}", 19, JSON_REJECT_DUPLICATES);
}

TEST(duplicates_without_the_flag_and_depth_go_to_jansson) {
  /* jansson keeps the last value in the first key's place: the reader leaves that to it */
  CHECK(!agree("{\"a\":1,\"b\":2,\"a\":3}", 19, 0));
  char deep[2 * 100 + 1];
  memset(deep, '[', 100);
  memset(deep + 100, ']', 100);
  deep[200] = '\0';
  CHECK(!agree(deep, 200, 0));                          /* deeper than JR_MAX_DEPTH: jansson's */
  CHECK(agree(deep + 100 - JR_MAX_DEPTH, 2 * JR_MAX_DEPTH, 0)); /* as deep as it goes: ours */
  CHECK(!agree("[1]", 3, JSON_DECODE_INT_AS_REAL));     /* a flag it does not know */
}

/* The ways a value is written: compact, indented, and with every non-ASCII character as
 * \u escapes (surrogate pairs too), as many senders write it. */
static const size_t DUMP_FLAGS[] = {JSON_COMPACT, JSON_INDENT(2), JSON_COMPACT | JSON_ENSURE_ASCII,
                                    JSON_INDENT(1) | JSON_ENSURE_ASCII | JSON_ESCAPE_SLASH};

TEST(random_values_are_taken_and_equal) {
  unsigned seed = 7;
  for (int i = 0; i < 2000; i++) {
    json_t *v = unit_random_json(&seed, 0);
    if (!json_is_object(v) && !json_is_array(v)) {
      json_t *a = json_array();
      json_array_append_new(a, v);
      v = a;
    }
    char *text = json_dumps(v, DUMP_FLAGS[i % 4] | JSON_REAL_PRECISION(17));
    size_t flags = i % 2 ? EVENT_FLAGS : 0;
    if (!agree(text, strlen(text), flags)) {
      fprintf(stderr, "  the reader left a valid text to jansson: %s\n", text);
      CHECK(0);
    }
    free(text);
    json_decref(v);
  }
}

/* Random corruptions of valid texts: a byte changed to one that matters to JSON, a byte
 * dropped or doubled, the text cut short. Whatever comes of it, the two agree. */
TEST(random_corruptions_agree) {
  static const char bytes[] = "\"\\,:{}[]0-+e.E u/\x01\x7f\x80\xbf\xc3\xed\xff" "a1tfn";
  unsigned seed = 3;
  int taken_on = 0, n = 0;
  for (int i = 0; i < 6000; i++) {
    json_t *v = unit_random_json(&seed, 1);
    json_t *o = json_object();
    json_object_set_new(o, "v", v);
    char *text = json_dumps(o, DUMP_FLAGS[i % 4]);
    json_decref(o);
    size_t len = strlen(text);
    char *bad = malloc(len + 2);
    size_t at = rand_r(&seed) % len, blen = len;
    memcpy(bad, text, len + 1);
    switch (rand_r(&seed) % 4) {
    case 0: bad[at] = bytes[rand_r(&seed) % (sizeof bytes - 1)]; break;
    case 1: memmove(bad + at, bad + at + 1, len - at), blen--; break;
    case 2: memmove(bad + at + 1, bad + at, len - at + 1), blen++; break;
    default: blen = at; break;
    }
    taken_on += agree(bad, blen, i % 2 ? EVENT_FLAGS : 0);
    n++;
    free(bad);
    free(text);
  }
  /* most corruptions break the text; some (a digit for a digit) leave it valid */
  CHECK(taken_on > 0 && taken_on < n);
}

int main(void) {
  RUN(event_lines_and_common_values);
  RUN(escapes_and_utf8);
  RUN(numbers_at_their_limits);
  RUN(what_jansson_refuses_is_refused);
  RUN(duplicates_without_the_flag_and_depth_go_to_jansson);
  RUN(random_values_are_taken_and_equal);
  RUN(random_corruptions_agree);
  return UNIT_DONE();
}
