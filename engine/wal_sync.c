/* wal_sync: the write-ahead log synced off the writer's thread (see wal_sync.h).
 *
 * With synchronous=FULL, SQLite ends each commit by syncing the log, and the writer waits
 * for the disk: at 256 events a commit that was a third of an import's time. With
 * synchronous=NORMAL a commit only writes its frames; SQLite still syncs the log before it
 * copies it into the database (a checkpoint) and the database after, so what a crash or a
 * power loss can cost is the commits since the last sync, never the database's
 * consistency: recovery keeps the frames up to the last whole commit whose checksums hold.
 * This thread adds the sync back, behind the writer: the writer says "commit n is
 * written", the thread runs fdatasync on its own descriptor of the log (a sync on any
 * descriptor covers the file's written pages, and the file is only ever overwritten, not
 * replaced, while the database is open), and the writer waits for commit n only when it
 * must: before it lets a later commit run too far ahead (store.c), before it says commit
 * n is done, and before it stops.
 *
 * Locks: `lock` guards the counters; the sync itself runs without it. */
#include "wal_sync.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

struct wal_sync {
  int fd; /* the log, opened read-only: this file never writes it */
  char *path;
  wal_sync_fn fn;
  void *fn_ud;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake; /* the thread: something was written, or stop */
  pthread_cond_t done; /* waiters: a sync ended */
  uint64_t written;    /* the last commit written */
  uint64_t synced;     /* the last commit durable */
  int error;           /* errno of the first failed sync (0: none); nothing is synced after it */
  void (*on_synced)(void *ud); /* told after each sync, under the lock */
  void *on_synced_ud;
  int stop;
  long runs;
};

static int sync_fd(int fd, void *ud) {
  (void)ud;
  return fdatasync(fd);
}

static void *run(void *arg) {
  wal_sync_t *w = arg;
  pthread_mutex_lock(&w->lock);
  for (;;) {
    while (w->written == w->synced && !w->stop && !w->error) pthread_cond_wait(&w->wake, &w->lock);
    if (w->error || w->written == w->synced) break; /* stopped, with everything synced */
    uint64_t upto = w->written; /* its frames are in the file: a sync from here covers them */
    pthread_mutex_unlock(&w->lock);
    int rc = w->fn(w->fd, w->fn_ud), why = errno;
    pthread_mutex_lock(&w->lock);
    if (rc < 0) w->error = why ? why : EIO;
    else w->synced = upto;
    w->runs++;
    pthread_cond_broadcast(&w->done);
    if (w->on_synced) w->on_synced(w->on_synced_ud);
  }
  pthread_cond_broadcast(&w->done);
  pthread_mutex_unlock(&w->lock);
  return NULL;
}

/* The directory of path, synced: a log just made has its name on disk. */
static int sync_dir(const char *path) {
  char *copy = xstrdup(path);
  int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  free(copy);
  if (fd < 0) return -1;
  int rc = fsync(fd), why = errno;
  close(fd);
  errno = why;
  return rc;
}

wal_sync_t *wal_sync_start(const char *wal_path, char *err, size_t errlen) {
  wal_sync_t *w = xcalloc(1, sizeof *w);
  w->path = xstrdup(wal_path);
  w->fn = sync_fd;
  w->fd = open(w->path, O_RDONLY | O_CLOEXEC);
  if (w->fd < 0 || sync_dir(w->path) < 0) {
    set_err(err, errlen, "%s: %s", w->path, strerror(errno));
    goto fail;
  }
  pthread_mutex_init(&w->lock, NULL);
  pthread_cond_init(&w->wake, NULL);
  pthread_cond_init(&w->done, NULL);
  int rc = pthread_create(&w->thread, NULL, run, w);
  if (rc != 0) {
    set_err(err, errlen, "cannot start the log's sync thread: %s", strerror(rc));
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->done);
    goto fail;
  }
  return w;
fail:
  if (w->fd >= 0) close(w->fd);
  free(w->path);
  free(w);
  return NULL;
}

void wal_sync_use(wal_sync_t *w, wal_sync_fn fn, void *ud) {
  pthread_mutex_lock(&w->lock);
  w->fn = fn ? fn : sync_fd;
  w->fn_ud = ud;
  pthread_mutex_unlock(&w->lock);
}

void wal_sync_written(wal_sync_t *w, uint64_t n) {
  pthread_mutex_lock(&w->lock);
  if (n > w->written) w->written = n;
  pthread_cond_signal(&w->wake);
  pthread_mutex_unlock(&w->lock);
}

static int sync_failed(wal_sync_t *w, int error, char *err, size_t errlen) {
  set_err(err, errlen, "cannot sync the write-ahead log %s: %s (what was committed since its last sync may not be on disk)",
          w->path, strerror(error));
  return -1;
}

int wal_sync_wait(wal_sync_t *w, uint64_t n, char *err, size_t errlen) {
  pthread_mutex_lock(&w->lock);
  while (w->synced < n && !w->error) pthread_cond_wait(&w->done, &w->lock);
  int error = w->synced < n ? w->error : 0;
  pthread_mutex_unlock(&w->lock);
  return error ? sync_failed(w, error, err, errlen) : 0;
}

int wal_sync_durable(wal_sync_t *w, uint64_t n, char *err, size_t errlen) {
  pthread_mutex_lock(&w->lock);
  int durable = w->synced >= n, error = w->error;
  pthread_mutex_unlock(&w->lock);
  if (durable) return 1;
  return error ? sync_failed(w, error, err, errlen) : 0;
}

void wal_sync_on_synced(wal_sync_t *w, void (*fn)(void *ud), void *ud) {
  pthread_mutex_lock(&w->lock);
  w->on_synced = fn;
  w->on_synced_ud = ud;
  pthread_mutex_unlock(&w->lock);
}

uint64_t wal_sync_synced(wal_sync_t *w) {
  pthread_mutex_lock(&w->lock);
  uint64_t n = w->synced;
  pthread_mutex_unlock(&w->lock);
  return n;
}

long wal_sync_runs(wal_sync_t *w) {
  pthread_mutex_lock(&w->lock);
  long n = w->runs;
  pthread_mutex_unlock(&w->lock);
  return n;
}

void wal_sync_stop(wal_sync_t *w) {
  if (!w) return;
  pthread_mutex_lock(&w->lock);
  w->stop = 1;
  pthread_cond_signal(&w->wake);
  pthread_mutex_unlock(&w->lock);
  pthread_join(w->thread, NULL);
  pthread_mutex_destroy(&w->lock);
  pthread_cond_destroy(&w->wake);
  pthread_cond_destroy(&w->done);
  close(w->fd);
  free(w->path);
  free(w);
}
