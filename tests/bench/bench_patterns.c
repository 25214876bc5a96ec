/* bench_patterns: the sandbox's string.find/match/gmatch/gsub (engine/lua_pattern.c)
 * against the standard library's on a few typical patterns. One Lua script runs each case
 * as a loop of N calls (default 1,000,000), timed with os.clock, once in a plain state
 * with the standard functions and once with ours installed; ours charge a meter that
 * reads the monotonic clock at each charge, as luahost_charge does. Prints figures, no
 * thresholds. Build with `cmake --build BUILD --target bench_patterns`, run
 * `BUILD/bench_patterns [N]`. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "lua_pattern.h"

static long charged;
static volatile long clock_reads;

/* What luahost_charge costs: an addition and a clock read. */
static void bench_charge(lua_State *L, long steps) {
  (void)L;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  clock_reads += ts.tv_nsec & 1;
  charged += steps;
}

static const char SCRIPT[] =
    "local N = ...\n"
    "local line = '  2026-12-01T08:24:41Z user=alice42 action=checkin points=15  '\n"
    "local mail = 'contact: first_last@example.com (work)'\n"
    "local cases = {\n"
    "  {'find plain word', function() return line:find('checkin') end},\n"
    "  {'find plain, plain=true', function() return line:find('=', 1, true) end},\n"
    "  {'find (%d+)-(%d+)', function() return line:find('(%d+)-(%d+)') end},\n"
    "  {'match date ^%s*(%d%d%d%d)%-(%d%d)', function() return line:match('^%s*(%d%d%d%d)%-(%d%d)') end},\n"
    "  {'match trim ^%s*(.-)%s*$', function() return line:match('^%s*(.-)%s*$') end},\n"
    "  {'match [%w_]+@[%w_]+%.com', function() return mail:match('[%w_]+@[%w_]+%.com') end},\n"
    "  {'gsub %s+ -> \" \"', function() return line:gsub('%s+', ' ') end},\n"
    "  {'gsub (%w+)=(%w+) -> %2=%1', function() return line:gsub('(%w+)=(%w+)', '%2=%1') end},\n"
    "  {'gmatch (%w+)=(%w+), 3 pairs', function() for k, v in line:gmatch('(%w+)=(%w+)') do end end},\n"
    "}\n"
    "local out = {}\n"
    "for _, c in ipairs(cases) do\n"
    "  local f = c[2]\n"
    "  local t0 = os.clock()\n"
    "  for _ = 1, N do f() end\n"
    "  out[#out + 1] = {c[1], os.clock() - t0}\n"
    "end\n"
    "return out\n";

/* Run the script in L with N; leaves the result table on the stack. */
static void run(lua_State *L, long n) {
  if (luaL_loadstring(L, SCRIPT) != LUA_OK) {
    fprintf(stderr, "bench_patterns: %s\n", lua_tostring(L, -1));
    exit(1);
  }
  lua_pushinteger(L, n);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    fprintf(stderr, "bench_patterns: %s\n", lua_tostring(L, -1));
    exit(1);
  }
}

static double seconds_at(lua_State *L, int results, lua_Integer i) {
  lua_rawgeti(L, results, i);
  lua_rawgeti(L, -1, 2);
  double s = lua_tonumber(L, -1);
  lua_pop(L, 2);
  return s;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  lua_State *std = luaL_newstate(), *ours = luaL_newstate();
  luaL_openlibs(std);
  luaL_openlibs(ours);
  lua_getglobal(ours, "string");
  pattern_install(ours, -1, bench_charge);
  lua_pop(ours, 1);
  run(std, n);
  run(ours, n);
  printf("%ld calls per case; seconds (os.clock) of the whole loop\n", n);
  printf("%-40s %10s %10s %7s\n", "case", "standard", "ours", "ratio");
  lua_Integer count = (lua_Integer)lua_rawlen(std, -1);
  for (lua_Integer i = 1; i <= count; i++) {
    lua_rawgeti(std, -1, i);
    lua_rawgeti(std, -1, 1);
    const char *name = lua_tostring(std, -1);
    double a = seconds_at(std, 1, i), b = seconds_at(ours, 1, i);
    printf("%-40s %10.3f %10.3f %7.2f\n", name, a, b, a > 0 ? b / a : 0.0);
    lua_pop(std, 2);
  }
  printf("steps charged by ours: %ld (%.1f per call)\n", charged, (double)charged / ((double)n * (double)count));
  lua_close(std);
  lua_close(ours);
  return 0;
}
