/* ingest: body parsing and transactional batches (see ingest.h). */
#include "ingest.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

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

static int parse_array(json_t *arr, event_list_t *out, char *err, size_t errlen) {
  size_t i;
  json_t *v;
  char msg[400];
  json_array_foreach(arr, i, v) {
    event_t *ev = event_list_push(out);
    if (event_from_json(v, ev, msg, sizeof msg) < 0) {
      out->n--;
      set_err(err, errlen, "item %zu: %s", i + 1, msg);
      return -1;
    }
  }
  return 0;
}

int ingest_parse_body(const char *body, size_t len, event_list_t *out, char *err, size_t errlen) {
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
    int rc = parse_array(arr, out, err, errlen);
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
      json_decref(one);
      if (rc < 0) {
        event_list_free(out);
        set_err(err, errlen, "line 1: %s", msg);
        return -1;
      }
      return 0;
    }
  }
  int line = 0;
  for (const char *q = body; q < end;) {
    const char *nl = memchr(q, '\n', (size_t)(end - q));
    const char *le = nl ? nl : end;
    line++;
    if (skip_ws(q, le) < le) {
      char msg[400];
      event_t *ev = event_list_push(out);
      if (event_parse(q, (size_t)(le - q), ev, msg, sizeof msg) < 0) {
        out->n--;
        event_list_free(out);
        set_err(err, errlen, "line %d: %s", line, msg);
        return -1;
      }
    }
    q = nl ? nl + 1 : end;
  }
  return 0;
}

int ingest_batch(engine_t *e, event_t *evs, int n, int *results) {
  if (engine_begin(e) < 0) return -1;
  for (int i = 0; i < n; i++) {
    int rc = engine_apply(e, &evs[i]);
    if (rc == EV_ERROR) {
      engine_rollback(e);
      return -1;
    }
    if (results) results[i] = rc;
  }
  return engine_commit(e);
}
