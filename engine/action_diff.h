/* action_diff: the actions of two runs ("before" = run 0, "after" = run 1), kept as
 * compact records per member, and the comparison `hearth diff` reports.
 *
 * Matching. An action is known by its member, campaign, step and kind (send, task, tag,
 * untag, points, webhook) and its occurrence: the k-th action with that key for that
 * member, counted in time order (ties in the order recorded). So a step whose time
 * moves still meets itself, and a repeated step (a journey run again, a weekly cron
 * send) is matched first with first, second with second. Compared: the time, the final
 * status (an action judged again, a deferred send at the end of quiet hours, keeps its
 * last status and the time of that judgement) and what it is about (the template, the
 * task's text, the tag, the points' delta). Reasons are not compared. The member's first
 * difference is the differing pair with the earliest time (either side's).
 *
 * Memory: one 32-byte record per action; campaign/step/kind keys and "what" strings are
 * interned (few distinct values), member ids stored once. */
#ifndef HEARTH_ACTION_DIFF_H
#define HEARTH_ACTION_DIFF_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct action_diff action_diff_t;

/* One side of a difference; campaign NULL when that side has no such action. */
typedef struct {
  const char *campaign, *step, *kind, *what, *status;
  int64_t time;
} adiff_side_t;

typedef struct {
  const char *member;
  long changed;            /* differing pairs */
  adiff_side_t before, after; /* the first of them */
} adiff_member_t;

typedef struct {
  const char *campaign;
  int64_t granted[2], spent[2]; /* spent: the sum of negative deltas, as a positive number */
} adiff_points_t;

action_diff_t *adiff_new(void);
void adiff_free(action_diff_t *d);
/* An action of run 0 or 1 as the engine reported it (an id seen before in the same run
 * is a judgement again: it replaces the earlier record's status and time). */
void adiff_add(action_diff_t *d, int run, const json_t *action);
/* Every member whose actions differ, by member id (bytewise); returns how many. */
long adiff_members(action_diff_t *d, void (*cb)(void *ud, const adiff_member_t *m), void *ud);
/* Points per campaign; n set to the array's length. Entries whose campaign is NULL are
 * unused (the array is indexed by an intern table shared with steps). Borrowed. */
const adiff_points_t *adiff_points(const action_diff_t *d, int *n);
/* Members with at least one action in run `run`; actions kept for it. */
long adiff_member_count(const action_diff_t *d, int run);
long adiff_action_count(const action_diff_t *d, int run);
/* Bytes held by the records and tables (for the measurements in the docs). */
size_t adiff_bytes(const action_diff_t *d);

#endif
