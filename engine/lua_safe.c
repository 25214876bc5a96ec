/* lua_safe: the sandbox's pcall, xpcall, coroutine.resume/wrap/close that re-raise a
 * budget error, and the library functions that pay for their C work before doing it (see
 * lua_safe.h). Ideas from the Lua 5.4 reference manual (§4.5 continuations for yieldable
 * pcall, §6.2 coroutine functions); no code is taken from Lua's libraries. */
#include "lua_safe.h"

#include <lauxlib.h>
#include <limits.h>
#include <math.h>

#include "lua_host.h"

/* ---- protected calls that do not swallow a budget error ---- */

static int pcall_finish(lua_State *L, int status, lua_KContext extra) {
  luahost_reraise(L, status);
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_pushboolean(L, 0);
    lua_pushvalue(L, -2);
    return 2;
  }
  return lua_gettop(L) - (int)extra;
}

/* pcall(f, ...): like the standard one (yields across it are allowed). */
static int safe_pcall(lua_State *L) {
  luaL_checkany(L, 1);
  lua_pushboolean(L, 1);
  lua_insert(L, 1);
  int status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, pcall_finish);
  return pcall_finish(L, status, 0);
}

/* xpcall(f, msgh, ...): Lua runs a message handler with hooks disabled when the error comes
 * from the count hook, so a looping handler would escape the CPU budget. Here f runs under
 * pcall and msgh is called afterwards with the error, as ordinary (hooked) code. Scripts
 * have no debug library, so the difference (msgh runs after the stack unwound) cannot be
 * observed. */
static int xpcall_finish(lua_State *L, int status, lua_KContext base) {
  luahost_reraise(L, status);
  if (status == LUA_OK || status == LUA_YIELD) {
    lua_pushboolean(L, 1);
    lua_insert(L, (int)base + 1);
    return lua_gettop(L) - (int)base;
  }
  lua_pushvalue(L, 2); /* msgh */
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  lua_pushboolean(L, 0);
  lua_insert(L, -2);
  return 2;
}

static int safe_xpcall(lua_State *L) {
  int n = lua_gettop(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  for (int i = 3; i <= n; i++) lua_pushvalue(L, i);
  int base = n; /* results start above the arguments */
  int status = lua_pcallk(L, n - 2 > 0 ? n - 2 : 0, LUA_MULTRET, 0, base, xpcall_finish);
  return xpcall_finish(L, status, base);
}

/* Call the standard function in upvalue 1 with every argument, co being the thread that
 * runs; re-raise a budget error, and any error it raised. Returns its results. */
static int call_original_in(lua_State *L, lua_State *co) {
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_State *prev = luahost_enter(L, co);
  int status = lua_pcall(L, n, LUA_MULTRET, 0);
  luahost_leave(L, prev);
  luahost_reraise(L, status);
  if (status != LUA_OK) return lua_error(L);
  return lua_gettop(L);
}

static lua_State *check_coroutine(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co != NULL, 1, "coroutine");
  return co;
}

/* coroutine.resume(co, ...) and coroutine.close(co): the standard ones, then the budget. */
static int safe_resume(lua_State *L) { return call_original_in(L, check_coroutine(L)); }
static int safe_close(lua_State *L) { return call_original_in(L, check_coroutine(L)); }

/* The function coroutine.wrap returns: upvalue 1 the coroutine, 2 the standard resume. */
static int wrapped_call(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_rotate(L, 1, 2); /* resume, co, arguments */
  lua_State *prev = luahost_enter(L, co);
  int status = lua_pcall(L, n + 1, LUA_MULTRET, 0);
  luahost_leave(L, prev);
  luahost_reraise(L, status);
  if (status != LUA_OK) return lua_error(L);
  if (lua_toboolean(L, 1)) return lua_gettop(L) - 1;
  /* the coroutine failed: close it (its __close handlers run), then raise its error with
   * the caller's position, as the standard wrap does */
  lua_settop(L, 2);
  int cs = lua_status(co);
  if (cs != LUA_OK && cs != LUA_YIELD) {
    prev = luahost_enter(L, co);
    cs = lua_resetthread(co);
    luahost_leave(L, prev);
    luahost_reraise(L, cs);
    if (cs != LUA_OK) {
      lua_pop(L, 1);
      lua_xmove(co, L, 1);
    }
  }
  if (lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

/* coroutine.wrap(f); upvalue 1: the standard resume. */
static int safe_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, wrapped_call, 2);
  return 1;
}

