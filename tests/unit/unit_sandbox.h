/* unit_sandbox: running a snippet of Lua in a sandbox host as a handler would, for the C
 * unit tests of the sandbox (test_lua_host.c) and its pattern functions
 * (test_lua_pattern.c). */
#ifndef HEARTH_UNIT_SANDBOX_H
#define HEARTH_UNIT_SANDBOX_H

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "lua_host.h"
#include "unit.h"

/* Protected body: load the code in a fresh script environment and run it. */
static int run_script(lua_State *L) {
  const char *code = lua_touserdata(L, 1);
  if (luaL_loadstring(L, code) != LUA_OK) return lua_error(L);
  luahost_push_env(L);
  lua_setupvalue(L, -2, 1);
  lua_call(L, 0, 0);
  return 0;
}

/* Run code in h as a handler would; its error (caller frees) or NULL. */
static char *call_script(luahost_t *h, const char *code) {
  char *err = NULL;
  if (luahost_call(h, run_script, (void *)code, &err) == 0) {
    CHECK(err == NULL);
    return NULL;
  }
  return err ? err : strdup("(failed without a message)");
}

#endif
