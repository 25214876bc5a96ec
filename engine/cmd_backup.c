/* cmd_backup: `hearth backup PATH`. Copies the database with SQLite's online backup,
 * safe while the daemon runs (it keeps writing; the copy is a consistent snapshot). */
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
  sqlite3 *src = NULL, *out = NULL;
  int status = 1;
  if (sqlite3_open_v2(c.db, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
      sqlite3_open_v2(dst, &out, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
    fprintf(stderr, "hearth: %s\n", sqlite3_errmsg(out ? out : src));
    goto done;
  }
  sqlite3_busy_timeout(src, 5000);
  sqlite3_backup *b = sqlite3_backup_init(out, "main", src, "main");
  if (!b) {
    fprintf(stderr, "hearth: %s\n", sqlite3_errmsg(out));
    goto done;
  }
  do {
    rc = sqlite3_backup_step(b, 1024);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) sqlite3_sleep(50);
  } while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
  int pages = sqlite3_backup_pagecount(b);
  sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE) {
    fprintf(stderr, "hearth: backup failed: %s\n", sqlite3_errmsg(out));
    unlink(dst);
    goto done;
  }
  printf("backed up %s to %s (%d pages)\n", c.db, dst, pages);
  status = 0;
done:
  sqlite3_close(src);
  sqlite3_close(out);
  return status;
}
