/* lua_safe: the sandbox's own versions of the library functions through which a budget
 * error could be swallowed or a long stretch of C work could run unpaid.
 *
 * - pcall, xpcall, coroutine.resume, coroutine.wrap and coroutine.close re-raise the
 *   budget error (CPU, time, memory) of a call that tripped, instead of handing it back
 *   to the script as a value (luahost_reraise); xpcall's message handler runs after the
 *   stack unwound, as ordinary hooked code;
 * - string.rep, string.upper/lower/reverse, table.concat, table.move, table.insert/remove at a position,
 *   table.unpack, table.sort, utf8.len, utf8.offset and utf8.codepoint pay for their work
 *   with luahost_charge before they start (what each costs is in lua_host.h); string.rep
 *   gives "" at once when it would produce nothing (the standard one loops n times even
 *   then).
 *
 * Each wrapper calls the standard function it replaces, kept in the real library table
 * (so "bad argument" messages name it, e.g. 'table.insert'). */
#ifndef HEARTH_LUA_SAFE_H
#define HEARTH_LUA_SAFE_H

#include <lua.h>

/* Replace the functions above in the sandbox's master base at index base (its own copies
 * of the library tables). */
void safe_lib_install(lua_State *L, int base);

#endif
