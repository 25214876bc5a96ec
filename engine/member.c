/* member: member records, the member cache (a hash by id and two recency lists, kept
 * across batches up to a memory bound: a segmented least-recently-used policy, so that a sweep
 * through every member does not push out the regulars) and handler undo (see member.h).
 * The policy is the textbook segmented LRU (a probation and a protected segment); the code
 * is our own. */
#include "member.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "json_compact.h"
#include "json_read.h"
#include "log.h"
#include "util.h"

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

json_t *member_part(member_t *m, int which) {
  if (!m->part[which]) {
    const char *t = m->text[which];
    json_t *v = t && !(t[0] == '{' && t[1] == '}' && !t[2]) ? jr_loads(t, 0, NULL) : NULL;
    if (!json_is_object(v)) {
      json_decref(v);
      v = json_object();
    }
    m->part[which] = v;
  }
  return m->part[which];
}

int64_t member_bytes(member_t *m) {
  if (m->bytes < 0) {
    int64_t n = 0;
    for (int which = MP_ATTRS; which <= MP_TAGS; which++) {
      if (m->part[which]) /* an empty one ("{}"): a new member's, at her first change */
        n += json_object_size(m->part[which]) ? (int64_t)json_dumpb(m->part[which], NULL, 0, JSON_COMPACT) : 2;
      else
        n += m->text[which] ? (int64_t)strlen(m->text[which]) : 2;
    }
    m->bytes = n;
  }
  return m->bytes;
}

void member_touch(member_t *m, int which) {
  if (which == MP_ATTRS || which == MP_TAGS) m->bytes = -1; /* a built-in change: measure again */
  member_part(m, which);
  m->part_dirty |= 1u << which;
  m->dirty = 1;
}

/* Load the row for id; 1 found, 0 absent, -1 error. */
static int load_row(store_t *s, member_t *m) {
  member_row_t row;
  int found = store_member_get(s, m->id, &row);
  if (found != 1) return found;
  m->created_at = row.created_at;
  m->joined_at = row.joined_at;
  m->last_active_at = row.last_active_at;
  m->orders = row.orders;
  m->spend = row.spend;
  m->points = row.points;
  m->ledger_n = row.ledger_n;
  m->text[MP_ATTRS] = row.attrs;
  m->text[MP_TAGS] = row.tags;
  m->text[MP_GENS] = row.gens;
  m->text[MP_SENDS] = row.sends;
  m->rid = row.rid;
  return 1;
}

static member_t *member_new(const char *id, int64_t now) {
  member_t *m = xcalloc(1, sizeof *m);
  m->id = xstrdup(id);
  m->created_at = now;
  m->joined_at = m->last_active_at = NO_TIME;
  m->bytes = -1;
  return m;
}

member_t *member_read(store_t *s, const char *id) {
  member_t *m = member_new(id, 0);
  if (load_row(s, m) != 1) {
    member_free(m);
    return NULL;
  }
  return m;
}

void member_free(member_t *m) {
  if (!m) return;
  for (int i = 0; i < MP_COUNT; i++) {
    json_decref(m->part[i]);
    free(m->text[i]);
  }
  free(m->id);
  free(m);
}

void member_cache_init(member_cache_t *c) {
  memset(c, 0, sizeof *c);
  c->nbuckets = 1024;
  c->buckets = xcalloc(c->nbuckets, sizeof *c->buckets);
  c->round = 1;
}

static void cache_grow(member_cache_t *c) {
  size_t n = c->nbuckets * 2;
  member_t **b = xcalloc(n, sizeof *b);
  for (size_t i = 0; i < c->nbuckets; i++) {
    member_t *m = c->buckets[i], *next;
    for (; m; m = next) {
      next = m->next;
      size_t k = hash_str(m->id) & (n - 1);
      m->next = b[k];
      b[k] = m;
    }
  }
  free(c->buckets);
  c->buckets = b;
  c->nbuckets = n;
}

/* ---- the recency lists ---- */

static void list_unlink(member_list_t *l, member_t *m) {
  assert(l->bytes >= m->foot);
  l->bytes -= m->foot;
  if (m->newer) m->newer->older = m->older;
  else l->newest = m->older;
  if (m->older) m->older->newer = m->newer;
  else l->oldest = m->newer;
  m->newer = m->older = NULL;
  assert(l->count > 0);
  l->count--;
}

static void list_push_newest(member_list_t *l, member_t *m) {
  assert(!m->newer && !m->older && l->newest != m);
  m->older = l->newest;
  if (l->newest) l->newest->newer = m;
  l->newest = m;
  if (!l->oldest) l->oldest = m;
  l->count++;
  l->bytes += m->foot;
}

/* Move her to the newest end of segment seg (MS_*). */
static void move_to(member_cache_t *c, member_t *m, int seg) {
  list_unlink(&c->seg[m->seg], m);
  m->seg = seg;
  list_push_newest(&c->seg[seg], m);
}

