/* cmd_dead_letters: `hearth dead-letters [--requeue ID | --requeue-all]`. Lists actions
 * whose delivery failed for good, with attempts and the last error; re-queues one or all
 * of them (attempts reset, delivered again by the running daemon with the same
 * Idempotency-Key). The rows are read and written through store.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char *usage =
    "usage: hearth dead-letters [--requeue ID | --requeue-all] [--limit N] [--json]\n\n"
    "List actions whose delivery failed for good (latest first), or put them back in\n"
    "the queue: the daemon delivers them again with the same Idempotency-Key.\n";

typedef struct {
  int json;
  json_t *list;
} listing_t;

/* One dead letter: a line of text, or an element of the --json array. */
static int list_one(void *ud, const dead_letter_t *dl) {
  listing_t *l = ud;
  if (!l->json) {
    printf("%s  channel=%s attempts=%d  %s\n", dl->id, dl->channel, dl->attempts, dl->last_error);
    return 0;
  }
  json_t *a = json_loads(dl->body, 0, NULL);
  json_array_append_new(l->list, json_pack("{s:s, s:s, s:i, s:s, s:o}", "id", dl->id, "channel", dl->channel,
                                           "attempts", dl->attempts, "last_error", dl->last_error,
                                           "action", a ? a : json_null()));
  return 0;
}

/* List the latest `limit` dead letters; 0, or 1 when the database could not be read. */
static int list_dead_letters(store_t *s, int limit, int json) {
  listing_t l = {.json = json, .list = json_array()};
  int count = store_dead_letters(s, limit, list_one, &l);
  if (count < 0) {
    fprintf(stderr, "hearth: cannot read the dead letters: %s\n", store_errmsg(s));
    json_decref(l.list);
    return 1;
  }
  if (json) {
    char *text = json_dumps(l.list, JSON_INDENT(2));
    printf("%s\n", text);
    free(text);
  } else if (count == 0) {
    printf("no dead letters\n");
  }
  json_decref(l.list);
  return 0;
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
    int n = store_dead_requeue(s, c.requeue);
    if (n < 0) {
      fprintf(stderr, "hearth: %s\n", store_errmsg(s));
      status = 1;
    } else if (n == 0 && c.requeue) {
      fprintf(stderr, "hearth: no dead letter with id '%s'\n", c.requeue);
      status = 1;
    } else {
      printf("re-queued %d action%s\n", n, n == 1 ? "" : "s");
    }
  } else {
    status = list_dead_letters(s, c.limit, c.json);
  }
  store_close(s);
  return status;
}
