/* lua_host: the one Lua 5.4 state, built as a sandbox. Owns the state, its allocator
 * (memory bounded per call and overall), the instruction-count hook that bounds CPU per
 * call and stays armed once it fires (so a script's pcall cannot swallow it), the charge
 * through which C code (the pattern matcher) pays from the same budget, the single
 * protected-call wrapper whose message handler adds a traceback, script loading in
 * file-name order, and `require` limited to stdlib/ and the scripts folder. It knows
 * nothing about members or events: the `hearth` API is installed by lua_api.c. */
#ifndef HEARTH_LUA_HOST_H
#define HEARTH_LUA_HOST_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "budget.h"
#include "util.h"

typedef struct luahost {
  lua_State *L;
  budget_t lim;
  size_t used, ceiling;       /* bytes in use; current ceiling */
  int mem_tripped, cpu_tripped, armed;
  long instructions;
  uint64_t deadline_ns;
  char *stdlib_dir, *scripts_dir;
  int loading;                /* 1 while scripts load: declarations allowed */
  char *campaign;             /* campaign (script stem) being loaded */
  int sandbox_ref;            /* registry ref of the sandbox base table */
  void *owner;                /* the script set this state belongs to */
} luahost_t;

/* Create the sandboxed state. The base table holds only the allowed libraries; install()
 * is called with it on top of the stack to add the hearth API. */
luahost_t *luahost_new(const budget_t *lim, const char *stdlib_dir, const char *scripts_dir,
                       void (*install)(lua_State *L, void *ud), void *ud);
void luahost_free(luahost_t *h);

/* The host owning L (stored in the state's extra space). */
luahost_t *luahost_of(lua_State *L);

/* Call fn(ud) in protected mode with the limits armed. 0 on success; -1 with a malloc'd
 * message (with traceback) in *err. */
int luahost_call(luahost_t *h, lua_CFunction fn, void *ud, char **err);

/* Resume coroutine co with nargs arguments on its stack, limits armed for this step.
 * Returns LUA_OK (finished), LUA_YIELD (suspended), or -1 with a malloc'd message and
 * traceback in *err. */
int luahost_resume(luahost_t *h, lua_State *co, int nargs, char **err);

/* Is name (a path or a file name) a test helper, "*_helpers.lua"? Helpers are required by
 * tests and never loaded as campaign scripts. */
int luahost_is_test_helper(const char *name);

/* Load every *.lua directly in dir (not *_test.lua, not *_helpers.lua) in file-name
 * order, each with its own environment. Every error is appended to errors as
 * "file:line: message\n". Returns the number of scripts that failed (0 = all loaded); -1
 * if dir cannot be read. */
int luahost_load_scripts(luahost_t *h, const char *dir, strbuf_t *errors);
/* Load and run one file as a campaign script (used by the loader and by `hearth test`). */
int luahost_load_file(luahost_t *h, const char *path, strbuf_t *errors);

/* Charge n units of work done in C (pattern steps; later also bytes produced by library
 * functions) to the running call's instruction budget and check its wall-clock deadline.
 * When either is exceeded this trips the budget exactly as the instruction hook does
 * (every later instruction raises too, so a script's pcall cannot swallow it) and raises
 * the same error message. Does nothing outside a budgeted call.
 *
 * The sandbox's string.find/match/gmatch/gsub (lua_pattern.c) charge one unit per matcher
 * step, in blocks of 1024: a step (one pattern item tried, one character scanned) takes
 * about as long as one VM instruction of a simple loop. */
void luahost_charge(lua_State *L, long n);

/* Push a fresh environment table whose missing names come from the sandbox base. */
void luahost_push_env(lua_State *L);

#endif
