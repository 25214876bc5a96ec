/* ingest: body parsing, transactional batches and reading a file ahead (see ingest.h). */
#include "ingest.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "json_read.h"
#include "util.h"

/* ---- the NDJSON reader ---- */

void ndjson_from_stream(ndjson_reader_t *r, FILE *in) {
  memset(r, 0, sizeof *r);
  r->in = in;
}

void ndjson_from_memory(ndjson_reader_t *r, const char *text, size_t len) {
  memset(r, 0, sizeof *r);
  r->pos = text;
  r->end = text + len;
}

static int is_blank(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') return 0;
  return 1;
}

/* One raw line without its LF: 1, 0 at the end, -1 on error. */
static int raw_line(ndjson_reader_t *r, const char **line, size_t *len) {
  if (r->in) {
    errno = 0;
    ssize_t n = getline(&r->buf, &r->cap, r->in);
    if (n < 0) return ferror(r->in) ? -1 : 0;
    *line = r->buf;
    *len = (size_t)n;
    if (*len && r->buf[*len - 1] == '\n') (*len)--;
    return 1;
  }
  if (r->pos >= r->end) return 0;
  const char *nl = memchr(r->pos, '\n', (size_t)(r->end - r->pos));
  *line = r->pos;
  *len = (size_t)((nl ? nl : r->end) - r->pos);
  r->pos = nl ? nl + 1 : r->end;
  return 1;
}

int ndjson_next(ndjson_reader_t *r, const char **line, size_t *len) {
  for (;;) {
    int rc = raw_line(r, line, len);
    if (rc <= 0) return rc;
    r->lineno++;
    if (*len && (*line)[*len - 1] == '\r') (*len)--;
    if (!is_blank(*line, *len)) return 1;
  }
}

void ndjson_close(ndjson_reader_t *r) {
  free(r->buf);
  r->buf = NULL;
  r->cap = 0;
}

/* ---- events ---- */

void event_list_free(event_list_t *l) {
  for (int i = 0; i < l->n; i++) event_clear(&l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = l->cap = 0;
}

void event_list_reset(event_list_t *l) {
  for (int i = 0; i < l->n; i++) event_clear(&l->v[i]);
  l->n = 0;
}

event_t *event_list_push(event_list_t *l) {
  if (l->n == l->cap) l->v = xrealloc(l->v, (size_t)(l->cap = l->cap ? l->cap * 2 : 16) * sizeof *l->v);
  event_t *ev = &l->v[l->n++];
  memset(ev, 0, sizeof *ev);
  return ev;
}

static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
  return p;
}

/* The bound on the future for one parsed event; a refused event is cleared. */
static int within_bound(event_t *ev, int64_t now, int64_t max_future, char *msg, size_t msglen) {
  if (event_check_time(ev, now, max_future, msg, msglen) == 0) return 0;
  event_clear(ev);
  return -1;
}

static int parse_array(json_t *arr, int64_t now, int64_t max_future, event_list_t *out, char *err,
                       size_t errlen) {
  size_t i;
  json_t *v;
  char msg[400];
  json_array_foreach(arr, i, v) {
    event_t *ev = event_list_push(out);
    if (event_from_json(v, ev, msg, sizeof msg) < 0 || within_bound(ev, now, max_future, msg, sizeof msg) < 0) {
      out->n--;
      set_err(err, errlen, "item %zu: %s", i + 1, msg);
      return -1;
    }
  }
  return 0;
}

