/* cluster_node: one engine of a scale-out cluster (`hearth run --cluster`), and putting
 * events into the cluster (`hearth import --cluster`, POST /v1/events on any engine).
 *
 * The design in one paragraph (docs/SCALE.md has it whole): members are partitioned by
 * cluster_partition_of; each partition is a JetStream stream, its log, holding everything
 * that changes its members: their events, emits from other partitions and clock ticks.
 * A partition's state is a function of its log: one SQLite database per partition, on
 * the engine that holds the partition's lease, applies the log in order on a clock that
 * only the log moves (events at their time, ticks), and records in the same transaction
 * how far it got (meta cluster_seq). So an engine that takes a partition over (from the
 * partition's snapshot in JetStream, its own old copy, or nothing) replays the log from
 * there and reaches the same state with the same action ids; actions that the previous
 * owner delivered are found in the hearth_sent bucket and not sent again. */
#ifndef HEARTH_CLUSTER_NODE_H
#define HEARTH_CLUSTER_NODE_H

#include <stdint.h>

#include "cluster.h"
#include "engine.h"
#include "event.h"

typedef struct {
  const char *url;          /* NATS servers */
  const char *name;         /* this engine's name, unique in the cluster */
  const char *data_dir;     /* where the partitions' databases live */
  const engine_opts_t *engine;  /* scripts, stdlib, zone, limits: db_path is set per partition */
  const char *host;         /* HTTP */
  int port;
  const char *token;        /* bearer token or NULL */
  size_t max_body;
  int64_t max_future;
  int virtual_clock;        /* publish no ticks: only `hearth cluster tick` moves the clocks */
  int64_t snapshot_every;   /* seconds between snapshots of a partition (0: only on hand-over) */
} cluster_node_opts_t;

/* Run until SIGTERM/SIGINT: hand every partition over (snapshot, lease given up), leave
 * the registry, exit 0. 1 when it cannot start (no cluster, no NATS, port taken). */
int cluster_node_run(const cluster_node_opts_t *o);

/* How late an action may be judged and still be delivered, for events POSTed to an engine
 * (hearth import --cluster takes --stale-after): the same default as hearth import. */
#define CLUSTER_STALE_AFTER 86400

/* Publish validated events (each with its time) to their partitions, received at
 * `received` (real time): what their handlers queue while judged more than stale_after
 * before it is recorded `expired` (0: never). Durable in JetStream when it returns 0; -1
 * with err (part may be stored: sending them again is safe for events with an id).
 * Thread-safe. */
int cluster_publish_events(cluster_t *c, int partitions, const event_t *evs, int n, int64_t received,
                           int64_t stale_after, char *err, size_t errlen);

#endif
