/* lua_pattern: string.find, string.match, string.gmatch and string.gsub for the sandbox,
 * with Lua 5.4 pattern semantics (reference manual §6.4 and §6.4.1), whose work is
 * charged to the caller's budget.
 *
 * Why: the CPU budget of lua_host.c is enforced by an instruction-count hook, and a hook
 * never fires inside a C function, so one backtracking pattern call (patterns are
 * exponential: string.rep('a', 40):find(string.rep('a*', 40) .. 'b')) would run for
 * hours inside the standard library. These replacements count the steps of their matcher
 * (each compiled pattern item handled, each character a repetition or %b scans, each
 * candidate position and each 64 bytes compared by a plain find; see lua_pattern.c) and
 * hand them to a charge function in blocks of PATTERN_CHARGE_EVERY steps. The
 * sandbox passes luahost_charge, so pattern work is paid from the handler's one
 * instruction budget (one step = one instruction) and its wall-clock deadline, and a
 * runaway pattern stops the handler with the standard budget error.
 *
 * Results, argument handling and error messages follow the standard library; the known
 * differences are listed in lua_pattern.c. This unit knows nothing about lua_host: the
 * charge function is its only link to a budget. */
#ifndef HEARTH_LUA_PATTERN_H
#define HEARTH_LUA_PATTERN_H

#include <lua.h>

/* Steps are paid in advance, this many at a time. */
#define PATTERN_CHARGE_EVERY 1024

/* Called with L (the running thread) and a number of steps; may raise a Lua error to stop
 * the matcher. */
typedef void (*pattern_charge_fn)(lua_State *L, long steps);

/* Replace find, match, gmatch and gsub in the table at string_table_index (the `string`
 * library table, which is also the string metatable's __index, so both string.find(s, p)
 * and s:find(p) use them). charge may be NULL: then nothing bounds a call. */
void pattern_install(lua_State *L, int string_table_index, pattern_charge_fn charge);

#endif
