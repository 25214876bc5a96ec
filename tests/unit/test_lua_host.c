/* test_lua_host: unit tests for the tricky parts of engine/lua_host.c and lua_safe.c that
 * the end-to-end tests cannot pin down: a refusal that Lua's emergency collection rescues
 * is no memory trip (and one it cannot rescue is), a failed call (here a yield) still
 * closes its to-be-closed variables, the budget error's file:line is the innermost
 * Lua frame, each chunk's copies of the libraries are its own, luahost_activate switches
 * what string methods find, and the library wrappers keep the standard results. */
#include <lauxlib.h>
#include <stdlib.h>

#include "lua_host.h"
#include "unit.h"
#include "unit_sandbox.h"


static luahost_t *new_host(void) {
  luahost_t *h = luahost_new(NULL, NULL, NULL, NULL, NULL);
  CHECK(h != NULL);
  return h;
}

TEST(garbage_rescued_by_the_emergency_collection_is_no_memory_trip) {
  luahost_t *h = new_host();
  if (!h) return;
  /* with the collector stopped, garbage piles up to the call's ceiling: the refusal that
   * follows is answered by Lua's emergency collection, which frees it all */
  lua_gc(h->L, LUA_GCSTOP);
  char *err = call_script(h, "local piece = ('y'):rep(1 << 12):rep(1 << 8)\n"
                             "for i = 1, 100 do local s = piece .. i end\n");
  CHECK(err == NULL);
  if (err) fprintf(stderr, "  %s\n", err);
  free(err);
  /* live data past the ceiling is a trip, with the budget's message, even when caught */
  err = call_script(h, "local t, piece = {}, ('y'):rep(1 << 12):rep(1 << 8)\n"
                       "local ok = pcall(function() for i = 1, 1e6 do t[i] = piece .. i end end)\n"
                       "error('survived')\n");
  CHECK(err && strstr(err, "handler stopped: ran over its memory budget of 64 MiB"));
  CHECK(err && !strstr(err, "survived"));
  free(err);
  luahost_free(h);
}

TEST(a_failed_call_closes_its_variables) {
  luahost_t *h = new_host();
  if (!h) return;
  /* the handler's body is called with lua_call, so the yield fails where it is made */
  char *err = call_script(h, "local mark = getmetatable('').__index\n"
                             "local x <close> = setmetatable({}, {__close = function() mark.closed = true end})\n"
                             "coroutine.yield()\n");
  CHECK(err && strstr(err, "attempt to yield across a C-call boundary"));
  CHECK(err && strstr(err, "[string \"local mark = getmetatable('').__index...\"]:3: in main chunk"));
  CHECK(err && strstr(err, "stack traceback"));
  free(err);
  /* its to-be-closed variable was closed (the default scope's string table is shared by
   * the calls of this host, which have no campaign) */
  err = call_script(h, "assert(getmetatable('').__index.closed == true)");
  CHECK(err == NULL);
  free(err);
  luahost_free(h);
}

TEST(the_budget_error_names_the_innermost_lua_frame) {
  luahost_t *h = new_host();
  if (!h) return;
  char *err = call_script(h, "local function spin()\n"
                             "  while true do end\n"
                             "end\n"
                             "spin()\n");
  CHECK(err && strncmp(err, "[string \"local function spin()...\"]:2: handler stopped: ran over its CPU budget",
                       strlen("[string \"local function spin()...\"]:2: handler stopped: ran over its CPU budget")) == 0);
  free(err);
  luahost_free(h);
}

/* Two environments made one after the other: the first one's changes are invisible to the
 * second. */
TEST(each_chunk_has_its_own_libraries) {
  luahost_t *h = new_host();
  if (!h) return;
  char *err = call_script(h, "string.upper = nil table.insert = nil math.pi = 3\n"
                             "rawset(string, 'lower', 1)\n"
                             "assert(string.upper == nil and math.pi == 3)\n");
  CHECK(err == NULL);
  free(err);
  err = call_script(h, "assert(string.upper('a') == 'A' and string.lower('B') == 'b')\n"
                       "local t = {} table.insert(t, 1) assert(t[1] == 1)\n"
                       "assert(math.pi > 3.14)\n");
  CHECK(err == NULL);
  if (err) fprintf(stderr, "  %s\n", err);
  free(err);
  luahost_free(h);
}

