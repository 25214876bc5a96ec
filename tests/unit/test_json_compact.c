/* test_json_compact: unit tests for engine/json_compact.c — jc_dumps writes exactly the
 * bytes json_dumps(JSON_COMPACT) writes: escapes, UTF-8, integers at their limits, reals,
 * key order, nesting, and a large value built at random. */
#include <stdlib.h>
#include <string.h>

#include "json_compact.h"
#include "unit.h"
#include "unit_json.h"

/* jc_dumps(v) equals json_dumps(v, JSON_COMPACT); steals v. */
static void check_same(json_t *v) {
  char *ours = jc_dumps(v), *theirs = json_dumps(v, JSON_COMPACT);
  CHECK(ours != NULL);
  CHECK(theirs != NULL);
  if (ours && theirs) CHECK_STR(ours, theirs);
  free(ours);
  free(theirs);
  json_decref(v);
}

static void check_text(const char *text) {
  json_error_t err;
  json_t *v = json_loads(text, 0, &err);
  CHECK(v != NULL);
  if (v) check_same(v);
}

TEST(empty_containers) {
  check_text("{}");
  check_text("[]");
  check_text("{\"a\":{},\"b\":[],\"c\":[[],{}]}");
}

TEST(escapes_and_utf8) {
  check_text("{\"q\\\"uote\":\"back\\\\slash \\/ slash\"}");
  check_text("{\"c\":\"\\b\\f\\n\\r\\t \\u0001 \\u001f \\u007f\"}");
  check_text("{\"u\":\"caf\\u00e9 \\u4f1a\\u5458 \\ud83d\\ude00\"}");
  json_t *o = json_object(); /* a NUL inside a string */
  json_object_set_new(o, "nul", json_stringn("a\0b", 3));
  check_same(o);
}

TEST(integers_at_their_limits) {
  json_t *a = json_array();
  json_int_t vals[] = {0, 1, -1, 9, 10, -10, 1234567890123LL, INT64_MAX, INT64_MIN, INT64_MIN + 1};
  for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) json_array_append_new(a, json_integer(vals[i]));
  check_same(a);
}

TEST(reals_and_literals) {
  json_t *a = json_array();
  double vals[] = {0.0, -0.0, 0.5, 1.0, 67871.18, 1e300, -2.5e-300, 3.141592653589793, 100.0, 1e17};
  for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) json_array_append_new(a, json_real(vals[i]));
  json_array_append_new(a, json_true());
  json_array_append_new(a, json_false());
  json_array_append_new(a, json_null());
  check_same(a);
}

TEST(keys_in_the_objects_order) {
  json_t *o = json_object();
  const char *keys[] = {"zeta", "alpha", "mid", "_journey.onboarding", "Zed", ""};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) json_object_set_new(o, keys[i], json_integer((json_int_t)i));
  json_object_set_new(o, "alpha", json_string("replaced")); /* keeps its place */
  json_object_del(o, "mid");
  json_object_set_new(o, "mid", json_string("again")); /* now last */
  check_same(o);
}

TEST(random_values) {
  unsigned seed = 11;
  for (int i = 0; i < 500; i++) {
    json_t *o = json_object();
    json_object_set_new(o, "v", unit_random_json(&seed, 0));
    check_same(o);
  }
}

TEST(too_deep_is_left_to_jansson) {
  json_t *root = json_array(), *cur = root;
  for (int i = 0; i < 100; i++) {
    json_t *next = json_array();
    json_array_append_new(cur, next);
    cur = next;
  }
  check_same(root);
}

int main(void) {
  RUN(empty_containers);
  RUN(escapes_and_utf8);
  RUN(integers_at_their_limits);
  RUN(reals_and_literals);
  RUN(keys_in_the_objects_order);
  RUN(random_values);
  RUN(too_deep_is_left_to_jansson);
  return UNIT_DONE();
}
