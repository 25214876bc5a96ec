/* lua_invariant: hearth.invariant{ name = ..., <one rule> } while the scripts load, and
 * running a custom check (scripts.h scripts_invariant_check). The rules themselves and the
 * judging of the built-in ones are invariants.c's; this file only checks the Lua side of a
 * declaration and keeps custom check functions in the registry.
 *
 * A custom check is check = function(action, member) return ok, message end. It runs in
 * the sandbox with a handler's budget, as the campaign that declared it, once the handler
 * that recorded its action has returned (engine_invariants.c says when); `action` is the action as its NDJSON object and `member` a copy of her
 * state when the action was recorded (id, attrs, tags, points, orders, spend, tz):
 * changing either changes nothing. The rule holds when `ok` is true (any value but false
 * and nil); a check that returns nothing fails, so a forgotten `return` is seen. Our own
 * code, built like hearth.guard in lua_api.c (a function kept by registry reference,
 * called through luahost_call). */
#include <assert.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "invariants.h"
#include "json_lua.h"
#include "lua_api.h"

/* The declaration without its name, a custom check standing as `check = true`. Raises on
 * a value that is not data (before anything is allocated in C). */
static json_t *declaration(lua_State *L, int has_check) {
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    if (lua_type(L, -2) == LUA_TSTRING && (!strcmp(lua_tostring(L, -2), "name") || !strcmp(lua_tostring(L, -2), "check"))) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_settable(L, -4);
  }
  if (has_check) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "check");
  }
  char err[256];
  json_t *decl = jl_from_lua(L, -1, err, sizeof err);
  if (!decl) luaL_error(L, "hearth.invariant: %s", err);
  lua_pop(L, 1);
  return decl;
}

/* hearth.invariant{ name = "one_touch_a_day", max_marketing = { max = 1, per = "local_day" } } */
static int l_invariant(lua_State *L) {
  if (!luahost_of(L)->loading)
    return luaL_error(L, "hearth.invariant: can only be called while the scripts load, not from a handler");
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "name");
  const char *name = lua_tostring(L, -1);
  if (lua_type(L, -1) != LUA_TSTRING || !*name)
    return luaL_error(L, "hearth.invariant: option 'name' must name the rule");
  lua_getfield(L, 1, "check");
  int has_check = !lua_isnil(L, -1);
  if (has_check && !lua_isfunction(L, -1))
    return luaL_error(L, "hearth.invariant: option 'check' must be a function(action, member)");
  json_t *decl = declaration(L, has_check); /* stack: name, check */
  scripts_t *s = scripts_of(L);
  int ref = LUA_NOREF;
  if (has_check) {
    lua_pushvalue(L, -1);
    ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  char err[300];
  int rc = invariants_add(s->invariants, name, luahost_of(L)->campaign, decl, ref, err, sizeof err);
  json_decref(decl);
  if (rc < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return luaL_error(L, "hearth.invariant '%s': %s", name, err);
  }
  return 0;
}

void invariant_api_install(lua_State *L) {
  lua_pushcfunction(L, l_invariant);
  lua_setfield(L, -2, "invariant");
}

const invariants_t *scripts_invariants(scripts_t *s) { return s->invariants; }

typedef struct {
  int ref;
  json_t *action, *member;
  int ok;
  char *message;
} check_call_t;

/* Protected body of a custom check: ok, message = fn(action, member). */
static int call_check(lua_State *L) {
  check_call_t *c = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
  jl_push(L, c->action);
  jl_push(L, c->member);
  lua_call(L, 2, 2);
  c->ok = lua_toboolean(L, -2);
  if (!c->ok && lua_type(L, -1) == LUA_TSTRING) c->message = xstrdup(lua_tostring(L, -1));
  else if (!c->ok) c->message = xstrdup(lua_isnil(L, -2) ? "the check returned nothing" : "the check returned false");
  return 0;
}

int scripts_invariant_check(scripts_t *s, int i, json_t *action, json_t *member, char **message, char **err) {
  assert(!s->cur);
  *message = *err = NULL;
  check_call_t c = {.ref = invariants_custom_ref(s->invariants, i), .action = action, .member = member};
  luahost_activate(s->host, invariants_campaign(s->invariants, i));
  int rc = luahost_call(s->host, call_check, &c, err);
  s->gen++;
  if (rc < 0) {
    free(c.message);
    return -1;
  }
  *message = c.message;
  return c.ok;
}
