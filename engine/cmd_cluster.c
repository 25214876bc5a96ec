/* cmd_cluster: `hearth cluster init|status|wait|tick`, the operating commands of a
 * scale-out cluster on NATS JetStream (docs/SCALE.md): create its layout, show who owns
 * which partition and how far each is, wait until every partition has applied its whole
 * log, and move every partition's clock (clusters run on a virtual clock). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cluster.h"
#include "timeutil.h"
#include "util.h"

static const char *usage =
    "usage: hearth cluster init   --cluster URL --partitions P [--replicas R]\n"
    "       hearth cluster status --cluster URL [--json]\n"
    "       hearth cluster wait   --cluster URL [--timeout DUR]\n"
    "       hearth cluster tick   --cluster URL --to TIME [--timeout DUR]\n\n"
    "A cluster of engines on NATS JetStream (see docs/SCALE.md).\n"
    "  init    create the partitions' streams and the buckets: P partitions (fixed for the\n"
    "          cluster's life: choose several times the engines you may ever run), each\n"
    "          stream kept in R copies (default 3; 1 for a single NATS server). Running it\n"
    "          again with the same P and R changes nothing.\n"
    "  status  the layout, the live engines, and for each partition its owner, the end of\n"
    "          its log, how far its consumer has acknowledged and what is pending\n"
    "  wait    until every partition has an owner and has acknowledged its whole log (and\n"
    "          what that caused in other partitions): exit 0, or 1 after --timeout\n"
    "          (default 5m)\n"
    "  tick    move every partition's clock to TIME (RFC 3339): what is due by then runs,\n"
    "          and emits it causes in other partitions are applied there in further rounds\n"
    "          of the same time; returns once all of it is applied (--timeout as wait).\n"
    "          For engines run with --virtual-clock (tests, rehearsals)\n"
    "  --cluster URL  NATS servers, e.g. nats://127.0.0.1:4222 (several comma-separated)\n"
    "Exit status: 0 ok, 1 failure (or timeout), 2 usage error.\n";

static int parse_int(const char *s, int lo, int hi, int *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (!*s || *end || v < lo || v > hi) return -1;
  *out = (int)v;
  return 0;
}

static int cmd_init(cluster_t *c, const cli_t *cl) {
  cluster_layout_t l = {.replicas = 3};
  if (!cl->partitions) return cli_usage_error(usage, "init needs --partitions P");
  if (parse_int(cl->partitions, 1, CLUSTER_MAX_PARTITIONS, &l.partitions) < 0)
    return cli_usage_error(usage, "--partitions must be a number from 1 to %d, got '%s'", CLUSTER_MAX_PARTITIONS,
                           cl->partitions);
  if (cl->replicas && parse_int(cl->replicas, 1, 5, &l.replicas) < 0)
    return cli_usage_error(usage, "--replicas must be a number from 1 to 5, got '%s'", cl->replicas);
  char err[512];
  if (cluster_create(c, &l, err, sizeof err) < 0) {
    fprintf(stderr, "hearth: %s\n", err);
    return 1;
  }
  printf("cluster ready: %d partitions, %d replicas each\n", l.partitions, l.replicas);
  return 0;
}

/* Everything about the cluster's progress, as JSON; NULL with err. */
static json_t *read_status(cluster_t *c, const cluster_layout_t *l, char *err, size_t errlen) {
  char **names = NULL, **jsons = NULL;
  int n = 0;
  if (cluster_engines(c, &names, &jsons, &n, err, errlen) < 0) return NULL;
  json_t *engines = json_array();
  for (int i = 0; i < n; i++) {
    json_t *j = jsons && jsons[i] ? json_loads(jsons[i], 0, NULL) : NULL;
    if (!j) j = json_object();
    json_object_set_new(j, "name", json_string(names[i]));
    json_array_append_new(engines, j);
    free(names[i]);
    if (jsons) free(jsons[i]);
  }
  free(names);
  free(jsons);
  json_t *parts = json_array();
  for (int p = 0; p < l->partitions; p++) {
    cluster_progress_t pr;
    char *owner = NULL;
    int rc = -1;
    for (int attempt = 0; attempt < 3 && rc < 0; attempt++) /* a take-over may time a call out */
      rc = cluster_progress(c, p, &pr, err, errlen) < 0 || cluster_lease_owner(c, p, &owner, err, errlen) < 0 ? -1 : 0;
    if (rc < 0) {
      json_decref(engines);
      json_decref(parts);
      return NULL;
    }
    json_array_append_new(parts, json_pack("{s:i, s:s?, s:I, s:I, s:I, s:I}", "partition", p, "owner", owner,
                                           "last_seq", (json_int_t)pr.last_seq, "ack_floor",
                                           (json_int_t)pr.ack_floor, "pending", (json_int_t)pr.pending,
                                           "ack_pending", (json_int_t)pr.ack_pending));
    free(owner);
  }
  return json_pack("{s:{s:i, s:i}, s:o, s:o}", "layout", "partitions", l->partitions, "replicas", l->replicas,
                   "engines", engines, "partitions", parts);
}

