/* peer_events: reads the benchmark's NDJSON events for the peers of run_peer.sh (see
 * peer_events.h). Each line is parsed with jansson's json_loadb, as Hearth's ingest does;
 * the time is parsed and the local day computed with the engine's timeutil.c. */
#include "peer_events.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

int peer_reader_open(peer_reader_t *r, const char *path, const char *tz) {
  char err[256];
  memset(r, 0, sizeof *r);
  r->f = fopen(path, "rb");
  if (!r->f) {
    perror(path);
    return -1;
  }
  r->tz = tz_load(tz, err, sizeof err);
  if (!r->tz) {
    fprintf(stderr, "peer: %s\n", err);
    fclose(r->f);
    r->f = NULL;
    return -1;
  }
  return 0;
}

static const char *string_field(json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

static peer_kind_t kind_of(const char *type) {
  if (!strcmp(type, "checkin")) return PEV_CHECKIN;
  if (!strcmp(type, "order.paid")) return PEV_ORDER;
  if (!strcmp(type, "member.joined")) return PEV_JOINED;
  return PEV_OTHER;
}

static int bad_line(peer_reader_t *r, const char *why) {
  fprintf(stderr, "peer: line %ld: %s\n", r->lineno, why);
  return -1;
}

/* Fill ev from the parsed object of the current line. */
static int fill_event(peer_reader_t *r, json_t *obj, peer_event_t *ev) {
  char err[256];
  const char *when;
  memset(ev, 0, sizeof *ev);
  ev->type = string_field(obj, "type");
  ev->id = string_field(obj, "id");
  ev->member = string_field(obj, "member");
  when = string_field(obj, "time");
  if (!ev->type || !ev->id || !ev->member || !when)
    return bad_line(r, "type, id, member and time must be strings");
  if (rfc3339_parse(when, &ev->time, err, sizeof err) < 0) return bad_line(r, err);
  ev->kind = kind_of(ev->type);
  ev->day = tz_local_day(r->tz, ev->time);
  if (ev->kind == PEV_ORDER) {
    json_t *amount = json_object_get(json_object_get(obj, "data"), "amount");
    if (!json_is_number(amount)) return bad_line(r, "order.paid without a numeric data.amount");
    ev->amount = json_number_value(amount);
  }
  return 0;
}

int peer_reader_next(peer_reader_t *r, peer_event_t *ev) {
  json_error_t jerr;
  ssize_t n;
  json_decref((json_t *)r->json);
  r->json = NULL;
  do {
    n = getline(&r->line, &r->cap, r->f);
    if (n < 0) {
      if (ferror(r->f)) {
        perror("peer: reading events");
        return -1;
      }
      return 0;
    }
    r->lineno++;
    while (n > 0 && (r->line[n - 1] == '\n' || r->line[n - 1] == '\r')) n--;
  } while (n == 0);
  json_t *obj = json_loadb(r->line, (size_t)n, 0, &jerr);
  if (!obj) return bad_line(r, jerr.text);
  r->json = obj;
  if (!json_is_object(obj)) return bad_line(r, "not a JSON object");
  return fill_event(r, obj, ev) < 0 ? -1 : 1;
}

void peer_reader_close(peer_reader_t *r) {
  json_decref((json_t *)r->json);
  r->json = NULL;
  if (r->f) fclose(r->f);
  r->f = NULL;
  tz_free(r->tz);
  r->tz = NULL;
  free(r->line);
  r->line = NULL;
}
