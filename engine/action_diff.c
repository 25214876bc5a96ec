/* action_diff: compact per-member action records of two runs and their comparison (see
 * action_diff.h). Hash tables are open addressing with linear probing over FNV-1a hashes
 * (the published 64-bit constants); written for this file. */
#include "action_diff.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "util.h"

/* ---- an interned string table ---- */

typedef struct {
  char **strs;      /* index -> string */
  uint32_t n, cap;
  uint32_t *slots;  /* index + 1, 0 = empty */
  uint32_t nslots;  /* a power of two */
  size_t bytes;
} intern_t;

static uint64_t fnv1a(const char *s) {
  uint64_t h = 14695981039346656037ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static void intern_grow(intern_t *t) {
  uint32_t nslots = t->nslots ? t->nslots * 2 : 256;
  uint32_t *slots = xcalloc(nslots, sizeof *slots);
  for (uint32_t i = 0; i < t->n; i++) {
    uint32_t k = (uint32_t)fnv1a(t->strs[i]) & (nslots - 1);
    while (slots[k]) k = (k + 1) & (nslots - 1);
    slots[k] = i + 1;
  }
  free(t->slots);
  t->slots = slots;
  t->nslots = nslots;
}

/* The index of s, added when new. */
static uint32_t intern(intern_t *t, const char *s) {
  if ((uint64_t)(t->n + 1) * 2 > t->nslots) intern_grow(t);
  uint32_t k = (uint32_t)fnv1a(s) & (t->nslots - 1);
  for (; t->slots[k]; k = (k + 1) & (t->nslots - 1))
    if (!strcmp(t->strs[t->slots[k] - 1], s)) return t->slots[k] - 1;
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 64;
    t->strs = xrealloc(t->strs, t->cap * sizeof *t->strs);
  }
  t->strs[t->n] = xstrdup(s);
  t->bytes += strlen(s) + 1;
  t->slots[k] = ++t->n;
  return t->n - 1;
}

static void intern_free(intern_t *t) {
  for (uint32_t i = 0; i < t->n; i++) free(t->strs[i]);
  free(t->strs);
  free(t->slots);
}

/* ---- records ---- */

typedef struct {
  int64_t time;
  uint64_t id_hash;   /* finds the record again when the same action is judged again */
  uint32_t key;       /* interned "campaign \x1f step \x1f kind" */
  uint32_t what;      /* interned */
  uint32_t seq;       /* order recorded, within the member and run */
  uint8_t status;     /* AS_* */
} rec_t;

typedef struct {
  rec_t *r;
  uint32_t n, cap;
  uint32_t deferred;  /* records still `deferred`: only then can an id come again */
} recs_t;

typedef struct {
  uint32_t id;        /* interned in the members table */
  recs_t run[2];
} member_recs_t;

struct action_diff {
  intern_t keys, whats, ids, campaigns; /* campaigns: also steps and kinds (key_parts) */
  uint32_t (*key_parts)[3];  /* by key index: campaign, step, kind in `campaigns` */
  uint32_t nkey_parts;
  member_recs_t *members; /* by member id's intern index */
  uint32_t cap_members;
  adiff_points_t *points; /* by campaign intern index */
  uint32_t npoints;
  long actions[2];
};

action_diff_t *adiff_new(void) { return xcalloc(1, sizeof(action_diff_t)); }

void adiff_free(action_diff_t *d) {
  if (!d) return;
  for (uint32_t i = 0; i < d->ids.n; i++) free(d->members[i].run[0].r), free(d->members[i].run[1].r);
  free(d->members);
  free(d->points);
  free(d->key_parts);
  intern_free(&d->keys);
  intern_free(&d->whats);
  intern_free(&d->ids);
  intern_free(&d->campaigns);
  free(d);
}

static const char *str_or(const json_t *a, const char *k, const char *dflt) {
  const char *s = json_string_value(json_object_get(a, k));
  return s ? s : dflt;
}

/* What an action is about, by kind (compared between the runs). */
static char *what_of(const json_t *a, const char *kind) {
  if (!strcmp(kind, "send")) return xstrdup(str_or(a, "template", ""));
  if (!strcmp(kind, "task")) return xstrdup(str_or(a, "text", ""));
  if (!strcmp(kind, "tag") || !strcmp(kind, "untag")) return xstrdup(str_or(a, "tag", ""));
  if (!strcmp(kind, "points")) return xasprintf("%+lld", (long long)json_integer_value(json_object_get(a, "delta")));
  return xstrdup("");
}

