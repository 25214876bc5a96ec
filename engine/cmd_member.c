/* cmd_member: `hearth member ID`. Prints one member's state as JSON: engine fields,
 * attributes, tags, points with the latest ledger entries, and the latest actions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "member_json.h"

static const char *usage =
    "usage: hearth member ID [--limit N]\n\n"
    "Print member ID as JSON: joined and last-active times, orders, spend, points, attributes,\n"
    "tags, the latest --limit (default 20) points ledger entries and actions, and any\n"
    "failed events. Exit status 1 when there is no such member.\n";

int cmd_member(int argc, char **argv) {
  cli_t c;
  int rc = cli_parse(&c, argc, argv, "limit", usage);
  if (rc) return c.help ? 0 : rc;
  if (c.npositional != 1) return cli_usage_error(usage, "member takes one member ID");
  char err[512];
  store_t *s = access(c.db, F_OK) == 0 ? store_open(c.db, 1, err, sizeof err) : NULL;
  if (!s && access(c.db, F_OK) != 0) snprintf(err, sizeof err, "no database at %s (import some events first)", c.db);
  if (!s) {
    fprintf(stderr, "hearth: %s\n", err);
    return 1;
  }
  tz_t *tz = tz_load(c.tz, err, sizeof err);
  if (!tz) {
    fprintf(stderr, "hearth: %s\n", err);
    store_close(s);
    return 1;
  }
  json_t *j;
  int found = member_json_read(s, tz, c.positional[0], c.limit, &j);
  int status = 0;
  if (found < 0) {
    fprintf(stderr, "hearth: cannot read member '%s' from %s: %s\n", c.positional[0], c.db, store_errmsg(s));
    status = 1;
  } else if (!found) {
    fprintf(stderr, "hearth: no member '%s' in %s\n", c.positional[0], c.db);
    status = 1;
  } else {
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", text);
    free(text);
    json_decref(j);
  }
  tz_free(tz);
  store_close(s);
  return status;
}
