/* lua_host: the one Lua 5.4 state, built as a sandbox. Owns the state, its allocator
 * (memory bounded per call and overall; bytes allocated during a call are charged to its
 * budget), the instruction-count hook that bounds CPU per call and stays armed once it
 * fires, the charge through which C code (the pattern matcher, the library wrappers) pays
 * from the same budget, the protected-call wrappers through which no budget error can be
 * swallowed (pcall, xpcall, coroutine.resume/wrap/close), every call run in a thread of
 * its own so that a failure keeps its stack for the traceback (memory errors included),
 * each chunk's own copies of the shared tables (libraries and `hearth`) and the string
 * metatable that follows the campaign running, script loading in file-name order, and
 * `require` limited to stdlib/ and the scripts folder. It knows nothing about members or
 * events: the `hearth` API is installed by lua_api.c.
 *
 * Where the ideas come from: the Lua 5.4 reference manual (lua_sethook, lua_resume, the
 * allocator contract, §6.2 coroutines); running the protected body as a coroutine so that
 * its stack survives the error is the manual's own remark that a coroutine's stack is not
 * unwound on error (lua_resume). No code is taken from Lua's libraries. */
#ifndef HEARTH_LUA_HOST_H
#define HEARTH_LUA_HOST_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "budget.h"
#include "util.h"

enum { LUAHOST_TRIP_CPU = 1, LUAHOST_TRIP_TIME, LUAHOST_TRIP_MEMORY };

typedef struct luahost {
  lua_State *L;
  budget_t lim;
  size_t used, ceiling;       /* bytes in use; current ceiling */
  int trip;                   /* 0, or why the running call was stopped: LUAHOST_TRIP_* */
  int armed;                  /* 1 while a budgeted call runs */
  long instructions;          /* spent by the running call: VM, C work, bytes allocated */
  size_t unpaid_bytes;        /* allocated by the running call, not yet charged */
  struct {                    /* the last growth refused, until Lua asks again */
    int pending, trip;
    void *ptr;
    size_t size, ceiling;
  } refused;
  uint64_t deadline_ns;
  lua_State *running;         /* the thread running the call's script code now */
  lua_State *spare;           /* a finished call's thread, kept for the next one (or NULL) */
  int spare_ref;              /* its anchor in the registry */
  char *stdlib_dir, *scripts_dir;
  int loading;                /* 1 while scripts load: declarations allowed */
  char *campaign;             /* campaign (script stem) being loaded */
  int sandbox_ref;            /* registry ref of the master base table (never seen by scripts) */
  int string_mt_ref;          /* registry ref of the string metatable */
  struct luahost_scope *scopes; /* each campaign's string table, for string methods */
  int nscopes;
  int active_scope;           /* the scope the string metatable is switched to, -1 none */
  void *owner;                /* the script set this state belongs to */
  strbuf_t manifest;          /* every chunk loaded, in load order: "label\tsha256\n" */
} luahost_t;

/* Create the sandboxed state. The base table holds only the allowed libraries; install()
 * is called with it on top of the stack to add the hearth API. */
luahost_t *luahost_new(const budget_t *lim, const char *stdlib_dir, const char *scripts_dir,
                       void (*install)(lua_State *L, void *ud), void *ud);
void luahost_free(luahost_t *h);

/* The host owning L (stored in the state's extra space). */
luahost_t *luahost_of(lua_State *L);

/* Call fn(ud) with the limits armed, in a thread of its own (fn's stack survives a failure,
 * so every failure, a memory one included, gets a traceback; a yield out of fn is an
 * error). 0 on success; -1 with a malloc'd message in *err: "file:line: message" (file:line
 * of the innermost Lua frame, where there is one), then the traceback. A call that tripped
 * its budget fails even if a script caught the error. */
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

/* The script set's version: the SHA-256 (64 hex digits) of the manifest, i.e. of every
 * chunk the state loaded (campaign scripts in file-name order, then each module the first
 * time it is required), each as its label (file name; "stdlib/<name>.lua" for standard
 * modules) and the SHA-256 of its bytes. */
void luahost_version(const luahost_t *h, char out[65]);

/* Charge n units of work done in C to the running call's instruction budget and check its
 * wall-clock deadline. When either is exceeded this trips the budget exactly as the
 * instruction hook does (every later instruction raises too, and the sandbox's pcall,
 * xpcall and coroutine functions raise it again, so a script cannot swallow it) and raises
 * the budget error. Does nothing outside a budgeted call.
 *
 * Who pays what (one unit is about one VM instruction of a simple loop; measured by
 * tests/bench/bench_budget.c):
 *  - the sandbox's string.find/match/gmatch/gsub (lua_pattern.c): one unit per matcher
 *    step, 16 per gsub replacement, in blocks of 1024;
 *  - every byte the allocator hands out during the call (strings built by `..`, rep,
 *    format, concat, gsub, char, tables, ...): one unit per LUAHOST_BYTES_PER_UNIT bytes,
 *    settled every 64 KiB (the deadline is checked then too); when that spends the budget
 *    the call is stopped at its next instruction;
 *  - load: LUAHOST_LOAD_UNITS_PER_BYTE units per byte of source, before parsing;
 *  - string.rep: one unit per copy, unless its result cannot fit the call's memory (then
 *    the memory budget stops it); string.upper/lower/reverse: one per 4 bytes;
 *    table.concat: 8 per element; table.move: 6; table.insert/remove at a position: 2 per
 *    element shifted; table.unpack: 1 per value; table.sort: 5 per comparison (n log2 n
 *    of them); utf8.len, utf8.offset, utf8.codepoint: one per LUAHOST_SCAN_BYTES_PER_UNIT
 *    bytes scanned; all before the work.
 * The prices keep one unit near the cost of one instruction (3-7 ns on the machine this
 * was written on), so the 10 million units of a call are some 30-70 ms of work of any
 * kind, and no single library call can start that would cost more than what is left. */
void luahost_charge(lua_State *L, long n);

/* If the running call has tripped its budget, raise its budget error (again): what every
 * path back into script code after a protected call does (lua_safe.c), with the status the
 * protected call ended with (LUA_ERRMEM trips the memory budget). */
void luahost_reraise(lua_State *L, int status);

/* Around resuming coroutine co from C: co becomes the thread that a budget trip seen by
 * the allocator stops at its next instruction; enter returns what leave restores. */
lua_State *luahost_enter(lua_State *L, lua_State *co);
void luahost_leave(lua_State *L, lua_State *prev);

#define LUAHOST_BYTES_PER_UNIT 16
#define LUAHOST_LOAD_UNITS_PER_BYTE 8
#define LUAHOST_SCAN_BYTES_PER_UNIT 1

/* Push a fresh environment table whose missing names come from a base of its own: copies
 * of every library table and of `hearth` (a chunk that changes string.upper changes its
 * own copy only). */
void luahost_push_env(lua_State *L);

/* Make campaign's own string table the one string methods (("x"):upper()) use, until the
 * next activation: the engine calls it before each handler, guard and cron step of that
 * campaign. A campaign never loaded gets the host's default copy. Never raises. */
void luahost_activate(luahost_t *h, const char *campaign);

#endif
