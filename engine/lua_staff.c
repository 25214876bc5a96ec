/* lua_staff: the staff part of the Lua API. `hearth.staff{fallback, task_due}` declares
 * the owner of tasks whose member has none and the default due time of tasks;
 * `m:assign_owner(rule)` gives a member an owner by a fixed, round-robin or least-loaded
 * rule over a staff list (the engine keeps the cursor and the counts: engine_staff.c);
 * staff_task_owner and staff_task_due are m:task's. Arguments are checked before anything
 * is allocated in C. Our own code; the rules are those WeCom SCRM tools offer for
 * channel codes (fixed, in turn, to the least busy guide). */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "lua_api.h"

#define MAX_POOL 64
#define TASK_DUE_DEFAULT 86400 /* one day: a guide's to-do list is a day's work */

static const char *check_staff_string(lua_State *L, int idx, const char *what) {
  size_t len;
  if (lua_type(L, idx) != LUA_TSTRING) luaL_error(L, "%s must be a staff id (a string)", what);
  const char *s = lua_tolstring(L, idx, &len);
  if (len < 1 || len > 128) luaL_error(L, "%s must be a staff id of 1-128 bytes", what);
  return s;
}

/* hearth.staff{ fallback = "s-lead", task_due = "1d" }: at load time, once. */
static int l_staff(lua_State *L) {
  scripts_t *s = scripts_of(L);
  if (!luahost_of(L)->loading) return luaL_error(L, "hearth.staff must be called at the top level of a script");
  luaL_checktype(L, 1, LUA_TTABLE);
  if (s->staff_declared) return luaL_error(L, "hearth.staff: declared twice (declare it once, in one script)");
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
    if (strcmp(k, "fallback") != 0 && strcmp(k, "task_due") != 0)
      return luaL_error(L, "hearth.staff: unknown option '%s' (known: fallback, task_due)", k);
  }
  lua_getfield(L, 1, "fallback");
  const char *fallback = lua_isnil(L, -1) ? NULL : check_staff_string(L, -1, "hearth.staff: option 'fallback'");
  lua_getfield(L, 1, "task_due");
  int64_t due = lua_isnil(L, -1) ? TASK_DUE_DEFAULT : arg_duration(L, lua_gettop(L));
  if (due <= 0) return luaL_error(L, "hearth.staff: option 'task_due' must be a positive duration");
  s->staff_declared = 1;
  s->task_due = due;
  s->staff_fallback = fallback ? xstrdup(fallback) : NULL;
  return 0;
}

void staff_api_install(lua_State *L) {
  lua_pushcfunction(L, l_staff);
  lua_setfield(L, -2, "staff");
}

int64_t staff_task_due(scripts_t *s) { return s->staff_declared ? s->task_due : TASK_DUE_DEFAULT; }

const char *staff_task_fallback(scripts_t *s) { return s->staff_fallback; }

/* Read rule's staff list (a string, or an array of 1-64 strings) into list. */
static int read_staff_list(lua_State *L, int idx, const char **list) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    list[0] = check_staff_string(L, idx, "m:assign_owner: 'staff'");
    return 1;
  }
  if (!lua_istable(L, idx)) luaL_error(L, "m:assign_owner: 'staff' must be a staff id or a list of them");
  int n = (int)lua_rawlen(L, idx);
  if (n < 1 || n > MAX_POOL) luaL_error(L, "m:assign_owner: 'staff' must list 1-%d staff ids", MAX_POOL);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, idx, i + 1); /* a string, referenced by the table */
    list[i] = check_staff_string(L, -1, "m:assign_owner: each of 'staff'");
    lua_pop(L, 1);
  }
  return n;
}

/* m:assign_owner("s-1") or m:assign_owner{rule = "fixed"|"round_robin"|"least_loaded",
 * staff = "s-1" | {"s-1", ...}, pool = NAME} -> owner, assigned. The pool names the
 * round-robin cursor (default: the campaign and the list, "campaign:s-1,s-2"). */
int m_assign_owner(lua_State *L) {
  engine_call_t *c = call_current(L);
  if (!member_handle_arg(L, 1)) return luaL_argerror(L, 1, "a member handle (m:assign_owner)");
  const char *list[MAX_POOL];
  owner_rule_t r = {.rule = OWNER_FIXED, .staff = list};
  const char *pool = NULL;
  if (lua_type(L, 2) == LUA_TSTRING) {
    r.nstaff = read_staff_list(L, 2, list);
  } else {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      lua_pop(L, 1);
      const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
      if (strcmp(k, "rule") && strcmp(k, "staff") && strcmp(k, "pool"))
        return luaL_error(L, "m:assign_owner: unknown option '%s' (known: pool, rule, staff)", k);
    }
    lua_getfield(L, 2, "rule");
    const char *rule = lua_isnil(L, -1) ? "fixed" : lua_tostring(L, -1);
    if (!rule || (r.rule = owner_rule_parse(rule)) < 0)
      return luaL_error(L, "m:assign_owner: 'rule' must be \"fixed\", \"round_robin\" or \"least_loaded\"");
    lua_getfield(L, 2, "staff");
    r.nstaff = read_staff_list(L, lua_gettop(L), list);
    if (r.rule == OWNER_FIXED && r.nstaff != 1)
      return luaL_error(L, "m:assign_owner: rule \"fixed\" takes one staff id");
    lua_getfield(L, 2, "pool");
    if (!lua_isnil(L, -1)) {
      size_t len;
      pool = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
      if (!pool || len < 1 || len > 256) return luaL_error(L, "m:assign_owner: 'pool' must be a name of 1-256 bytes");
    }
  }
  if (!pool) { /* the default cursor name, on the Lua stack so nothing leaks on an error */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, c->campaign ? c->campaign : "");
    luaL_addchar(&b, ':');
    for (int i = 0; i < r.nstaff; i++) {
      if (i) luaL_addchar(&b, ',');
      luaL_addstring(&b, list[i]);
    }
    luaL_pushresult(&b);
    pool = lua_tostring(L, -1);
  }
  r.pool = pool;
  const char *owner;
  int assigned;
  if (engine_assign_owner(scripts_of(L)->engine, c, &r, &owner, &assigned) < 0) return raise_db_error(L);
  lua_pushstring(L, owner);
  lua_pushboolean(L, assigned);
  return 2;
}
