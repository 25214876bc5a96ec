/* unit_db: temporary database files for the C unit tests that open a store on disk. */
#ifndef HEARTH_UNIT_DB_H
#define HEARTH_UNIT_DB_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "unit.h"

/* A fresh path /tmp/hearth-test-<what>-XXXXXX: mkstemp creates an empty file, which SQLite
 * opens as an empty database. 0, or -1 (counted as a failed check). */
static inline int unit_temp_db(char path[64], const char *what) {
  snprintf(path, 64, "/tmp/hearth-test-%s-XXXXXX", what);
  int fd = mkstemp(path);
  if (fd < 0) {
    perror("mkstemp");
    unit_failed_checks++;
    return -1;
  }
  close(fd);
  return 0;
}

/* Remove the database and the files SQLite keeps beside it. */
static inline void unit_remove_db(const char *path) {
  const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
  char p[96];
  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    snprintf(p, sizeof p, "%s%s", path, suffixes[i]);
    unlink(p);
  }
}

#endif
