/* lua_broadcast: `hearth.broadcast{...}` declarations and running their two functions
 * (see scripts.h, "Broadcasts"). A broadcast is a dated one-off send to an audience:
 *
 *   hearth.broadcast {
 *     name = "double11", at = "2026-11-11T10:00:00+08:00",
 *     audience = { tag = "vip", attrs = { city = "sh" }, where = function(m) ... end },
 *     fn = function(m) m:send("d11_coupon") end,
 *   }
 *
 * This file only checks the declaration and calls `where` and `fn` for the member the
 * engine hands it; when a broadcast runs, the sweep, its chunks and its progress in the
 * store are the engine's (engine_broadcast.c). The idea of a one-off dated job kept apart
 * from recurring cron entries is the usual one of schedulers (at(1) beside cron(8)); the
 * code is ours. */
#include <assert.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "json_lua.h"
#include "lua_api.h"

#define BROADCAST_CHUNK 500
#define BROADCAST_NAME_MAX 64

int scripts_broadcast_count(scripts_t *s) { return s->nbroadcasts; }

const broadcast_decl_t *scripts_broadcast(scripts_t *s, int i) {
  assert(i >= 0 && i < s->nbroadcasts);
  return &s->broadcasts[i];
}

int scripts_broadcast_find(scripts_t *s, const char *name) {
  for (int i = 0; i < s->nbroadcasts; i++)
    if (!strcmp(s->broadcasts[i].name, name)) return i;
  return -1;
}

/* Names are [a-z0-9_.-]{1,64}: they are keys in the store and parts of action ids. */
static int name_valid(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > BROADCAST_NAME_MAX) return 0;
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-')) return 0;
  return 1;
}

/* The optional function field `key` of the table at idx, pushed (nil when absent). */
static void push_opt_function(lua_State *L, int idx, const char *key, const char *what) {
  lua_getfield(L, idx, key);
  if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
    luaL_error(L, "hearth.broadcast: %s must be a function", what);
}

