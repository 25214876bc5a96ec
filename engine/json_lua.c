/* json_lua: owns the conversion between jansson values and Lua values (jl_push,
 * jl_from_lua); strings and keys are checked with util.h's utf8_valid.
 * JSON -> Lua may raise Lua errors and never takes a jansson reference; Lua -> JSON never
 * raises (only raw, non-allocating Lua API calls) and releases what it built on failure. */
#include "json_lua.h"
#include "util.h"

#include <assert.h>
#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Room for the path of the deepest value: JL_MAX_DEPTH segments of at most
 * JL_KEY_SHOWN key bytes plus ".", "..." and the terminator, or "[index]". */
#define JL_KEY_SHOWN 48
#define JL_PATH_MAX (JL_MAX_DEPTH * (JL_KEY_SHOWN + 8) + 1)

/* ---------------------------------------------------------------- JSON -> Lua */

static void push_value(lua_State *L, json_t *v, int depth);

/* Called before opening container number depth + 1. */
static void enter_container(lua_State *L, int depth) {
  if (depth >= JL_MAX_DEPTH) {
    lua_pushfstring(L, "JSON value nested deeper than %d levels", JL_MAX_DEPTH);
    lua_error(L);
  }
  luaL_checkstack(L, 4, "converting JSON");
}

static int table_size_hint(size_t n) {
  return n > 1000000 ? 1000000 : (int)n;
}

static void push_object(lua_State *L, json_t *obj, int depth) {
  enter_container(L, depth);
  lua_createtable(L, 0, table_size_hint(json_object_size(obj)));
  for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it)) {
    json_t *val = json_object_iter_value(it);
    if (json_is_null(val)) continue; /* a nil field is an absent field */
    lua_pushlstring(L, json_object_iter_key(it), json_object_iter_key_len(it));
    push_value(L, val, depth + 1);
    lua_rawset(L, -3);
  }
}

static void push_array(lua_State *L, json_t *arr, int depth) {
  size_t n = json_array_size(arr);
  enter_container(L, depth);
  lua_createtable(L, table_size_hint(n), 0);
  for (size_t i = 0; i < n; i++) {
    json_t *val = json_array_get(arr, i);
    if (json_is_null(val)) lua_pushlightuserdata(L, NULL); /* keeps positions */
    else push_value(L, val, depth + 1);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

/* depth: number of containers already open around v. */
static void push_value(lua_State *L, json_t *v, int depth) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: push_object(L, v, depth); break;
  case JSON_ARRAY: push_array(L, v, depth); break;
  case JSON_STRING: lua_pushlstring(L, json_string_value(v), json_string_length(v)); break;
  case JSON_INTEGER: lua_pushinteger(L, (lua_Integer)json_integer_value(v)); break;
  case JSON_REAL: lua_pushnumber(L, (lua_Number)json_real_value(v)); break;
  case JSON_TRUE: lua_pushboolean(L, 1); break;
  case JSON_FALSE: lua_pushboolean(L, 0); break;
  case JSON_NULL: default: lua_pushnil(L); break;
  }
}

void jl_push(lua_State *L, json_t *v) {
  luaL_checkstack(L, 2, "converting JSON");
  if (!v) lua_pushnil(L);
  else push_value(L, v, 0);
}

/* ---------------------------------------------------------------- Lua -> JSON */

/* One step from a table to the value being converted: a key, or an array index. */
typedef struct {
  const char *key; /* NULL for an index; else held by the table on the Lua stack */
  size_t len;
  lua_Integer index;
} step_t;

typedef struct {
  lua_State *L;
  const void *open[JL_MAX_DEPTH]; /* tables being converted, outermost first */
  int depth;
  step_t steps[JL_MAX_DEPTH]; /* where the value being converted is (written out only
                                 into an error: ".vars.x[2]") */
  int nsteps;
  char path[JL_PATH_MAX]; /* the steps written out, by conv_fail */
  size_t pathlen;
  char *err;
  size_t errlen;
} conv_t;

static void path_push_key(conv_t *c, const char *key, size_t len);
static void path_push_index(conv_t *c, lua_Integer i);

static void step_in(conv_t *c, const char *key, size_t len, lua_Integer index) {
  assert(c->nsteps < JL_MAX_DEPTH); /* one per open table, and convert_table caps those */
  c->steps[c->nsteps++] = (step_t){key, len, index};
}

