/* peer_events: the NDJSON event reader shared by the two peers of the side-by-side
 * benchmark (bench_redis_peer.c, bench_sqlite_ceiling.c; driver run_peer.sh). Reads one
 * line at a time, parses it with jansson as Hearth's ingest does, and gives the fields the
 * streak handlers use, with the local day computed by the engine's own timeutil.c
 * (tz_local_day in the named IANA zone), so all three systems agree on "which day". Our
 * own code; only the file format comes from tests/bench/gen_events.py. */
#ifndef HEARTH_BENCH_PEER_EVENTS_H
#define HEARTH_BENCH_PEER_EVENTS_H

#include <stdint.h>
#include <stdio.h>

#include "timeutil.h"

typedef enum { PEV_JOINED, PEV_CHECKIN, PEV_ORDER, PEV_OTHER } peer_kind_t;

/* One parsed event. The strings point into the reader and live until the next read. */
typedef struct {
  peer_kind_t kind;
  const char *type, *id, *member;
  int64_t time;   /* epoch seconds */
  int64_t day;    /* days since 1970-01-01 of the local date of time */
  double amount;  /* order.paid data.amount, else 0 */
} peer_event_t;

typedef struct {
  FILE *f;
  tz_t *tz;
  char *line;
  size_t cap;
  long lineno;
  void *json;  /* the current line's parsed object (json_t *), released on the next read */
} peer_reader_t;

/* Open FILE and load zone TZ. 0 ok, -1 with a message on stderr. */
int peer_reader_open(peer_reader_t *r, const char *path, const char *tz);
/* The next event: 1 read, 0 end of file, -1 a bad line or read error (message on stderr). */
int peer_reader_next(peer_reader_t *r, peer_event_t *ev);
void peer_reader_close(peer_reader_t *r);

#endif