static member_recs_t *member_of(action_diff_t *d, const char *id) {
  uint32_t i = intern(&d->ids, id);
  if (i >= d->cap_members) {
    uint32_t cap = d->cap_members ? d->cap_members * 2 : 1024;
    while (cap <= i) cap *= 2;
    d->members = xrealloc(d->members, cap * sizeof *d->members);
    memset(d->members + d->cap_members, 0, (cap - d->cap_members) * sizeof *d->members);
    d->cap_members = cap;
  }
  d->members[i].id = i;
  return &d->members[i];
}

static void count_points(action_diff_t *d, int run, const char *campaign, int64_t delta) {
  uint32_t c = intern(&d->campaigns, campaign);
  if (c >= d->npoints) {
    d->points = xrealloc(d->points, (c + 1) * sizeof *d->points);
    memset(d->points + d->npoints, 0, (c + 1 - d->npoints) * sizeof *d->points);
    d->npoints = c + 1;
  }
  d->points[c].campaign = d->campaigns.strs[c];
  if (delta > 0) d->points[c].granted[run] += delta;
  else d->points[c].spent[run] -= delta;
}

/* The index of the (campaign, step, kind) key, its parts kept for the report. */
static uint32_t key_of(action_diff_t *d, const char *campaign, const char *step, const char *kind) {
  char *text = xasprintf("%s\x1f%s\x1f%s", campaign, step, kind);
  uint32_t k = intern(&d->keys, text);
  free(text);
  if (k == d->nkey_parts) {
    d->key_parts = xrealloc(d->key_parts, (k + 1) * sizeof *d->key_parts);
    d->key_parts[k][0] = intern(&d->campaigns, campaign);
    d->key_parts[k][1] = intern(&d->campaigns, step);
    d->key_parts[k][2] = intern(&d->campaigns, kind);
    d->nkey_parts++;
  }
  assert(k < d->nkey_parts);
  return k;
}

void adiff_add(action_diff_t *d, int run, const json_t *a) {
  assert(run == 0 || run == 1);
  const char *kind = str_or(a, "action", ""), *campaign = str_or(a, "campaign", "");
  int status = action_status_parse(str_or(a, "status", ""));
  int64_t time = 0;
  char err[120];
  const char *ts = str_or(a, "time", NULL);
  if (!ts || rfc3339_parse(ts, &time, err, sizeof err) < 0) time = 0; /* the engine wrote it: never */
  recs_t *rs = &member_of(d, str_or(a, "member", ""))->run[run];
  uint64_t h = fnv1a(str_or(a, "id", ""));
  char *what = what_of(a, kind);
  if (rs->deferred) { /* judged again? */
    for (uint32_t i = rs->n; i-- > 0;) {
      rec_t *r = &rs->r[i];
      if (r->id_hash == h && r->status == AS_DEFERRED) {
        r->status = (uint8_t)(status < 0 ? AS_QUEUED : status);
        r->time = time;
        if (r->status != AS_DEFERRED) rs->deferred--;
        free(what);
        return;
      }
    }
  }
  uint32_t key = key_of(d, campaign, str_or(a, "step", ""), kind);
  if (rs->n == rs->cap) {
    rs->cap = rs->cap ? rs->cap * 2 : 4;
    rs->r = xrealloc(rs->r, rs->cap * sizeof *rs->r);
  }
  rs->r[rs->n] = (rec_t){.time = time, .id_hash = h, .key = key, .what = intern(&d->whats, what),
                         .seq = rs->n, .status = (uint8_t)(status < 0 ? AS_QUEUED : status)};
  if (status == AS_DEFERRED) rs->deferred++;
  rs->n++;
  d->actions[run]++;
  if (!strcmp(kind, "points")) count_points(d, run, campaign, json_integer_value(json_object_get(a, "delta")));
  free(what);
}

/* ---- comparison ---- */