/* Record "message (at path)" and return NULL. */
static json_t *conv_fail(conv_t *c, const char *fmt, ...) {
  char msg[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (!c->err || c->errlen == 0) return NULL;
  c->pathlen = 0;
  c->path[0] = '\0';
  for (int i = 0; i < c->nsteps; i++) {
    if (c->steps[i].key) path_push_key(c, c->steps[i].key, c->steps[i].len);
    else path_push_index(c, c->steps[i].index);
  }
  if (c->pathlen) snprintf(c->err, c->errlen, "%s (at %s)", msg, c->path);
  else snprintf(c->err, c->errlen, "%s", msg);
  return NULL;
}

static void path_put(conv_t *c, const char *s, size_t n) {
  if (n > sizeof c->path - 1 - c->pathlen) n = sizeof c->path - 1 - c->pathlen;
  memcpy(c->path + c->pathlen, s, n);
  c->pathlen += n;
  c->path[c->pathlen] = '\0';
}

/* Append ".key" (a valid UTF-8 key): control characters shown as '?', long keys cut at a
 * character boundary and marked with "...". */
static void path_push_key(conv_t *c, const char *key, size_t len) {
  const char *p = key, *end = key + len;
  size_t shown = 0;
  path_put(c, ".", 1);
  while (p < end) {
    size_t n = utf8_seq(p, end);
    if (n == 0) n = 1;
    if (shown + n > JL_KEY_SHOWN) { path_put(c, "...", 3); return; }
    unsigned char b = (unsigned char)*p;
    if (n == 1 && (b < 0x20 || b == 0x7F)) path_put(c, "?", 1);
    else path_put(c, p, n);
    shown += n;
    p += n;
  }
}

/* Append "[i]" (i >= 1). */
static void path_push_index(conv_t *c, lua_Integer i) {
  assert(i >= 1);
  char buf[24];
  size_t n = sizeof buf;
  buf[--n] = ']';
  for (unsigned long long v = (unsigned long long)i; v; v /= 10) buf[--n] = (char)('0' + v % 10);
  buf[--n] = '[';
  path_put(c, buf + n, sizeof buf - n);
}

static json_t *convert(conv_t *c, int idx);

static json_t *convert_number(conv_t *c, int idx) {
  json_t *j;
  if (lua_isinteger(c->L, idx)) {
    j = json_integer((json_int_t)lua_tointeger(c->L, idx));
  } else {
    double d = (double)lua_tonumber(c->L, idx);
    if (!isfinite(d)) return conv_fail(c, "numbers must be finite");
    j = json_real(d);
  }
  return j ? j : conv_fail(c, "out of memory");
}

static json_t *convert_string(conv_t *c, int idx) {
  size_t len;
  const char *s = lua_tolstring(c->L, idx, &len); /* a string already: no conversion */
  if (!utf8_valid(s, len)) return conv_fail(c, "string is not valid UTF-8");
  json_t *j = json_stringn_nocheck(s, len);
  return j ? j : conv_fail(c, "out of memory");
}

enum table_kind { TABLE_EMPTY, TABLE_ARRAY, TABLE_OBJECT, TABLE_MIXED };

/* Classify the table at idx by its keys; *n gets the array length. */
static enum table_kind classify(lua_State *L, int idx, lua_Integer *n) {
  lua_Integer count = 0, ints = 0, max = 0, strs = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    count++;
    if (lua_type(L, -2) == LUA_TSTRING) {
      strs++;
    } else if (lua_isinteger(L, -2)) {
      lua_Integer k = lua_tointeger(L, -2);
      if (k >= 1) { ints++; if (k > max) max = k; }
    }
    lua_pop(L, 1);
  }
  *n = count;
  if (count == 0) return TABLE_EMPTY;
  if (ints == count && max == count) return TABLE_ARRAY; /* distinct keys in 1..n */
  if (strs == count) return TABLE_OBJECT;
  return TABLE_MIXED;
}

static json_t *convert_array(conv_t *c, int idx, lua_Integer n) {
  json_t *arr = json_array();
  if (!arr) return conv_fail(c, "out of memory");
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(c->L, idx, i);
    step_in(c, NULL, 0, i);
    json_t *elem = convert(c, lua_gettop(c->L));
    c->nsteps--;
    lua_pop(c->L, 1);
    if (!elem) { json_decref(arr); return NULL; }
    if (json_array_append_new(arr, elem) != 0) { /* elem released by jansson */
      json_decref(arr);
      return conv_fail(c, "out of memory");
    }
  }
  return arr;
}

