/* engine_private: what engine.c, engine_clock.c, engine_changes.c and engine_broadcast.c
 * share and nothing else may call. The public interface is engine.h. */
/* engine_private: what engine.c, engine_clock.c, engine_changes.c and engine_load.c share
 * and nothing else may call. The public interface is engine.h (and engine_load.h). */
#ifndef HEARTH_ENGINE_PRIVATE_H
#define HEARTH_ENGINE_PRIVATE_H

#include "engine.h"

/* Timer rows read at once (a batch of fires may read several times). */
#define TIMER_BATCH 1000
/* Timers fired in one transaction by the clock driver (at most; reads of TIMER_BATCH). */
#define TIMERS_PER_COMMIT 5000
/* The reserved timer type that brings a deferred send back at the end of quiet hours. */
#define RELEASE_TIMER "hearth.deferred"

/* The reserved timer type that brings a member's next points expiry or expiry notice. */
#define POINTS_TIMER "hearth.points"

/* engine.c: handler calls. */
void eng_call_begin(engine_t *e, engine_call_t *c);
/* Keep the call's changes (err NULL) or undo them alone and record the failure: 0 kept,
 * 1 failed and recorded, -1 database error. */
int eng_call_end(engine_t *e, engine_call_t *c, const char *err);
/* Open the call's savepoint before its first write; -1 marks the call failed. */
int eng_call_write(engine_t *e, engine_call_t *c);
/* Mark the call failed by the database; returns -1. */
int eng_db_error(engine_call_t *c);
void eng_record_failure(engine_t *e, engine_call_t *c, const char *err);
/* Every handler of the event, each its own call: EV_APPLIED, EV_FAILED or EV_ERROR. */
int eng_dispatch(engine_t *e, member_t *m, const event_t *ev, const char *key, int64_t depth,
                 const char *chain);
/* An event at `now` in the open batch: dedupe, built-ins, handlers. */
int eng_apply_event(engine_t *e, event_t *ev);
void eng_drop_pending(engine_t *e, int mark);

/* engine.c: the batch's funnel counters. */
void eng_funnel_add(engine_t *e, const char *campaign, const char *step, const char *variant,
                    const char *metric, int64_t n);
int64_t eng_funnel_pending(engine_t *e, const char *metric, const char *campaign, const char *step,
                           const char *variant);

/* engine.c: tell the tracer (if any) what happened; t->at is filled in. */
void eng_trace(engine_t *e, engine_trace_t *t);

/* engine_clock.c: each cron entry's next slot as of now. */
void eng_schedule_cron(engine_t *e, int64_t now);

/* engine_clock.c: the clock as work due at t is done (a virtual clock moves to t). */
void eng_move_now(engine_t *e, int64_t t);

/* engine.c: undo a call's changes without recording a failure (an audience predicate).
 * 0, or -1 on a database error. */
int eng_call_discard(engine_t *e, engine_call_t *c);

/* engine_broadcast.c: the clock driver's view of broadcasts. */
void eng_schedule_broadcasts(engine_t *e);
/* Earliest due time of a broadcast not yet running, INT64_MAX if none. */
int64_t eng_next_broadcast(engine_t *e);
/* The broadcast whose sweep is in progress (lowest index first), or -1. */
int eng_broadcast_in_progress(engine_t *e);
/* Mark the earliest broadcast due at or before t running. */
void eng_broadcast_begin(engine_t *e, int64_t t);
/* One chunk of broadcast i's sweep, in a transaction of its own. 0, or -1. */
int eng_broadcast_step(engine_t *e, int i);

/* engine_changes.c: a release timer fired: judge its deferred send again. EV_*. */
int eng_release_send(engine_t *e, member_t *m, const timer_row_t *r, const event_t *ev, const char *key);
/* engine_changes.c: an action's stable id (count: a default id takes the next number),
 * and recording an action under an id already made (engine_act otherwise). */
char *eng_action_id(engine_t *e, engine_call_t *c, const action_spec_t *a, int count);
int eng_act_with_id(engine_t *e, engine_call_t *c, action_spec_t *a, const char *id, int *recorded);

/* engine_points.c: lots. A grant of n points (ledger entry ledger_n) of `campaign` becomes
 * a lot expiring as `expire` says (NULL: the campaign's rule, else never); a spend takes
 * `amount` from the lots, soonest expiry first, and gives the lots it took from as JSON
 * text (*lots, malloc'd). 0, or -1 (the call is marked failed). */
int eng_lot_grant(engine_t *e, engine_call_t *c, int64_t n, int64_t ledger_n, const expiry_t *expire,
                  const char *campaign);
int eng_lots_take(engine_t *e, engine_call_t *c, int64_t amount, char **lots, int64_t *latest_expiry);
/* A POINTS_TIMER fired: expire what is due, send the notices due, arm the next. EV_*. */
int eng_points_due(engine_t *e, member_t *m, const event_t *ev, const char *key);
/* A redemption.refunded event: return the redemption's points and stock, once. EV_*. */
int eng_refund(engine_t *e, member_t *m, const event_t *ev, const char *key);

/* engine_staff.c: the reserved timer type of a hand-off step (staff.left). */
#define HANDOFF_TIMER "hearth.handoff"
/* The member's owner: her `staff` attribute when a non-empty string, else NULL. */
const char *eng_member_staff(const member_t *m);
/* A member's owner changed from `from` to `to` (either NULL): counts, open tasks, log. */
int eng_owner_moved(engine_t *e, const char *member, const char *from, const char *to, const char *rule,
                    const char *cause);
/* After an event's built-ins: the owner change they made (owner_event: they could make one;
 * staff_before: her owner before)
 * and the built-ins of staff.left (start the hand-off) and task.done (close the task). */
int eng_staff_builtins(engine_t *e, member_t *m, const event_t *ev, const char *key, int owner_event,
                       const char *staff_before);
/* One hand-off step: the next window of members; EV_APPLIED or EV_ERROR. */
int eng_handoff_step(engine_t *e, member_t *who, const timer_row_t *r);
/* A queued task action: open it for fields.staff, due at `due`. */
int eng_task_open(engine_t *e, const char *id, const char *member, json_t *fields, int64_t due);

/* versions.c: the loaded set's migration timers (one per run in flight on another version
 * of a definition that declares a migration), due now; logged on a failure. */
void eng_add_migrations(engine_t *e);

/* engine_invariants.c: judge a queued action against the built-in invariants as it is
 * recorded (tallies in the call's transaction), keeping what it broke and, when custom
 * rules exist, her view on p. 0, or -1 on a database error (the call is marked failed). */
int eng_invariants_judge(engine_t *e, engine_call_t *c, pending_action_t *p);
/* A handler call kept its changes: run the custom rules on the actions it recorded
 * (pending[from..]), outside any Lua call; what they find is reported at commit. */
void eng_invariants_settle(engine_t *e, int from);
/* After commit: run the custom rules on p if not done yet, then count and report every
 * violation of p. */
void eng_invariants_report(engine_t *e, pending_action_t *p);
/* 1 when the script set declares any invariant. */
int eng_invariants_on(engine_t *e);

#endif
