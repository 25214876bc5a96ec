/* checkpointer: copies a database's write-ahead log into the database file on a thread of
 * its own, so that the connection that writes (an import, the daemon) seldom waits for a
 * checkpoint. Used by store.c only; see checkpointer.c for how it stays bounded. */
#ifndef HEARTH_CHECKPOINTER_H
#define HEARTH_CHECKPOINTER_H

#include <sqlite3.h>
#include <stddef.h>

/* WAL frames (pages) after a commit from which the thread copies the log: 256 MiB of
 * 4 KiB pages. */
#define CHECKPOINT_BACKGROUND_FRAMES 65536

typedef struct checkpointer checkpointer_t;

/* Start checkpointing the database at path (in WAL mode) for the connection `writer` once
 * its log reaches `frames` after a commit (CHECKPOINT_BACKGROUND_FRAMES; tests use fewer):
 * a second connection and a thread. The caller's WAL hook on writer, which replaces
 * SQLite's autocheckpoint, calls checkpointer_committed. NULL (with a message in err) when
 * the connection or the thread cannot be had; the caller then checkpoints as SQLite's
 * autocheckpoint would. */
checkpointer_t *checkpointer_start(const char *path, sqlite3 *writer, int frames, char *err, size_t errlen);
/* From the writer's WAL hook, after each of its commits, with the log's length in frames:
 * wakes the thread at `frames`, or copies the rest itself after the thread's checkpoint. */
void checkpointer_committed(checkpointer_t *c, int frames);
/* Wait for a checkpoint in progress and keep the thread from starting one until release,
 * for a caller that checkpoints or vacuums itself. NULL is allowed (no thread). */
void checkpointer_hold(checkpointer_t *c);
void checkpointer_release(checkpointer_t *c);
/* How many checkpoints the thread has run, for tests and stats. */
long checkpointer_runs(checkpointer_t *c);
/* Stop the thread (waiting for a checkpoint in progress) and close its connection; the
 * caller has removed its hook first. NULL is allowed. */
void checkpointer_stop(checkpointer_t *c);

#endif