/* ---- library functions that pay before they work ---- */

static long clamp_units(lua_Integer n) {
  if (n <= 0) return 0;
  return n > (lua_Integer)LONG_MAX ? LONG_MAX : (long)n;
}

/* Argument idx as an integer, or def when it is absent or no integer. */
static lua_Integer int_arg(lua_State *L, int idx, lua_Integer def) {
  int isnum = 0;
  lua_Integer v = lua_tointegerx(L, idx, &isnum);
  return isnum ? v : def;
}

/* A string position as the standard library reads it (negative counts from the end). */
static lua_Integer position(lua_Integer pos, size_t len) {
  if (pos >= 0) return pos;
  if ((size_t)-pos > len) return 0;
  return (lua_Integer)len + pos + 1;
}

static lua_Integer table_length(lua_State *L) {
  return lua_type(L, 1) == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, 1) : 0;
}

/* Elements i..j, without overflow. */
static long span(lua_Integer i, lua_Integer j) {
  if (j < i) return 0;
  if (i < 0 && j > LUA_MAXINTEGER + i) return LONG_MAX;
  return clamp_units(j - i + 1);
}

/* table.concat(t [, sep [, i [, j]]]), table.unpack(t [, i [, j]]) */
static long cost_concat(lua_State *L) {
  return span(int_arg(L, 3, 1), int_arg(L, 4, table_length(L)));
}
static long cost_unpack(lua_State *L) {
  return span(int_arg(L, 2, 1), int_arg(L, 3, table_length(L)));
}

/* table.move(a1, f, e, t [, a2]) */
static long cost_move(lua_State *L) { return span(int_arg(L, 2, 1), int_arg(L, 3, 0)); }

/* table.insert(t, pos, v) and table.remove(t, pos) shift the elements after pos. */
static long cost_insert(lua_State *L) {
  return lua_gettop(L) == 3 ? span(int_arg(L, 2, 1), table_length(L)) : 0;
}
static long cost_remove(lua_State *L) {
  return lua_gettop(L) >= 2 ? span(int_arg(L, 2, 1), table_length(L)) : 0;
}

/* table.sort(t [, comp]): n log2 n comparisons (a Lua comparator's instructions count too). */
static long cost_sort(lua_State *L) {
  lua_Integer n = table_length(L);
  if (n < 2) return 0;
  double c = (double)n * ceil(log2((double)n));
  return c >= (double)LONG_MAX ? LONG_MAX : (long)c;
}

static long scan_units(lua_Integer bytes) { return clamp_units(bytes / LUAHOST_SCAN_BYTES_PER_UNIT); }

/* string.upper, lower and reverse go over every byte of s: one unit per 4 bytes (the
 * result's bytes are the allocator's to charge as well). */
static long cost_string_bytes(lua_State *L) {
  size_t len = 0;
  return lua_tolstring(L, 1, &len) ? clamp_units((lua_Integer)(len / 4)) : 0;
}

/* utf8.len(s [, i [, j]]) and utf8.codepoint(s [, i [, j]]) decode bytes i..j. */
static long cost_utf8_len(lua_State *L) {
  size_t len = 0;
  if (!lua_tolstring(L, 1, &len)) return 0;
  lua_Integer i = position(int_arg(L, 2, 1), len), j = position(int_arg(L, 3, -1), len);
  return scan_units(span(i, j));
}
static long cost_utf8_codepoint(lua_State *L) {
  size_t len = 0;
  if (!lua_tolstring(L, 1, &len)) return 0;
  lua_Integer i = position(int_arg(L, 2, 1), len);
  return scan_units(span(i, position(int_arg(L, 3, i), len)));
}

