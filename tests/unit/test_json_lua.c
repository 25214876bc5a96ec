/* test_json_lua: unit tests for engine/json_lua.c — round trips between jansson and Lua,
 * the null sentinel, rejected values with their paths, cycles, the depth cap both ways,
 * UTF-8 validation, and that nothing leaks or escapes as an unprotected Lua error. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>

#include "json_lua.h"
#include "unit.h"
#include "util.h"

/* ---------------------------------------------------------------- helpers */

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  return L;
}

static int push_cf(lua_State *L) {
  jl_push(L, (json_t *)lua_touserdata(L, 1));
  return 1;
}

/* jl_push under lua_pcall: LUA_OK with the value on top, or an error message on top. */
static int safe_push(lua_State *L, json_t *v) {
  lua_pushcfunction(L, push_cf);
  lua_pushlightuserdata(L, v);
  return lua_pcall(L, 1, 1, 0);
}

/* Run chunk, which returns one value, and convert it. */
static json_t *from_chunk(lua_State *L, const char *chunk, char *err, size_t errlen) {
  if (luaL_dostring(L, chunk) != LUA_OK) {
    fprintf(stderr, "chunk failed: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return NULL;
  }
  int top = lua_gettop(L);
  json_t *j = jl_from_lua(L, -1, err, errlen);
  CHECK_INT(lua_gettop(L), top);
  lua_pop(L, 1);
  return j;
}

/* Compact, key-sorted JSON text of v (caller frees). */
static char *dump(json_t *v) {
  return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

static int dumps_as(json_t *v, const char *want) {
  char *s = dump(v);
  int ok = s && strcmp(s, want) == 0;
  if (!ok) fprintf(stderr, "  got %s, want %s\n", s ? s : "(null)", want);
  free(s);
  return ok;
}

/* Text JSON -> Lua -> JSON; 1 when the result equals the input. */
static int roundtrip(const char *text) {
  json_error_t jerr;
  json_t *in = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (!in) { fprintf(stderr, "bad test JSON %s: %s\n", text, jerr.text); return 0; }
  lua_State *L = new_state();
  char err[256];
  int ok = 0;
  if (safe_push(L, in) == LUA_OK) {
    json_t *out = jl_from_lua(L, -1, err, sizeof err);
    ok = out && json_equal(in, out);
    if (!ok) fprintf(stderr, "  roundtrip of %s failed: %s\n", text, out ? "differs" : err);
    json_decref(out);
  }
  lua_close(L);
  json_decref(in);
  return ok;
}

/* depth nested arrays, the innermost holding the integer 1. */
static json_t *nested_arrays(int depth) {
  json_t *v = json_integer(1);
  for (int i = 0; i < depth; i++) {
    json_t *a = json_array();
    json_array_append_new(a, v);
    v = a;
  }
  return v;
}

/* Release a nested_arrays value one level at a time (jansson frees recursively, which a
 * very deep value would turn into a stack overflow). */
static void free_nested(json_t *v) {
  while (json_is_array(v)) {
    json_t *inner = json_incref(json_array_get(v, 0));
    json_decref(v);
    v = inner;
  }
  json_decref(v);
}

/* A Lua chunk returning depth nested tables, the innermost {1}. */
static const char *nested_tables_chunk(char *buf, size_t n, int depth) {
  snprintf(buf, n, "local t = {1} for i = 2, %d do t = {t} end return t", depth);
  return buf;
}

/* ---------------------------------------------------------------- round trips */

TEST(roundtrip_nested) {
  CHECK(roundtrip("{\"a\":{\"b\":[1,2,{\"c\":\"x\"}],\"d\":true,\"e\":false},"
                  "\"f\":1.5,\"g\":-7,\"h\":\"h\\u00e9llo \\ud83d\\ude00\",\"i\":[[1],[2,[3]]]}"));
  CHECK(roundtrip("[1,\"two\",3.25,true,false,{\"k\":[\"v\"]}]"));
  CHECK(roundtrip("\"just a string\""));
  CHECK(roundtrip("42"));
  CHECK(roundtrip("true"));
}

TEST(integers_and_floats) {
  lua_State *L = new_state();
  json_t *in = json_loads("[42,42.0,-0.5,9223372036854775807,-9223372036854775808,1e300]",
                          0, NULL);
  CHECK(in != NULL);
  CHECK_INT(safe_push(L, in), LUA_OK);
  lua_rawgeti(L, -1, 1);
  CHECK(lua_isinteger(L, -1));
  CHECK_INT(lua_tointeger(L, -1), 42);
  lua_rawgeti(L, -2, 2);
  CHECK(lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1));
  lua_rawgeti(L, -3, 4);
  CHECK(lua_isinteger(L, -1) && lua_tointeger(L, -1) == LUA_MAXINTEGER);
  lua_pop(L, 3);
  json_t *out = jl_from_lua(L, -1, NULL, 0);
  CHECK(out && json_equal(in, out));
  CHECK(json_is_integer(json_array_get(out, 0)));
  CHECK(json_is_real(json_array_get(out, 1)));
  CHECK(json_integer_value(json_array_get(out, 4)) == LUA_MININTEGER);
  json_decref(out);
  json_decref(in);

  char err[128];
  out = from_chunk(L, "return {i = 3, f = 3.0, neg = -2, half = 0.5}", err, sizeof err);
  CHECK(out && dumps_as(out, "{\"f\":3.0,\"half\":0.5,\"i\":3,\"neg\":-2}"));
  json_decref(out);
  lua_close(L);
}

TEST(strings_with_nul) {
  lua_State *L = new_state();
  /* jansson's parser refuses NUL in keys, so build the value directly */
  json_t *in = json_object();
  json_object_setn_new(in, "k\0ey", 4, json_stringn("a\0b", 3));
  CHECK_INT(safe_push(L, in), LUA_OK);
  lua_pushlstring(L, "k\0ey", 4);
  lua_rawget(L, -2);
  size_t len = 0;
  const char *s = lua_tolstring(L, -1, &len);
  CHECK_INT(len, 3);
  CHECK(s && memcmp(s, "a\0b", 3) == 0);
  lua_pop(L, 1);
  /* (json_equal compares keys as C strings, so check the NUL key by hand) */
  json_t *out = jl_from_lua(L, -1, NULL, 0);
  json_t *val = out ? json_object_getn(out, "k\0ey", 4) : NULL;
  CHECK(out && json_object_size(out) == 1 && val);
  CHECK(val && json_string_length(val) == 3 && memcmp(json_string_value(val), "a\0b", 3) == 0);
  json_decref(out);
  json_decref(in);

  out = from_chunk(L, "return 'x\\0y'", NULL, 0);
  CHECK(out && json_string_length(out) == 3);
  json_decref(out);
  lua_close(L);
}

TEST(empty_table_is_object) {
  lua_State *L = new_state();
  json_t *out = from_chunk(L, "return {}", NULL, 0);
  CHECK(out && dumps_as(out, "{}"));
  json_decref(out);
  out = from_chunk(L, "return {list = {}, n = {{}}}", NULL, 0);
  CHECK(out && dumps_as(out, "{\"list\":{},\"n\":[{}]}"));
  json_decref(out);
  /* an empty JSON array comes back as an empty object (documented) */
  json_t *in = json_array();
  CHECK_INT(safe_push(L, in), LUA_OK);
  out = jl_from_lua(L, -1, NULL, 0);
  CHECK(out && dumps_as(out, "{}"));
  json_decref(out);
  json_decref(in);
  lua_close(L);
}

TEST(null_sentinel) {
  lua_State *L = new_state();
  json_t *in = json_loads("[1,null,3,null]", 0, NULL);
  CHECK_INT(safe_push(L, in), LUA_OK);
  CHECK_INT(lua_rawlen(L, -1), 4);
  lua_rawgeti(L, -1, 2);
  CHECK(lua_type(L, -1) == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == NULL);
  lua_pop(L, 1);
  json_t *out = jl_from_lua(L, -1, NULL, 0);
  CHECK(out && json_equal(in, out));
  json_decref(out);
  json_decref(in);
  lua_pop(L, 1);

  /* null in an object drops the key */
  in = json_loads("{\"a\":null,\"b\":1}", 0, NULL);
  CHECK_INT(safe_push(L, in), LUA_OK);
  CHECK_INT(lua_getfield(L, -1, "a"), LUA_TNIL);
  lua_pop(L, 1);
  out = jl_from_lua(L, -1, NULL, 0);
  CHECK(out && dumps_as(out, "{\"b\":1}"));
  json_decref(out);
  json_decref(in);
  lua_pop(L, 1);

  /* top-level null and NULL are nil; nil and the sentinel convert to null */
  in = json_null();
  CHECK_INT(safe_push(L, in), LUA_OK);
  CHECK(lua_isnil(L, -1));
  lua_pop(L, 1);
  CHECK_INT(safe_push(L, NULL), LUA_OK);
  CHECK(lua_isnil(L, -1));
  out = jl_from_lua(L, -1, NULL, 0);
  CHECK(json_is_null(out));
  json_decref(out);
  lua_pop(L, 1);
  lua_pushlightuserdata(L, NULL);
  lua_setglobal(L, "null");
  out = from_chunk(L, "return {1, null, {x = null}}", NULL, 0);
  CHECK(out && dumps_as(out, "[1,null,{\"x\":null}]"));
  json_decref(out);
  lua_close(L);
}

/* ---------------------------------------------------------------- rejections */

TEST(functions_rejected_with_path) {
  lua_State *L = new_state();
  char err[256];
  json_t *out = from_chunk(L, "return {vars = {x = function() end}}", err, sizeof err);
  CHECK(out == NULL);
  CHECK_STR(err, "cannot convert function to JSON (at .vars.x)");
  out = from_chunk(L, "return {items = {1, 2, {name = print}}}", err, sizeof err);
  CHECK(out == NULL);
  CHECK_STR(err, "cannot convert function to JSON (at .items[3].name)");
  out = from_chunk(L, "local t = {} for i = 1, 1204 do t[i] = i end t[1204] = {print} return {l = t}", err,
                   sizeof err); /* an index of several digits, written without snprintf */
  CHECK(out == NULL);
  CHECK_STR(err, "cannot convert function to JSON (at .l[1204][1])");
  out = from_chunk(L, "return print", err, sizeof err);
  CHECK(out == NULL);
  CHECK_STR(err, "cannot convert function to JSON");
  out = from_chunk(L, "return {f = io.stdout}", err, sizeof err);
  CHECK(out == NULL);
  CHECK_STR(err, "cannot convert userdata to JSON (at .f)");
  out = from_chunk(L, "return {co = coroutine.create(print)}", err, sizeof err);
  CHECK(out == NULL);
  CHECK_STR(err, "cannot convert thread to JSON (at .co)");
  lua_pushlightuserdata(L, &out); /* a light userdata other than NULL */
  CHECK(jl_from_lua(L, -1, err, sizeof err) == NULL);
  CHECK_STR(err, "cannot convert userdata to JSON");
  lua_pop(L, 1);
  /* long and odd keys are shown safely in the path */
  out = from_chunk(L, "return {['a\\1b'] = {[string.rep('k', 60)] = print}}", err, sizeof err);
  CHECK(out == NULL);
  CHECK(strstr(err, "(at .a?b.kkkk") != NULL && strstr(err, "k...)") != NULL);
  /* NULL err and a tiny err buffer are tolerated */
  CHECK(from_chunk(L, "return {print}", NULL, 0) == NULL);
  char tiny[8];
  CHECK(from_chunk(L, "return {print}", tiny, sizeof tiny) == NULL);
  CHECK_STR(tiny, "cannot ");
  lua_close(L);
}

TEST(mixed_keys_rejected) {
  lua_State *L = new_state();
  char err[256];
  static const char *const chunks[] = {
      "return {data = {1, 2, x = 3}}", "return {data = {[1] = 1, [3] = 3}}",
      "return {data = {[true] = 1}}",  "return {data = {[1.5] = 1}}",
      "return {data = {[0] = 1}}",     "return {data = {[-1] = 1, [1] = 2}}",
  };
  for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
    CHECK(from_chunk(L, chunks[i], err, sizeof err) == NULL);
    CHECK_STR(err, "table has mixed or non-string keys (at .data)");
  }
  /* keys exactly 1..n in any insertion order make an array */
  json_t *out = from_chunk(L, "local t = {} t[3] = 'c' t[1] = 'a' t[2] = 'b' return t", err,
                           sizeof err);
  CHECK(out && dumps_as(out, "[\"a\",\"b\",\"c\"]"));
  json_decref(out);
  lua_close(L);
}

