/* cmd_run: `hearth run`, the daemon's command line (see daemon.h for what it runs). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cluster_node.h"
#include "daemon.h"
#include "http_auth.h"


static const char *usage =
    "usage: hearth run [--listen ADDR:PORT] [--token-file PATH] [--max-body BYTES]\n"
    "                  [--max-backlog N] [--max-future DUR] [limits]\n\n"
    "The daemon: HTTP ingest (POST /v1/events), durable timers and cron in real time,\n"
    "delivery of queued actions, and the operations API (GET /healthz, /v1/members/ID,\n"
    "/v1/campaigns, /v1/staff, /metrics). SIGTERM or SIGINT stops it cleanly; SIGHUP reloads the\n"
    "scripts (the old ones stay when the new ones fail to load; journey runs in flight\n"
    "keep their version unless the new one declares a migrate: check first with\n"
    "`hearth reload --plan`). Timers, actions and\n"
    "re-queued dead letters that other processes (hearth import, hearth dead-letters)\n"
    "commit meanwhile are picked up within a second.\n\n"
    "  --listen ADDR:PORT   where to listen (default 127.0.0.1:8707; [::1]:8707 for IPv6;\n"
    "                       port 0 picks a free one and logs it)\n"
    "  --token-file PATH    require 'Authorization: Bearer <token>' with the token in PATH\n"
    "                       (checked on the headers: a request without it gets 401 and\n"
    "                       the connection closes before its body is read)\n"
    "  --max-body BYTES     largest accepted request body (default 8388608); a larger\n"
    "                       declared Content-Length gets 413 before the body is read\n"
    "  --max-backlog N      answer 503 with Retry-After while more than N queued actions\n"
    "                       wait for delivery (default 100000; 0 = no bound)\n"
    "  --max-connections N  connections held at once (default 1024); at the cap a new\n"
    "                       client evicts the connection idle longest (connected, no\n"
    "                       request in progress), and is refused when none is idle\n"
    "  --max-connections-per-client N\n"
    "                       connections from one source address (default 64); more are\n"
    "                       closed at once\n"
    "  --header-timeout DUR a request's line and headers must arrive within DUR\n"
    "                       (default 10s; 408 and close, or a quiet close when idle)\n"
    "  --body-timeout DUR   its body within DUR after the headers (default 30s; 408)\n"

    "  --keep-actions DUR   retention: every hour, purge final actions older than DUR\n"
    "                       as hearth purge --keep DUR does (no archive; dead letters\n"
    "                       stay); default: off. Event ids older than --dedupe-window\n"
    "                       are forgotten every hour in any case\n"
    "  --virtual-clock TIME run on a virtual clock starting at TIME (RFC 3339), for tests\n"
    "                       and rehearsals: nothing happens by the passage of real time;\n"
    "                       timers, cron, retries and delivery wait for the clock to be\n"
    "                       moved with POST /v1/clock {\"advance\":\"2s\"} or\n"
    "                       {\"to\":\"<RFC 3339>\"}, which answers {\"now\":...} once\n"
    "                       everything due has run and its deliveries have started\n"
    "Scale-out (docs/SCALE.md): with --cluster this process is one engine of a cluster\n"
    "on NATS JetStream (created once with `hearth cluster init`): it owns a fair share of\n"
    "the partitions, one database per partition under --data, and hands them over on\n"
    "SIGTERM; HTTP serves POST /v1/events (stored in JetStream before the 202), GET\n"
    "/v1/members/ID and /v1/campaigns (answered by the owners), /healthz.\n"
    "  --cluster URL        NATS servers (nats://host:4222, several comma-separated)\n"
    "  --engine NAME        this engine's name, unique in the cluster (default: the\n"
    "                       host name and the port)\n"
    "  --data DIR           where its partitions' databases live (default: hearth-data)\n"
    "  --snapshot-every DUR a snapshot of each partition in JetStream this often\n"
    "                       (default 5m; 0: only on hand-over), which bounds the replay\n"
    "                       after an engine dies\n"
    "  --virtual-clock TIME (with --cluster: any TIME) no partition clock moves but by\n"
    "                       `hearth cluster tick`\n"
    "POST /v1/events takes Content-Type application/json, application/x-ndjson or\n"
    "application/ndjson (parameters such as charset allowed); anything else gets 415.\n"
    CLI_MAX_FUTURE_HELP;

/* Split "host:port" / "[v6]:port". 0 ok, -1 bad. */
static int parse_listen(const char *s, char *host, size_t hostlen, int *port) {
  const char *colon;
  if (s[0] == '[') {
    const char *rb = strchr(s, ']');
    if (!rb || rb[1] != ':') return -1;
    snprintf(host, hostlen, "%.*s", (int)(rb - s - 1), s + 1);
    colon = rb + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon || colon == s) return -1;
    snprintf(host, hostlen, "%.*s", (int)(colon - s), s);
  }
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end || p < 0 || p > 65535 || colon[1] == '\0') return -1;
  *port = (int)p;
  return 0;
}

/* One daemon per database: an exclusive lock on "<db>.lock", held for the process's life
 * (a second daemon would void the first one's delivery leases). -1 when taken. */
static int lock_database(const char *db) {
  char path[4096];
  snprintf(path, sizeof path, "%s.lock", db);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "hearth: cannot create lock file %s: %s\n", path, strerror(errno));
    return -1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    char pid[32] = "";
    ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
    if (n > 0) pid[n] = '\0';
    fprintf(stderr, "hearth: another 'hearth run' is using %s%s%s; stop it first\n", db,
            *pid ? " (pid " : "", *pid ? strtok(pid, "\n") : "");
    if (*pid) fputs(")", stderr);
    close(fd);
    return -1;
  }
  if (ftruncate(fd, 0) == 0) dprintf(fd, "%ld\n", (long)getpid());
  return fd;
}