/* utf8.offset(s, n [, i]) walks up to |n| characters (4 bytes at most each). */
static long cost_utf8_offset(lua_State *L) {
  size_t len = 0;
  if (!lua_tolstring(L, 1, &len)) return 0;
  lua_Integer n = int_arg(L, 2, 0);
  lua_Integer walk = n == LUA_MININTEGER ? LUA_MAXINTEGER : (n < 0 ? -n : n);
  lua_Integer bytes = walk > (lua_Integer)len / 4 ? (lua_Integer)len : walk * 4;
  return scan_units(bytes);
}

typedef struct {
  const char *lib, *name;
  long (*cost)(lua_State *L); /* how many items of work */
  long units_per_item;        /* measured by tests/bench/bench_budget.c */
} charged_t;

static const charged_t CHARGED[] = {
    {"string", "upper", cost_string_bytes, 1},
    {"string", "lower", cost_string_bytes, 1},
    {"string", "reverse", cost_string_bytes, 1},
    {"table", "concat", cost_concat, 8},
    {"table", "unpack", cost_unpack, 1},
    {"table", "move", cost_move, 6},
    {"table", "insert", cost_insert, 2},
    {"table", "remove", cost_remove, 2},
    {"table", "sort", cost_sort, 5},
    {"utf8", "len", cost_utf8_len, 1},
    {"utf8", "codepoint", cost_utf8_codepoint, 1},
    {"utf8", "offset", cost_utf8_offset, 1},
};

/* A charged function: upvalue 1 the standard one, 2 its index in CHARGED. */
static int charged_call(lua_State *L) {
  const charged_t *c = &CHARGED[lua_tointeger(L, lua_upvalueindex(2))];
  long items = c->cost(L);
  luahost_charge(L, items > LONG_MAX / c->units_per_item ? LONG_MAX : items * c->units_per_item);
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

/* string.rep(s, n [, sep]): one unit per copy before the work (the bytes are the
 * allocator's to charge); with an empty s and sep it produces nothing, and the standard
 * one would still loop n times, so the result ("") is given at once. Upvalue 1: the
 * standard rep. */
static int safe_rep(lua_State *L) {
  size_t l, lsep;
  luaL_checklstring(L, 1, &l);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_optlstring(L, 3, "", &lsep);
  if (n <= 0 || l + lsep == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  /* a result that cannot fit the call's memory is left to the memory budget */
  luahost_t *h = luahost_of(L);
  size_t room = h->ceiling > h->used ? h->ceiling - h->used : 0;
  if ((size_t)n <= room / (l + lsep)) luahost_charge(L, (long)n);
  int top = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, top, 1);
  return 1;
}

/* ---- installing ---- */

/* Replace base[lib][name] by a C closure of fn over the current function (and extra). */
static void wrap_field(lua_State *L, int base, const char *lib, const char *name,
                       lua_CFunction fn, int extra_upvalue_index) {
  lua_getfield(L, base, lib);
  lua_getfield(L, -1, name);
  if (extra_upvalue_index) lua_pushvalue(L, extra_upvalue_index);
  lua_pushcclosure(L, fn, extra_upvalue_index ? 2 : 1);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

void safe_lib_install(lua_State *L, int base) {
  base = lua_absindex(L, base);
  lua_pushcfunction(L, safe_pcall);
  lua_setfield(L, base, "pcall");
  lua_pushcfunction(L, safe_xpcall);
  lua_setfield(L, base, "xpcall");
  wrap_field(L, base, "string", "rep", safe_rep, 0);
  wrap_field(L, base, "coroutine", "resume", safe_resume, 0);
  wrap_field(L, base, "coroutine", "close", safe_close, 0);
  lua_getfield(L, base, "coroutine"); /* wrap closes over the standard resume */
  lua_getfield(L, -1, "resume");
  lua_getupvalue(L, -1, 1);
  lua_pushcclosure(L, safe_wrap, 1);
  lua_setfield(L, -3, "wrap");
  lua_pop(L, 2);
  for (size_t i = 0; i < sizeof CHARGED / sizeof CHARGED[0]; i++) {
    lua_pushinteger(L, (lua_Integer)i);
    wrap_field(L, base, CHARGED[i].lib, CHARGED[i].name, charged_call, lua_gettop(L));
    lua_pop(L, 1);
  }
}
