/* test_runner: operators' script tests (`hearth test`). A test file (*_test.lua) runs in
 * its own sandboxed Lua state with a small API: test(name, fn) declares a case,
 * use("a.lua", ...) picks the campaign scripts (default: the script named like the test
 * file without _test, else every script in its folder). Each case gets a fresh engine:
 * an empty in-memory store, a virtual clock, the scripts loaded anew, and a `t` object
 * to drive it (events at virtual times, advancing the clock) and to assert on actions,
 * state, points and tags. Failures name the test file and line. */
#ifndef HEARTH_TEST_RUNNER_H
#define HEARTH_TEST_RUNNER_H

typedef struct {
  const char *stdlib_dir;
  const char *tz_name;
  int verbose;
  int passed, failed;
} test_run_t;

/* Run every case in one test file. Prints a line per case to stdout. */
void test_run_file(test_run_t *r, const char *path);

#endif
