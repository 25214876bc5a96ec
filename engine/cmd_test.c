/* cmd_test: `hearth test [PATH...]`. Finds *_test.lua files (PATH: files or folders,
 * searched recursively; default: the --scripts folder), runs each case on the virtual
 * clock (see test_runner.h), and ends with the line "N passed, N failed". */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "test_runner.h"

static const char *usage =
    "usage: hearth test [PATH...]\n\n"
    "Run operators' script tests: every *_test.lua in the given files or folders\n"
    "(default: the --scripts folder), each case on a virtual clock with a fresh\n"
    "in-memory database. Prints ok/FAIL per case with file:line for failures and ends\n"
    "with 'N passed, N failed'. Exit status 1 when any case fails.\n\n"
    "Test helpers: a file named *_helpers.lua is never loaded as a campaign script (not\n"
    "by the scripts folder's loader, not by use()); tests share code through it with\n"
    "require \"<name>_helpers\" (require looks in the standard library, then in the test\n"
    "file's folder).\n";

static int is_test_file(const char *name) {
  size_t n = strlen(name);
  return n > 9 && strcmp(name + n - 9, "_test.lua") == 0;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void collect(const char *path, char ***files, size_t *n, size_t *cap) {
  struct stat sb;
  if (stat(path, &sb) < 0) return;
  if (!S_ISDIR(sb.st_mode)) {
    if (*n == *cap) *files = xrealloc(*files, (*cap = *cap ? *cap * 2 : 16) * sizeof **files);
    (*files)[(*n)++] = xstrdup(path);
    return;
  }
  DIR *d = opendir(path);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char *child = xasprintf("%s/%s", path, e->d_name);
    struct stat cs;
    if (stat(child, &cs) == 0 && (S_ISDIR(cs.st_mode) || is_test_file(e->d_name)))
      collect(child, files, n, cap);
    free(child);
  }
  closedir(d);
}

int cmd_test(int argc, char **argv) {
  cli_t c;
  int rc = cli_parse(&c, argc, argv, "", usage);
  if (rc) return c.help ? 0 : rc;
  char **files = NULL;
  size_t n = 0, cap = 0;
  if (c.npositional == 0) collect(c.scripts, &files, &n, &cap);
  for (int i = 0; i < c.npositional; i++) {
    struct stat sb;
    if (stat(c.positional[i], &sb) < 0) {
      for (size_t k = 0; k < n; k++) free(files[k]);
      free(files);
      return cli_usage_error(usage, "no such file or folder: %s", c.positional[i]);
    }
    collect(c.positional[i], &files, &n, &cap);
  }
  if (n) qsort(files, n, sizeof *files, cmp);
  test_run_t r = {.stdlib_dir = c.stdlib, .tz_name = c.tz};
  for (size_t i = 0; i < n; i++) {
    test_run_file(&r, files[i]);
    free(files[i]);
  }
  free(files);
  if (n == 0) fprintf(stderr, "hearth: no *_test.lua files found\n");
  printf("%d passed, %d failed\n", r.passed, r.failed);
  return r.failed || n == 0 ? 1 : 0;
}
