/* lua_pattern: string.find, string.match, string.gmatch and string.gsub for the sandbox,
 * with Lua 5.4 pattern semantics (reference manual §6.4 and §6.4.1) and a step budget.
 *
 * Why: the CPU budget of lua_host.c is enforced by an instruction-count hook, and a hook
 * never fires inside a C function, so one backtracking pattern call (patterns are
 * exponential: string.rep('a', 40):find(string.rep('a*', 40) .. 'b')) would run for
 * hours inside the standard library. These replacements count every step of the matcher
 * (each call of the recursive matcher, each pattern item it handles, each character a
 * repetition or %b scans; for plain finds, each candidate position and each 64 bytes
 * compared) and raise the Lua error
 *   "string pattern ran over its budget of N steps (simplify the pattern or shorten the
 *    subject)"
 * when a call runs out. The budget is per call of find/match/gsub and per step of a
 * gmatch iterator. Nested matcher calls are capped at 200 ("pattern too complex").
 *
 * Results, argument handling and error messages follow the standard library; the known
 * differences are listed in lua_pattern.c. */
#ifndef HEARTH_LUA_PATTERN_H
#define HEARTH_LUA_PATTERN_H

#include <lua.h>

#define LUA_PATTERN_DEFAULT_STEPS 10000000L

/* Replace find, match, gmatch and gsub in the table at string_table_index (the `string`
 * library table, which is also the string metatable's __index, so both string.find(s, p)
 * and s:find(p) use them), with the default budget. */
void lua_pattern_install(lua_State *L, int string_table_index);

/* The same with an explicit budget of steps per call; max_steps <= 0 means the default. */
void lua_pattern_install_budget(lua_State *L, int string_table_index, long max_steps);

#endif
