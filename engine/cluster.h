/* cluster: Hearth on NATS JetStream, the NATS side only. Owns the connection (libnats,
 * Debian's libnats-dev) and every NATS call: the cluster's layout (one stream per
 * partition, the key-value buckets), the stable partition of a member, publishing with
 * the wait for JetStream's acknowledgement, the durable consumer of a partition and
 * reads by sequence, the owners' leases and the engines' registry (buckets whose entries
 * expire), the record of delivered actions, partition snapshots, and requests between
 * nodes. Knows nothing about the engine, SQLite or Lua: cluster_node.c drives it.
 *
 * Layout (all names fixed, so every node agrees):
 *   stream HEARTH_P<nnn>  subjects "hearth.p.<nnn>.>" (nnn: partition, 3 digits):
 *       "hearth.p.<nnn>.ev"    {"received":T,"stale_after":S,"event":{...}}: a member
 *                              event, validated, with when it was received
 *                              (cluster_publish_events)
 *       "hearth.p.<nnn>.emit"  a hearth.emit from another partition
 *       "hearth.p.<nnn>.tick"  the partition's clock moves to {"at":T,"round":r}
 *     limits retention (kept: the log is the partition's history), file storage,
 *     `replicas` copies, duplicate window 2 minutes on Nats-Msg-Id.
 *   stream HEARTH_SNAP    subjects "hearth.snap.<nnn>": snapshot chunks (see below).
 *   bucket hearth_config  key "layout" = {"partitions":P,"replicas":R,"created":T}
 *   bucket hearth_owners  key "p<nnn>" = {"engine":NAME,"at":T}; TTL = the lease
 *   bucket hearth_engines key NAME = the engine's JSON (http address, version); TTL
 *   bucket hearth_sent    key = hex of SHA-256(action id), first 32 digits; TTL 30 days
 * Every durable consumer is named "engine" on its partition's stream: pull, explicit
 * acknowledgement, deliver all (or from a new owner's cursor), ack wait 30 s; its reader
 * has a doorbell, a plain subscription to the partition's subjects, so that a fetch with
 * nothing rung asks JetStream nothing.
 *
 * Threads: libnats runs its own threads. Every function here may be called from any
 * thread (the connection is thread-safe); callbacks given to cluster_serve run on the
 * libuv loop passed to it, never on a NATS thread. */
#ifndef HEARTH_CLUSTER_H
#define HEARTH_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define CLUSTER_MAX_PARTITIONS 1000
/* Rounds of one tick time: a tick is {"at":T,"round":r}, r < CLUSTER_ROUNDS (see
 * cluster_node.c's apply_tick; hearth cluster tick repeats T while emits still cross) */