TEST(string_methods_follow_the_active_campaign) {
  luahost_t *h = new_host();
  if (!h) return;
  /* the default scope: what string methods find when no campaign is active; changing it
   * through getmetatable('') changes neither the real string table nor a fresh chunk's */
  char *err = call_script(h, "getmetatable('').__index.upper = function() return 'HACKED' end\n"
                             "assert(('x'):upper() == 'HACKED')\n"
                             "assert(string.upper('x') == 'X')\n");
  CHECK(err == NULL);
  if (err) fprintf(stderr, "  %s\n", err);
  free(err);
  luahost_activate(h, "no such campaign"); /* falls back on the default scope */
  err = call_script(h, "assert(('x'):upper() == 'HACKED')");
  CHECK(err == NULL);
  free(err);
  luahost_free(h);
}

TEST(the_library_wrappers_keep_the_standard_results) {
  luahost_t *h = new_host();
  if (!h) return;
  char *err = call_script(
      h,
      "assert(('ab'):rep(3, '-') == 'ab-ab-ab' and (''):rep(1e15) == '' and ('x'):rep(0) == '')\n"
      "assert(table.concat({1, 2, 3}, ',') == '1,2,3' and table.concat({1, 2, 3}, ',', 2, 3) == '2,3')\n"
      "local t = {1, 2, 3} table.insert(t, 1, 0) assert(table.concat(t) == '0123')\n"
      "assert(table.remove(t, 1) == 0 and table.remove(t) == 3)\n"
      "assert(select('#', table.unpack({1, 2, 3})) == 3)\n"
      "local m = table.move({1, 2, 3}, 1, 3, 2) assert(m[1] == 1 and m[4] == 3)\n"
      "local s = {3, 1, 2} table.sort(s) assert(table.concat(s) == '123')\n"
      "table.sort(s, function(a, b) return a > b end) assert(table.concat(s) == '321')\n"
      "assert(utf8.len('h\\u{e9}llo') == 5 and utf8.codepoint('\\u{e9}') == 233)\n"
      "assert(utf8.offset('h\\u{e9}llo', 3) == 4)\n"
      "local ok, e = pcall(table.insert, nil, 1)\n"
      "assert(not ok and e:find(\"bad argument #1 to 'table.insert'\", 1, true), e)\n"
      "local w = coroutine.wrap(function(a) local b = coroutine.yield(a + 1) return b * 2 end)\n"
      "assert(w(1) == 2 and w(5) == 10)\n"
      "local ok2, e2 = pcall(w)\n"
      "assert(not ok2 and e2:find('cannot resume dead coroutine', 1, true), e2)\n"
      "local bad = coroutine.wrap(function() error('inner') end)\n"
      "local ok3, e3 = pcall(bad)\n"
      "assert(not ok3 and e3:find('inner', 1, true), e3)\n"
      "local co = coroutine.create(function() coroutine.yield(1) end)\n"
      "assert(select(2, coroutine.resume(co)) == 1 and coroutine.close(co))\n"
      "assert(select('#', pcall(function() return 1, 2 end)) == 3)\n"
      "local okx, ex = xpcall(error, function(m) return 'handled ' .. m end, 'boom', 0)\n"
      "assert(not okx and ex == 'handled boom', ex)\n");
  CHECK(err == NULL);
  if (err) fprintf(stderr, "  %s\n", err);
  free(err);
  luahost_free(h);
}

int main(void) {
  RUN(garbage_rescued_by_the_emergency_collection_is_no_memory_trip);
  RUN(a_failed_call_closes_its_variables);
  RUN(the_budget_error_names_the_innermost_lua_frame);
  RUN(each_chunk_has_its_own_libraries);
  RUN(string_methods_follow_the_active_campaign);
  RUN(the_library_wrappers_keep_the_standard_results);
  return UNIT_DONE();
}
