/* main: the `hearth` binary. Picks the command and hands it the rest of argv. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *summary;
} commands[] = {
    {"run", cmd_run, "the daemon: HTTP ingest, durable timers in real time, delivery"},
    {"dry-run", cmd_dry_run, "run the scripts against events on a virtual clock; print actions"},
    {"diff", cmd_diff, "run two script folders on the same events; report what changed"},
    {"import", cmd_import, "ingest NDJSON events from a file (or -) into the database"},
    {"test", cmd_test, "run operators' script tests (*_test.lua)"},
    {"check", cmd_check, "load the scripts and report every error as file:line"},
    {"member", cmd_member, "show one member's state as JSON"},
    {"stats", cmd_stats, "database totals and the funnel per campaign, step and variant"},
    {"reload", cmd_reload, "--plan: what loading new scripts would do to the journeys in flight"},
    {"dead-letters", cmd_dead_letters, "list actions whose delivery failed for good; re-queue them"},
    {"broadcast", cmd_broadcast, "list dated one-off sends, count an audience, start one"},
    {"backup", cmd_backup, "copy the database safely while the daemon runs"},
    {"export", cmd_export, "write members, actions or the ledger as NDJSON or CSV"},
    {"load", cmd_load, "load member records (attributes, tags, points, staff) in bulk"},
    {"cluster", cmd_cluster, "scale-out on NATS JetStream: init, status, wait, tick"},
    {"purge", cmd_purge, "remove final actions older than a keep, and expired event ids"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
  fprintf(f, "usage: hearth COMMAND [OPTIONS]\n\n"
             "Hearth: a scriptable rules and campaign engine for member operations.\n\n"
             "Commands:\n");
  for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-13s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\nRun 'hearth COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "--version")) {
    printf("hearth %s\n", HEARTH_VERSION);
    return 0;
  }
  for (size_t i = 0; i < N_COMMANDS; i++)
    if (!strcmp(cmd, commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "hearth: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return EXIT_USAGE;
}
