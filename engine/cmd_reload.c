/* cmd_reload: `hearth reload --plan [--db PATH] [--scripts DIR] [--json]`. Before a
 * reload (SIGHUP, a restart, an import with new scripts): load the new scripts in a
 * sandbox next to an in-memory copy of the stored state and print, per journey, how many
 * runs are in flight per version and step and what loading these scripts does to them
 * (continue on this version, finish on their own, move to a step, restart), warnings
 * first. It changes nothing: the database is never written. The decisions are the
 * journey module's own (its plan function, see versions.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "versions.h"

static const char *usage =
    "usage: hearth reload --plan [--db PATH] [--scripts DIR] [--json]\n\n"
    "Show what loading the scripts in --scripts would do to the journeys in flight in\n"
    "--db, without changing anything: the version each journey would load (a hash of\n"
    "its definition, and its `version` label), and per version and step the runs in\n"
    "flight and what happens to them under the journey's `migrate`: they continue on\n"
    "this version, finish on their own version, move to this version (step renames,\n"
    "steps dropped, steps added) or restart. A run whose step would be dropped is\n"
    "marked WARNING. The reload itself is SIGHUP to `hearth run` (or a restart).\n"
    "  --json               the plan as one JSON object\n"
    "Exit status: 0 ok (warnings included), 1 when the scripts or the database fail,\n"
    "2 usage error.\n";

static void print_text(json_t *plan) {
  printf("script version %s\n", json_string_value(json_object_get(plan, "version")));
  size_t i;
  json_t *d;
  json_array_foreach(json_object_get(plan, "definitions"), i, d) {
    const char *label = json_string_value(json_object_get(d, "label"));
    if (json_is_true(json_object_get(d, "removed")))
      printf("%s %s: no longer defined, %lld in flight\n", json_string_value(json_object_get(d, "kind")),
             json_string_value(json_object_get(d, "name")), (long long)json_integer_value(json_object_get(d, "in_flight")));
    else
      printf("%s %s: loads version %s%s%s%s, %lld in flight\n", json_string_value(json_object_get(d, "kind")),
           json_string_value(json_object_get(d, "name")), json_string_value(json_object_get(d, "hash")),
           label ? " (label " : "", label ? label : "", label ? ")" : "",
           (long long)json_integer_value(json_object_get(d, "in_flight")));
    size_t j;
    json_t *g;
    json_array_foreach(json_object_get(d, "groups"), j, g) {
      const char *gl = json_string_value(json_object_get(g, "label"));
      printf("  %lld on version %s%s%s%s at %s: %s\n", (long long)json_integer_value(json_object_get(g, "members")),
             json_string_value(json_object_get(g, "version")), gl ? " (label " : "", gl ? gl : "", gl ? ")" : "",
             json_string_value(json_object_get(g, "step")), json_string_value(json_object_get(g, "action")));
    }
  }
}

int cmd_reload(int argc, char **argv) {
  cli_t c;
  int rc = cli_parse(&c, argc, argv, "plan json", usage);
  if (rc) return c.help ? 0 : rc;
  if (c.npositional) return cli_usage_error(usage, "unexpected argument '%s'", c.positional[0]);
  if (!c.plan)
    return cli_usage_error(usage, "only --plan is a command: a running daemon reloads on SIGHUP");
  if (access(c.db, F_OK) != 0) {
    fprintf(stderr, "hearth: no database at %s\n", c.db);
    return 1;
  }
  engine_opts_t eo;
  cli_engine_opts(&c, &eo);
  eo.memory_db = 1; /* a copy: the plan never writes the database */
  eo.readonly = 1;  /* and does not note the version it loads */
  char *err;
  engine_t *e = engine_open(&eo, &err);
  if (!e) {
    fprintf(stderr, "hearth: %s%s", err, *err && err[strlen(err) - 1] == '\n' ? "" : "\n");
    free(err);
    return 1;
  }
  json_t *plan = versions_plan(e, &err);
  int status = 0;
  if (!plan) {
    fprintf(stderr, "hearth: %s\n", err ? err : "the plan failed");
    free(err);
    status = 1;
  } else if (c.json) {
    char *text = json_dumps(plan, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", text);
    free(text);
  } else {
    print_text(plan);
  }
  json_decref(plan);
  engine_close(e);
  return status;
}
