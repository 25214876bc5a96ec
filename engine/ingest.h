/* ingest: from text to events. Owns reading input: the one NDJSON reader (line numbers,
 * blank lines, CRLF) for files, standard input and HTTP bodies, request bodies (one JSON
 * object, a JSON array, or NDJSON) into validated events, and applying a batch of events
 * in one transaction through the engine's clock driver, whole or a slice of wall time at
 * a time. Shared by import, dry-run, the
 * daemon and hearth test. */
#ifndef HEARTH_INGEST_H
#define HEARTH_INGEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "engine.h"
#include "event.h"

typedef struct {
  event_t *v;
  int n, cap;
} event_list_t;

/* NDJSON, a line at a time, from a stream or from memory. A line ends at LF; a CR before
 * it is not part of the line; a line of nothing but spaces, tabs and CRs is blank and
 * skipped (it still counts for line numbers). */
typedef struct {
  FILE *in;                   /* the stream, or NULL for memory */
  const char *pos, *end;      /* memory */
  char *buf;                  /* stream: the line read */
  size_t cap;
  unsigned long lineno;       /* number of the line last returned (1-based) */
} ndjson_reader_t;

void ndjson_from_stream(ndjson_reader_t *r, FILE *in);
void ndjson_from_memory(ndjson_reader_t *r, const char *text, size_t len);
/* The next non-blank line: 1 with *line and *len (not NUL-terminated for memory), 0 at
 * the end, -1 on a read error (errno set). */
int ndjson_next(ndjson_reader_t *r, const char **line, size_t *len);
void ndjson_close(ndjson_reader_t *r);

void event_list_free(event_list_t *l);
/* Clear the events but keep the array for the next batch. */
void event_list_reset(event_list_t *l);
event_t *event_list_push(event_list_t *l);

/* ---- reading ahead: a file's lines read and parsed on a thread of its own ----
 * While the engine applies one chunk of events, the next is read and parsed, so that an
 * import or a dry-run spends its own thread on handlers and the database. Each line is
 * judged as the caller would (event_parse, then event_check_time against the real clock
 * with max_future); a refused line is kept with its number and message, in its place. */
typedef struct {
  unsigned long lineno;
  int before;  /* it came before events.v[before] (events.n: after the last) */
  char *msg;
} ingest_refusal_t;

typedef struct {
  event_list_t events;
  ingest_refusal_t *refused;
  int nrefused, caprefused;
  unsigned long lines;  /* the number of the last line read into this chunk (at the end:
                           of the input's last line, blank or not) */
  int end;              /* nothing follows this chunk */
  int read_errno;       /* with end: reading failed (the errno), else 0 */
} ingest_chunk_t;

typedef struct ingest_ahead ingest_ahead_t;
/* Start reading `in` (not closed here) in chunks of at most `events` events. */
ingest_ahead_t *ingest_ahead_start(FILE *in, int events, int64_t max_future);
/* The next chunk, in order; the one returned before goes back to the reader. Valid until
 * the next call or ingest_ahead_stop. After a chunk with `end`, do not call again. */
ingest_chunk_t *ingest_ahead_next(ingest_ahead_t *a);
/* Stop reading (at once, even in the middle of a read from a pipe) and free everything. */
void ingest_ahead_stop(ingest_ahead_t *a);

/* Parse a body received at `now` (the real present). All or nothing: on the first bad
 * event, one dated more than max_future seconds after now included (0 = no bound),
 * returns -1 with "line N: field: problem" (or "item N: ..." in an array) in err and an
 * empty list. */
int ingest_parse_body(const char *body, size_t len, int64_t now, int64_t max_future, event_list_t *out,
                      char *err, size_t errlen);

/* Feed events to the engine in one transaction (engine_feed, then engine_commit). results
 * (may be NULL) gets one EV_* per event. Returns 0, or -1 on a database error (the batch
 * was rolled back and nothing of it is applied). */
int ingest_batch(engine_t *e, event_t *evs, int n, int *results);
/* The first events of evs in one transaction: as many as fit in slice_ns of wall time
 * (checked after each event, so at least one; 0 = all n), then commit. results (may be
 * NULL) gets one EV_* per event applied. Returns how many were applied and committed,
 * or -1 on a database error (that transaction was rolled back: nothing of it is
 * applied; transactions committed by earlier calls stay). */
int ingest_slice(engine_t *e, event_t *evs, int n, uint64_t slice_ns, int *results);
/* Feed the first events of evs into the open (or a new) transaction without committing:
 * until mono_ns() reaches deadline_ns (checked after each event, so at least one; 0 = all
 * n). Returns how many were fed, or -1 on a database error (the engine rolled the whole
 * transaction back, what was fed before this call included). */
int ingest_feed(engine_t *e, event_t *evs, int n, uint64_t deadline_ns, int *results);

#endif