/* Her first look-up in this round: the flush will look at her. */
static void join_round(member_cache_t *c, member_t *m) {
  if (c->nround == c->round_cap) {
    c->round_cap = c->round_cap ? c->round_cap * 2 : 256;
    c->round_members = xrealloc(c->round_members, c->round_cap * sizeof *c->round_members);
  }
  c->round_members[c->nround++] = m;
  m->used_round = c->round;
}

/* She was looked up: the newest of her segment; looked up again in a later round than she
 * came in, she is a regular and moves to the protected segment. */
static void mark_used(member_cache_t *c, member_t *m) {
  if (m->used_round != c->round) {
    join_round(c, m);
    if (m->seg == MS_PROBATION) {
      move_to(c, m, MS_PROTECTED);
      return;
    }
  }
  if (c->seg[m->seg].newest != m) move_to(c, m, m->seg);
}

member_t *member_cache_find(member_cache_t *c, const char *id) {
  size_t k = hash_str(id) & (c->nbuckets - 1);
  for (member_t *m = c->buckets[k]; m; m = m->next)
    if (strcmp(m->id, id) == 0) {
      mark_used(c, m);
      return m;
    }
  return NULL;
}

member_t *member_cache_get(member_cache_t *c, store_t *s, const char *id, int64_t now) {
  member_t *m = member_cache_find(c, id);
  if (m) return m;
  m = member_new(id, now);
  int found = load_row(s, m);
  if (found < 0) {
    member_free(m);
    return NULL;
  }
  if (!found) m->dirty = 1;
  if (c->count >= c->nbuckets) cache_grow(c);
  size_t k = hash_str(id) & (c->nbuckets - 1);
  m->next = c->buckets[k];
  c->buckets[k] = m;
  c->count++;
  m->seg = MS_PROBATION;
  list_push_newest(&c->seg[MS_PROBATION], m);
  join_round(c, m);
  return m;
}

/* A part as text to write: a changed part is serialised and becomes the member's text
 * (so a member kept in the cache after commit is written again only with what changed).
 * -1 when it cannot be serialised (out of memory): the write fails, and is logged. */
static int part_text(member_t *m, int which, char **out) {
  if (m->part_dirty & (1u << which)) {
    char *text = jc_dumps(m->part[which]); /* json_dumps(JSON_COMPACT)'s bytes, cheaper */
    if (!text) {
      log_msg(LOG_ERROR, "cannot serialise a member's part", "member", m->id, NULL);
      return -1;
    }
    free(m->text[which]);
    m->text[which] = text;
  }
  *out = m->text[which];
  return 0;
}

static int write_member(store_t *s, member_t *m) {
  member_row_t row = {.id = m->id, .created_at = m->created_at, .joined_at = m->joined_at,
                      .last_active_at = m->last_active_at, .orders = m->orders, .points = m->points,
                      .ledger_n = m->ledger_n, .spend = m->spend};
  if (part_text(m, MP_ATTRS, &row.attrs) < 0 || part_text(m, MP_TAGS, &row.tags) < 0 ||
      part_text(m, MP_GENS, &row.gens) < 0 || part_text(m, MP_SENDS, &row.sends) < 0)
    return -1;
  if (m->rid) { /* the common case: an UPDATE, no insert attempted first */
    row.rid = m->rid;
    int updated = store_member_update(s, &row);
    if (updated != 0) return updated < 0 ? -1 : 0;
  }
  if (store_member_put(s, &row) < 0) return -1; /* new, or her row went (another writer) */
  m->rid = row.rid;
  return 0;
}

#ifndef NDEBUG
/* The invariant the flush relies on: only members of this round can be dirty. */
static int older_rounds_clean(const member_cache_t *c) {
  for (int seg = 0; seg < MS_COUNT; seg++)
    for (const member_t *m = c->seg[seg].newest; m; m = m->older)
      if (m->dirty && m->used_round != c->round) return 0;
  return 1;
}
#endif

int member_cache_flush(member_cache_t *c, store_t *s) {
  assert(older_rounds_clean(c));
  for (size_t i = 0; i < c->nround; i++) {
    member_t *m = c->round_members[i];
    if (!m->dirty) continue;
    if (write_member(s, m) < 0) return -1;
    m->dirty = 0;
    m->part_dirty = 0;
  }
  return 0;
}

/* The next round begins: nobody has been looked up in it yet. */
static void next_round(member_cache_t *c) {
  c->round++;
  c->nround = 0;
}

void member_cache_clear(member_cache_t *c) {
  next_round(c);
  if (!c->count) return;
  for (int seg = 0; seg < MS_COUNT; seg++) {
    for (member_t *m = c->seg[seg].newest, *older; m; m = older) {
      older = m->older;
      member_free(m);
    }
    c->seg[seg] = (member_list_t){0};
  }
  memset(c->buckets, 0, c->nbuckets * sizeof *c->buckets);
  c->count = 0;
}

size_t member_cache_bytes(const member_cache_t *c) {
  return c->seg[MS_PROBATION].bytes + c->seg[MS_PROTECTED].bytes;
}

