/* cmd_purge: `hearth purge [--keep 30d] [--keep-dead DUR] [--archive FILE] [--dry-run]
 * [--vacuum]`. Removes final actions older than the keep and event ids older than the
 * dedupe window, a chunk per transaction (safe while the daemon runs), appends what it
 * removes to an NDJSON archive first when asked, prints what it removed, and gives the
 * freed pages back to the file system. The steps are retention.c's. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "cli.h"
#include "retention.h"
#include "timeutil.h"
#include "util.h"

static const char *usage =
    "usage: hearth purge [--keep DUR] [--keep-dead DUR] [--archive FILE] [--dry-run] [--vacuum]\n\n"
    "Remove actions whose delivery is final (delivered; capped, suppressed, skipped,\n"
    "limited, expired; records of changes) once older than --keep, and event ids older\n"
    "than the dedupe window (the longer of --dedupe-window and the window the last\n"
    "'hearth run' on this database recorded). Pending, leased and deferred actions\n"
    "always stay; dead letters stay unless --keep-dead is given. The ids of keyed\n"
    "actions stay refused and the funnel report keeps counting what goes. Safe while\n"
    "the daemon runs: one transaction per chunk of rows.\n\n"
    "  --keep DUR           keep final actions this long (default 30d)\n"
    "  --keep-dead DUR      also remove dead letters older than DUR (default: keep them)\n"
    "  --archive FILE       append each removed action to FILE as an NDJSON line first\n"
    "                       ({\"action\":...,\"delivery\":...,\"attempts\":...,\"last_error\":...});\n"
    "                       written and fsynced before the delete commits\n"
    "  --dry-run            count what would go; change nothing\n"
    "  --vacuum             rebuild the file when it cannot shrink a chunk at a time (a\n"
    "                       database created before schema 5): holds the write lock\n"
    "                       throughout and needs as much free disk as the database; run it\n"
    "                       with the daemon stopped\n";

/* A duration flag into *secs: 0, or EXIT_USAGE after printing why. */
static int parse_keep(const char *flag, const char *val, int64_t *secs) {
  char err[200];
  if (duration_parse(val, secs, err, sizeof err) < 0) return cli_usage_error(usage, "--%s: %s", flag, err);
  if (*secs <= 0) return cli_usage_error(usage, "--%s must be longer than 0s", flag);
  return 0;
}

/* Event ids older than the longer of the daemon's window (recorded) and ours are
 * forgotten; either being 0 (forever) keeps them all. */
static int64_t seen_before(int64_t daemon_window, int64_t ours, int64_t now) {
  if (daemon_window <= 0 || ours <= 0) return INT64_MIN;
  return now - (daemon_window > ours ? daemon_window : ours);
}

/* Open FILE for appending; a new file's directory entry is made durable too. */
static FILE *open_archive(const char *path) {
  int existed = access(path, F_OK) == 0;
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) return NULL;
  if (!existed) {
    char *copy = xstrdup(path);
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    int synced = dfd >= 0 && fsync(dfd) == 0;
    if (dfd >= 0) close(dfd);
    free(copy);
    if (!synced) {
      close(fd);
      return NULL;
    }
  }
  FILE *f = fdopen(fd, "a");
  if (!f) close(fd);
  return f;
}

/* The database file and its WAL, in bytes. */
static long long file_bytes(const char *db) {
  char wal[4096];
  struct stat st;
  long long n = stat(db, &st) == 0 ? (long long)st.st_size : 0;
  snprintf(wal, sizeof wal, "%s-wal", db);
  if (stat(wal, &st) == 0) n += (long long)st.st_size;
  return n;
}

static void print_removed(const retention_run_t *r, int dry_run) {
  printf("%s %lld action%s", dry_run ? "would purge" : "purged", (long long)r->actions, r->actions == 1 ? "" : "s");
  const char *sep = " (";
  for (int i = 0; i < RETENTION_COUNTS && r->by_status[i].name[0]; i++) {
    if (!r->by_status[i].n) continue;
    printf("%s%s %lld", sep, r->by_status[i].name, (long long)r->by_status[i].n);
    sep = ", ";
  }
  printf("%s and %lld event id%s older than the dedupe window\n", *sep == ',' ? ")" : "", (long long)r->seen,
         r->seen == 1 ? "" : "s");
}

