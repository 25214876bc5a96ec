/* engine_private: what engine.c, engine_clock.c and engine_changes.c share and nothing
 * else may call. The public interface is engine.h. */
#ifndef HEARTH_ENGINE_PRIVATE_H
#define HEARTH_ENGINE_PRIVATE_H

#include "engine.h"

/* Timers read and fired per batch. */
#define TIMER_BATCH 1000
/* The reserved timer type that brings a deferred send back at the end of quiet hours. */
#define RELEASE_TIMER "hearth.deferred"

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

/* engine_clock.c: each cron entry's next slot as of now. */
void eng_schedule_cron(engine_t *e, int64_t now);

/* engine_changes.c: a release timer fired: judge its deferred send again. EV_*. */
int eng_release_send(engine_t *e, member_t *m, const timer_row_t *r, const event_t *ev, const char *key);

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
