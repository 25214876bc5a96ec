/* bench_budget: how well one handler budget holds for work done outside the Lua VM.
 *
 * Part 1 (calibration) measures, with the budget out of the way, what one unit of each
 * kind of charged work costs in nanoseconds (a VM instruction of a simple loop, a byte
 * allocated, a byte of source given to load, a table.sort comparison, ...), so the
 * prices in engine/lua_host.h can be checked against the machine.
 *
 * Part 2 runs hostile snippets (each a loop of slow library calls) as handlers do, through
 * luahost_call, three times: with the default budget (how long until stopped, and by
 * which budget); with the default instruction budget and a 20 ms deadline, so that the
 * clock comes first: how far past the deadline the call ran; and with the instruction
 * budget lifted and a 500 ms deadline (only the clock can stop them: then one library
 * call may be as large as the snippet makes it). Figures, no thresholds.
 *
 * Build with `cmake --build BUILD --target bench_budget`, run `BUILD/bench_budget [NAME...]`
 * (names select snippets; the calibration runs when no name is given). */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lua_host.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int run_code(lua_State *L) {
  const char *code = lua_touserdata(L, 1);
  if (luaL_loadstring(L, code) != LUA_OK) return lua_error(L);
  luahost_push_env(L);
  lua_setupvalue(L, -2, 1);
  lua_call(L, 0, 0);
  return 0;
}

/* Run code under lim; elapsed ms; *why gets the first line of the error ("" if none). */
static double run(const budget_t *lim, const char *code, char *why, size_t size) {
  luahost_t *h = luahost_new(lim, NULL, NULL, NULL, NULL);
  if (!h) {
    fprintf(stderr, "bench_budget: cannot create the state\n");
    exit(1);
  }
  char *err = NULL;
  double t0 = now_ms();
  luahost_call(h, run_code, (void *)code, &err);
  double ms = now_ms() - t0;
  snprintf(why, size, "%s", err ? err : "");
  char *nl = strchr(why, '\n');
  if (nl) *nl = '\0';
  free(err);
  luahost_free(h);
  return ms;
}

/* ---- part 1 ---- */

typedef struct {
  const char *what;
  const char *code; /* sets `units` and runs the work; the time is measured around it */
} calib_t;

static const calib_t CALIB[] = {
    {"VM instruction (empty numeric for: 1 per iteration)",
     "units = 3e7 for i = 1, units do end"},
    {"byte allocated (1 MiB strings by string.rep)",
     "units = 0 for i = 1, 300 do local s = string.rep('x', 1 << 20) units = units + (1 << 20) end"},
    {"byte allocated (8 MiB .. 1 byte)",
     "local s = string.rep('x', 8 << 20) units = 0 for i = 1, 40 do local t = s .. 'y' units = units + #t end"},
    {"byte of source given to load ('a=1;' repeated)",
     "local s = string.rep('a=1;', 1e6) units = 0 for i = 1, 5 do load(s) units = units + #s end"},
    {"byte of source given to load (typical code)",
     "local s = string.rep('do local t = {a = 1, b = \"x\"} if t.a > 0 then t.b = t.b .. \"y\" end end\\n', 40000)"
     " units = 0 for i = 1, 5 do load(s) units = units + #s end"},
    {"table.sort comparison (n log2 n, 1M numbers)",
     "local t = {} for i = 1, 1e6 do t[i] = (i * 7919) % 1000003 end units = 1e6 * 20 table.sort(t)"},
    {"table.concat element (8-byte strings)",
     "local t = {} for i = 1, 1e6 do t[i] = 'abcdefgh' end units = 0"
     " for i = 1, 5 do table.concat(t) units = units + #t end"},
    {"table.move element (nil copies)", "units = 3e7 table.move({}, 1, units, 1)"},
    {"table.insert shifted element", "local t = {} for i = 1, 1e6 do t[i] = i end units = 0"
     " for i = 1, 20 do table.insert(t, 1, i) units = units + #t end"},
    {"string.upper byte", "local s = string.rep('x', 1 << 12):rep(1 << 12) units = 0 for i = 1, 10 do s:upper() units = units + #s end"},
    {"string.rep copy (1-byte string)", "units = 0 for i = 1, 20 do local s = string.rep('x', 1 << 20) units = units + (1 << 20) end"},
    {"gsub replacement ('x' -> 'yy')", "local s = string.rep('x', 1 << 20) units = 0 for i = 1, 5 do s:gsub('x', 'yy') units = units + #s end"},
    {"utf8.len byte", "local s = string.rep('\\u{e9}', 8 << 20) units = 0 for i = 1, 3 do utf8.len(s) units = units + #s end"},
};

static void calibrate(void) {
  budget_t lim;
  budget_default(&lim);
  lim.max_instructions = 1L << 60;
  lim.max_call_ms = 600000;
  lim.max_call_bytes = (size_t)1 << 29;
  printf("calibration: ns per item of work, to compare with the prices in engine/lua_host.h\n"
         "(units per item: instruction 1, byte allocated 1/%d, load byte %d, rep copy 1, upper byte\n"
         "1/4, sort comparison 5, concat element 8, move element 6, insert shift 2, gsub\n"
         "replacement 16 + its steps, utf8 byte 1/%d)\n",
         LUAHOST_BYTES_PER_UNIT, LUAHOST_LOAD_UNITS_PER_BYTE, LUAHOST_SCAN_BYTES_PER_UNIT);
  for (size_t i = 0; i < sizeof CALIB / sizeof CALIB[0]; i++) {
    char code[1024], why[512];
    snprintf(code, sizeof code,
             "local t0 = os.clock() %s local dt = os.clock() - t0 "
             "error(string.format('%%.3f', dt * 1e9 / units), 0)", CALIB[i].code);
    run(&lim, code, why, sizeof why);
    printf("  %-55s %8s ns\n", CALIB[i].what, why);
  }
}

