/* ingest: body parsing and transactional batches (see ingest.h). */
#include "ingest.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
    json_t *arr = json_loadb(p, (size_t)(end - p), JSON_REJECT_DUPLICATES, &je);
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
    json_t *one = json_loadb(p, (size_t)(end - p), JSON_REJECT_DUPLICATES, NULL);
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

int ingest_slice(engine_t *e, event_t *evs, int n, uint64_t slice_ns, int *results) {
  assert(!e->in_batch);
  uint64_t started = slice_ns ? mono_ns() : 0;
  int i = 0;
  while (i < n) {
    int rc = engine_feed(e, &evs[i]);
    if (rc == EV_ERROR) return -1; /* the engine rolled the batch back */
    if (results) results[i] = rc;
    i++;
    if (slice_ns && mono_ns() - started >= slice_ns) break;
  }
  if (e->in_batch && engine_commit(e) < 0) return -1;
  return i;
}

int ingest_batch(engine_t *e, event_t *evs, int n, int *results) {
  return ingest_slice(e, evs, n, 0, results) < 0 ? -1 : 0;
}
