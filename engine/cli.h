/* cli: the command-line layer. Shared flags (--scripts, --db, --tz, --log-level, ...)
 * are parsed by cli_parse; each command lives in its own cmd_*.c file. Exit codes: 0 ok,
 * 1 runtime failure, 2 usage error. */
#ifndef HEARTH_CLI_H
#define HEARTH_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "engine.h"

#define EXIT_USAGE 2
#define CLI_MAX_MEMBERS 64

typedef struct {
  const char *scripts, *db, *tz, *stdlib;
  int64_t dedupe_window;
  long max_member_bytes; /* 0: the default */
  long member_cache_mib; /* 0: the default */
  int help;
  int db_set;         /* --db was given */
  /* command-specific */
  const char *events, *until, *stale_after, *listen, *token_file, *requeue, *virtual_clock;
  const char *at;     /* hearth broadcast start --at TIME */
  int requeue_all;
  int plan;           /* hearth reload --plan */
  int batch, limit, json, quiet, batch_set;
  long max_body, max_backlog;
  long max_connections, max_per_client;   /* 0 when not given */
  int64_t header_timeout, body_timeout;   /* seconds; 0 when not given */
  int64_t max_future;  /* --max-future: seconds an event may be dated ahead (0 = no bound) */
  const char *since, *format, *out; /* export: --since TIME, --format, --out FILE|- */
  long progress;       /* export, load: a progress line every N rows (0: the default) */
  const char *keep, *keep_dead, *archive, *keep_actions; /* hearth purge, hearth run */
  int dry_run, vacuum;
  const char *with;           /* diff: the new scripts (--format: above) */
  const char *cluster;        /* --cluster NATS_URL (run, import, cluster) */
  const char *engine_name, *data, *to, *timeout, *partitions, *replicas, *snapshot_every; /* scale-out */
  int timeline;               /* --timeline (dry-run, diff) */
  const char *members[CLI_MAX_MEMBERS]; /* --member ID, repeatable (dry-run, diff) */
  int nmembers;
  const char *positional[16];
  int npositional;
} cli_t;

/* Which flags a command accepts, as a string of option names separated by spaces
 * ("events until db"): the shared ones are always accepted. */
int cli_parse(cli_t *c, int argc, char **argv, const char *extra, const char *usage);
/* Fill engine options from the shared flags. */
void cli_engine_opts(const cli_t *c, engine_opts_t *o);
/* The help lines of --max-future, for the usage text of the commands that read events.
 * The default, 1h, leaves room for the clock skew between senders (seconds to minutes);
 * an event dated later comes from a wrong clock or a typo and would keep its member
 * active until that date. */
#define CLI_MAX_FUTURE_HELP                                                                  \
  "  --max-future DUR     refuse an event dated more than DUR after the present\n"        \
  "                       (default 1h: room for clock skew between senders; a later\n"    \
  "                       date is a wrong clock or a typo that would keep the member\n"   \
  "                       active until then; 0 = no bound)\n"
/* Print "hearth: <msg>" and return EXIT_USAGE. */
int cli_usage_error(const char *usage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int cmd_import(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_member(int argc, char **argv);
int cmd_dry_run(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_test(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_dead_letters(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_broadcast(int argc, char **argv);
/* One line per broadcast with progress in the store (name, time, state, audience), for
 * `hearth broadcast list` and the dry-run summary. Returns how many, -1 (logged). */
int broadcast_print_rows(engine_t *e, FILE *out);
int cmd_export(int argc, char **argv);
int cmd_load(int argc, char **argv);
int cmd_purge(int argc, char **argv);
int cmd_reload(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_cluster(int argc, char **argv);

#endif
