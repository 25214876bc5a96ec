/* wal_sync: a database's write-ahead log made durable on a thread of its own, so that a
 * writer's commit returns once its pages are written (SQLite's synchronous=NORMAL) and the
 * next transaction runs while this thread syncs the log. Commits are numbered 1, 2, ...
 * by the caller; a sync covers every commit written before it began (store.c bounds how
 * many commits may wait for theirs). Used by store.c only. This file speaks no SQL. */
#ifndef HEARTH_WAL_SYNC_H
#define HEARTH_WAL_SYNC_H

#include <stddef.h>
#include <stdint.h>

typedef struct wal_sync wal_sync_t;

/* How the log is synced: fdatasync(fd) by default; tests put in one that waits or fails.
 * 0, or -1 with errno set. */
typedef int (*wal_sync_fn)(int fd, void *ud);

/* Open the log at wal_path (as SQLite names it: sqlite3_filename_wal; it must exist: the
 * database is in WAL mode and has been written), sync its directory once (so the log's
 * name survives a power loss as SQLite's own first sync would make it), and start the
 * thread. NULL with a message in err when the log cannot be opened or synced or the
 * thread cannot be had. */
wal_sync_t *wal_sync_start(const char *wal_path, char *err, size_t errlen);
/* Sync with fn instead (NULL: fdatasync); for tests. Call before the first
 * wal_sync_written: the thread reads fn without the lock. */
void wal_sync_use(wal_sync_t *w, wal_sync_fn fn, void *ud);
/* Commit n (one more than the last) is written: sync it. */
void wal_sync_written(wal_sync_t *w, uint64_t n);
/* Wait until commit n is durable: 0, or -1 with the sync's error in err (a failed sync
 * leaves every later commit unsynced too: the caller stops writing). */
int wal_sync_wait(wal_sync_t *w, uint64_t n, char *err, size_t errlen);
/* Call fn(ud) on the thread after each sync ends (or fails), with the thread's lock held:
 * fn must be quick and must not call back here (uv_async_send is). NULL stops the calls;
 * once this returns, fn is not running and will not run again. */
void wal_sync_on_synced(wal_sync_t *w, void (*fn)(void *ud), void *ud);
/* Without waiting: 1 when commit n is durable, 0 when not yet, -1 when a sync failed
 * (with its error in err). */
int wal_sync_durable(wal_sync_t *w, uint64_t n, char *err, size_t errlen);
/* Without waiting: the last commit durable (0 before the first). */
uint64_t wal_sync_synced(wal_sync_t *w);
/* How many syncs the thread has run, for tests. */
long wal_sync_runs(wal_sync_t *w);
/* Sync what was written, stop the thread and close the log. NULL is allowed. */
void wal_sync_stop(wal_sync_t *w);

#endif