int ingest_parse_body(const char *body, size_t len, int64_t now, int64_t max_future, event_list_t *out,
                      char *err, size_t errlen) {
  const char *end = body + len, *p = skip_ws(body, end);
  memset(out, 0, sizeof *out);
  if (p == end) {
    set_err(err, errlen, "empty body: expected a JSON object, an array of them, or NDJSON");
    return -1;
  }
  if (*p == '[') {
    json_error_t je;
    json_t *arr = jr_loadb(p, (size_t)(end - p), JSON_REJECT_DUPLICATES, &je);
    if (!arr) {
      set_err(err, errlen, "invalid JSON array at line %d column %d: %s", je.line, je.column, je.text);
      return -1;
    }
    int rc = parse_array(arr, now, max_future, out, err, errlen);
    json_decref(arr);
    if (rc < 0) event_list_free(out);
    return rc;
  }
  /* NDJSON; a single pretty-printed object is one event too */
  if (*p == '{') {
    json_t *one = jr_loadb(p, (size_t)(end - p), JSON_REJECT_DUPLICATES, NULL);
    if (one) {
      char msg[400];
      event_t *ev = event_list_push(out);
      int rc = event_from_json(one, ev, msg, sizeof msg);
      if (rc == 0) rc = within_bound(ev, now, max_future, msg, sizeof msg);
      json_decref(one);
      if (rc < 0) {
        event_list_free(out);
        set_err(err, errlen, "line 1: %s", msg);
        return -1;
      }
      return 0;
    }
  }
  ndjson_reader_t r;
  ndjson_from_memory(&r, body, len);
  const char *line;
  size_t n;
  while (ndjson_next(&r, &line, &n) > 0) {
    char msg[400];
    event_t *ev = event_list_push(out);
    if (event_parse(line, n, ev, msg, sizeof msg) < 0 || within_bound(ev, now, max_future, msg, sizeof msg) < 0) {
      out->n--;
      event_list_free(out);
      set_err(err, errlen, "line %lu: %s", r.lineno, msg);
      return -1;
    }
  }
  return 0;
}

int ingest_feed(engine_t *e, event_t *evs, int n, uint64_t deadline_ns, int *results) {
  int i = 0;
  while (i < n) {
    int rc = engine_feed(e, &evs[i]);
    if (rc == EV_ERROR) return -1; /* the engine rolled the batch back */
    if (results) results[i] = rc;
    i++;
    if (deadline_ns && mono_ns() >= deadline_ns) break;
  }
  return i;
}

int ingest_slice(engine_t *e, event_t *evs, int n, uint64_t slice_ns, int *results) {
  assert(!e->in_batch);
  int i = ingest_feed(e, evs, n, slice_ns ? mono_ns() + slice_ns : 0, results);
  if (i < 0) return -1;
  if (e->in_batch && engine_commit(e) < 0) return -1;
  return i;
}

int ingest_batch(engine_t *e, event_t *evs, int n, int *results) {
  return ingest_slice(e, evs, n, 0, results) < 0 ? -1 : 0;
}

/* ---- reading ahead (see ingest.h) ----
 * Two chunks change hands: the reader fills one while the caller applies the other. A
 * chunk is the reader's until it is marked full, then the caller's until its next call.
 * The reader can be cancelled only while it waits for input, so stopping never leaves a
 * half-made event; what a chunk holds then is freed with it. */

enum { AHEAD_CHUNKS = 2 };

struct ingest_ahead {
  int per_chunk;
  int64_t max_future;
  ndjson_reader_t rd;
  hclock_t wall; /* the real present, for max_future */
  ingest_chunk_t chunk[AHEAD_CHUNKS];
  int full[AHEAD_CHUNKS]; /* made by the reader, not yet given back by the caller */
  int fill, take;         /* the chunk the reader fills next; the one the caller takes next */
  int held;               /* the chunk the caller holds, or -1 */
  int stop;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t changed;
};

static void chunk_clear(ingest_chunk_t *c) {
  event_list_reset(&c->events);
  for (int i = 0; i < c->nrefused; i++) free(c->refused[i].msg);
  c->nrefused = 0;
  c->end = c->read_errno = 0;
}

static void refuse(ingest_chunk_t *c, unsigned long lineno, const char *msg) {
  if (c->nrefused == c->caprefused)
    c->refused = xrealloc(c->refused, (size_t)(c->caprefused = c->caprefused ? c->caprefused * 2 : 16) *
                                          sizeof *c->refused);
  c->refused[c->nrefused++] = (ingest_refusal_t){.lineno = lineno, .before = c->events.n, .msg = xstrdup(msg)};
}

