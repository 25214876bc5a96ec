/* timeline: one member's path as text (see timeline.h). Entries are formatted when they
 * happen (the engine's zone) and sorted by time at the end: actions are reported at
 * commit, after the events of their batch, so arrival order is not time order. */
#include "timeline.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct {
  int64_t at;
  long seq;      /* arrival order, for ties */
  int member;    /* index into ids */
  char when[32]; /* `at` in the engine's zone, formatted while the engine is open */
  char *text;
} entry_t;

struct timeline {
  engine_t *e;
  const char *const *ids;
  int nids;
  entry_t *entries;
  long n, cap;
};

static int member_index(const timeline_t *tl, const char *id) {
  for (int i = 0; id && i < tl->nids; i++)
    if (!strcmp(tl->ids[i], id)) return i;
  return -1;
}

static void add_entry(timeline_t *tl, int member, int64_t at, char *text) {
  if (tl->n == tl->cap) {
    tl->cap = tl->cap ? tl->cap * 2 : 64;
    tl->entries = xrealloc(tl->entries, (size_t)tl->cap * sizeof *tl->entries);
  }
  tl->entries[tl->n] = (entry_t){.at = at, .seq = tl->n, .member = member, .text = text};
  engine_fmt_time(tl->e, at, tl->entries[tl->n].when);
  tl->n++;
}

static const char *or_empty(const char *s) { return s ? s : ""; }

/* "timer    set onboarding: journey.step, due 2026-11-05T10:00:00+08:00" and the like. */
static char *describe_trace(timeline_t *tl, const engine_trace_t *t) {
  char due[32];
  const char *campaign = or_empty(t->campaign);
  switch (t->kind) {
  case TRACE_EVENT:
    return xasprintf("event    %s (%s)", t->type, or_empty(t->detail));
  case TRACE_DUPLICATE:
    return xasprintf("event    %s (%s): a duplicate, not applied", t->type, or_empty(t->detail));
  case TRACE_TIMER_SET:
    return xasprintf("timer    set %s%s%s, due %s%s", campaign, *campaign ? ": " : "", t->type,
                     engine_fmt_time(tl->e, t->due, due), t->detail ? " (emit)" : "");
  case TRACE_TIMER_FIRED:
    return xasprintf("timer    fired %s%s%s", campaign, *campaign ? ": " : "", t->type);
  case TRACE_TIMER_VOID:
    return xasprintf("timer    void %s%s%s (cancelled before it came due; nothing ran)", campaign,
                     *campaign ? ": " : "", t->type);
  case TRACE_CANCEL:
    return xasprintf("timer    cancel %s%s%s", campaign, *campaign ? ": " : "", t->type);
  case TRACE_COUNT: {
    char n[32] = "";
    if (t->n != 1) snprintf(n, sizeof n, " %+lld", (long long)t->n);
    int step = t->step && *t->step, variant = t->variant && *t->variant;
    return xasprintf("count    %s%s%s%s%s: %s%s", campaign, step ? " step " : "", step ? t->step : "",
                     variant ? " variant " : "", variant ? t->variant : "", or_empty(t->detail), n);
  }
  case TRACE_FAILED:
    return xasprintf("failed   %s on %s (its changes were undone): %s", campaign, t->type, or_empty(t->detail));
  }
  assert(0 && "unknown trace kind");
  return xstrdup("?");
}

static void on_trace(void *ud, const engine_trace_t *t) {
  timeline_t *tl = ud;
  int i = member_index(tl, t->member);
  if (i >= 0) add_entry(tl, i, t->at, describe_trace(tl, t));
}

timeline_t *timeline_new(engine_t *e, const char *const *ids, int n) {
  timeline_t *tl = xmalloc(sizeof *tl);
  *tl = (timeline_t){.e = e, .ids = ids, .nids = n};
  e->on_trace = on_trace;
  e->on_trace_ud = tl;
  return tl;
}

/* What the action is about, by kind: the template, the task's text, the tag, the points. */
static char *action_what(const json_t *a) {
  const char *kind = json_string_value(json_object_get(a, "action"));
  kind = kind ? kind : "";
  if (!strcmp(kind, "send"))
    return xasprintf("%s via %s", or_empty(json_string_value(json_object_get(a, "template"))),
                     or_empty(json_string_value(json_object_get(a, "channel"))));
  if (!strcmp(kind, "task")) return xasprintf("\"%s\"", or_empty(json_string_value(json_object_get(a, "text"))));
  if (!strcmp(kind, "tag") || !strcmp(kind, "untag"))
    return xstrdup(or_empty(json_string_value(json_object_get(a, "tag"))));
  if (!strcmp(kind, "points"))
    return xasprintf("%+lld (%s), balance %lld", (long long)json_integer_value(json_object_get(a, "delta")),
                     or_empty(json_string_value(json_object_get(a, "reason"))),
                     (long long)json_integer_value(json_object_get(a, "balance")));
  return xstrdup("");
}

void timeline_action(timeline_t *tl, const json_t *a) {
  int i = member_index(tl, json_string_value(json_object_get(a, "member")));
  if (i < 0) return;
  int64_t at = tl->e->now;
  char err[200];
  const char *time = json_string_value(json_object_get(a, "time"));
  if (time && rfc3339_parse(time, &at, err, sizeof err) < 0) at = tl->e->now; /* the engine wrote it: never */
  const char *step = json_string_value(json_object_get(a, "step"));
  const char *status = json_string_value(json_object_get(a, "status"));
  /* a status's reason is an object (a points action's own "reason" is its text) */
  json_t *reason = json_object_get(a, "reason");
  char *why = json_is_object(reason) ? json_dumps(reason, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  char *what = action_what(a);
  add_entry(tl, i, at,
            xasprintf("action   %s%s%s %s%s%s: %s%s%s", or_empty(json_string_value(json_object_get(a, "campaign"))),
                      step ? "/" : "", or_empty(step), or_empty(json_string_value(json_object_get(a, "action"))),
                      *what ? " " : "", what, or_empty(status), why ? " " : "", why ? why : ""));
  free(what);
  free(why);
}

static int by_member_time(const void *pa, const void *pb) {
  const entry_t *a = pa, *b = pb;
  if (a->member != b->member) return a->member < b->member ? -1 : 1;
  if (a->at != b->at) return a->at < b->at ? -1 : 1;
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

void timeline_print(timeline_t *tl, const char *title, FILE *out) {
  if (tl->n > 1) qsort(tl->entries, (size_t)tl->n, sizeof *tl->entries, by_member_time);
  long k = 0;
  for (int i = 0; i < tl->nids; i++) {
    fprintf(out, "member %s%s%s\n", tl->ids[i], title ? ": " : "", title ? title : "");
    if (k >= tl->n || tl->entries[k].member != i) fputs("  (nothing happened to this member)\n", out);
    for (; k < tl->n && tl->entries[k].member == i; k++)
      fprintf(out, "  %s  %s\n", tl->entries[k].when, tl->entries[k].text);
  }
}

void timeline_free(timeline_t *tl) {
  if (!tl) return;
  for (long i = 0; i < tl->n; i++) free(tl->entries[i].text);
  free(tl->entries);
  free(tl);
}