TEST(cycles_rejected) {
  lua_State *L = new_state();
  char err[256];
  CHECK(from_chunk(L, "local t = {} t.self = t return t", err, sizeof err) == NULL);
  CHECK_STR(err, "table contains itself (cycle) (at .self)");
  CHECK(from_chunk(L, "local a = {} local b = {a} a.b = b return {root = a}", err,
                   sizeof err) == NULL);
  CHECK_STR(err, "table contains itself (cycle) (at .root.b[1])");
  /* the same table twice, without a cycle, is fine */
  json_t *out = from_chunk(L, "local s = {1} return {a = s, b = {s, s}}", err, sizeof err);
  CHECK(out && dumps_as(out, "{\"a\":[1],\"b\":[[1],[1]]}"));
  json_decref(out);
  lua_close(L);
}

TEST(invalid_utf8_rejected) {
  lua_State *L = new_state();
  char err[256];
  CHECK(from_chunk(L, "return {s = 'ok', bad = '\\xff'}", err, sizeof err) == NULL);
  CHECK_STR(err, "string is not valid UTF-8 (at .bad)");
  CHECK(from_chunk(L, "return {'\\xc0\\x80'}", err, sizeof err) == NULL); /* overlong */
  CHECK_STR(err, "string is not valid UTF-8 (at [1])");
  CHECK(from_chunk(L, "return '\\xed\\xa0\\x80'", err, sizeof err) == NULL); /* surrogate */
  CHECK_STR(err, "string is not valid UTF-8");
  CHECK(from_chunk(L, "return 'abc\\xe2\\x82'", err, sizeof err) == NULL); /* truncated */
  CHECK(from_chunk(L, "return '\\xf4\\x90\\x80\\x80'", err, sizeof err) == NULL); /* >10FFFF */
  CHECK(from_chunk(L, "return {x = {['\\xfe'] = 1}}", err, sizeof err) == NULL);
  CHECK_STR(err, "table key is not valid UTF-8 (at .x)");
  json_t *out = from_chunk(L, "return '\\u{1F600} \\u{10FFFF} \\xc3\\xa9'", err, sizeof err);
  CHECK(out && json_is_string(out));
  json_decref(out);

  CHECK(utf8_valid("", 0));
  CHECK(utf8_valid("a\0b", 3));
  CHECK(!utf8_valid("\x80", 1));
  CHECK(!utf8_valid("\xe0\x80\xaf", 3));
  CHECK(utf8_valid("\xef\xbf\xbf", 3));
  lua_close(L);
}