/* Read lines into c until it holds per_chunk lines' worth of events and refusals, or the
 * input ends. */
static void fill_chunk(ingest_ahead_t *a, ingest_chunk_t *c) {
  chunk_clear(c);
  while (c->events.n + c->nrefused < a->per_chunk) {
    const char *line;
    size_t len;
    int ignored;
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &ignored);
    pthread_testcancel();
    errno = 0;
    int more = ndjson_next(&a->rd, &line, &len);
    int why = errno;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &ignored);
    if (more <= 0) {
      c->lines = a->rd.lineno; /* blank lines at the end count too */
      c->end = 1;
      c->read_errno = more < 0 ? (why ? why : EIO) : 0;
      return;
    }
    c->lines = a->rd.lineno;
    char msg[400];
    event_t *ev = event_list_push(&c->events);
    if (event_parse(line, len, ev, msg, sizeof msg) < 0 ||
        event_check_time(ev, clock_now(&a->wall), a->max_future, msg, sizeof msg) < 0) {
      event_clear(ev);
      c->events.n--;
      refuse(c, a->rd.lineno, msg);
    }
  }
}

static void *read_ahead(void *arg) {
  ingest_ahead_t *a = arg;
  int ignored;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &ignored);
  for (;;) {
    pthread_mutex_lock(&a->lock);
    while (a->full[a->fill] && !a->stop) pthread_cond_wait(&a->changed, &a->lock);
    int i = a->fill, stop = a->stop;
    pthread_mutex_unlock(&a->lock);
    if (stop) return NULL;
    fill_chunk(a, &a->chunk[i]);
    pthread_mutex_lock(&a->lock);
    a->full[i] = 1;
    a->fill = (i + 1) % AHEAD_CHUNKS;
    pthread_cond_broadcast(&a->changed);
    pthread_mutex_unlock(&a->lock);
    if (a->chunk[i].end) return NULL;
  }
}

ingest_ahead_t *ingest_ahead_start(FILE *in, int events, int64_t max_future) {
  assert(events > 0);
  ingest_ahead_t *a = xcalloc(1, sizeof *a);
  a->per_chunk = events;
  a->max_future = max_future;
  a->held = -1;
  ndjson_from_stream(&a->rd, in);
  clock_init_real(&a->wall);
  pthread_mutex_init(&a->lock, NULL);
  pthread_cond_init(&a->changed, NULL);
  int rc = pthread_create(&a->thread, NULL, read_ahead, a);
  if (rc != 0) {
    fprintf(stderr, "hearth: cannot start a thread to read input: %s\n", strerror(rc));
    abort(); /* as out of memory: nothing was read yet */
  }
  return a;
}

ingest_chunk_t *ingest_ahead_next(ingest_ahead_t *a) {
  pthread_mutex_lock(&a->lock);
  if (a->held >= 0) {
    assert(!a->chunk[a->held].end); /* nothing follows the last chunk */
    a->full[a->held] = 0;
    a->held = -1;
    pthread_cond_broadcast(&a->changed);
  }
  while (!a->full[a->take]) pthread_cond_wait(&a->changed, &a->lock);
  a->held = a->take;
  a->take = (a->take + 1) % AHEAD_CHUNKS;
  pthread_mutex_unlock(&a->lock);
  return &a->chunk[a->held];
}

void ingest_ahead_stop(ingest_ahead_t *a) {
  pthread_mutex_lock(&a->lock);
  a->stop = 1;
  pthread_cond_broadcast(&a->changed);
  pthread_mutex_unlock(&a->lock);
  pthread_cancel(a->thread); /* acts only while it waits for input */
  int rc = pthread_join(a->thread, NULL);
  assert(rc == 0);
  (void)rc;
  for (int i = 0; i < AHEAD_CHUNKS; i++) {
    chunk_clear(&a->chunk[i]);
    event_list_free(&a->chunk[i].events);
    free(a->chunk[i].refused);
  }
  ndjson_close(&a->rd);
  pthread_cond_destroy(&a->changed);
  pthread_mutex_destroy(&a->lock);
  free(a);
}
