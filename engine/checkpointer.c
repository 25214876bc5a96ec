/* checkpointer: the write-ahead log copied into the database file off the writer's thread
 * (see checkpointer.h).
 *
 * SQLite's own autocheckpoint runs on the committing connection: after a commit that
 * leaves the WAL longer than N frames, that commit copies every frame into the database
 * and syncs it before returning, so an import or the daemon stops while pages are written.
 * Here the same trigger (the writer's WAL hook, SQLite's documented API for this, which
 * store.c owns and which calls checkpointer_committed) only wakes a thread that holds a
 * second connection and runs a PASSIVE checkpoint, which never blocks the writer. A passive checkpoint cannot restart the log while the writer keeps appending, so
 * the writer finishes the job: after the thread is done, the next commit copies the few
 * frames written meanwhile itself (a PASSIVE checkpoint on its own connection), and the
 * commit after that starts the log again from its beginning. The log is thus bounded by
 * about its threshold (CHECKPOINT_BACKGROUND_FRAMES) plus what the writer adds while one
 * checkpoint runs.
 *
 * A long interval between checkpoints also writes less: a page changed by many commits is
 * copied into the database once per checkpoint, not once per commit.
 *
 * Locks: `lock` guards the state (held only for a few instructions, by the hook and the
 * thread); `running` is held for the whole of a checkpoint by whoever runs one here, the
 * thread or a caller of checkpointer_hold. This file speaks no SQL but a pragma. */
#include "checkpointer.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

struct checkpointer {
  sqlite3 *db;     /* the thread's own connection */
  sqlite3 *writer; /* whose commits the hook counts */
  char *path;
  int frames;      /* the log's length that asks for a checkpoint */
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  pthread_mutex_t running;
  int requested; /* the thread is asked to (or does) run a checkpoint */
  int done;      /* the thread's checkpoint ended: the writer copies the rest */
  int stop;
  long runs;
};

/* A PASSIVE checkpoint of db. SQLITE_BUSY (another connection or process checkpoints) is
 * no failure: that one does the work. Other failures are logged; the log only grows until
 * a later checkpoint succeeds. */
static void checkpoint(sqlite3 *db, const char *path, const char *who) {
  int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
  if (rc != SQLITE_OK && rc != SQLITE_BUSY)
    log_msg(LOG_ERROR, "checkpoint failed", "db", path, "by", who, "error", sqlite3_errmsg(db), NULL);
}

static void *run(void *arg) {
  checkpointer_t *c = arg;
  pthread_mutex_lock(&c->lock);
  for (;;) {
    while (!c->requested && !c->stop) pthread_cond_wait(&c->wake, &c->lock);
    if (c->stop) break;
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_lock(&c->running);
    checkpoint(c->db, c->path, "checkpointer");
    pthread_mutex_unlock(&c->running);
    pthread_mutex_lock(&c->lock);
    c->requested = 0;
    c->done = 1;
    c->runs++;
  }
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

void checkpointer_committed(checkpointer_t *c, int frames) {
  int tail = 0;
  pthread_mutex_lock(&c->lock);
  if (c->done) { /* the thread copied the log up to where it began: copy the rest */
    c->done = 0;
    tail = 1;
  } else if (frames >= c->frames && !c->requested) {
    c->requested = 1;
    pthread_cond_signal(&c->wake);
  }
  pthread_mutex_unlock(&c->lock);
  if (tail) checkpoint(c->writer, c->path, "writer");
}

/* Close the connection and free c (the thread is not running). */
static void destroy(checkpointer_t *c) {
  sqlite3_close(c->db);
  pthread_cond_destroy(&c->wake);
  pthread_mutex_destroy(&c->running);
  pthread_mutex_destroy(&c->lock);
  free(c->path);
  free(c);
}

checkpointer_t *checkpointer_start(const char *path, sqlite3 *writer, int frames, char *err, size_t errlen) {
  assert(frames > 0);
  checkpointer_t *c = xcalloc(1, sizeof *c);
  c->frames = frames;
  c->path = xstrdup(path);
  c->writer = writer;
  pthread_mutex_init(&c->lock, NULL);
  pthread_mutex_init(&c->running, NULL);
  pthread_cond_init(&c->wake, NULL);
  char *msg = NULL;
  if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
      sqlite3_exec(c->db, "PRAGMA synchronous = FULL", NULL, NULL, &msg) != SQLITE_OK) {
    snprintf(err, errlen, "cannot open %s for checkpoints: %s", path, msg ? msg : sqlite3_errmsg(c->db));
    sqlite3_free(msg);
    goto fail;
  }
  int rc = pthread_create(&c->thread, NULL, run, c);
  if (rc != 0) {
    snprintf(err, errlen, "cannot start the checkpoint thread: %s", strerror(rc));
    goto fail;
  }
  return c;
fail:
  destroy(c);
  return NULL;
}

void checkpointer_hold(checkpointer_t *c) {
  if (c) pthread_mutex_lock(&c->running);
}

void checkpointer_release(checkpointer_t *c) {
  if (c) pthread_mutex_unlock(&c->running);
}

long checkpointer_runs(checkpointer_t *c) {
  if (!c) return 0;
  pthread_mutex_lock(&c->lock);
  long n = c->runs;
  pthread_mutex_unlock(&c->lock);
  return n;
}

void checkpointer_stop(checkpointer_t *c) {
  if (!c) return;
  pthread_mutex_lock(&c->lock);
  c->stop = 1;
  pthread_cond_signal(&c->wake);
  pthread_mutex_unlock(&c->lock);
  int rc = pthread_join(c->thread, NULL);
  assert(rc == 0);
  (void)rc;
  destroy(c);
}
