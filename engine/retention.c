/* retention: purging final actions and old dedupe marks in chunks, the archive, and
 * giving freed pages back (see retention.h). Our own design; the chunked delete with a
 * short write transaction per chunk follows SQLite's advice for long deletes, and
 * incremental vacuum is SQLite's auto_vacuum = INCREMENTAL. */
#include "retention.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* Free pages given back per shrink step (4 MiB of 4 KiB pages). */
#define RETENTION_SHRINK_PAGES 1024

int retention_begin(store_t *s, const retention_opts_t *o, retention_run_t *r) {
  memset(r, 0, sizeof *r);
  r->actions_done = o->actions_before == INT64_MIN && o->dead_before == INT64_MIN;
  r->seen_done = o->seen_before == INT64_MIN;
  return store_outbox_max_seq(s, &r->max_seq);
}

/* The slot counting `name`: its own, a free one, or the last ("other") when all are taken. */
static int64_t *status_slot(retention_run_t *r, const char *name) {
  for (int i = 0; i < RETENTION_COUNTS - 1; i++) {
    if (!r->by_status[i].name[0]) snprintf(r->by_status[i].name, sizeof r->by_status[i].name, "%s", name);
    if (!strcmp(r->by_status[i].name, name)) return &r->by_status[i].n;
  }
  snprintf(r->by_status[RETENTION_COUNTS - 1].name, sizeof r->by_status[0].name, "other");
  return &r->by_status[RETENTION_COUNTS - 1].n;
}

/* Count n removed rows: "delivered", "dead letter", else by status. */
static void count_status(retention_run_t *r, const char *status, const char *delivery, int64_t n) {
  int dead = delivery && !strcmp(delivery, "dead");
  const char *name = dead ? "dead letter" : delivery && !strcmp(delivery, "delivered") ? "delivered" : status;
  *status_slot(r, name) += n;
  r->actions += n;
  if (dead) r->dead += n;
}

/* ---- the archive ---- */

typedef struct {
  const retention_opts_t *o;
  retention_run_t *r;
  int write_failed;
} archiving_t;

/* One removed row as an archive line: the action as delivered or printed, and its
 * delivery state. */
static int archive_row(void *ud, const purge_row_t *row) {
  archiving_t *a = ud;
  count_status(a->r, row->status, row->delivery, 1);
  if (!a->o->archive) return 0;
  json_t *action = json_loads(row->body, 0, NULL);
  json_t *line = json_pack("{s:o, s:s?, s:i, s:s?}", "action", action ? action : json_string(row->body),
                           "delivery", row->delivery, "attempts", row->attempts, "last_error", row->last_error);
  char *text = line ? json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(line);
  int rc = text && fprintf(a->o->archive, "%s\n", text) >= 0 ? 0 : -1;
  free(text);
  if (rc < 0) a->write_failed = 1;
  return rc;
}

/* Flush and fsync the archive: the lines are on disk before the delete commits. */
static int archive_sync(const retention_opts_t *o, char *err, size_t errlen) {
  if (!o->archive) return 0;
  if (fflush(o->archive) != 0 || fsync(fileno(o->archive)) != 0) {
    set_err(err, errlen, "cannot write the archive %s: %s", o->archive_path, strerror(errno));
    log_msg(LOG_ERROR, "archive write failed", "file", o->archive_path, "error", strerror(errno), NULL);
    return -1;
  }
  return 0;
}

/* ---- the steps ---- */

static void count_row(void *ud, const char *status, const char *delivery, int64_t n) {
  count_status(ud, status, *delivery ? delivery : NULL, n);
}

/* --dry-run: count what a purge would remove, in one read. */
static int dry_run(store_t *s, const retention_opts_t *o, retention_run_t *r) {
  purge_range_t range = {.after_seq = 0, .upto_seq = r->max_seq, .before = o->actions_before,
                         .dead_before = o->dead_before};
  if (!r->actions_done && store_purge_count(s, &range, count_row, r) < 0) return -1;
  if (!r->seen_done && store_seen_count_before(s, o->seen_before, &r->seen) < 0) return -1;
  r->actions_done = r->seen_done = 1;
  return 0;
}

/* One chunk of dedupe marks, in a transaction of its own. */
static int seen_step(store_t *s, const retention_opts_t *o, retention_run_t *r) {
  if (store_begin(s) < 0) return -1;
  int n = store_seen_purge(s, o->seen_before, RETENTION_SEEN_CHUNK);
  if (n < 0 || store_commit(s) < 0) {
    store_rollback(s);
    return -1;
  }
  r->seen += n;
  if (n < RETENTION_SEEN_CHUNK) r->seen_done = 1;
  return 0;
}

/* One span of the outbox: archive what goes, fsync, delete, commit. */
static int actions_step(store_t *s, const retention_opts_t *o, retention_run_t *r, char *err, size_t errlen) {
  purge_range_t range = {.after_seq = r->next_seq, .upto_seq = r->next_seq + RETENTION_SPAN,
                         .before = o->actions_before, .dead_before = o->dead_before};
  if (range.upto_seq > r->max_seq) range.upto_seq = r->max_seq;
  retention_run_t before = *r;
  archiving_t a = {.o = o, .r = r};
  if (store_begin(s) < 0) return -1;
  int n = store_purge_rows(s, &range, archive_row, &a);
  if (n < 0 && a.write_failed) set_err(err, errlen, "cannot write the archive %s: %s", o->archive_path, strerror(errno));
  int rc = n < 0 ? -1 : n > 0 ? archive_sync(o, err, errlen) : 0;
  int deleted = rc == 0 && n > 0 ? store_purge_delete(s, &range) : 0;
  if (deleted < 0) rc = -1;
  assert(rc < 0 || deleted == n); /* the same rows: one transaction, one predicate */
  if (rc == 0 && store_commit(s) < 0) rc = -1;
  if (rc < 0) {
    store_rollback(s);
    *r = before; /* nothing of this span went: counts as before */
    return -1;
  }
  r->next_seq = range.upto_seq;
  if (r->next_seq >= r->max_seq) r->actions_done = 1;
  return 0;
}

int retention_step(store_t *s, const retention_opts_t *o, retention_run_t *r, char *err, size_t errlen) {
  assert(err && errlen > 0);
  *err = '\0';
  if (o->dry_run) return dry_run(s, o, r) < 0 ? -1 : 0;
  if (!r->seen_done && seen_step(s, o, r) < 0) goto db_error;
  if (!r->actions_done && actions_step(s, o, r, err, errlen) < 0) {
    if (*err) return -1;
    goto db_error;
  }
  return r->seen_done && r->actions_done ? 0 : 1;
db_error:
  set_err(err, errlen, "database error: %s", store_errmsg(s));
  return -1;
}

int retention_shrink_step(store_t *s) {
  store_space_t sp;
  if (store_space(s, &sp) < 0) return -1;
  if (!sp.incremental || sp.free_pages == 0) return 0;
  if (store_vacuum_some(s, RETENTION_SHRINK_PAGES) < 0) return -1;
  return sp.free_pages > RETENTION_SHRINK_PAGES;
}