/* Take her out of her hash chain and her segment, and free her. */
static void drop_member(member_cache_t *c, member_t *m) {
  member_t **link = &c->buckets[hash_str(m->id) & (c->nbuckets - 1)];
  while (*link != m) {
    assert(*link);
    link = &(*link)->next;
  }
  *link = m->next;
  list_unlink(&c->seg[m->seg], m);
  member_free(m);
  c->count--;
}

/* The estimate's constants, measured: the peak RSS of a dry-run of the standard campaigns
 * grows by about 6 KB for each member kept parsed whose parts hold about 750 bytes of
 * text (EVENTS=200000 MEMBERS=20000 tests/bench/run_dry_run.sh with ARGS="--member-cache 1"
 * and ARGS="--member-cache 2048": 261 and 388 MB). Large strings are overestimated
 * (about 7 times), many tiny values underestimated (about 3 times). */
#define MEMBER_FIXED_BYTES 128     /* allocator rounding, her hash and round slots */
#define MEMBER_PARSED_BASE 160     /* an empty jansson object */
#define MEMBER_PARSED_PER_BYTE 7   /* a jansson node per few bytes of compact JSON */

size_t member_footprint(const member_t *m) {
  size_t n = sizeof *m + strlen(m->id) + 1 + MEMBER_FIXED_BYTES;
  for (int which = 0; which < MP_COUNT; which++) {
    size_t text = m->text[which] ? strlen(m->text[which]) + 1 : 0;
    n += text;
    if (m->part[which]) n += MEMBER_PARSED_BASE + MEMBER_PARSED_PER_BYTE * text;
  }
  return n;
}

/* Count again what the members of this round hold (only they can have changed). */
static void recount_round(member_cache_t *c) {
  for (size_t i = 0; i < c->nround; i++) {
    member_t *m = c->round_members[i];
    size_t foot = member_footprint(m);
    member_list_t *l = &c->seg[m->seg];
    assert(l->bytes >= m->foot);
    l->bytes = l->bytes - m->foot + foot;
    m->foot = foot;
  }
}

void member_cache_trim(member_cache_t *c, size_t budget) {
  recount_round(c);
  size_t protected_cap = budget - budget / 4;
  member_list_t *probation = &c->seg[MS_PROBATION], *protected = &c->seg[MS_PROTECTED];
  while (protected->bytes > protected_cap) /* the least recent regulars are on probation again */
    move_to(c, protected->oldest, MS_PROBATION);
  while (member_cache_bytes(c) > budget) {
    member_t *m = probation->oldest ? probation->oldest : protected->oldest;
    assert(m && !m->dirty);
    if (!m) break; /* bytes without members: the sums are wrong (a bug), never loop on NULL */
    drop_member(c, m);
  }
  next_round(c);
}

void member_cache_free(member_cache_t *c) {
  member_cache_clear(c);
  free(c->buckets);
  free(c->round_members);
  c->buckets = NULL;
  c->round_members = NULL;
}

void member_undo_begin(member_undo_t *u, member_t *m) {
  u->m = m;
  u->joined_at = m->joined_at;
  u->last_active_at = m->last_active_at;
  u->orders = m->orders;
  u->points = m->points;
  u->ledger_n = m->ledger_n;
  u->bytes = m->bytes;
  u->spend = m->spend;
  u->dirty = m->dirty;
  u->part_dirty = m->part_dirty;
  u->log = NULL;
  u->n = u->cap = 0;
}

void member_undo_key(member_undo_t *u, int which, const char *key) {
  member_t *m = u->m;
  json_t *part = member_part(m, which);
  if (u->n == u->cap) u->log = xrealloc(u->log, (size_t)(u->cap = u->cap ? u->cap * 2 : 8) * sizeof *u->log);
  undo_entry_t *e = &u->log[u->n++];
  e->part = which;
  e->key = xstrdup(key);
  e->old = json_incref(json_object_get(part, key));
  m->part_dirty |= 1u << which;
  m->dirty = 1;
}

void member_undo_restore(member_undo_t *u) {
  member_t *m = u->m;
  m->joined_at = u->joined_at;
  m->last_active_at = u->last_active_at;
  m->orders = u->orders;
  m->points = u->points;
  m->ledger_n = u->ledger_n;
  m->bytes = u->bytes;
  m->spend = u->spend;
  m->dirty = u->dirty;
  m->part_dirty = u->part_dirty;
  for (int i = u->n - 1; i >= 0; i--) { /* newest first, so the oldest value wins */
    undo_entry_t *e = &u->log[i];
    json_t *part = member_part(m, e->part);
    if (e->old)
      json_object_set(part, e->key, e->old);
    else
      json_object_del(part, e->key);
  }
}

void member_undo_end(member_undo_t *u) {
  for (int i = 0; i < u->n; i++) {
    json_decref(u->log[i].old);
    free(u->log[i].key);
  }
  free(u->log);
  u->log = NULL;
  u->n = u->cap = 0;
}
