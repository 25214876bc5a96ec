/* test_checkpointer: unit tests for engine/checkpointer.c on a real database file: the
 * thread copies the log once it reaches its threshold, the writer's next commit copies the
 * rest and the one after starts the log again from its beginning (so the log stays
 * bounded), every committed row is in the database file once the log is gone, and a
 * caller holding the checkpointer can checkpoint itself. Waits are bounded polls for
 * something that must happen, never sleeps to show that something did not. */
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpointer.h"
#include "unit.h"
#include "unit_db.h"

#define FRAMES 8

static void exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    fprintf(stderr, "%s: %s\n", sql, msg ? msg : "?");
    unit_failed_checks++;
  }
  sqlite3_free(msg);
}

/* One commit that writes about `pages` new pages. */
static void commit_pages(sqlite3 *db, int pages) {
  exec(db, "BEGIN IMMEDIATE");
  for (int i = 0; i < pages; i++) exec(db, "INSERT INTO t(v) VALUES (randomblob(3000))");
  exec(db, "COMMIT");
}

/* Frames in the log now, as a checkpoint that copies nothing reports them. */
static int log_frames(sqlite3 *db) {
  int log = -1, copied = -1;
  sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
  return log;
}

static sqlite3 *open_writer(const char *path) {
  sqlite3 *db = NULL;
  CHECK(sqlite3_open(path, &db) == SQLITE_OK);
  exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
           " CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
  return db;
}

/* The writer's WAL hook, as store.c's: the checkpointer is told of each commit. */
static int on_commit(void *ud, sqlite3 *db, const char *schema, int frames) {
  (void)db, (void)schema;
  checkpointer_committed(ud, frames);
  return SQLITE_OK;
}

/* A fresh database with its writer (*w) and a checkpointer on it; NULL (a failed check)
 * when either cannot be had. */
static checkpointer_t *start(char path[64], sqlite3 **w) {
  if (unit_temp_db(path, "ckpt") < 0) return NULL;
  *w = open_writer(path);
  char err[256] = "";
  checkpointer_t *c = checkpointer_start(path, *w, FRAMES, err, sizeof err);
  if (!c) fprintf(stderr, "checkpointer_start: %s\n", err);
  CHECK(c != NULL);
  if (c) sqlite3_wal_hook(*w, on_commit, c);
  return c;
}

/* The hook off, then the checkpointer stopped (as store_close does). */
static void stop(checkpointer_t *c, sqlite3 *w) {
  sqlite3_wal_hook(w, NULL, NULL);
  checkpointer_stop(c);
}

/* Poll until the thread has run `n` checkpoints (a guard of 60 s stands for a hang). */
static int wait_runs(checkpointer_t *c, long n) {
  struct timespec pause = {0, 1000000};
  for (int i = 0; i < 60000; i++) {
    if (checkpointer_runs(c) >= n) return 1;
    nanosleep(&pause, NULL);
  }
  return 0;
}

TEST(log_copied_by_the_thread_then_restarted_by_the_writer) {
  char path[64];
  sqlite3 *w = NULL;
  checkpointer_t *c = start(path, &w);
  if (!c) return;
  commit_pages(w, 2); /* below the threshold: nothing asked */
  CHECK_INT(checkpointer_runs(c), 0);
  commit_pages(w, 2 * FRAMES); /* past it: the thread copies the log */
  CHECK(wait_runs(c, 1));
  commit_pages(w, 1); /* the writer copies what the thread had not */
  commit_pages(w, 1); /* and this commit starts the log from its beginning */
  int frames = log_frames(w);
  CHECK(frames >= 0 && frames < FRAMES);
  for (int round = 0; round < 5; round++) { /* many thresholds' worth: the log stays short */
    long before = checkpointer_runs(c);
    commit_pages(w, 2 * FRAMES);
    CHECK(wait_runs(c, before + 1));
    commit_pages(w, 1);
    commit_pages(w, 1);
  }
  frames = log_frames(w);
  CHECK(frames >= 0 && frames < FRAMES);
  stop(c, w);
  sqlite3_close(w); /* the last connection: the log is copied and removed */
  char wal[96];
  snprintf(wal, sizeof wal, "%s-wal", path);
  struct stat st;
  CHECK(stat(wal, &st) != 0);
  sqlite3 *r = NULL;
  CHECK(sqlite3_open(path, &r) == SQLITE_OK);
  sqlite3_stmt *q = NULL;
  CHECK(sqlite3_prepare_v2(r, "SELECT count(*) FROM t", -1, &q, NULL) == SQLITE_OK);
  CHECK(sqlite3_step(q) == SQLITE_ROW);
  CHECK_INT(sqlite3_column_int(q, 0), 2 + 2 * FRAMES + 2 + 5 * (2 * FRAMES + 2));
  sqlite3_finalize(q);
  sqlite3_close(r);
  unit_remove_db(path);
}

TEST(a_holder_checkpoints_itself_while_the_thread_waits) {
  char path[64];
  sqlite3 *w = NULL;
  checkpointer_t *c = start(path, &w);
  if (!c) return;
  checkpointer_hold(c);
  commit_pages(w, 2 * FRAMES); /* asks the thread, which waits for the hold */
  int log = -1, copied = -1;
  CHECK_INT(sqlite3_wal_checkpoint_v2(w, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log, &copied), SQLITE_OK);
  CHECK_INT(log, 0);
  checkpointer_release(c);
  CHECK(wait_runs(c, 1)); /* then runs, finding nothing to copy */
  stop(c, w);
  sqlite3_close(w);
  unit_remove_db(path);
}

TEST(stop_without_a_checkpoint_and_null_is_allowed) {
  char path[64];
  sqlite3 *w = NULL;
  checkpointer_t *c = start(path, &w);
  if (!c) return;
  commit_pages(w, 1);
  stop(c, w);
  commit_pages(w, 2 * FRAMES); /* the hook is gone: commits go on without it */
  checkpointer_hold(NULL);
  checkpointer_release(NULL);
  checkpointer_stop(NULL);
  CHECK_INT(checkpointer_runs(NULL), 0);
  sqlite3_close(w);
  unit_remove_db(path);
}

int main(void) {
  RUN(log_copied_by_the_thread_then_restarted_by_the_writer);
  RUN(a_holder_checkpoints_itself_while_the_thread_waits);
  RUN(stop_without_a_checkpoint_and_null_is_allowed);
  return UNIT_DONE();
}
