/* cmd_broadcast: `hearth broadcast list|count NAME|start NAME [--at TIME]` against --db.
 * Lists the broadcasts the scripts declare (hearth.broadcast) with their progress in the
 * store, counts one's audience without sending, or arms one to run at a time (default:
 * now): the daemon picks it up within a second, or the next `hearth import` / `hearth
 * run` does. The sweep itself is the engine's (engine_broadcast.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char *usage =
    "usage: hearth broadcast list [--json]\n"
    "       hearth broadcast count NAME [--json]\n"
    "       hearth broadcast start NAME [--at TIME]\n\n"
    "Broadcasts are dated one-off sends the scripts declare with hearth.broadcast{...}.\n"
    "  list    every declared broadcast: its time, state (declared, scheduled, running,\n"
    "          done, expired) and, once it ran, how many members it looked at and sent to\n"
    "  count   how many members are in NAME's audience now (tag, attrs, where), without\n"
    "          sending anything\n"
    "  start   arm NAME to run at TIME (RFC 3339; default now), replacing the script's `at`;\n"
    "          a running daemon starts it at that time, else the next import or run does.\n"
    "          A broadcast runs once: one running or done is refused.\n"
    "Exit status: 0 ok, 1 unknown broadcast or database error, 2 usage error.\n";

static const char *when(engine_t *e, int64_t t, char buf[32]) {
  if (t == STORE_NO_TIME || t == BROADCAST_NO_TIME) return "-";
  return engine_fmt_time(e, t, buf);
}

typedef struct {
  engine_t *e;
  FILE *out;
} print_ctx_t;

static int print_row(void *ud, const broadcast_row_t *r) {
  print_ctx_t *p = ud;
  char tbuf[32];
  fprintf(p->out, "broadcast %s at %s: %s, %lld members in the audience (%lld looked at)\n", r->name,
          when(p->e, r->at, tbuf), r->state, (long long)r->matched, (long long)r->seen);
  return 0;
}

int broadcast_print_rows(engine_t *e, FILE *out) {
  print_ctx_t p = {.e = e, .out = out};
  return store_broadcast_list(e->store, print_row, &p);
}

/* One declared broadcast with its row, as JSON. NULL on a database error. */
static json_t *broadcast_json(engine_t *e, int i) {
  const broadcast_decl_t *b = scripts_broadcast(e->scripts, i);
  broadcast_row_t row;
  int found = store_broadcast_get(e->store, b->name, &row);
  if (found < 0) return NULL;
  char tbuf[32];
  int64_t at = found ? row.at : b->at;
  json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "name", b->name, "campaign", b->campaign, "at",
                        when(e, at, tbuf), "state", found ? row.state : "declared");
  if (found) {
    json_object_set_new(j, "seen", json_integer((json_int_t)row.seen));
    json_object_set_new(j, "matched", json_integer((json_int_t)row.matched));
    store_broadcast_row_free(&row);
  }
  return j;
}

static int list(engine_t *e, int as_json) {
  for (int i = 0; i < scripts_broadcast_count(e->scripts); i++) {
    json_t *j = broadcast_json(e, i);
    if (!j) {
      fprintf(stderr, "hearth: cannot read the broadcasts: %s\n", engine_db_error(e));
      return 1;
    }
    if (as_json) {
      char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
      printf("%s\n", text);
      free(text);
    } else {
      json_t *seen = json_object_get(j, "seen");
      printf("%-20s %-26s %-9s", json_string_value(json_object_get(j, "name")),
             json_string_value(json_object_get(j, "at")), json_string_value(json_object_get(j, "state")));
      if (seen)
        printf(" %lld in the audience of %lld looked at",
               (long long)json_integer_value(json_object_get(j, "matched")), (long long)json_integer_value(seen));
      printf("  (%s)\n", json_string_value(json_object_get(j, "campaign")));
    }
    json_decref(j);
  }
  return 0;
}

static int count(engine_t *e, const char *name, int as_json) {
  int64_t seen, matched;
  int rc = engine_broadcast_count(e, name, &seen, &matched);
  if (rc == BROADCAST_UNKNOWN) {
    fprintf(stderr, "hearth: no broadcast '%s' in the scripts (see 'hearth broadcast list')\n", name);
    return 1;
  }
  if (rc < 0) {
    fprintf(stderr, "hearth: database error counting '%s': %s\n", name, engine_db_error(e));
    return 1;
  }
  if (as_json)
    printf("{\"name\":\"%s\",\"matched\":%lld,\"seen\":%lld}\n", name, (long long)matched, (long long)seen);
  else
    printf("%s: %lld members in the audience (%lld looked at)\n", name, (long long)matched, (long long)seen);
  return 0;
}

static int start(engine_t *e, const char *name, int64_t at) {
  int rc = engine_broadcast_start(e, name, at);
  if (rc == BROADCAST_UNKNOWN) {
    fprintf(stderr, "hearth: no broadcast '%s' in the scripts (see 'hearth broadcast list')\n", name);
    return 1;
  }
  if (rc == BROADCAST_ALREADY) {
    fprintf(stderr, "hearth: broadcast '%s' is running or done already: a broadcast runs once\n", name);
    return 1;
  }
  if (rc < 0) {
    fprintf(stderr, "hearth: database error starting '%s': %s\n", name, engine_db_error(e));
    return 1;
  }
  char tbuf[32];
  printf("%s: scheduled for %s (a running daemon starts it then; else the next import or run)\n", name,
         engine_fmt_time(e, at, tbuf));
  return 0;
}

int cmd_broadcast(int argc, char **argv) {
  cli_t c;
  int rc = cli_parse(&c, argc, argv, "json at", usage);
  if (rc) return c.help ? 0 : rc;
  if (c.npositional < 1) return cli_usage_error(usage, "broadcast needs list, count NAME or start NAME");
  const char *verb = c.positional[0];
  int is_list = !strcmp(verb, "list"), is_count = !strcmp(verb, "count"), is_start = !strcmp(verb, "start");
  if (!is_list && !is_count && !is_start) return cli_usage_error(usage, "unknown broadcast command '%s'", verb);
  if (c.npositional != (is_list ? 1 : 2))
    return cli_usage_error(usage, is_list ? "broadcast list takes no NAME" : "broadcast %s takes one NAME", verb);
  if (c.at && !is_start) return cli_usage_error(usage, "--at goes with broadcast start");
  hclock_t wall;
  clock_init_real(&wall);
  int64_t at = clock_now(&wall);
  char err1[200];
  if (c.at && rfc3339_parse(c.at, &at, err1, sizeof err1) < 0)
    return cli_usage_error(usage, "--at must be an RFC 3339 time: %s", err1);
  if (access(c.db, F_OK) != 0 && !is_start) {
    fprintf(stderr, "hearth: no database at %s (import some events first)\n", c.db);
    return 1;
  }
  engine_opts_t eo;
  cli_engine_opts(&c, &eo);
  char *err;
  engine_t *e = engine_open(&eo, &err);
  if (!e) {
    fprintf(stderr, "hearth: %s%s", err, *err && err[strlen(err) - 1] == '\n' ? "" : "\n");
    free(err);
    return 1;
  }
  int status = is_list ? list(e, c.json) : is_count ? count(e, c.positional[1], c.json) : start(e, c.positional[1], at);
  engine_close(e);
  return status;
}
