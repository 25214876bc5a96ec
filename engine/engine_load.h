/* engine_load: the bulk member load behind `hearth load`. Owns the member record's format
 * (one JSON object per line: member, attrs, tags, points, staff, tz, joined_at), its
 * validation with errors that name the field, and applying a record inside an open batch
 * through the engine's own change functions (engine_set_attr, engine_tag,
 * engine_add_points) in a call that dispatches no handler, sets no timer and records no
 * action: only the member row, her tag index and the points ledger change. */
#ifndef HEARTH_ENGINE_LOAD_H
#define HEARTH_ENGINE_LOAD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

/* The reason of the ledger entry that brings a loaded balance to its value. */
#define LOAD_REASON "load"

/* One checked member record. */
typedef struct {
  char *member;
  json_t *attrs;      /* an object (null values remove the attribute), or NULL */
  json_t *tags;       /* an array of tag names, or NULL */
  int has_points;
  int64_t points;     /* the balance she is to have */
  json_t *staff, *tz; /* a string, or JSON null (remove), or NULL when absent */
  int64_t joined_at;  /* STORE_NO_TIME when absent */
} load_record_t;

/* What applying records did. */
typedef struct {
  unsigned long members, created, changed, ledger_entries;
} load_stats_t;

/* Parse and check one line. 0 with *r filled (clear it with load_record_clear), or -1 with
 * "field: problem" in err and nothing held. Zones are checked with the engine's. */
int load_record_parse(engine_t *e, const char *text, size_t len, load_record_t *r, char *err, size_t errlen);
void load_record_clear(load_record_t *r);

/* Bring the member to the record inside the open batch: attributes set (equal values are
 * left alone), tags added, the balance set by one ledger entry of the difference (reason
 * LOAD_REASON, cause `cause`), joined_at set. Applying the same record again changes
 * nothing. 0; -1 on a database error (the batch must be rolled back); MEMBER_TOO_BIG with
 * the field in err when her attributes and tags would pass the size cap (the batch must
 * be rolled back too: part of the record may be applied). */
int engine_load_member(engine_t *e, const load_record_t *r, const char *cause, load_stats_t *st, char *err,
                       size_t errlen);

#endif
