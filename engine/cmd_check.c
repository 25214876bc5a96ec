/* cmd_check: `hearth check [DIR]`. Loads the scripts in a scratch engine (no database
 * is touched) and reports every load error as file:line: message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "lua_api.h"

static const char *usage =
    "usage: hearth check [DIR]\n\n"
    "Load every script in DIR (default: --scripts, else scripts/) and report each error\n"
    "as file:line: message. Exit status 0 when all load, 1 otherwise.\n";

int cmd_check(int argc, char **argv) {
  cli_t c;
  int rc = cli_parse(&c, argc, argv, "", usage);
  if (rc) return c.help ? 0 : rc;
  if (c.npositional > 1) return cli_usage_error(usage, "check takes at most one folder");
  if (c.npositional == 1) c.scripts = c.positional[0];
  engine_opts_t eo;
  cli_engine_opts(&c, &eo);
  eo.memory_db = 1;
  eo.db_path = NULL;
  char *err;
  engine_t *e = engine_open(&eo, &err);
  if (!e) {
    fprintf(stderr, "%s%s", err, *err && err[strlen(err) - 1] == '\n' ? "" : "\n");
    free(err);
    return 1;
  }
  scripts_t *s = e->scripts;
  int handlers = 0;
  for (int i = 0; i < s->nlists; i++) handlers += s->lists[i].n;
  printf("%s: ok: %d handlers, %d cron entries, %d channels\n", c.scripts, handlers, s->ncrons, s->nchannels);
  engine_close(e);
  return 0;
}