/* What a handler call costs the host around the script: an empty body through
 * luahost_call (a thread of its own, armed, settled), and luahost_activate (switching the
 * string metatable to a campaign's string table). String method calls themselves cost
 * what they did: one table lookup through the metatable's __index. */
static int empty_body(lua_State *L) {
  (void)L;
  return 0;
}

static void per_call_costs(void) {
  luahost_t *h = luahost_new(NULL, NULL, NULL, NULL, NULL);
  if (!h) exit(1);
  const int n = 200000;
  double t0 = now_ms();
  for (int i = 0; i < n; i++) {
    char *err = NULL;
    if (luahost_call(h, empty_body, NULL, &err) < 0) free(err);
  }
  double call_ns = (now_ms() - t0) * 1e6 / n;
  t0 = now_ms();
  for (int i = 0; i < n; i++) luahost_activate(h, NULL);
  double act_ns = (now_ms() - t0) * 1e6 / n;
  printf("per handler call: luahost_call of an empty body %.0f ns, luahost_activate %.0f ns\n",
         call_ns, act_ns);
  luahost_free(h);
}

/* ---- part 2 ---- */

typedef struct {
  const char *name, *code;
} snippet_t;

static const snippet_t SNIPPETS[] = {
    {"load", "local s = ('a=1;'):rep(1e6) for i = 1, 1e4 do load(s) end"},
    {"rep", "for i = 1, 1e9 do local s = ('x'):rep(16 << 20) end"},
    {"rep_empty", "for i = 1, 1e9 do local s = (''):rep(1e12) end"},
    {"concat_op", "local s = ('x'):rep(1 << 12):rep(1 << 11) for i = 1, 1e9 do local t = s .. i end"},
    {"format", "local s = ('x'):rep(1 << 12):rep(1 << 11) for i = 1, 1e9 do local t = string.format('%s%s', s, s) end"},
    {"upper", "local s = ('x'):rep(1 << 12):rep(1 << 12) for i = 1, 1e9 do local t = s:upper() end"},
    {"gsub", "local s = ('x'):rep(1 << 20) for i = 1, 1e9 do local t = s:gsub('x', 'yy') end"},
    {"table_concat", "local t = {} for i = 1, 1e6 do t[i] = 'abcdefgh' end for i = 1, 1e9 do local s = table.concat(t) end"},
    {"table_move", "for i = 1, 1e9 do table.move({}, 1, 1e8, 1) end"},
    {"table_sort", "local t = {} for i = 1, 1e6 do t[i] = (i * 7919) % 1000003 end for i = 1, 1e9 do table.sort(t) end"},
    {"table_insert", "local t = {} for i = 1, 2e6 do t[i] = i end for i = 1, 1e9 do table.insert(t, 1, i) end"},
    {"utf8_len", "local s = ('\\u{e9}'):rep(1 << 12):rep(1 << 11) for i = 1, 1e9 do utf8.len(s) end"},
    {"string_eq", "local a = ('x'):rep(1 << 12):rep(1 << 12) local b = a:sub(1, -2) .. 'y'"
                  " for i = 1, 1e9 do local e = a == b end"},
};

static int selected(int argc, char **argv, const char *name) {
  if (argc < 2) return 1;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], name) == 0) return 1;
  return 0;
}

/* Run a snippet under lim; print how far past lim's deadline it ran, and what stopped it. */
static void past_deadline(const budget_t *lim, const char *code) {
  char why[512];
  double past = run(lim, code, why, sizeof why) - lim->max_call_ms;
  printf(" %9.1f %-4s", past, strstr(why, "time budget") ? "time" : strstr(why, "CPU") ? "CPU" : strstr(why, "memory") ? "mem" : "?");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    calibrate();
    per_call_costs();
  }
  budget_t def, short_deadline, clock_only;
  budget_default(&def);
  short_deadline = def;
  short_deadline.max_call_ms = 20;
  clock_only = def;
  clock_only.max_instructions = 1L << 60;
  clock_only.max_call_ms = 500;
  printf("\n%-13s %12s %-5s | ms past a 20 ms deadline | ms past 500 ms, no instruction cap\n",
         "snippet", "default: ms", "by");
  for (size_t i = 0; i < sizeof SNIPPETS / sizeof SNIPPETS[0]; i++) {
    if (!selected(argc, argv, SNIPPETS[i].name)) continue;
    char why[512];
    double ms = run(&def, SNIPPETS[i].code, why, sizeof why);
    printf("%-13s %12.1f %-5s |", SNIPPETS[i].name, ms,
           strstr(why, "time budget") ? "time" : strstr(why, "CPU") ? "CPU" : strstr(why, "memory") ? "mem" : "?");
    past_deadline(&short_deadline, SNIPPETS[i].code);
    printf("            |");
    past_deadline(&clock_only, SNIPPETS[i].code);
    printf("\n");
    fflush(stdout);
  }
  return 0;
}
