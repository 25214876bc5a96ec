/* cmd_stats: `hearth stats`. Totals of the database (members, events remembered, failed
 * events, timers pending, actions by delivery state) and the funnel per campaign, step
 * and variant, as text or --json. Read-only. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"
#include "summary.h"

static const char *usage =
    "usage: hearth stats [--json]\n\n"
    "Print the totals of the database and the funnel per campaign, step and variant:\n"
    "actions by status, and the counters campaigns keep (entered, converted, ...).\n";

static int64_t scalar(store_t *s, const char *sql) {
  sqlite3_stmt *st;
  int64_t v = 0;
  if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) return 0;
  if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

int cmd_stats(int argc, char **argv) {
  cli_t c;
  int rc = cli_parse(&c, argc, argv, "json", usage);
  if (rc) return c.help ? 0 : rc;
  if (access(c.db, F_OK) != 0) {
    fprintf(stderr, "hearth: no database at %s\n", c.db);
    return 1;
  }
  char err[512];
  store_t *s = store_open(c.db, 1, err, sizeof err);
  if (!s) {
    fprintf(stderr, "hearth: %s\n", err);
    return 1;
  }
  struct { const char *name, *sql; } totals[] = {
      {"members", "SELECT count(*) FROM members"},
      {"events_remembered", "SELECT count(*) FROM seen_events"},
      {"failed_events", "SELECT count(*) FROM failed_events"},
      {"timers_pending", "SELECT count(*) FROM timers"},
      {"actions", "SELECT count(*) FROM outbox"},
      {"pending_delivery", "SELECT count(*) FROM outbox WHERE delivery = 'pending'"},
      {"delivered", "SELECT count(*) FROM outbox WHERE delivery = 'delivered'"},
      {"dead_letters", "SELECT count(*) FROM outbox WHERE delivery = 'dead'"},
  };
  size_t n = sizeof totals / sizeof totals[0];
  if (c.json) {
    json_t *root = summary_json(s);
    json_t *t = json_object();
    for (size_t i = 0; i < n; i++) json_object_set_new(t, totals[i].name, json_integer(scalar(s, totals[i].sql)));
    json_object_set_new(root, "totals", t);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", text);
    free(text);
    json_decref(root);
  } else {
    for (size_t i = 0; i < n; i++) printf("%s%s %lld", i ? ", " : "", totals[i].name, (long long)scalar(s, totals[i].sql));
    printf("\n");
    summary_print(s, NULL, 0, stdout);
  }
  store_close(s);
  return 0;
}