#define CLUSTER_ROUNDS 64
#define CLUSTER_LEASE_SECONDS 15      /* an owner renews every 2 s; a dead one's lapse after 15
                                         (room for a loaded machine's slow rounds) */
#define CLUSTER_ENGINE_TTL_SECONDS 15 /* the same for the engines' registry */

typedef struct cluster cluster_t;

typedef struct {
  int partitions;   /* P, 1..CLUSTER_MAX_PARTITIONS */
  int replicas;     /* copies of every stream and bucket, 1..5 */
} cluster_layout_t;

/* What a partition's message is, from its subject's last token. */
typedef enum { CM_EVENT, CM_EMIT, CM_TICK } cluster_kind_t;

/* Connect to url (one URL or several, comma-separated: nats://127.0.0.1:4222,...);
 * `name` names the connection in the server's monitoring. Reconnects on its own. NULL
 * with a message in err when no server answers. */
cluster_t *cluster_connect(const char *url, const char *name, char *err, size_t errlen);
void cluster_close(cluster_t *c);

/* Create the layout: P partition streams, HEARTH_SNAP and the buckets. Running it again
 * with the same layout changes nothing (0); with another P or R: -1 and err says what
 * the cluster has. */
int cluster_create(cluster_t *c, const cluster_layout_t *l, char *err, size_t errlen);
/* Read the layout: 0; -1 with err ("no Hearth cluster at URL: run hearth cluster init"). */
int cluster_layout(cluster_t *c, cluster_layout_t *l, char *err, size_t errlen);

/* The partition of a member: FNV-1a 64 over the id's bytes, modulo P. Stable forever
 * (it decides where a member's state lives). */
int cluster_partition_of(const char *member, int partitions);

/* ---- publishing ---- */

typedef struct {
  int partition;
  cluster_kind_t kind;
  const char *msg_id;   /* Nats-Msg-Id (JetStream drops a repeat within its window), or NULL */
  const char *body;
  size_t len;
} cluster_out_t;

/* Publish n messages and wait until JetStream has stored every one (replicated as the
 * stream is): 0; -1 with err (some may be stored: a retry with the same msg_id and event
 * ids is safe). Thread-safe; concurrent calls do not wait for each other's messages. */
int cluster_publish(cluster_t *c, const cluster_out_t *msgs, int n, char *err, size_t errlen);

/* ---- consuming ---- */

typedef struct {
  uint64_t seq;         /* the message's sequence in its partition's stream (from 1) */
  cluster_kind_t kind;
  char *body;           /* NUL-terminated copy */
  size_t len;
  void *msg;            /* the natsMsg to acknowledge, or NULL (read by sequence) */
} cluster_msg_t;

typedef struct cluster_sub cluster_sub_t;

/* Bind to the partition's durable consumer "engine" (created if missing). */
cluster_sub_t *cluster_subscribe(cluster_t *c, int partition, char *err, size_t errlen);
/* The same, but the consumer is made anew to deliver from sequence `from` on: for a new
 * owner, whose state has applied the log up to from - 1 (what the consumer had handed
 * to an owner before and not seen acknowledged is not handed again: the new owner's
 * state, not the consumer, says where the partition is). */
cluster_sub_t *cluster_subscribe_from(cluster_t *c, int partition, uint64_t from, char *err, size_t errlen);
/* Up to max messages, in stream order as the server delivers them; waits up to wait_ms
 * for the first (0: only what is there now). *out is malloc'd (free with
 * cluster_msgs_free), *n may be 0. 0 ok, -1 with err. */
int cluster_fetch(cluster_sub_t *s, int max, int wait_ms, cluster_msg_t **out, int *n, char *err, size_t errlen);
/* Acknowledge one fetched message of a durable consumer (nothing for others): 0, -1. */
int cluster_ack(cluster_msg_t *m);
void cluster_msgs_free(cluster_msg_t *msgs, int n);
void cluster_unsubscribe(cluster_sub_t *s);  /* the durable consumer stays on the server */

/* One message by sequence: 1 with *out, 0 when there is none at seq, -1 with err.
 * out is the caller's: only out->body is malloc'd (out->msg is NULL), so free(out->body);
 * cluster_msgs_free(out, 1) also frees out itself, which is right only if out was malloc'd. */
int cluster_get(cluster_t *c, int partition, uint64_t seq, cluster_msg_t *out, char *err, size_t errlen);
/* The stream's last sequence (0 when empty), and the durable consumer's acknowledgement
 * floor (or, when greater, the sequence before the one it was made to start at) and messages not yet delivered or not yet acknowledged (0s when the consumer does
 * not exist yet). 0, -1 with err. */
typedef struct {
  uint64_t last_seq, ack_floor, pending, ack_pending;
} cluster_progress_t;
int cluster_progress(cluster_t *c, int partition, cluster_progress_t *p, char *err, size_t errlen);

/* ---- engines and owners ---- */

/* Put this engine's entry (its JSON) in the registry; call every 2 s. 0, -1. */
int cluster_engine_beat(cluster_t *c, const char *engine, const char *json, char *err, size_t errlen);
/* The engines whose entries have not lapsed: names sorted (malloc'd array of malloc'd
 * strings) and their JSON in the same order (may be NULL). 0, -1. */
int cluster_engines(cluster_t *c, char ***names, char ***jsons, int *n, char *err, size_t errlen);
/* Remove this engine's entry (a clean stop). */
int cluster_engine_leave(cluster_t *c, const char *engine);

/* Take the partition's lease for engine: 1 taken (*revision set: the lease's revision,
 * which only grows, is the owner's fencing token), 0 held by someone else (or by this
 * engine under another revision), -1 with err. */
int cluster_lease_take(cluster_t *c, int partition, const char *engine, uint64_t *revision, char *err, size_t errlen);
/* Renew it: 1 renewed (*revision updated), 0 lost (another revision is there: stop owning
 * the partition at once), -1 with err (unknown: keep going until the lease would lapse). */
int cluster_lease_renew(cluster_t *c, int partition, const char *engine, uint64_t *revision, char *err, size_t errlen);
/* Give it up (only if still at revision). 0, -1. */
int cluster_lease_release(cluster_t *c, int partition, uint64_t revision);
/* Who owns it: 1 with *engine (malloc'd), 0 nobody, -1 with err. */
int cluster_lease_owner(cluster_t *c, int partition, char **engine, char *err, size_t errlen);

/* ---- delivered actions ---- */

/* Note that an action was delivered (asynchronous: returns at once). 0, -1. */
int cluster_sent_mark(cluster_t *c, const char *action_id);
/* Was it delivered by any engine: 1 yes, 0 no, -1 with err. */
int cluster_sent_seen(cluster_t *c, const char *action_id, char *err, size_t errlen);

/* ---- snapshots ---- */

/* Store the file at path as the partition's snapshot, covering its stream up to `cursor`
 * (chunks of 256 KiB on "hearth.snap.<nnn>"; older snapshots of the partition are purged
 * once this one is whole). 0, -1 with err. */
int cluster_snapshot_put(cluster_t *c, int partition, const char *path, uint64_t cursor, char *err, size_t errlen);
/* Write the partition's latest whole snapshot to path: 1 with *cursor, 0 when there is
 * none, -1 with err. The file is checked against the SHA-256 stored with it. */
int cluster_snapshot_get(cluster_t *c, int partition, const char *path, uint64_t *cursor, char *err, size_t errlen);

/* ---- requests between nodes ---- */

/* Answer requests to "hearth.rpc.p<nnn>" for the given partition on the loop's thread:
 * handler(ud, partition, op, body) returns a malloc'd reply (JSON text) or NULL for
 * {"error":...}. Requests are {"op":..., "body":...}. Stop with cluster_serve_stop. */
typedef char *(*cluster_handler_t)(void *ud, int partition, const char *op, const char *body);
int cluster_serve(cluster_t *c, uv_loop_t *loop, int partition, cluster_handler_t handler, void *ud, char *err,
                  size_t errlen);
void cluster_serve_stop(cluster_t *c, int partition);
/* Ask the partition's owner, without blocking the loop: the request runs on libuv's
 * thread pool and done(ud, reply, err) is called on the loop's thread with the reply
 * (JSON text, owned by the callee until done returns) or NULL and a message (no owner
 * answered within timeout_ms). 0 started, -1 with err. */
typedef void (*cluster_reply_t)(void *ud, const char *reply, const char *err);
int cluster_request(cluster_t *c, uv_loop_t *loop, int partition, const char *op, const char *body, int timeout_ms,
                    cluster_reply_t done, void *ud, char *err, size_t errlen);

#endif