typedef struct {
  const char *key;
  size_t len;
  json_t *val;
} member_ref_t;

static int cmp_keys(const void *a, const void *b) {
  const member_ref_t *x = a, *y = b;
  size_t n = x->len < y->len ? x->len : y->len;
  int r = memcmp(x->key, y->key, n);
  return r ? r : (x->len > y->len) - (x->len < y->len);
}

static void free_refs(member_ref_t *v, size_t n) {
  for (size_t i = 0; i < n; i++) json_decref(v[i].val);
  free(v);
}

/* The object of the table at idx with its keys in byte order: Lua iterates tables in an
 * order that changes from run to run, and output (dry-run, stored JSON) must not. The
 * pairs are converted and sorted first, then the object is built once. */
static json_t *convert_object(conv_t *c, int idx, lua_Integer count) {
  size_t n = 0;
  member_ref_t *v = malloc((size_t)count * sizeof *v);
  if (!v) return conv_fail(c, "out of memory");
  lua_pushnil(c->L);
  while (lua_next(c->L, idx)) {
    size_t klen;
    const char *key = lua_tolstring(c->L, -2, &klen); /* a string: no conversion; the table holds it */
    if (!utf8_valid(key, klen)) {
      free_refs(v, n);
      return conv_fail(c, "table key is not valid UTF-8");
    }
    step_in(c, key, klen, 0);
    assert(n < (size_t)count); /* raw iteration runs no Lua: the table is as classified */
    json_t *val = convert(c, lua_gettop(c->L));
    c->nsteps--;
    if (!val) {
      free_refs(v, n);
      return NULL;
    }
    v[n].key = key, v[n].len = klen, v[n].val = val;
    n++;
    lua_pop(c->L, 1); /* keep the key for lua_next */
  }
  qsort(v, n, sizeof *v, cmp_keys);
  json_t *obj = json_object();
  if (!obj) {
    free_refs(v, n);
    return conv_fail(c, "out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    if (json_object_setn_new_nocheck(obj, v[i].key, v[i].len, v[i].val) != 0) { /* val released */
      for (size_t k = i + 1; k < n; k++) json_decref(v[k].val);
      free(v);
      json_decref(obj);
      return conv_fail(c, "out of memory");
    }
  }
  free(v);
  return obj;
}

static json_t *convert_table(conv_t *c, int idx) {
  const void *self = lua_topointer(c->L, idx);
  lua_Integer n;
  json_t *result = NULL;
  for (int i = 0; i < c->depth; i++)
    if (c->open[i] == self) return conv_fail(c, "table contains itself (cycle)");
  if (c->depth >= JL_MAX_DEPTH)
    return conv_fail(c, "table nested deeper than %d levels", JL_MAX_DEPTH);
  if (!lua_checkstack(c->L, 4)) return conv_fail(c, "out of Lua stack space");
  c->open[c->depth++] = self;
  switch (classify(c->L, idx, &n)) {
  case TABLE_EMPTY:
    result = json_object();
    if (!result) conv_fail(c, "out of memory");
    break;
  case TABLE_ARRAY: result = convert_array(c, idx, n); break;
  case TABLE_OBJECT: result = convert_object(c, idx, n); break;
  case TABLE_MIXED: conv_fail(c, "table has mixed or non-string keys"); break;
  }
  c->depth--;
  return result;
}

static json_t *convert(conv_t *c, int idx) {
  json_t *j;
  int t = lua_type(c->L, idx);
  switch (t) {
  case LUA_TNIL: j = json_null(); break;
  case LUA_TBOOLEAN: j = json_boolean(lua_toboolean(c->L, idx)); break;
  case LUA_TNUMBER: return convert_number(c, idx);
  case LUA_TSTRING: return convert_string(c, idx);
  case LUA_TTABLE: return convert_table(c, idx);
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(c->L, idx) == NULL) { j = json_null(); break; }
    /* fall through */
  default:
    return conv_fail(c, "cannot convert %s to JSON", lua_typename(c->L, t));
  }
  return j ? j : conv_fail(c, "out of memory");
}

json_t *jl_from_lua(lua_State *L, int idx, char *err, size_t errlen) {
  conv_t c;
  int top = lua_gettop(L);
  c.L = L;
  c.depth = 0;
  c.nsteps = 0;
  c.err = err;
  c.errlen = errlen;
  if (err && errlen) err[0] = '\0';
  json_t *j = convert(&c, lua_absindex(L, idx));
  lua_settop(L, top);
  return j;
}