/* hearth run --cluster: one engine of a cluster (cluster_node.h). */
static int run_cluster_engine(const cli_t *c, const daemon_opts_t *o) {
  int64_t every = 300;
  char terr[200];
  if (c->snapshot_every && strcmp(c->snapshot_every, "0") != 0 &&
      (duration_parse(c->snapshot_every, &every, terr, sizeof terr) < 0 || every < 0))
    return cli_usage_error(usage, "--snapshot-every: %s", terr);
  if (c->snapshot_every && !strcmp(c->snapshot_every, "0")) every = 0;
  char name[300];
  if (c->engine_name) {
    snprintf(name, sizeof name, "%s", c->engine_name);
  } else {
    char host[256] = "engine";
    gethostname(host, sizeof host - 1);
    snprintf(name, sizeof name, "%s-%d", host, o->port);
  }
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
      return cli_usage_error(usage, "--engine: letters, digits, '-' and '_' only, got '%s'", name);
  engine_opts_t eo;
  cli_engine_opts(c, &eo);
  const char *data = c->data ? c->data : "hearth-data";
  char lockpath[4096];
  snprintf(lockpath, sizeof lockpath, "%s/engine", data);
  if (mkdir(data, 0755) < 0 && errno != EEXIST) {
    fprintf(stderr, "hearth: cannot create %s: %s\n", data, strerror(errno));
    return 1;
  }
  int lock = lock_database(lockpath); /* one engine per data directory */
  if (lock < 0) return 1;
  cluster_node_opts_t no = {.url = c->cluster, .name = name, .data_dir = data, .engine = &eo, .host = o->host,
                            .port = o->port, .token = o->token, .max_body = o->max_body,
                            .max_future = o->max_future, .virtual_clock = c->virtual_clock != NULL,
                            .snapshot_every = every};
  int status = cluster_node_run(&no);
  close(lock);
  return status;
}

int cmd_run(int argc, char **argv) {
  cli_t c;
  int rc = cli_parse(&c, argc, argv,
                     "listen token-file max-body max-backlog max-connections "
                     "max-connections-per-client header-timeout body-timeout virtual-clock max-future keep-actions "
                     "cluster engine data snapshot-every",
                     usage);
  if (rc) return c.help ? 0 : rc;
  if (c.npositional) return cli_usage_error(usage, "unexpected argument '%s'", c.positional[0]);
  char host[64];
  int port;
  if (parse_listen(c.listen ? c.listen : "127.0.0.1:8707", host, sizeof host, &port) < 0)
    return cli_usage_error(usage, "--listen must be ADDR:PORT, got '%s'", c.listen);
  int64_t virtual_start = 0;
  char terr[200];
  if (c.virtual_clock && !c.cluster && rfc3339_parse(c.virtual_clock, &virtual_start, terr, sizeof terr) < 0)
    return cli_usage_error(usage, "--virtual-clock: %s", terr);
  daemon_opts_t o = {.host = host, .port = port, .max_body = c.max_body ? (size_t)c.max_body : 8u << 20,
                     .max_connections = c.max_connections ? (int)c.max_connections : 1024,
                     .max_connections_per_client = c.max_per_client ? (int)c.max_per_client : 64,
                     .header_timeout_ms = (unsigned)(c.header_timeout ? c.header_timeout : 10) * 1000u,
                     .body_timeout_ms = (unsigned)(c.body_timeout ? c.body_timeout : 30) * 1000u,
                     .max_backlog = c.max_backlog >= 0 ? c.max_backlog : 100000,
                     .max_future = c.max_future};
  if (c.keep_actions) {
    if (duration_parse(c.keep_actions, &o.keep_actions, terr, sizeof terr) < 0)
      return cli_usage_error(usage, "--keep-actions: %s", terr);
    if (o.keep_actions <= 0) return cli_usage_error(usage, "--keep-actions must be longer than 0s");
  }
  char err[512];
  char *token = NULL;
  if (c.token_file && !(token = http_auth_read_token(c.token_file, err, sizeof err))) {
    fprintf(stderr, "hearth: %s\n", err);
    return 1;
  }
  o.token = token;
  if (c.cluster) {
    int status = run_cluster_engine(&c, &o);
    free(token);
    return status;
  }
  if (c.engine_name || c.data || c.snapshot_every)
    return cli_usage_error(usage, "--engine, --data and --snapshot-every go with --cluster");
  int lock = lock_database(c.db);
  if (lock < 0) {
    free(token);
    return 1;
  }
  engine_opts_t eo;
  cli_engine_opts(&c, &eo);
  char *lerr;
  engine_t *e = engine_open(&eo, &lerr);
  if (!e) {
    fprintf(stderr, "hearth: %s%s", lerr, *lerr && lerr[strlen(lerr) - 1] == '\n' ? "" : "\n");
    free(lerr);
    free(token);
    close(lock);
    return 1;
  }
  if (c.virtual_clock) {
    /* timers and cron run at their due time as the clock moves; the generator's fixed
     * seed makes the retry jitter of a rehearsal the same on every run */
    e->now = virtual_start;
    engine_use_virtual_clock(e);
  }
  int status = daemon_run(e, &o);
  engine_close(e);
  free(token);
  close(lock);
  return status;
}
