/* cmd_backup: `hearth backup PATH`. Copies the database with SQLite's online backup
 * (store_backup), safe while the daemon runs (it keeps writing; the copy is a consistent
 * snapshot). */
#include <stdio.h>
#include <unistd.h>

#include "cli.h"

static const char *usage =
    "usage: hearth backup PATH\n\n"
    "Write a consistent copy of the database (--db) to PATH using SQLite's online backup;\n"
    "safe while the daemon runs. PATH must not exist.\n";

int cmd_backup(int argc, char **argv) {
  cli_t c;
  int rc = cli_parse(&c, argc, argv, "", usage);
  if (rc) return c.help ? 0 : rc;
  if (c.npositional != 1) return cli_usage_error(usage, "backup takes one PATH");
  const char *dst = c.positional[0];
  if (access(c.db, F_OK) != 0) {
    fprintf(stderr, "hearth: no database at %s\n", c.db);
    return 1;
  }
  if (access(dst, F_OK) == 0) {
    fprintf(stderr, "hearth: %s exists; choose a new path\n", dst);
    return 1;
  }
  char err[512];
  store_t *s = store_open(c.db, 1, err, sizeof err);
  int pages = s ? store_backup(s, dst, err, sizeof err) : -1;
  store_close(s);
  if (pages < 0) {
    fprintf(stderr, "hearth: %s\n", err);
    return 1;
  }
  printf("backed up %s to %s (%d pages)\n", c.db, dst, pages);
  return 0;
}
