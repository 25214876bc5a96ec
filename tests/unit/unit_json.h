/* unit_json: a random JSON value for the tests that check a JSON writer or reader against
 * jansson (test_json_compact, test_json_read). */
#ifndef HEARTH_UNIT_JSON_H
#define HEARTH_UNIT_JSON_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

/* A value of random shape from a fixed seed: every kind (integers past 32 bits, reals up to
 * 1e209, strings with quotes, escapes, control bytes and multi-byte UTF-8), containers
 * nested up to depth 5. */
static inline json_t *unit_random_json(unsigned *seed, int depth) {
  static const char *const words[] = {"a", "streak", "\"q\"", "tab\there", "\xe4\xbc\x9a\xe5\x91\x98", "x\\y",
                                      "\x01", "/", "\xf0\x9f\x98\x80", ""};
  enum { NWORDS = sizeof words / sizeof *words };
  int kind = depth >= 5 ? (int)(rand_r(seed) % 5) : (int)(rand_r(seed) % 7);
  switch (kind) {
  case 0: {
    json_int_t v = (json_int_t)rand_r(seed) - RAND_MAX / 2;
    return json_integer(rand_r(seed) % 4 ? v : v * 4294967296LL + rand_r(seed));
  }
  case 1: return json_real(((double)rand_r(seed) - RAND_MAX / 2) / (1 + rand_r(seed) % 1000) * (rand_r(seed) % 3 ? 1 : 1e200));
  case 2: return json_string(words[rand_r(seed) % NWORDS]);
  case 3: return json_boolean(rand_r(seed) % 2);
  case 4: return json_null();
  case 5: {
    json_t *a = json_array();
    for (int i = (int)(rand_r(seed) % 6); i > 0; i--) json_array_append_new(a, unit_random_json(seed, depth + 1));
    return a;
  }
  default: {
    json_t *o = json_object();
    for (int i = (int)(rand_r(seed) % 6); i > 0; i--) {
      char key[32];
      snprintf(key, sizeof key, "%s%d", words[rand_r(seed) % NWORDS], i);
      json_object_set_new(o, key, unit_random_json(seed, depth + 1));
    }
    return o;
  }
  }
}

#endif
