/* retention: what leaves the database, and when. Owns the purge of final actions (kept N
 * days, then removed, optionally appended to an NDJSON archive first) and of dedupe
 * marks older than the window, one chunk per transaction so that a running daemon waits
 * for the write lock one chunk at a time (tens of milliseconds and a commit), never for
 * the whole purge; and the shrinking of the file afterwards. `hearth purge`
 * (cmd_purge.c) and the daemon's hourly retention (daemon.c) run the same steps. Uses
 * store.h only; knows nothing of Lua, HTTP or the loop.
 *
 * What a purge removes: outbox rows older than the keep whose delivery is final —
 * delivered, or a status that is never delivered (capped, suppressed, skipped, limited,
 * expired, and the records of changes) — and, only when asked (a keep of their own),
 * dead letters. Never a pending or leased row, never a deferred one (its release timer
 * judges it again under its id). What it keeps so that nothing happens twice:
 * - a keyed action's id (campaign/member/key: the key can come again at any time) goes
 *   to purged_keys, and a send, task or webhook with that key is refused as before
 *   (keyed points and tags keep theirs in action_keys, as always);
 * - an action whose id comes from its cause (campaign/member/<cause>/<n>) can only come
 *   again with its cause: a timer, a cron slot or an event without id never recur (their
 *   causes are numbered), and an event with an id is refused by its dedupe mark for the
 *   whole window, purge or not;
 * - the funnel: what is removed is added to purged_counts, which the report (hearth
 *   stats, GET /v1/campaigns) counts with the rows still there.
 * A dedupe mark is removed with its generation (store.c "dedupe marks"), once the
 * generation's newest mark is older than the window on the engine's clock: by the
 * contract the same id is then a new event anyway, and a mark older than the window in a
 * generation still kept no longer counts (store_seen_mark compares its own time). Ids imported by `hearth import` are
 * marked at the time of the import at the earliest (engine.h seen_floor), so a file
 * imported twice is refused the second time for the whole window after the first.
 *
 * Design notes: the archive is written and fsynced before the chunk's delete commits, so
 * a crash can only leave a chunk both archived and still in the database (archived again
 * by the next purge: archive lines are at-least-once, unique by id). The chunk is a span
 * of the outbox's seq (RETENTION_SPAN rows looked at), so a step costs the same whatever
 * the outbox holds. */
#ifndef HEARTH_RETENTION_H
#define HEARTH_RETENTION_H

#include <stdint.h>
#include <stdio.h>

#include "store.h"

/* The meta key where the daemon records its dedupe window (seconds, 0 = forever):
 * hearth purge forgets an event id only when it is older than the longer of this and its
 * own --dedupe-window. */
#define RETENTION_WINDOW_KEY "dedupe_window"

/* Outbox rows looked at per chunk (one transaction), and dedupe marks removed per one. */
#define RETENTION_SPAN 2000
#define RETENTION_SEEN_CHUNK 5000

typedef struct {
  int64_t actions_before;  /* final actions older than this go; INT64_MIN: none */
  int64_t dead_before;     /* dead letters older than this go; INT64_MIN: none */
  int64_t seen_before;     /* dedupe marks older than this go; INT64_MIN: none */
  FILE *archive;           /* NULL: no archive; else opened for append */
  const char *archive_path;
  int dry_run;             /* count, change nothing */
} retention_opts_t;

/* Status names counted; the last slot takes any other. */
#define RETENTION_COUNTS 12

/* One purge in progress: where it is, and what it removed so far. */
typedef struct {
  int64_t next_seq;        /* the outbox span starts after this seq */
  int64_t max_seq;         /* the largest seq when the purge started */
  int actions_done, seen_done;
  int64_t actions, dead, seen;
  struct {
    char name[24];
    int64_t n;
  } by_status[RETENTION_COUNTS];
} retention_run_t;

/* Start a purge: reads the outbox's extent. 0, or -1 (logged). */
int retention_begin(store_t *s, const retention_opts_t *o, retention_run_t *r);
/* One step: a chunk of dedupe marks and a span of the outbox, each in a transaction of
 * its own (archive lines written and fsynced before the delete commits). Returns 1 while
 * more is left, 0 when done, -1 on a database or archive error (logged; *err says which). */
int retention_step(store_t *s, const retention_opts_t *o, retention_run_t *r, char *err, size_t errlen);
/* Give free pages back to the file system, a chunk per call (incremental mode only):
 * 1 while free pages are left, 0 when none (or not incremental), -1 (logged). */
int retention_shrink_step(store_t *s);

#endif
