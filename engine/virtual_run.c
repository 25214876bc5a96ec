/* virtual_run: a run on the virtual clock over a file of events (see virtual_run.h). The
 * loop was cmd_dry_run.c's; it moved here so that dry-run and diff run the same code. */
#include "virtual_run.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ingest.h"

/* Batches of the in-memory store commit every so often, so the actions they hold are
 * reported and freed. */
#define VRUN_BATCH 20000
/* Lines read and parsed ahead at a time while the engine applies the chunk before. */
#define VRUN_READ_AHEAD 1000

int vrun_parse_until(const char *s, int64_t *abs, int64_t *rel) {
  *abs = INT64_MIN;
  *rel = 30 * 86400;
  if (!s) return 0;
  char err1[200], err2[200];
  if (duration_parse(s, rel, err1, sizeof err1) == 0) return 0;
  *rel = 30 * 86400;
  return rfc3339_parse(s, abs, err2, sizeof err2) == 0 ? 0 : -1;
}

engine_t *vrun_open(const cli_t *c, const char *scripts_dir) {
  if (c->db_set && access(c->db, F_OK) != 0) {
    fprintf(stderr, "hearth: no snapshot database at %s\n", c->db);
    return NULL;
  }
  engine_opts_t eo;
  cli_engine_opts(c, &eo);
  eo.memory_db = 1;
  eo.db_path = c->db_set ? c->db : NULL;
  eo.scripts_dir = scripts_dir;
  char *err;
  engine_t *e = engine_open(&eo, &err);
  if (!e) {
    fprintf(stderr, "hearth: %s%s", err, *err && err[strlen(err) - 1] == '\n' ? "" : "\n");
    free(err);
    return NULL;
  }
  engine_use_virtual_clock(e);
  return e;
}

/* Feed the lines of `in`: 0, or 1 when reading or the database failed. */
static int feed_lines(engine_t *e, FILE *in, const char *name, int64_t max_future, unsigned long *rejected) {
  /* lines are read and parsed ahead, a chunk at a time, on a thread of their own (the
   * real clock judges --max-future there: the engine's clock is virtual) */
  ingest_ahead_t *ahead = ingest_ahead_start(in, VRUN_READ_AHEAD, max_future);
  int status = 0;
  for (;;) {
    ingest_chunk_t *ch = ingest_ahead_next(ahead);
    int r = 0;
    for (int i = 0; status == 0 && i <= ch->events.n; i++) {
      for (; r < ch->nrefused && ch->refused[r].before == i; r++) { /* in their place */
        fprintf(stderr, "%s:%lu: rejected: %s\n", name, ch->refused[r].lineno, ch->refused[r].msg);
        (*rejected)++;
      }
      if (i == ch->events.n) break;
      int rc = engine_feed(e, &ch->events.v[i]);
      if (rc == EV_ERROR || (e->batch_work >= VRUN_BATCH && engine_commit(e) < 0)) {
        fprintf(stderr, "hearth: database error: %s\n", engine_db_error(e));
        status = 1;
      }
    }
    if (status == 0 && ch->read_errno) {
      fprintf(stderr, "hearth: reading %s: %s\n", name, strerror(ch->read_errno));
      status = 1;
    }
    if (ch->end || status) break;
  }
  ingest_ahead_stop(ahead);
  return status;
}

int vrun_run(engine_t *e, FILE *in, const char *name, int64_t max_future, int64_t until_abs,
             int64_t until_rel, unsigned long *rejected) {
  int status = feed_lines(e, in, name, max_future, rejected);
  if (status == 0 && e->in_batch && engine_commit(e) < 0) status = 1;
  if (status == 0) {
    int64_t until = until_abs != INT64_MIN ? until_abs : e->now + until_rel;
    if (engine_run_until(e, e->now, 0) < 0 || engine_run_until(e, until, 0) < 0) status = 1;
  }
  return status;
}

int vrun_member_selected(const cli_t *c, const char *id) {
  if (!c->nmembers) return 1;
  for (int i = 0; i < c->nmembers; i++)
    if (id && !strcmp(c->members[i], id)) return 1;
  return 0;
}