static int cmd_status(cluster_t *c, const cluster_layout_t *l, const cli_t *cl) {
  char err[512];
  json_t *s = read_status(c, l, err, sizeof err);
  if (!s) {
    fprintf(stderr, "hearth: %s\n", err);
    return 1;
  }
  if (cl->json) {
    char *text = json_dumps(s, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", text);
    free(text);
    json_decref(s);
    return 0;
  }
  printf("%d partitions, %d replicas\nengines:", l->partitions, l->replicas);
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(s, "engines"), i, v) printf(" %s", json_string_value(json_object_get(v, "name")));
  printf("%s\n\n%-9s %-20s %10s %10s %8s %8s\n", json_array_size(json_object_get(s, "engines")) ? "" : " (none)",
         "partition", "owner", "log end", "acked", "pending", "in work");
  json_array_foreach(json_object_get(s, "partitions"), i, v) {
    const char *owner = json_string_value(json_object_get(v, "owner"));
    printf("%-9lld %-20s %10lld %10lld %8lld %8lld\n", (long long)json_integer_value(json_object_get(v, "partition")),
           owner ? owner : "(none)", (long long)json_integer_value(json_object_get(v, "last_seq")),
           (long long)json_integer_value(json_object_get(v, "ack_floor")),
           (long long)json_integer_value(json_object_get(v, "pending")),
           (long long)json_integer_value(json_object_get(v, "ack_pending")));
  }
  json_decref(s);
  return 0;
}

/* Every partition owned and drained: 1; 0 not yet (*why says which); -1 with err. The
 * sum of the logs' ends is returned too: two drained readings with the same sum in a row
 * mean nothing moved in between (a forward published between two reads is seen). */
static int drained(cluster_t *c, const cluster_layout_t *l, uint64_t *sum, char *why, size_t whylen, char *err,
                   size_t errlen) {
  *sum = 0;
  int ok = 1;
  for (int p = 0; p < l->partitions; p++) {
    cluster_progress_t pr;
    char *owner = NULL;
    if (cluster_progress(c, p, &pr, err, errlen) < 0 || cluster_lease_owner(c, p, &owner, err, errlen) < 0) {
      /* an API call may time out while a consumer is made anew (a take-over): not yet */
      snprintf(why, whylen, "partition %d: %.150s", p, err);
      return 0;
    }
    *sum += pr.last_seq;
    if (ok && !owner) snprintf(why, whylen, "partition %d has no owner", p), ok = 0;
    else if (ok && (pr.ack_floor < pr.last_seq || pr.pending || pr.ack_pending))
      snprintf(why, whylen, "partition %d: %llu of %llu acknowledged", p, (unsigned long long)pr.ack_floor,
               (unsigned long long)pr.last_seq),
          ok = 0;
    free(owner);
  }
  return ok;
}

static int parse_timeout(const cli_t *cl, int64_t *timeout) {
  char err[200];
  *timeout = 300;
  if (cl->timeout && (duration_parse(cl->timeout, timeout, err, sizeof err) < 0 || *timeout <= 0)) {
    cli_usage_error(usage, "--timeout must be a positive duration such as 30s or 5m, got '%s'", cl->timeout);
    return -1;
  }
  return 0;
}

/* Until drained (0), or 1 on timeout or failure (said on stderr). *sum: the logs' ends. */
static int wait_drained(cluster_t *c, const cluster_layout_t *l, int64_t timeout, int quiet, uint64_t *sum_out) {
  char err[512];
  uint64_t start = mono_ns(), last_sum = UINT64_MAX, last_said = start;
  char why[200] = "";
  for (;;) {
    uint64_t sum;
    int rc = drained(c, l, &sum, why, sizeof why, err, sizeof err);
    if (rc < 0) {
      fprintf(stderr, "hearth: %s\n", err);
      return 1;
    }
    if (rc == 1 && sum == last_sum) {
      if (sum_out) *sum_out = sum;
      return 0;
    }
    last_sum = rc == 1 ? sum : UINT64_MAX;
    uint64_t now = mono_ns();
    if (now - start > (uint64_t)timeout * 1000000000u) {
      fprintf(stderr, "hearth: still not drained after %llds: %s\n", (long long)timeout, rc ? "moving" : why);
      return 1;
    }
    if (!quiet && now - last_said > 5000000000ull && rc == 0) {
      fprintf(stderr, "hearth: waiting: %s\n", why);
      last_said = now;
    }
    usleep(rc == 1 ? 200000 : 100000); /* polling for a positive condition */
  }
}