static int by_key_time(const void *pa, const void *pb) {
  const rec_t *a = pa, *b = pb;
  if (a->key != b->key) return a->key < b->key ? -1 : 1;
  if (a->time != b->time) return a->time < b->time ? -1 : 1;
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int same_rec(const rec_t *a, const rec_t *b) {
  return a->key == b->key && a->what == b->what && a->time == b->time && a->status == b->status;
}

/* Identical in the order recorded: the common case, settled without sorting. */
static int same_in_order(const recs_t *x, const recs_t *y) {
  if (x->n != y->n) return 0;
  for (uint32_t i = 0; i < x->n; i++)
    if (!same_rec(&x->r[i], &y->r[i])) return 0;
  return 1;
}

static void fill_side(const action_diff_t *d, const rec_t *r, adiff_side_t *s) {
  if (!r) {
    memset(s, 0, sizeof *s);
    return;
  }
  const uint32_t *p = d->key_parts[r->key];
  *s = (adiff_side_t){.campaign = d->campaigns.strs[p[0]], .step = d->campaigns.strs[p[1]],
                      .kind = d->campaigns.strs[p[2]], .what = d->whats.strs[r->what],
                      .status = action_status_names[r->status], .time = r->time};
}

/* Pair the two runs' records by (key, occurrence); count the differing pairs and find
 * the earliest. Both lists are sorted by key and time first. */
static long compare_member(const action_diff_t *d, recs_t *x, recs_t *y, adiff_member_t *out) {
  if (x->n > 1) qsort(x->r, x->n, sizeof *x->r, by_key_time);
  if (y->n > 1) qsort(y->r, y->n, sizeof *y->r, by_key_time);
  long changed = 0;
  int64_t first = INT64_MAX;
  const rec_t *fb = NULL, *fa = NULL;
  uint32_t i = 0, j = 0;
  while (i < x->n || j < y->n) {
    const rec_t *b = i < x->n ? &x->r[i] : NULL, *a = j < y->n ? &y->r[j] : NULL;
    /* records of the same key pair up in order: occurrence k with occurrence k */
    if (b && a && b->key != a->key) {
      if (b->key < a->key) a = NULL;
      else b = NULL;
    }
    if (b) i++;
    if (a) j++;
    if (b && a && b->what == a->what && b->time == a->time && b->status == a->status) continue;
    changed++;
    int64_t t = b && a ? (b->time < a->time ? b->time : a->time) : b ? b->time : a->time;
    if (t < first) first = t, fb = b, fa = a;
  }
  fill_side(d, fb, &out->before);
  fill_side(d, fa, &out->after);
  out->changed = changed;
  return changed;
}

static const action_diff_t *sort_ctx;
static int by_member_id(const void *pa, const void *pb) {
  uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
  return strcmp(sort_ctx->ids.strs[a], sort_ctx->ids.strs[b]);
}

long adiff_members(action_diff_t *d, void (*cb)(void *ud, const adiff_member_t *m), void *ud) {
  uint32_t *order = xmalloc((d->ids.n + 1) * sizeof *order);
  for (uint32_t i = 0; i < d->ids.n; i++) order[i] = i;
  sort_ctx = d;
  if (d->ids.n > 1) qsort(order, d->ids.n, sizeof *order, by_member_id);
  sort_ctx = NULL;
  long n = 0;
  for (uint32_t k = 0; k < d->ids.n; k++) {
    member_recs_t *m = &d->members[order[k]];
    if (same_in_order(&m->run[0], &m->run[1])) continue;
    adiff_member_t out = {.member = d->ids.strs[order[k]]};
    if (!compare_member(d, &m->run[0], &m->run[1], &out)) continue;
    n++;
    cb(ud, &out);
  }
  free(order);
  return n;
}

const adiff_points_t *adiff_points(const action_diff_t *d, int *n) {
  *n = (int)d->npoints;
  return d->points;
}

long adiff_member_count(const action_diff_t *d, int run) {
  long n = 0;
  for (uint32_t i = 0; i < d->ids.n; i++) n += d->members[i].run[run].n > 0;
  return n;
}

long adiff_action_count(const action_diff_t *d, int run) { return d->actions[run]; }

size_t adiff_bytes(const action_diff_t *d) {
  size_t b = d->keys.bytes + d->whats.bytes + d->ids.bytes + d->campaigns.bytes;
  const intern_t *ts[] = {&d->keys, &d->whats, &d->ids, &d->campaigns};
  for (int i = 0; i < 4; i++) b += ts[i]->cap * sizeof(char *) + ts[i]->nslots * sizeof(uint32_t);
  b += d->cap_members * sizeof *d->members + d->npoints * sizeof *d->points + d->nkey_parts * sizeof *d->key_parts;
  for (uint32_t i = 0; i < d->ids.n; i++)
    b += (d->members[i].run[0].cap + d->members[i].run[1].cap) * sizeof(rec_t);
  return b;
}