TEST(non_finite_rejected) {
  lua_State *L = new_state();
  char err[256];
  CHECK(from_chunk(L, "return {x = 0/0}", err, sizeof err) == NULL);
  CHECK_STR(err, "numbers must be finite (at .x)");
  CHECK(from_chunk(L, "return {1, math.huge}", err, sizeof err) == NULL);
  CHECK_STR(err, "numbers must be finite (at [2])");
  CHECK(from_chunk(L, "return -math.huge", err, sizeof err) == NULL);
  CHECK_STR(err, "numbers must be finite");
  lua_close(L);
}

TEST(error_releases_partial_values) {
  /* the failure comes after many converted values: ASan's leak check proves release */
  lua_State *L = new_state();
  char err[256];
  CHECK(from_chunk(L,
                   "local t = {} for i = 1, 200 do t[i] = {n = i, s = 'v' .. i, l = {i}} end "
                   "t[201] = {ok = 1, bad = {1, 2, print}} return {list = t}",
                   err, sizeof err) == NULL);
  CHECK_STR(err, "cannot convert function to JSON (at .list[201].bad[3])");
  lua_close(L);
}

/* ---------------------------------------------------------------- depth */

TEST(depth_lua_to_json) {
  lua_State *L = new_state();
  char err[256], chunk[128];
  json_t *out = from_chunk(L, nested_tables_chunk(chunk, sizeof chunk, JL_MAX_DEPTH), err,
                           sizeof err);
  CHECK(out != NULL);
  json_decref(out);
  out = from_chunk(L, nested_tables_chunk(chunk, sizeof chunk, JL_MAX_DEPTH + 1), err,
                   sizeof err);
  CHECK(out == NULL);
  char want[256] = "table nested deeper than 32 levels (at ";
  for (int i = 0; i < JL_MAX_DEPTH; i++) strcat(want, "[1]");
  strcat(want, ")");
  CHECK_STR(err, want);
  out = from_chunk(L, nested_tables_chunk(chunk, sizeof chunk, 100000), err, sizeof err);
  CHECK(out == NULL);
  CHECK(strncmp(err, "table nested deeper than 32 levels", 34) == 0);
  lua_close(L);
}

