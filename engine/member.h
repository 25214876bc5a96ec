/* member: one member's state in memory while a batch runs, the member cache that maps
 * member ids to loaded records, and the undo snapshot that lets one failing handler be
 * rolled back without touching what other handlers did. Rows are read on first use and
 * written back once per batch, at commit, when dirty. After a commit the cache keeps the
 * members it holds, parsed, for the next batches (up to a memory bound, by a segmented
 * least-recently-used policy); the engine forgets them all on a rollback or when another
 * connection has committed, so a kept member always equals her row. */
#ifndef HEARTH_MEMBER_H
#define HEARTH_MEMBER_H

#include <jansson.h>
#include <stdint.h>

#include "store.h"

#define NO_TIME STORE_NO_TIME

/* The JSON parts of a member, parsed only when used and written back only when changed:
 * attributes (object), tags (object: tag -> true), timer generations (object: timer
 * type -> generation; m:cancel bumps it) and the log of queued marketing sends the caps
 * and quotas count (object: action id -> [time, channel, staff]). */
enum { MP_ATTRS, MP_TAGS, MP_GENS, MP_SENDS, MP_COUNT };

typedef struct member {
  char *id;
  int64_t created_at, joined_at, last_active_at; /* NO_TIME when unset */
  int64_t orders, points, ledger_n;
  double spend;
  json_t *part[MP_COUNT];  /* parsed on first use, else NULL */
  char *text[MP_COUNT];    /* as loaded (NULL for a new member) */
  unsigned part_dirty;     /* bit per part: changed since loaded */
  int dirty;
  int64_t bytes;           /* attributes and tags as compact JSON, or -1 until measured */
  uint64_t used_round;     /* the cache's round (batch) she was last looked up in */
  int64_t rid;             /* her row's key when this connection read or wrote it (an UPDATE
                              may do), else 0 */
  int seg;                 /* the cache's segment she is in (MS_*) */
  size_t foot;             /* her memory as the cache counts it (member_footprint at the
                              last trim; 0 until then) */
  struct member *next;     /* hash chain */
  struct member *newer, *older; /* her segment's recency list (newest: looked up last) */
} member_t;

/* The part, parsed on first use (an empty object when absent or unreadable). */
json_t *member_part(member_t *m, int which);
#define member_attrs(m) member_part((m), MP_ATTRS)
#define member_tags(m) member_part((m), MP_TAGS)
#define member_gens(m) member_part((m), MP_GENS)
#define member_sends(m) member_part((m), MP_SENDS)

/* One key's value before a handler changed it (old NULL: the key was absent). */
typedef struct {
  int part;
  char *key;
  json_t *old;
} undo_entry_t;

/* What a handler may change, saved before it runs: the scalar fields, and for the JSON
 * parts only the keys it changes (so a large attribute costs nothing until touched). */
typedef struct {
  member_t *m;
  int64_t joined_at, last_active_at, orders, points, ledger_n, bytes;
  double spend;
  undo_entry_t *log;
  int n, cap;
  unsigned part_dirty;
  int dirty;
} member_undo_t;

/* The cache's two segments: a member comes in on probation and becomes protected when
 * she is looked up again in a later round (batch); room is made from the least recent on
 * probation first, so one pass over every member (a sweep) leaves the regulars alone.
 * At most three quarters of the bound are protected. */
enum { MS_PROBATION, MS_PROTECTED, MS_COUNT };

typedef struct {
  member_t *newest, *oldest;
  size_t count, bytes; /* bytes: the sum of the members' foot */
} member_list_t;

/* Members by id (a hash), by recency in their segment, and those looked up in the running
 * round (batch), which are the only ones that can be dirty. */
typedef struct {
  member_t **buckets;
  size_t nbuckets, count;
  member_list_t seg[MS_COUNT];
  uint64_t round;
  member_t **round_members;
  size_t nround, round_cap;
} member_cache_t;

/* The memory the cache may keep members in between batches, in MiB, by default
 * (--member-cache). */
#define MEMBER_CACHE_MIB_DEFAULT 256

void member_cache_init(member_cache_t *c);
/* Find or load (or create, at time `now`) the member. NULL on a database error. */
member_t *member_cache_get(member_cache_t *c, store_t *s, const char *id, int64_t now);
/* The member if this batch has it in memory, else NULL (no database access). */
member_t *member_cache_find(member_cache_t *c, const char *id);
/* Write every dirty member back (only members looked up in this round can be dirty).
 * 0 ok, -1 on a database error. */
int member_cache_flush(member_cache_t *c, store_t *s);
/* Forget every member (after a rollback, or when the store changed under the cache). */
void member_cache_clear(member_cache_t *c);
/* After a commit (nothing dirty): count again what the members of this round hold, let
 * members go until they hold at most `budget` bytes (member_footprint), the least recent
 * on probation first, and begin the next round. */
void member_cache_trim(member_cache_t *c, size_t budget);
/* What a member holds in memory, estimated: her record, the parts' text, and for each
 * parsed part its jansson tree (MEMBER_PARSED_PER_BYTE bytes per byte of its text). */
size_t member_footprint(const member_t *m);
void member_cache_free(member_cache_t *c);

/* Read one member straight from the store; NULL when absent. Caller frees with member_free. */
member_t *member_read(store_t *s, const char *id);
void member_free(member_t *m);

void member_undo_begin(member_undo_t *u, member_t *m);
/* Call before changing `key` of a part (MP_*) so the undo can restore it; marks the
 * part dirty. */
void member_undo_key(member_undo_t *u, int which, const char *key);
/* What the cached members hold as member_cache_trim counts it: both segments' sums. */
size_t member_cache_bytes(const member_cache_t *c);
/* Her attributes and tags as compact JSON, in bytes (measured once, then kept up to date
 * by the engine's changes). */
int64_t member_bytes(member_t *m);

/* Mark a part changed outside any handler (built-in fields). */
void member_touch(member_t *m, int which);
void member_undo_restore(member_undo_t *u);
void member_undo_end(member_undo_t *u);

#endif