/* hearth.broadcast{name=, at=, audience={tag=, attrs=, where=}, fn=, chunk=} */
static int l_broadcast(lua_State *L) {
  if (!luahost_of(L)->loading)
    return luaL_error(L, "hearth.broadcast: can only be called while the scripts load, not from a handler");
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  scripts_t *s = scripts_of(L);
  lua_getfield(L, 1, "name"); /* 2 */
  const char *name = lua_tostring(L, 2);
  if (!name || !name_valid(name))
    return luaL_error(L, "hearth.broadcast: name must be 1-64 characters of a-z 0-9 _ . -");
  if (scripts_broadcast_find(s, name) >= 0)
    return luaL_error(L, "hearth.broadcast: broadcast '%s' is declared twice", name);
  lua_getfield(L, 1, "at"); /* 3 */
  int64_t at = BROADCAST_NO_TIME;
  if (lua_isinteger(L, 3)) {
    at = lua_tointeger(L, 3);
  } else if (!lua_isnil(L, 3)) {
    char err[200];
    const char *text = lua_type(L, 3) == LUA_TSTRING ? lua_tostring(L, 3) : NULL;
    if (!text || rfc3339_parse(text, &at, err, sizeof err) < 0)
      return luaL_error(L, "hearth.broadcast: at must be an RFC 3339 time such as 2026-11-11T10:00:00+08:00 "
                           "or epoch seconds");
  }
  lua_getfield(L, 1, "chunk"); /* 4 */
  lua_Integer chunk = luaL_optinteger(L, 4, BROADCAST_CHUNK);
  if (chunk < 1 || chunk > 100000) return luaL_error(L, "hearth.broadcast: chunk must be 1-100000");
  push_opt_function(L, 1, "fn", "fn"); /* 5 */
  if (lua_isnil(L, 5)) return luaL_error(L, "hearth.broadcast: fn = function(m) ... end is required");
  lua_getfield(L, 1, "audience"); /* 6 */
  if (!lua_isnil(L, 6) && !lua_istable(L, 6))
    return luaL_error(L, "hearth.broadcast: audience must be a table { tag =, attrs =, where = }");
  const char *tag = NULL;
  if (lua_istable(L, 6)) {
    lua_getfield(L, 6, "tag"); /* 7 */
    if (!lua_isnil(L, 7) && lua_type(L, 7) != LUA_TSTRING)
      return luaL_error(L, "hearth.broadcast: audience.tag must be a string");
    tag = lua_tostring(L, 7);
    push_opt_function(L, 6, "where", "audience.where"); /* 8 */
    lua_getfield(L, 6, "attrs"); /* 9 */
    if (!lua_isnil(L, 9) && !lua_istable(L, 9))
      return luaL_error(L, "hearth.broadcast: audience.attrs must be a table of name = value");
  } else {
    lua_settop(L, 9); /* nil tag, where and attrs */
  }
  json_t *attrs = NULL;
  if (!lua_isnil(L, 9)) {
    char err[256];
    attrs = jl_from_lua(L, 9, err, sizeof err);
    if (!attrs || !json_is_object(attrs)) {
      json_decref(attrs);
      return luaL_error(L, "hearth.broadcast: audience.attrs must be a table of name = value");
    }
  }
  /* everything is checked: from here nothing raises */
  if (s->nbroadcasts == s->capbroadcasts)
    s->broadcasts = xrealloc(s->broadcasts, (size_t)(s->capbroadcasts = s->capbroadcasts ? s->capbroadcasts * 2 : 4) *
                                                sizeof *s->broadcasts);
  broadcast_decl_t *b = &s->broadcasts[s->nbroadcasts++];
  memset(b, 0, sizeof *b);
  b->name = xstrdup(name);
  b->campaign = xstrdup(luahost_of(L)->campaign ? luahost_of(L)->campaign : "main");
  b->at = at;
  b->tag = tag ? xstrdup(tag) : NULL;
  b->attrs = attrs;
  b->chunk = (int)chunk;
  b->has_where = !lua_isnil(L, 8);
  lua_pushvalue(L, 5);
  b->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 8);
  b->where_ref = b->has_where ? luaL_ref(L, LUA_REGISTRYINDEX) : (lua_pop(L, 1), LUA_NOREF);
  return 0;
}

void broadcast_api_install(lua_State *L) {
  lua_pushcfunction(L, l_broadcast);
  lua_setfield(L, -2, "broadcast");
}

void broadcast_api_free(scripts_t *s) {
  for (int i = 0; i < s->nbroadcasts; i++) {
    broadcast_decl_t *b = &s->broadcasts[i];
    free(b->name);
    free(b->campaign);
    free(b->tag);
    json_decref(b->attrs);
  }
  free(s->broadcasts);
  s->broadcasts = NULL;
  s->nbroadcasts = s->capbroadcasts = 0;
}

typedef struct {
  int ref;
  int result;
} bcall_t;

/* Protected body: f(m), its first result's truth in result. */
static int call_with_member(lua_State *L) {
  bcall_t *bc = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, bc->ref);
  member_api_push(L, scripts_of(L));
  lua_call(L, 1, 1);
  bc->result = lua_toboolean(L, -1);
  return 0;
}

static int run_member_fn(scripts_t *s, int i, int ref, engine_call_t *call, char **err) {
  assert(!s->cur && call->m);
  bcall_t bc = {.ref = ref, .result = 0};
  *err = NULL;
  s->cur = call;
  luahost_activate(s->host, scripts_broadcast(s, i)->campaign);
  int rc = luahost_call(s->host, call_with_member, &bc, err);
  s->cur = NULL;
  s->gen++;
  return rc < 0 ? -1 : bc.result;
}

int scripts_broadcast_where(scripts_t *s, int i, engine_call_t *call, char **err) {
  const broadcast_decl_t *b = scripts_broadcast(s, i);
  *err = NULL;
  if (!b->has_where) return 1;
  return run_member_fn(s, i, b->where_ref, call, err);
}

int scripts_broadcast_run(scripts_t *s, int i, engine_call_t *call, char **err) {
  return run_member_fn(s, i, scripts_broadcast(s, i)->fn_ref, call, err) < 0 ? -1 : 0;
}