TEST(depth_json_to_lua) {
  lua_State *L = new_state();
  json_t *ok = nested_arrays(JL_MAX_DEPTH);
  CHECK_INT(safe_push(L, ok), LUA_OK);
  CHECK(lua_istable(L, -1));
  json_t *back = jl_from_lua(L, -1, NULL, 0);
  CHECK(back && json_equal(ok, back));
  json_decref(back);
  lua_pop(L, 1);
  free_nested(ok);

  int top = lua_gettop(L);
  json_t *deep = nested_arrays(JL_MAX_DEPTH + 1);
  CHECK_INT(safe_push(L, deep), LUA_ERRRUN);
  CHECK_STR(lua_tostring(L, -1), "JSON value nested deeper than 32 levels");
  lua_pop(L, 1);
  CHECK_INT(lua_gettop(L), top);
  free_nested(deep);

  /* inside an object too */
  json_t *obj = json_object();
  json_object_set_new(obj, "x", nested_arrays(JL_MAX_DEPTH));
  CHECK_INT(safe_push(L, obj), LUA_ERRRUN);
  lua_pop(L, 1);
  json_decref(obj);
  lua_close(L);
}

TEST(very_deep_json_fails_cleanly) {
  enum { DEEP = 100000 };
  char *text = malloc(2 * DEEP + 1);
  memset(text, '[', DEEP);
  memset(text + DEEP, ']', DEEP);
  text[2 * DEEP] = '\0';
  json_error_t jerr;
  json_t *parsed = json_loads(text, 0, &jerr); /* jansson itself stops at 2048 levels */
  lua_State *L = new_state();
  if (parsed) {
    CHECK_INT(safe_push(L, parsed), LUA_ERRRUN);
    lua_pop(L, 1);
    free_nested(parsed);
  }
  /* a 1000-deep text, which jansson does accept */
  text[2000] = '\0';
  memset(text + 1000, ']', 1000);
  parsed = json_loads(text, 0, &jerr);
  CHECK(parsed != NULL);
  CHECK_INT(safe_push(L, parsed), LUA_ERRRUN);
  CHECK_STR(lua_tostring(L, -1), "JSON value nested deeper than 32 levels");
  lua_pop(L, 1);
  free_nested(parsed);
  /* and a 100000-deep value built directly */
  json_t *deep = nested_arrays(DEEP);
  CHECK_INT(safe_push(L, deep), LUA_ERRRUN);
  CHECK_STR(lua_tostring(L, -1), "JSON value nested deeper than 32 levels");
  lua_pop(L, 1);
  CHECK_INT(lua_gettop(L), 0);
  free_nested(deep);
  lua_close(L);
  free(text);
}