static int cmd_wait(cluster_t *c, const cluster_layout_t *l, const cli_t *cl) {
  int64_t timeout;
  if (parse_timeout(cl, &timeout) < 0) return EXIT_USAGE;
  return wait_drained(c, l, timeout, cl->quiet, NULL);
}

/* One round of ticks at `at` to every partition: 0, -1 (said on stderr). */
static int publish_ticks(cluster_t *c, const cluster_layout_t *l, int64_t at, int round) {
  char body[64], err[512];
  snprintf(body, sizeof body, "{\"at\":%lld,\"round\":%d}", (long long)at, round);
  cluster_out_t *out = xcalloc((size_t)l->partitions, sizeof *out);
  for (int p = 0; p < l->partitions; p++)
    out[p] = (cluster_out_t){.partition = p, .kind = CM_TICK, .body = body, .len = strlen(body)};
  int rc = cluster_publish(c, out, l->partitions, err, sizeof err);
  free(out);
  if (rc < 0) fprintf(stderr, "hearth: %s\n", err);
  return rc;
}

/* A tick runs in rounds: what one round causes in other partitions (hearth.emit across
 * partitions) is applied there at the next round of the same time, until a round causes
 * nothing more; each round is waited for. */
static int cmd_tick(cluster_t *c, const cluster_layout_t *l, const cli_t *cl) {
  if (!cl->to) return cli_usage_error(usage, "tick needs --to TIME (RFC 3339)");
  int64_t at, timeout;
  char err[512];
  if (rfc3339_parse(cl->to, &at, err, sizeof err) < 0) return cli_usage_error(usage, "--to: %s", err);
  if (parse_timeout(cl, &timeout) < 0) return EXIT_USAGE;
  uint64_t before = 0;
  if (wait_drained(c, l, timeout, 1, &before) != 0) return 1; /* what came before is in */
  for (int round = 0; round < CLUSTER_ROUNDS; round++) {
    if (publish_ticks(c, l, at, round) < 0) return 1;
    uint64_t after;
    if (wait_drained(c, l, timeout, cl->quiet, &after) != 0) return 1;
    if (after == before + (uint64_t)l->partitions) return 0; /* only the ticks: nothing crossed */
    before = after;
  }
  fprintf(stderr, "hearth: emits were still crossing partitions after %d rounds at %s\n", CLUSTER_ROUNDS, cl->to);
  return 1;
}

int cmd_cluster(int argc, char **argv) {
  cli_t cl;
  int rc = cli_parse(&cl, argc, argv, "cluster partitions replicas json timeout to quiet", usage);
  if (rc) return cl.help ? 0 : rc;
  if (cl.npositional != 1) return cli_usage_error(usage, "cluster takes one of init, status, wait, tick");
  const char *what = cl.positional[0];
  if (strcmp(what, "init") && strcmp(what, "status") && strcmp(what, "wait") && strcmp(what, "tick"))
    return cli_usage_error(usage, "no cluster command '%s' (init, status, wait, tick)", what);
  if (!cl.cluster) return cli_usage_error(usage, "--cluster URL is needed (the NATS servers)");
  char err[512];
  cluster_t *c = cluster_connect(cl.cluster, "hearth-cluster", err, sizeof err);
  if (!c) {
    fprintf(stderr, "hearth: %s\n", err);
    return 1;
  }
  cluster_layout_t l;
  if (!strcmp(what, "init")) rc = cmd_init(c, &cl);
  else if (cluster_layout(c, &l, err, sizeof err) < 0) fprintf(stderr, "hearth: %s\n", err), rc = 1;
  else if (!strcmp(what, "status")) rc = cmd_status(c, &l, &cl);
  else if (!strcmp(what, "wait")) rc = cmd_wait(c, &l, &cl);
  else rc = cmd_tick(c, &l, &cl);
  cluster_close(c);
  return rc;
}