/* Give freed pages back: a chunk at a time, or a whole VACUUM when asked. 0, or -1. */
static int shrink(store_t *s, int vacuum) {
  store_space_t sp;
  if (store_space(s, &sp) < 0) return -1;
  if (!sp.incremental) {
    if (vacuum) return store_vacuum_full(s);
    if (sp.free_pages)
      printf("note: %lld free pages are reused by new rows but not given back (a database created before "
             "schema 5); hearth purge --vacuum, with the daemon stopped, rebuilds it smaller\n",
             (long long)sp.free_pages);
    return 0;
  }
  int rc;
  while ((rc = retention_shrink_step(s)) == 1) continue;
  return rc;
}

static int purge(store_t *s, const retention_opts_t *o, int vacuum, const char *db) {
  retention_run_t r;
  char err[600];
  long long bytes = file_bytes(db);
  if (retention_begin(s, o, &r) < 0) {
    fprintf(stderr, "hearth: database error: %s\n", store_errmsg(s));
    return 1;
  }
  int rc;
  while ((rc = retention_step(s, o, &r, err, sizeof err)) == 1) continue;
  print_removed(&r, o->dry_run);
  if (rc < 0) {
    fprintf(stderr, "hearth: %s (what is printed above went; the rest stays)\n", err);
    return 1;
  }
  if (o->dry_run) return 0;
  if (shrink(s, vacuum) < 0 || store_checkpoint(s) < 0) {
    fprintf(stderr, "hearth: database error while shrinking the file: %s\n", store_errmsg(s));
    return 1;
  }
  printf("database file: %lld -> %lld bytes\n", bytes, file_bytes(db));
  return 0;
}

int cmd_purge(int argc, char **argv) {
  cli_t c;
  int rc = cli_parse(&c, argc, argv, "keep keep-dead archive dry-run vacuum", usage);
  if (rc) return c.help ? 0 : rc;
  if (c.npositional) return cli_usage_error(usage, "unexpected argument '%s'", c.positional[0]);
  if (c.archive && c.dry_run) return cli_usage_error(usage, "--archive and --dry-run exclude each other");
  int64_t keep = 30 * 86400, keep_dead = 0;
  if (c.keep && (rc = parse_keep("keep", c.keep, &keep))) return rc;
  if (c.keep_dead && (rc = parse_keep("keep-dead", c.keep_dead, &keep_dead))) return rc;
  if (access(c.db, F_OK) != 0) {
    fprintf(stderr, "hearth: no database at %s\n", c.db);
    return 1;
  }
  hclock_t clock;
  clock_init_real(&clock);
  int64_t now = clock_now(&clock);
  retention_opts_t o = {.actions_before = now - keep,
                        .dead_before = c.keep_dead ? now - keep_dead : INT64_MIN,
                        .archive_path = c.archive, .dry_run = c.dry_run};
  if (c.archive && !(o.archive = open_archive(c.archive))) {
    fprintf(stderr, "hearth: cannot open the archive %s: %s\n", c.archive, strerror(errno));
    return 1;
  }
  char err[512];
  store_t *s = store_open(c.db, 0, err, sizeof err);
  int status = 1;
  if (!s) {
    fprintf(stderr, "hearth: %s\n", err);
  } else {
    o.seen_before = seen_before(store_meta_get(s, RETENTION_WINDOW_KEY, c.dedupe_window), c.dedupe_window, now);
    status = purge(s, &o, c.vacuum, c.db);
  }
  store_close(s);
  if (o.archive && fclose(o.archive) != 0) {
    fprintf(stderr, "hearth: cannot close the archive %s: %s\n", c.archive, strerror(errno));
    status = 1;
  }
  return status;
}