TEST(push_large_values) {
  lua_State *L = new_state();
  json_t *arr = json_array();
  for (int i = 0; i < 10000; i++) json_array_append_new(arr, json_integer(i));
  json_t *obj = json_object();
  json_object_set_new(obj, "arr", arr);
  CHECK_INT(safe_push(L, obj), LUA_OK);
  lua_getfield(L, -1, "arr");
  CHECK_INT(lua_rawlen(L, -1), 10000);
  lua_pop(L, 1);
  json_t *back = jl_from_lua(L, -1, NULL, 0);
  CHECK(back && json_equal(obj, back));
  json_decref(back);
  json_decref(obj);
  lua_close(L);
}

int main(void) {
  RUN(roundtrip_nested);
  RUN(integers_and_floats);
  RUN(strings_with_nul);
  RUN(empty_table_is_object);
  RUN(null_sentinel);
  RUN(functions_rejected_with_path);
  RUN(mixed_keys_rejected);
  RUN(cycles_rejected);
  RUN(invalid_utf8_rejected);
  RUN(non_finite_rejected);
  RUN(error_releases_partial_values);
  RUN(depth_lua_to_json);
  RUN(depth_json_to_lua);
  RUN(very_deep_json_fails_cleanly);
  RUN(push_large_values);
  return UNIT_DONE();
}
