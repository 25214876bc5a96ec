/* versions: the engine's side of script versions. Every load of a script set (start,
 * SIGHUP, import, dry-run, test) is a version, the SHA-256 of its manifest (every file
 * loaded, the standard modules required included; see luahost_version). A writable
 * engine notes it in the database with each definition the set declared under its own
 * hash (hearth.keep_version), and gives each run in flight on another version of a
 * definition that declares a migration a timer due at once, which the definition's own
 * code (stdlib/journey.lua) handles. `hearth reload --plan` asks the definitions what a
 * reload would do to every run in flight (versions_plan). */
#ifndef HEARTH_VERSIONS_H
#define HEARTH_VERSIONS_H

#include <jansson.h>

#include "engine.h"

/* The loaded set's hash (64 hex digits), "" before any script set loaded. */
const char *engine_script_version(const engine_t *e);
/* Before the engine takes script set s: when `note`, record s's version and its
 * definitions in one transaction, and warn about journeys kept earlier that s no longer
 * defines while runs of theirs are in flight. 0, or -1 (logged). No batch may be open. */
struct scripts;
int engine_note_versions(engine_t *e, struct scripts *s, int note);
/* After it took it: the set's hash for stats and /metrics; when `note`, the migration
 * timers, due now (at once if the clock runs, else when it starts). */
void engine_versions_adopted(engine_t *e, int note);
/* A definition kept under (kind, name, hash): 1 with malloc'd *body and *label (NULL when
 * it has none), 0 when unknown, -1 (logged). */
int engine_kept_definition(engine_t *e, const char *kind, const char *name, const char *hash,
                           char **body, char **label);
/* What loading the engine's script set does to the runs in flight of its stored state:
 * {"version": SET, "definitions": [{kind, name, hash, label, in_flight, groups: [{version,
 * label, step, action, members}]}]}. NULL on a failure (*err). */
json_t *versions_plan(engine_t *e, char **err);

#endif
