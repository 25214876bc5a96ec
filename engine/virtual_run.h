/* virtual_run: one run of a script set on a file of events, on a virtual clock, in an
 * in-memory copy of an optional snapshot (never written): what `hearth dry-run` does
 * once and `hearth diff` does twice. The caller hooks the engine's on_action / on_trace
 * before feeding and reads the funnel and the counters before closing. Also the --member
 * selection both commands share. */
#ifndef HEARTH_VIRTUAL_RUN_H
#define HEARTH_VIRTUAL_RUN_H

#include <stdint.h>
#include <stdio.h>

#include "cli.h"

/* --until: a duration after the last event (*rel) or an RFC 3339 time (*abs); with s
 * NULL the default, 30 days after the last event. -1 when s is neither. */
int vrun_parse_until(const char *s, int64_t *abs, int64_t *rel);

/* The engine of a run: c's shared flags, the scripts of scripts_dir, an in-memory copy of
 * --db when it was given (it must exist), a virtual clock. NULL with the reason printed. */
engine_t *vrun_open(const cli_t *c, const char *scripts_dir);

/* Apply every line of `in` (named `name` in messages) in file order, lines dated more
 * than max_future after the real present rejected, then run the clock on to the until
 * time. 0 ok, 1 when reading or the database failed (printed); rejected lines are
 * printed and counted in *rejected. */
int vrun_run(engine_t *e, FILE *in, const char *name, int64_t max_future, int64_t until_abs,
             int64_t until_rel, unsigned long *rejected);

/* 1 when no member was selected (--member not given) or id is one of them. */
int vrun_member_selected(const cli_t *c, const char *id);

#endif
