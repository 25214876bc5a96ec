/* cmd_dead_letters: `hearth dead-letters [--requeue ID | --requeue-all]`. Lists actions
 * whose delivery failed for good, with attempts and the last error; re-queues one or all
 * of them (attempts reset, delivered again by the running daemon with the same
 * Idempotency-Key). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char *usage =
    "usage: hearth dead-letters [--requeue ID | --requeue-all] [--limit N] [--json]\n\n"
    "List actions whose delivery failed for good (latest first), or put them back in\n"
    "the queue: the daemon delivers them again with the same Idempotency-Key.\n";

static int requeue(store_t *s, const char *id) {
  sqlite3_stmt *st;
  const char *sql = id ? "UPDATE outbox SET delivery = 'pending', attempts = 0, next_at = strftime('%s','now')"
                         " WHERE delivery = 'dead' AND id = ?1"
                       : "UPDATE outbox SET delivery = 'pending', attempts = 0, next_at = strftime('%s','now')"
                         " WHERE delivery = 'dead'";
  if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
  if (id) sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return -1;
  return sqlite3_changes(s->db);
}

int cmd_dead_letters(int argc, char **argv) {
  cli_t c;
  int rc = cli_parse(&c, argc, argv, "requeue requeue-all limit json", usage);
  if (rc) return c.help ? 0 : rc;
  if (access(c.db, F_OK) != 0) {
    fprintf(stderr, "hearth: no database at %s\n", c.db);
    return 1;
  }
  char err[512];
  store_t *s = store_open(c.db, 0, err, sizeof err);
  if (!s) {
    fprintf(stderr, "hearth: %s\n", err);
    return 1;
  }
  int status = 0;
  if (c.requeue || c.requeue_all) {
    int n = requeue(s, c.requeue);
    if (n < 0) {
      fprintf(stderr, "hearth: %s\n", store_errmsg(s));
      status = 1;
    } else if (n == 0 && c.requeue) {
      fprintf(stderr, "hearth: no dead letter with id '%s'\n", c.requeue);
      status = 1;
    } else {
      printf("re-queued %d action%s\n", n, n == 1 ? "" : "s");
    }
    store_close(s);
    return status;
  }
  sqlite3_stmt *st;
  sqlite3_prepare_v2(s->db, "SELECT id, channel, attempts, coalesce(last_error, ''), body FROM outbox"
                            " WHERE delivery = 'dead' ORDER BY seq DESC LIMIT ?1", -1, &st, NULL);
  sqlite3_bind_int(st, 1, c.limit);
  json_t *list = json_array();
  int count = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    const char *id = (const char *)sqlite3_column_text(st, 0);
    const char *ch = (const char *)sqlite3_column_text(st, 1);
    int attempts = sqlite3_column_int(st, 2);
    count++;
    const char *last = (const char *)sqlite3_column_text(st, 3);
    if (c.json) {
      json_t *a = json_loads((const char *)sqlite3_column_text(st, 4), 0, NULL);
      json_array_append_new(list, json_pack("{s:s, s:s, s:i, s:s, s:o}", "id", id, "channel", ch ? ch : "",
                                            "attempts", attempts, "last_error", last, "action", a ? a : json_null()));
    } else {
      printf("%s  channel=%s attempts=%d  %s\n", id, ch ? ch : "", attempts, last);
    }
  }
  sqlite3_finalize(st);
  if (c.json) {
    char *text = json_dumps(list, JSON_INDENT(2));
    printf("%s\n", text);
    free(text);
  } else if (count == 0) {
    printf("no dead letters\n");
  }
  json_decref(list);
  store_close(s);
  return status;
}
