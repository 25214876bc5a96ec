/* unit: a tiny assert runner for the C unit tests. Each test file defines TEST(name)
 * functions and lists them in main with RUN(name); the process exits non-zero when any
 * CHECK failed and prints a closing "N passed, N failed" line. */
#ifndef HEARTH_UNIT_H
#define HEARTH_UNIT_H

#include <stdio.h>
#include <string.h>
#include <stdint.h>

static int unit_failed_checks;
static int unit_passed, unit_failed;

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    unit_failed_checks++; } } while (0)
#define CHECK_INT(a, b) do { long long _a = (long long)(a), _b = (long long)(b); if (_a != _b) { \
    fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, _a, #b, _b); \
    unit_failed_checks++; } } while (0)
#define CHECK_STR(a, b) do { const char *_a = (a), *_b = (b); \
    if (!_a || !_b || strcmp(_a, _b) != 0) { \
    fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, \
            _a ? _a : "(null)", _b ? _b : "(null)"); unit_failed_checks++; } } while (0)

#define TEST(name) static void test_##name(void)
#define RUN(name) do { int _before = unit_failed_checks; test_##name(); \
    if (unit_failed_checks == _before) { unit_passed++; } \
    else { unit_failed++; fprintf(stderr, "FAIL %s\n", #name); } } while (0)
#define UNIT_DONE() (printf("%d passed, %d failed\n", unit_passed, unit_failed), unit_failed ? 1 : 0)

#endif
