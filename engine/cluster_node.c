/* cluster_node: one engine of a scale-out cluster (see cluster_node.h and docs/SCALE.md).
 * Owns the partitions this engine holds: for each, its engine (its own SQLite database
 * under the data directory, on a clock only its log moves), its delivery, its reader of
 * the log (a catch-up reader after a take-over, then the durable consumer), its lease;
 * and the node around them: one libuv loop, the beat (registry, leases, who should own
 * what, ticks, snapshots), HTTP (POST /v1/events published to the partitions; reads
 * answered here or by the owner over NATS requests), signals. All NATS calls go through
 * cluster.h. The idea of rebuilding a partition's state from its log (state machine
 * replication, as in Kafka Streams' changelog restore) is standard; the code is ours. */
#include "cluster_node.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "delivery.h"
#include "http_reply.h"
#include "http_server.h"
#include "ingest.h"
#include "json_read.h"
#include "log.h"
#include "member_json.h"
#include "summary.h"
#include "util.h"

#define FETCH_MAX 500          /* messages applied per partition per loop turn */
#define FORWARDS_MAX 1000      /* forwards published per round */
#define BEAT_MS 2000
#define IDLE_POLL_MS 20        /* how often an idle node looks for new messages */
#define TICK_LAG_SECONDS 10    /* on a real clock, a partition's clock is kept this close */
#define RPC_TIMEOUT_MS 5000
#define PUBLISH_CHUNK 1000
/* An owner that has not renewed a lease for this long stops owning the partition: well
 * before the lease lapses (CLUSTER_LEASE_SECONDS), with room for one more beat. */
#define LEASE_GIVE_UP_SECONDS (CLUSTER_LEASE_SECONDS - 3 * BEAT_MS / 1000)

typedef struct node node_t;

typedef struct {
  int p;
  node_t *n;
  engine_t *e;
  delivery_t *d;
  cluster_sub_t *sub;       /* the durable consumer, set at the take-over to the cursor */
  uint64_t cursor;          /* the last sequence applied (in the open or the last batch) */
  uint64_t committed;       /* the last sequence committed */
  uint64_t catchup_to;      /* the log's end when the partition was taken, until reached */
  uint64_t lease_rev;
  uint64_t lease_ok_ns;     /* last time the lease was known to be ours (monotonic) */
  int check_sent;           /* actions may have been delivered by an owner before this one */
  int64_t snapshot_at;      /* real time of the last snapshot */
  uint64_t since_snapshot;  /* messages applied since */
  int tick_sent;            /* a tick is in the log and not applied yet */
  int held;                 /* an emit from another partition waits for a tick */
  cluster_msg_t *acks;      /* fetched from the durable, acknowledged after the commit */
  int nacks;
} part_t;

struct node {
  const cluster_node_opts_t *o;
  uv_loop_t loop;
  cluster_t *c;
  cluster_layout_t layout;
  part_t **parts;           /* [P], NULL where not owned */
  http_server_t *http;
  uv_timer_t beat, work;
  uv_idle_t busy;
  uv_signal_t sig_term, sig_int, sig_hup;
  int stopping, status;
  unsigned long beats;
  uint64_t renewed_ns;      /* when the leases were last renewed */
  char addr[128];
};

/* ---- the log of one partition ---- */

static int catching_up(const part_t *pt) { return pt->cursor < pt->catchup_to; }

static int foreign_of(void *ud, const char *member) {
  part_t *pt = ud;
  int p = cluster_partition_of(member, pt->n->layout.partitions);
  return p == pt->p ? -1 : p;
}

/* Kept with every commit of the partition's engine (engine_t.on_commit): how far its log
 * got, the epoch of its last tick and the bound of stale actions, so that what a replay
 * starts from matches what was committed (the clock is the engine's own "clock"). */
static int keep_position(void *ud) {
  part_t *pt = ud;
  store_t *st = pt->e->store;
  return store_meta_set(st, "cluster_seq", (int64_t)pt->cursor) < 0 ||
                 store_meta_set(st, "cluster_tick", pt->e->forward_epoch) < 0 ||
                 store_meta_set(st, "cluster_expire_before", pt->e->expire_before) < 0
             ? -1
             : 0;
}

/* Message seq is applied: it goes with the next commit (a batch is opened if none is, so
 * that even a message that changed nothing moves the cursor). */
static int note_cursor(part_t *pt, uint64_t seq) {
  if (!pt->e->in_batch && engine_begin(pt->e) < 0) return -1;
  pt->cursor = seq;
  return 0;
}

static void log_part(int level, part_t *pt, const char *msg, const char *k, const char *v) {
  char p[16];
  snprintf(p, sizeof p, "%d", pt->p);
  log_msg(level, msg, "partition", p, k, v, NULL);
}

/* An event's message: {"received":T,"stale_after":S,"event":{...}}. What its handlers
 * queue while judged before T - S is recorded `expired`, as a history import on one node
 * does (the bound only grows, and is kept with the cursor: a replay gives the same). */
static int apply_event(part_t *pt, const cluster_msg_t *m) {
  json_error_t jerr;
  json_t *o = jr_loadb(m->body, m->len, 0, &jerr);
  json_int_t received = 0, stale = 0;
  json_t *body = NULL;
  event_t ev;
  char err[400] = "not {\"received\", \"stale_after\", \"event\"}";
  if (!o || json_unpack(o, "{s:I, s:I, s:o}", "received", &received, "stale_after", &stale, "event", &body) < 0 ||
      event_from_json(body, &ev, err, sizeof err) < 0) { /* not ours to judge again: skip */
    log_part(LOG_ERROR, pt, "a message of the partition is not an event; skipped", "error", err);
    json_decref(o);
    return 0;
  }
  json_decref(o);
  engine_t *e = pt->e;
  if (stale > 0 && received - stale > e->expire_before) e->expire_before = received - stale; /* kept at commit */
  int rc = engine_feed(e, &ev);
  event_clear(&ev);
  return rc == EV_ERROR ? -1 : 0;
}

/* An emit forwarded from another partition is held (inbox) until the first tick after the
 * one its sender had applied ("after"): so each is applied at the same point of this
 * partition's log however the partitions were spread over engines and whenever it
 * arrived, and those applied at one tick go in (at, id) order. */
static int hold_emit(part_t *pt, const cluster_msg_t *m) {
  json_t *o = jr_loadb(m->body, m->len, 0, NULL);
  const char *id = NULL;
  json_int_t at = 0, after = 0;
  if (!o || json_unpack(o, "{s:s, s:I, s:I}", "id", &id, "at", &at, "after", &after) < 0) {
    log_part(LOG_ERROR, pt, "a forwarded emit is malformed; skipped", "body", m->body);
    json_decref(o);
    return 0;
  }
  engine_t *e = pt->e;
  if (!e->in_batch && engine_begin(e) < 0) {
    json_decref(o);
    return -1;
  }
  int rc = store_inbox_add(e->store, id, after, at, m->body);
  json_decref(o);
  pt->held = 1; /* on a real clock: a tick soon applies it */
  return rc;
}

/* Apply one held emit (its forward's JSON). */
static int apply_emit(part_t *pt, const char *body) {
  json_t *o = jr_loads(body, 0, NULL);
  engine_emit_in_t in = {0};
  json_int_t at = 0, depth = 0;
  const char *chain = NULL, *campaign = "";
  json_t *data = NULL;
  if (!o || json_unpack(o, "{s:s, s:s, s:s, s:I, s:I, s?s, s?s, s?o}", "id", &in.id, "member", &in.member, "type",
                        &in.type, "at", &at, "depth", &depth, "chain", &chain, "campaign", &campaign, "data",
                        &data) < 0) {
    log_part(LOG_ERROR, pt, "a held emit is malformed; dropped", "body", body);
    json_decref(o);
    return 0;
  }
  in.at = at;
  in.depth = depth;
  in.chain = chain;
  in.campaign = campaign;
  in.data = data;
  int rc = engine_feed_emit(pt->e, &in);
  json_decref(o);
  return rc == EV_ERROR ? -1 : 0;
}

/* The held emits due at a tick to `at`: each applied, then forgotten in the batch that
 * applied it (a crash between the two is caught by the dedupe on its id). */
static int apply_held(part_t *pt, int64_t at) {
  engine_t *e = pt->e;
  for (;;) {
    if (!e->in_batch && engine_begin(e) < 0) return -1;
    char **ids = NULL, **bodies = NULL;
    int n = store_inbox_due(e->store, at, 500, &ids, &bodies);
    int rc = n < 0 ? -1 : 0;
    for (int i = 0; i < n; i++) {
      if (rc == 0 && apply_emit(pt, bodies[i]) < 0) rc = -1;
      if (rc == 0 && !e->in_batch && engine_begin(e) < 0) rc = -1;
      if (rc == 0 && store_inbox_delete(e->store, ids[i]) < 0) rc = -1;
      free(ids[i]);
      free(bodies[i]);
    }
    free(ids);
    free(bodies);
    if (rc < 0 || n < 500) return rc;
  }
}

/* A tick {"at":T,"round":r} runs everything due up to T, in transactions of its own.
 * Its epoch, T * CLUSTER_ROUNDS + r, orders ticks; held emits whose sender had applied an
 * earlier epoch are applied first, and what this tick causes in other partitions carries
 * this epoch, so it waits there for the next tick (`hearth cluster tick` repeats a time
 * in further rounds while they cause more). */
static int apply_tick(part_t *pt, const cluster_msg_t *m) {
  json_t *o = jr_loadb(m->body, m->len, 0, NULL);
  json_int_t at = 0, round = 0;
  int ok = o && json_unpack(o, "{s:I, s?I}", "at", &at, "round", &round) == 0 && round >= 0 &&
           round < CLUSTER_ROUNDS;
  json_decref(o);
  pt->tick_sent = 0;
  if (!ok) {
    log_part(LOG_ERROR, pt, "a tick is malformed; skipped", "body", m->body);
    return 0;
  }
  engine_t *e = pt->e;
  int64_t epoch = (int64_t)at * CLUSTER_ROUNDS + round;
  int64_t before = epoch;
  if (epoch > e->forward_epoch) e->forward_epoch = epoch; /* caused from here on: the next tick there */
  if (apply_held(pt, before) < 0) return -1;
  if (e->in_batch && engine_commit(e) < 0) return -1;
  pt->committed = pt->cursor;
  return engine_run_until(e, at, 0) < 0 ? -1 : 0;
}

/* Apply message seq (the next in the log) and note it. */
static int apply_one(part_t *pt, const cluster_msg_t *m) {
  assert(m->seq == pt->cursor + 1);
  int rc = m->kind == CM_EVENT ? apply_event(pt, m) : m->kind == CM_EMIT ? hold_emit(pt, m) : apply_tick(pt, m);
  if (rc < 0) return -1;
  pt->since_snapshot++;
  return note_cursor(pt, m->seq);
}

/* The messages between the cursor and seq that the consumer has not given (delivered
 * before to an owner that did not acknowledge them, or never): read by sequence. */
static int fill_gap(part_t *pt, uint64_t seq) {
  char err[300];
  while (pt->cursor + 1 < seq) {
    cluster_msg_t m;
    int rc = cluster_get(pt->n->c, pt->p, pt->cursor + 1, &m, err, sizeof err);
    if (rc < 0) {
      log_part(LOG_WARN, pt, "cannot read the log by sequence; will retry", "error", err);
      return -1;
    }
    if (rc == 0) { /* removed from the stream (should not happen: the log is kept) */
      log_part(LOG_ERROR, pt, "a message of the log is missing; skipped", "error", "no message at sequence");
      if (note_cursor(pt, pt->cursor + 1) < 0) return -1;
      continue;
    }
    rc = apply_one(pt, &m);
    free(m.body);
    if (rc < 0) return -1;
  }
  return 0;
}

/* A round of forwards read from the store, as messages. */
typedef struct {
  cluster_out_t *out;
  char **ids, **bodies;
  int n, cap;
  int64_t last;
} fwd_batch_t;

static int publish_forward(void *ud, const forward_row_t *row) {
  fwd_batch_t *b = ud;
  if (b->n == b->cap) { /* grown as rows come: most batches have none */
    b->cap = b->cap ? 2 * b->cap : 16;
    b->out = xrealloc(b->out, (size_t)b->cap * sizeof *b->out);
    b->ids = xrealloc(b->ids, (size_t)b->cap * sizeof *b->ids);
    b->bodies = xrealloc(b->bodies, (size_t)b->cap * sizeof *b->bodies);
  }
  b->ids[b->n] = xstrdup(row->id);
  b->bodies[b->n] = xstrdup(row->body);
  b->out[b->n] = (cluster_out_t){.partition = row->partition, .kind = CM_EMIT, .msg_id = b->ids[b->n],
                                 .body = b->bodies[b->n], .len = strlen(row->body)};
  b->n++;
  b->last = row->seq;
  return 0;
}

/* Publish the committed forwards to their partitions, then forget them. 0, -1. */
static int flush_forwards(part_t *pt) {
  engine_t *e = pt->e;
  assert(!e->in_batch);
  for (;;) {
    fwd_batch_t b = {0};
    int n = store_forwards(e->store, FORWARDS_MAX, publish_forward, &b);
    char err[300] = "";
    int rc = n < 0 ? -1 : 0;
    if (n > 0 && cluster_publish(pt->n->c, b.out, b.n, err, sizeof err) < 0) {
      log_part(LOG_WARN, pt, "cannot publish forwards; will retry", "error", err);
      rc = -1;
    }
    if (n > 0 && rc == 0) {
      if (store_begin(e->store) < 0 || store_forwards_done(e->store, b.last) < 0 || store_commit(e->store) < 0) {
        store_rollback(e->store);
        rc = -1; /* published again later: the receiver's dedupe drops the repeat */
      }
    }
    for (int i = 0; i < b.n; i++) free(b.ids[i]), free(b.bodies[i]);
    free(b.out);
    free(b.ids);
    free(b.bodies);
    if (rc < 0) return -1;
    if (n < FORWARDS_MAX) return 0;
  }
}

/* After a batch: commit, publish its forwards, acknowledge what it applied, deliver. */
static int settle(part_t *pt) {
  engine_t *e = pt->e;
  if (e->in_batch && engine_commit(e) < 0) {
    pt->cursor = pt->committed; /* rolled back: the log gives it again */
    cluster_msgs_free(pt->acks, pt->nacks); /* not acknowledged */
    pt->acks = NULL;
    pt->nacks = 0;
    return -1;
  }
  pt->committed = pt->cursor;
  int rc = flush_forwards(pt);
  if (rc == 0) /* only once its forwards are out: a drained consumer means nothing is owed */
    for (int i = 0; i < pt->nacks; i++) cluster_ack(&pt->acks[i]);
  cluster_msgs_free(pt->acks, pt->nacks);
  pt->acks = NULL;
  pt->nacks = 0;
  delivery_kick(pt->d);
  return rc;
}

static int open_durable(part_t *pt) {
  char err[300];
  pt->sub = cluster_subscribe(pt->n->c, pt->p, err, sizeof err);
  if (!pt->sub) log_part(LOG_WARN, pt, "cannot bind the partition's consumer; will retry", "error", err);
  return pt->sub ? 0 : -1;
}

static void tick_partition(part_t *pt, int64_t now);

/* Read and apply what the log has for the partition now. 1 when there may be more. */
static int pump_part(part_t *pt) {
  char err[300];
  if (!pt->sub && open_durable(pt) < 0) return 0;
  cluster_sub_t *s = pt->sub;
  cluster_msg_t *msgs = NULL;
  int n = 0;
  if (cluster_fetch(s, FETCH_MAX, 0, &msgs, &n, err, sizeof err) < 0) {
    log_part(LOG_WARN, pt, "cannot read the partition's log; will retry", "error", err);
    return 0;
  }
  int failed = 0;
  for (int i = 0; i < n && !failed; i++) /* what the cursor has passed is only acknowledged */
    if (msgs[i].seq > pt->cursor && (fill_gap(pt, msgs[i].seq) < 0 || apply_one(pt, &msgs[i]) < 0)) failed = 1;
  if (failed) {
    log_part(LOG_ERROR, pt, "applying the log failed; the batch is rolled back and read again", "error",
             engine_db_error(pt->e));
    if (pt->e->in_batch) engine_rollback(pt->e);
    pt->cursor = pt->committed;
    cluster_msgs_free(msgs, n); /* not acknowledged: given again */
    return 0;
  }
  assert(pt->nacks == 0);
  pt->acks = msgs; /* acknowledged after the commit (settle) */
  pt->nacks = n;
  if (n > 0 || pt->e->in_batch) settle(pt);
  if (pt->held && !pt->n->o->virtual_clock) tick_partition(pt, time(NULL));
  if (pt->catchup_to && pt->cursor >= pt->catchup_to) {
    pt->catchup_to = 0;
    char to[24];
    snprintf(to, sizeof to, "%llu", (unsigned long long)pt->cursor);
    log_part(LOG_INFO, pt, "partition caught up with its log", "seq", to);
  }
  /* what the log gave before the take-over may have been delivered by the owner before */
  if (pt->check_sent && !catching_up(pt) && delivery_backlog(pt->d) == 0) pt->check_sent = 0;
  return n == FETCH_MAX;
}

/* ---- delivered actions across owners ---- */

static int sent_seen(void *ud, const char *id) {
  part_t *pt = ud;
  if (!pt->check_sent) return 0;
  char err[300];
  int rc = cluster_sent_seen(pt->n->c, id, err, sizeof err);
  if (rc < 0) log_part(LOG_WARN, pt, "cannot check whether an action was delivered; will retry", "error", err);
  return rc;
}

static void sent_mark(void *ud, const char *id) {
  part_t *pt = ud;
  if (cluster_sent_mark(pt->n->c, id) < 0) log_part(LOG_WARN, pt, "cannot record a delivery", "action", id);
}

/* ---- taking and giving up partitions ---- */

static char *part_path(node_t *n, int p, const char *suffix) {
  return xasprintf("%s/p%03d.db%s", n->o->data_dir, p, suffix);
}

static void remove_db(const char *path) {
  char *wal = xasprintf("%s-wal", path), *shm = xasprintf("%s-shm", path);
  unlink(path);
  unlink(wal);
  unlink(shm);
  free(wal);
  free(shm);
}

/* The cursor of the local copy of partition p (0 when there is none). */
static uint64_t local_cursor(const char *path) {
  struct stat st;
  if (stat(path, &st) < 0) return 0;
  char err[300];
  store_t *s = store_open(path, 1, err, sizeof err);
  if (!s) return 0;
  int64_t v = store_meta_get(s, "cluster_seq", 0);
  store_close(s);
  return v > 0 ? (uint64_t)v : 0;
}

/* The partition's state as far as it can be had without the log: the snapshot in
 * JetStream or the local copy, whichever is further; the log does the rest. */
static void restore_state(node_t *n, int p, const char *path) {
  char *snap = part_path(n, p, ".snapshot");
  char err[300];
  uint64_t at = 0, here = local_cursor(path);
  unlink(snap);
  int rc = cluster_snapshot_get(n->c, p, snap, &at, err, sizeof err);
  char ps[16], a[24], h[24];
  snprintf(ps, sizeof ps, "%d", p);
  snprintf(a, sizeof a, "%llu", (unsigned long long)at);
  snprintf(h, sizeof h, "%llu", (unsigned long long)here);
  if (rc < 0) log_msg(LOG_WARN, "cannot read the partition's snapshot; the log is replayed", "partition", ps, "error", err, NULL);
  if (rc == 1 && at > here) {
    remove_db(path);
    if (rename(snap, path) < 0)
      log_msg(LOG_ERROR, "cannot move the snapshot in place", "partition", ps, "error", strerror(errno), NULL);
    else
      log_msg(LOG_INFO, "partition restored from its snapshot", "partition", ps, "seq", a, NULL);
  } else if (here > 0) {
    log_msg(LOG_INFO, "partition resumed from the local copy", "partition", ps, "seq", h, NULL);
  }
  unlink(snap);
  free(snap);
}

static void part_free(part_t *pt) {
  if (pt->sub) cluster_unsubscribe(pt->sub);
  cluster_msgs_free(pt->acks, pt->nacks);
  free(pt);
}

/* Open partition p, whose lease this engine has just taken at rev. */
static part_t *part_open(node_t *n, int p, uint64_t rev) {
  char *path = part_path(n, p, "");
  restore_state(n, p, path);
  engine_opts_t eo = *n->o->engine;
  eo.db_path = path;
  char *err = NULL;
  engine_t *e = engine_open(&eo, &err);
  free(path);
  if (!e) {
    char ps[16];
    snprintf(ps, sizeof ps, "%d", p);
    log_msg(LOG_ERROR, "cannot open the partition's database", "partition", ps, "error", err, NULL);
    free(err);
    return NULL;
  }
  engine_use_virtual_clock(e); /* the partition's clock: only its log moves it */
  log_use_clock(NULL);         /* the node's log keeps the real time */
  part_t *pt = xcalloc(1, sizeof *pt);
  pt->p = p;
  pt->n = n;
  pt->e = e;
  pt->lease_rev = rev;
  pt->lease_ok_ns = mono_ns();
  pt->check_sent = 1;
  pt->snapshot_at = time(NULL);
  e->foreign_partition = foreign_of;
  e->foreign_ud = pt;
  pt->cursor = pt->committed = (uint64_t)store_meta_get(e->store, "cluster_seq", 0);
  e->forward_epoch = store_meta_get(e->store, "cluster_tick", 0);
  e->expire_before = store_meta_get(e->store, "cluster_expire_before", INT64_MIN);
  e->on_commit = keep_position;
  e->on_commit_ud = pt;
  if (pt->cursor > 0 && engine_run_until(e, store_meta_get(e->store, "clock", 0), 0) < 0)
    goto fail; /* the clock where the log left it (nothing is due there) */
  char errbuf[300];
  pt->d = delivery_start(&n->loop, e, errbuf, sizeof errbuf);
  if (!pt->d) {
    log_part(LOG_ERROR, pt, "cannot start delivery", "error", errbuf);
    goto fail;
  }
  delivery_set_guard(pt->d, &(delivery_guard_t){.seen = sent_seen, .sent = sent_mark, .ud = pt});
  cluster_progress_t pr;
  if (cluster_progress(n->c, p, &pr, errbuf, sizeof errbuf) < 0) {
    log_part(LOG_ERROR, pt, "cannot read the partition's progress", "error", errbuf);
    goto fail_delivery;
  }
  pt->catchup_to = pr.last_seq > pt->cursor ? pr.last_seq : 0;
  pt->sub = cluster_subscribe_from(n->c, p, pt->cursor + 1, errbuf, sizeof errbuf);
  if (!pt->sub) {
    log_part(LOG_ERROR, pt, "cannot set the partition's consumer to where its state is", "error", errbuf);
    goto fail_delivery;
  }
  if (flush_forwards(pt) < 0) log_part(LOG_WARN, pt, "forwards left from before wait", "error", "publish failed");
  char a[24], b[24];
  snprintf(a, sizeof a, "%llu", (unsigned long long)pt->cursor);
  snprintf(b, sizeof b, "%llu", (unsigned long long)pr.last_seq);
  log_msg(LOG_INFO, "partition taken", "partition", (snprintf(errbuf, sizeof errbuf, "%d", p), errbuf), "from_seq", a,
          "log_end", b, NULL);
  return pt;
fail_delivery:
  delivery_stop(pt->d);
fail:
  engine_close(e);
  part_free(pt);
  return NULL;
}

/* A copy of the partition's database into JetStream, as of its cursor. */
static void snapshot(part_t *pt) {
  node_t *n = pt->n;
  if (pt->e->in_batch || catching_up(pt)) return;
  char *tmp = part_path(n, pt->p, ".out");
  char err[300];
  unlink(tmp);
  if (store_backup(pt->e->store, tmp, err, sizeof err) < 0 ||
      cluster_snapshot_put(n->c, pt->p, tmp, pt->committed, err, sizeof err) < 0)
    log_part(LOG_WARN, pt, "snapshot failed (the log still holds everything)", "error", err);
  else {
    pt->since_snapshot = 0;
    pt->snapshot_at = time(NULL);
  }
  unlink(tmp);
  free(tmp);
}

static void close_engine_cb(uv_handle_t *h) {
  engine_close(h->data);
  free(h);
}

/* Stop owning p. handover: the lease is still ours: leave a snapshot and give the lease
 * up. Otherwise it was lost: stop at once, write nothing more to the cluster. */
static void part_close(node_t *n, int p, int handover) {
  part_t *pt = n->parts[p];
  if (!pt) return;
  n->parts[p] = NULL;
  cluster_serve_stop(n->c, p);
  if (handover) {
    settle(pt);
    delivery_pump(pt->d); /* what is due goes out now (log lines; webhooks are started) */
    snapshot(pt);
    cluster_lease_release(n->c, p, pt->lease_rev);
  } else if (pt->e->in_batch) {
    engine_rollback(pt->e);
  }
  log_part(LOG_INFO, pt, handover ? "partition handed over" : "partition lease lost: stopped", NULL, NULL);
  delivery_stop(pt->d);
  /* the engine outlives delivery's close callbacks: closed from a handle of its own */
  uv_idle_t *later = xcalloc(1, sizeof *later);
  uv_idle_init(&n->loop, later);
  later->data = pt->e;
  uv_close((uv_handle_t *)later, close_engine_cb);
  part_free(pt);
}

/* ---- reads that any engine answers ---- */

static char *rpc_handler(void *ud, int p, const char *op, const char *body) {
  node_t *n = ud;
  part_t *pt = p >= 0 && p < n->layout.partitions ? n->parts[p] : NULL;
  json_t *out = NULL;
  if (!pt) {
    out = json_pack("{s:s}", "error", "this engine does not own the partition now");
  } else if (!strcmp(op, "member")) {
    json_t *m = NULL;
    int found = member_json_read(pt->e->store, pt->e->tz, body, 20, &m);
    out = found > 0 ? json_pack("{s:o}", "member", m)
                    : json_pack("{s:s}", "error", found == 0 ? "no such member" : "database error");
  } else if (!strcmp(op, "campaigns")) {
    json_t *s = summary_json(pt->e->store);
    out = s ? json_pack("{s:o}", "summary", s) : json_pack("{s:s}", "error", "database error");
  } else {
    out = json_pack("{s:s}", "error", "unknown request");
  }
  char *text = json_dumps(out, JSON_COMPACT);
  json_decref(out);
  return text;
}

/* ---- the beat: registry, leases, who owns what, ticks, snapshots ---- */

static int owned_count(node_t *n) {
  int k = 0;
  for (int p = 0; p < n->layout.partitions; p++) k += n->parts[p] != NULL;
  return k;
}

static void beat_registry(node_t *n) {
  json_t *owned = json_array();
  for (int p = 0; p < n->layout.partitions; p++)
    if (n->parts[p]) json_array_append_new(owned, json_integer(p));
  json_t *me = json_pack("{s:s, s:s, s:o, s:i, s:s}", "engine", n->o->name, "http", n->addr, "partitions", owned,
                         "owned", owned_count(n), "version", HEARTH_VERSION);
  char *text = json_dumps(me, JSON_COMPACT);
  char err[300];
  if (cluster_engine_beat(n->c, n->o->name, text, err, sizeof err) < 0)
    log_msg(LOG_WARN, "cannot write this engine's entry in the registry", "error", err, NULL);
  free(text);
  json_decref(me);
}

static void renew_leases(node_t *n) {
  char err[300];
  n->renewed_ns = mono_ns();
  for (int p = 0; p < n->layout.partitions; p++) {
    part_t *pt = n->parts[p];
    if (!pt) continue;
    uint64_t asked = mono_ns(); /* the lease runs from before the renewal was sent */
    int rc = cluster_lease_renew(n->c, p, n->o->name, &pt->lease_rev, err, sizeof err);
    if (rc == 1) pt->lease_ok_ns = asked;
    else if (rc == 0) part_close(n, p, 0);
    else if (mono_ns() - pt->lease_ok_ns > (uint64_t)LEASE_GIVE_UP_SECONDS * 1000000000u) {
      log_part(LOG_ERROR, pt, "lease not renewed in time: stopping before it lapses", "error", err);
      part_close(n, p, 0); /* another engine may take it once it lapses */
    }
  }
}

/* Renew between two long steps (taking partitions over, a busy round of work), so that a
 * slow round on a loaded machine never lets a lease lapse. */
static void maybe_renew(node_t *n) {
  if (mono_ns() - n->renewed_ns > (uint64_t)BEAT_MS * 1000000u) renew_leases(n);
}

/* Each partition's preferred engine is the live engines' (sorted by name) p mod count:
 * an engine takes the partitions it prefers when free, and hands over those it holds
 * that another live engine prefers. Everyone computes the same from the registry. */
static void rebalance(node_t *n) {
  char **names = NULL;
  int count = 0;
  char err[300];
  if (cluster_engines(n->c, &names, NULL, &count, err, sizeof err) < 0) {
    log_msg(LOG_WARN, "cannot read the engines' registry", "error", err, NULL);
    return;
  }
  int me = -1;
  for (int i = 0; i < count; i++)
    if (!strcmp(names[i], n->o->name)) me = i;
  for (int p = 0; p < n->layout.partitions && me >= 0 && !n->stopping; p++) {
    int preferred = p % count;
    if (n->parts[p] && preferred != me) {
      part_close(n, p, 1);
    } else if (!n->parts[p] && preferred == me) {
      uint64_t rev;
      int rc = cluster_lease_take(n->c, p, n->o->name, &rev, err, sizeof err);
      if (rc < 0) log_msg(LOG_WARN, "cannot take a partition's lease", "error", err, NULL);
      if (rc != 1) continue; /* held: its owner hands it over, or its lease lapses */
      n->parts[p] = part_open(n, p, rev);
      maybe_renew(n);
      if (!n->parts[p]) {
        cluster_lease_release(n->c, p, rev);
        continue;
      }
      if (cluster_serve(n->c, &n->loop, p, rpc_handler, n, err, sizeof err) < 0)
        log_msg(LOG_WARN, "cannot answer requests for a partition", "error", err, NULL);
    }
  }
  for (int i = 0; i < count; i++) free(names[i]);
  free(names);
}

/* On a real clock, the owner moves a partition's clock: when something is due, when an
 * emit from another partition waits, and every TICK_LAG_SECONDS anyway (deliveries'
 * retries are on the partition's clock). A second tick in the same second is a further
 * round of it. */
static void tick_partition(part_t *pt, int64_t now) {
  if (catching_up(pt) || pt->tick_sent || pt->cursor == 0) return;
  int64_t due = engine_next_due(pt->e);
  if (due > now && now - pt->e->now < TICK_LAG_SECONDS && !pt->held) return;
  int64_t at = now, round = 0, last = pt->e->forward_epoch;
  if (at * CLUSTER_ROUNDS <= last) at = last / CLUSTER_ROUNDS, round = last % CLUSTER_ROUNDS + 1;
  if (round >= CLUSTER_ROUNDS) return; /* the next second */
  char body[64];
  snprintf(body, sizeof body, "{\"at\":%lld,\"round\":%lld}", (long long)at, (long long)round);
  cluster_out_t m = {.partition = pt->p, .kind = CM_TICK, .body = body, .len = strlen(body)};
  char err[300];
  if (cluster_publish(pt->n->c, &m, 1, err, sizeof err) < 0) {
    log_part(LOG_WARN, pt, "cannot publish a tick", "error", err);
    return;
  }
  pt->tick_sent = 1;
  pt->held = 0;
}

static void tick_partitions(node_t *n) {
  int64_t now = time(NULL);
  for (int p = 0; p < n->layout.partitions; p++)
    if (n->parts[p]) tick_partition(n->parts[p], now);
}

static void on_beat(uv_timer_t *t) {
  node_t *n = t->data;
  if (n->stopping) return;
  renew_leases(n);
  if (n->beats++ > 0) rebalance(n); /* the first beat only registers: engines started
                                        together see each other before taking shares */
  beat_registry(n);
  if (!n->o->virtual_clock) tick_partitions(n);
  int64_t now = time(NULL);
  for (int p = 0; p < n->layout.partitions; p++) {
    part_t *pt = n->parts[p];
    if (pt && n->o->snapshot_every > 0 && pt->since_snapshot > 0 && now - pt->snapshot_at >= n->o->snapshot_every)
      snapshot(pt);
  }
}

/* ---- the work: each owned partition's log, a batch per loop turn ---- */

static void on_busy(uv_idle_t *h);

static void work_round(node_t *n) {
  int more = 0;
  for (int p = 0; p < n->layout.partitions; p++) {
    if (n->parts[p]) more |= pump_part(n->parts[p]);
    if (!n->stopping) maybe_renew(n);
  }
  if (more) uv_idle_start(&n->busy, on_busy);
  else uv_idle_stop(&n->busy);
}

static void on_busy(uv_idle_t *h) { work_round(h->data); }
static void on_work(uv_timer_t *t) { work_round(t->data); }

/* ---- HTTP ---- */

static void reply(http_response_t *res, int status, json_t *body) { http_reply_json(res, status, body); }
static void reply_error(http_response_t *res, int status, const char *msg) { http_reply_error(res, status, msg); }

typedef struct {
  uv_work_t work;
  node_t *n;
  http_deferred_t *later;
  event_list_t evs;
  int64_t received;
  char err[300];
  int rc;
} post_job_t;

static void post_work(uv_work_t *w) {
  post_job_t *j = w->data;
  j->rc = cluster_publish_events(j->n->c, j->n->layout.partitions, j->evs.v, j->evs.n, j->received,
                                 CLUSTER_STALE_AFTER, j->err, sizeof j->err);
}

static void post_done(uv_work_t *w, int status) {
  post_job_t *j = w->data;
  http_response_t res;
  http_response_init(&res);
  if (status != 0 || j->rc < 0)
    reply(&res, 503, json_pack("{s:s, s:s}", "error", "not stored in the cluster; send the body again (events with an id are taken once)",
                               "cause", status != 0 ? "cancelled" : j->err));
  else
    reply(&res, 202, json_pack("{s:i}", "accepted", j->evs.n));
  http_server_respond(j->later, &res);
  event_list_free(&j->evs);
  free(j);
}

static void post_events(node_t *n, const http_request_t *req, http_response_t *res) {
  if (http_refuse_events_type(req, res)) return;
  if (n->stopping) return reply_error(res, 503, "stopping: nothing of this body was taken; send it to another engine");
  event_list_t evs = {0};
  char err[512];
  int64_t now = time(NULL);
  if (ingest_parse_body(req->body, req->body_len, now, n->o->max_future, &evs, err, sizeof err) < 0)
    return reply_error(res, 400, err);
  for (int i = 0; i < evs.n; i++)
    if (!evs.v[i].has_time) evs.v[i].time = now, evs.v[i].has_time = 1; /* received now, wherever applied */
  if (evs.n == 0) {
    event_list_free(&evs);
    return reply(res, 202, json_pack("{s:i}", "accepted", 0));
  }
  post_job_t *j = xcalloc(1, sizeof *j);
  j->n = n;
  j->evs = evs;
  j->received = now;
  j->later = http_server_defer(n->http);
  j->work.data = j;
  if (!j->later) {
    event_list_free(&j->evs);
    free(j);
    return reply_error(res, 500, "out of memory: nothing of this body was taken; retry");
  }
  uv_queue_work(&n->loop, &j->work, post_work, post_done); /* acknowledgements awaited off the loop */
}

/* A read that one or more partitions answer: GET /v1/members/ID (its owner) or
 * GET /v1/campaigns (every partition, summed). */
typedef struct {
  node_t *n;
  http_deferred_t *later;
  int member;              /* 1: one member; 0: the funnel */
  int waiting;
  json_t **parts;          /* the funnel: one summary per partition */
  int nparts;
  char *error;
  int status;
  json_t *doc;
  uv_timer_t done;         /* the answer goes out from here: never inside the HTTP handler */
} read_job_t;

static void read_free(uv_handle_t *h) { free(h->data); }

static void read_finish(uv_timer_t *t) {
  read_job_t *r = t->data;
  http_response_t res;
  http_response_init(&res);
  if (r->error) {
    reply_error(&res, r->status ? r->status : 503, r->error);
  } else if (r->member) {
    reply(&res, 200, r->doc);
    r->doc = NULL;
  } else {
    reply(&res, 200, summary_sum(r->parts, r->nparts));
  }
  http_server_respond(r->later, &res);
  for (int i = 0; i < r->nparts; i++) json_decref(r->parts[i]);
  free(r->parts);
  json_decref(r->doc);
  free(r->error);
  uv_close((uv_handle_t *)&r->done, read_free);
}

/* One partition's answer (text from rpc_handler, here or on another engine). */
static void read_take(read_job_t *r, const char *reply_text, const char *err) {
  json_t *o = reply_text ? jr_loads(reply_text, 0, NULL) : NULL;
  const char *problem = json_string_value(json_object_get(o, "error"));
  if (!o || problem) {
    if (!r->error) {
      int missing = problem && !strcmp(problem, "no such member");
      r->status = missing ? 404 : 503;
      r->error = xasprintf("%s", missing ? "no such member"
                                         : problem ? problem : err ? err : "no answer from the partition's owner");
    }
  } else if (r->member) {
    r->doc = json_incref(json_object_get(o, "member"));
  } else {
    r->parts[r->nparts++] = json_incref(json_object_get(o, "summary"));
  }
  json_decref(o);
  if (--r->waiting == 0) uv_timer_start(&r->done, read_finish, 0, 0);
}

static void on_reply(void *ud, const char *reply_text, const char *err) { read_take(ud, reply_text, err); }

static void ask(read_job_t *r, int p, const char *op, const char *body) {
  node_t *n = r->n;
  if (n->parts[p]) {
    char *text = rpc_handler(n, p, op, body);
    read_take(r, text, NULL);
    free(text);
    return;
  }
  char err[300];
  if (cluster_request(n->c, &n->loop, p, op, body, RPC_TIMEOUT_MS, on_reply, r, err, sizeof err) < 0)
    read_take(r, NULL, err);
}

static void start_read(node_t *n, http_response_t *res, const char *member) {
  read_job_t *r = xcalloc(1, sizeof *r);
  r->n = n;
  r->member = member != NULL;
  r->later = http_server_defer(n->http);
  if (!r->later) {
    free(r);
    return reply_error(res, 500, "out of memory");
  }
  uv_timer_init(&n->loop, &r->done);
  r->done.data = r;
  if (member) {
    r->waiting = 1;
    ask(r, cluster_partition_of(member, n->layout.partitions), "member", member);
  } else {
    r->waiting = n->layout.partitions;
    r->parts = xcalloc((size_t)n->layout.partitions, sizeof *r->parts);
    int P = n->layout.partitions;
    for (int p = 0; p < P; p++) ask(r, p, "campaigns", "");
  }
}

static json_t *node_json(node_t *n) {
  json_t *parts = json_array();
  for (int p = 0; p < n->layout.partitions; p++) {
    part_t *pt = n->parts[p];
    if (!pt) continue;
    json_array_append_new(parts, json_pack("{s:i, s:I, s:b, s:I}", "partition", p, "seq", (json_int_t)pt->committed,
                                           "catching_up", catching_up(pt), "backlog",
                                           (json_int_t)delivery_backlog(pt->d)));
  }
  return json_pack("{s:s, s:s, s:i, s:o}", "engine", n->o->name, "status", n->stopping ? "stopping" : "ok",
                   "partitions_total", n->layout.partitions, "partitions", parts);
}

static void on_request(const http_request_t *req, http_response_t *res, void *ud) {
  node_t *n = ud;
  int get = !strcmp(req->method, "GET"), post = !strcmp(req->method, "POST");
  if (!strcmp(req->path, "/healthz")) {
    if (!get) return reply_error(res, 405, "use GET");
    return reply(res, 200, node_json(n));
  }
  if (http_refuse_token(req, res, n->o->token)) return;
  if (!strcmp(req->path, "/v1/events")) {
    if (!post) return reply_error(res, 405, "use POST");
    return post_events(n, req, res);
  }
  if (!strncmp(req->path, "/v1/members/", 12)) {
    if (!get) return reply_error(res, 405, "use GET");
    if (!member_id_valid(req->path + 12, strlen(req->path + 12))) return reply_error(res, 400, "not a member id");
    return start_read(n, res, req->path + 12);
  }
  if (!strcmp(req->path, "/v1/campaigns")) {
    if (!get) return reply_error(res, 405, "use GET");
    return start_read(n, res, NULL);
  }
  reply_error(res, 404, "not found (an engine of a cluster serves /healthz, /v1/events, /v1/members/ID, /v1/campaigns)");
}

static int on_request_head(const http_request_t *req, http_response_t *res, void *ud) {
  node_t *n = ud;
  return http_refuse_token(req, res, n->o->token);
}

/* ---- start and stop ---- */

static void close_cb(uv_handle_t *h) { (void)h; }

static void begin_stop(node_t *n, const char *why) {
  if (n->stopping) return;
  log_msg(LOG_INFO, "stopping: handing the partitions over", "signal", why, NULL);
  for (int p = 0; p < n->layout.partitions; p++)
    if (n->parts[p]) pump_part(n->parts[p]); /* what was fetched is applied and settled */
  n->stopping = 1;
  for (int p = 0; p < n->layout.partitions; p++) part_close(n, p, 1);
  cluster_engine_leave(n->c, n->o->name);
  uv_timer_stop(&n->beat);
  uv_timer_stop(&n->work);
  uv_idle_stop(&n->busy);
  uv_close((uv_handle_t *)&n->beat, close_cb);
  uv_close((uv_handle_t *)&n->work, close_cb);
  uv_close((uv_handle_t *)&n->busy, close_cb);
  uv_close((uv_handle_t *)&n->sig_term, close_cb);
  uv_close((uv_handle_t *)&n->sig_int, close_cb);
  uv_close((uv_handle_t *)&n->sig_hup, close_cb);
  http_server_stop_accepting(n->http);
  http_server_close(n->http);
}

static void on_signal(uv_signal_t *s, int signum) { begin_stop(s->data, signum == SIGINT ? "SIGINT" : "SIGTERM"); }

/* SIGHUP: load the scripts again in every partition held (the old ones stay where the new
 * ones fail), as `hearth run` does. Every engine of a cluster must run the same scripts:
 * reload them all. */
static void on_hup(uv_signal_t *s, int signum) {
  (void)signum;
  node_t *n = s->data;
  int ok = 0, failed = 0;
  for (int p = 0; p < n->layout.partitions; p++) {
    part_t *pt = n->parts[p];
    if (!pt) continue;
    char *err = NULL, derr[300];
    if (pt->e->in_batch) settle(pt);
    if (engine_reload(pt->e, &err) < 0) {
      log_part(LOG_ERROR, pt, "reload failed; the old scripts stay", "error", err);
      free(err);
      failed++;
    } else if (delivery_reload(pt->d, derr, sizeof derr) < 0) {
      log_part(LOG_ERROR, pt, "reload of the channels failed; the old ones stay", "error", derr);
      failed++;
    } else {
      ok++;
    }
  }
  char a[16], b[16];
  snprintf(a, sizeof a, "%d", ok);
  snprintf(b, sizeof b, "%d", failed);
  log_msg(failed ? LOG_WARN : LOG_INFO, "scripts reloaded (SIGHUP)", "partitions", a, "failed", b, NULL);
}

int cluster_node_run(const cluster_node_opts_t *o) {
  node_t n = {.o = o};
  char err[512];
  if (mkdir(o->data_dir, 0755) < 0 && errno != EEXIST) {
    fprintf(stderr, "hearth: cannot create %s: %s\n", o->data_dir, strerror(errno));
    return 1;
  }
  n.c = cluster_connect(o->url, o->name, err, sizeof err);
  if (!n.c) {
    fprintf(stderr, "hearth: %s\n", err);
    return 1;
  }
  if (cluster_layout(n.c, &n.layout, err, sizeof err) < 0) {
    fprintf(stderr, "hearth: %s\n", err);
    cluster_close(n.c);
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&n.loop);
  n.parts = xcalloc((size_t)n.layout.partitions, sizeof *n.parts);
  http_server_opts_t ho = {.host = o->host, .port = o->port, .max_body = o->max_body,
                           .handler = on_request, .gate = on_request_head, .ud = &n};
  n.http = http_server_start(&n.loop, &ho, err, sizeof err);
  if (!n.http) {
    fprintf(stderr, "hearth: %s\n", err);
    uv_run(&n.loop, UV_RUN_DEFAULT);
    uv_loop_close(&n.loop);
    free(n.parts);
    cluster_close(n.c);
    return 1;
  }
  snprintf(n.addr, sizeof n.addr, "%s:%d", o->host, http_server_port(n.http));
  uv_timer_init(&n.loop, &n.beat);
  n.beat.data = &n;
  uv_timer_init(&n.loop, &n.work);
  n.work.data = &n;
  uv_idle_init(&n.loop, &n.busy);
  n.busy.data = &n;
  uv_signal_init(&n.loop, &n.sig_term);
  n.sig_term.data = &n;
  uv_signal_start(&n.sig_term, on_signal, SIGTERM);
  uv_signal_init(&n.loop, &n.sig_int);
  n.sig_int.data = &n;
  uv_signal_start(&n.sig_int, on_signal, SIGINT);
  uv_signal_init(&n.loop, &n.sig_hup);
  n.sig_hup.data = &n;
  uv_signal_start(&n.sig_hup, on_hup, SIGHUP);
  char parts[16];
  snprintf(parts, sizeof parts, "%d", n.layout.partitions);
  log_msg(LOG_INFO, "listening", "addr", n.addr, "engine", o->name, "partitions", parts,
          "clock", o->virtual_clock ? "virtual (ticks only)" : "real", NULL);
  beat_registry(&n);
  uv_timer_start(&n.beat, on_beat, 0, BEAT_MS);
  uv_timer_start(&n.work, on_work, IDLE_POLL_MS, IDLE_POLL_MS);
  uv_run(&n.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&n.loop) != 0) log_msg(LOG_WARN, "loop closed with handles still open", NULL);
  assert(owned_count(&n) == 0);
  free(n.parts);
  cluster_close(n.c);
  log_msg(LOG_INFO, "stopped", NULL);
  return n.status;
}

/* ---- events into the cluster ---- */

int cluster_publish_events(cluster_t *c, int partitions, const event_t *evs, int n, int64_t received,
                           int64_t stale_after, char *err, size_t errlen) {
  for (int at = 0; at < n; at += PUBLISH_CHUNK) {
    int k = n - at < PUBLISH_CHUNK ? n - at : PUBLISH_CHUNK;
    cluster_out_t *out = xcalloc((size_t)k, sizeof *out);
    char **bodies = xcalloc((size_t)k, sizeof *bodies);
    for (int i = 0; i < k; i++) {
      const event_t *ev = &evs[at + i];
      char *text = event_to_text(ev);
      bodies[i] = xasprintf("{\"received\":%lld,\"stale_after\":%lld,\"event\":%s}", (long long)received,
                            (long long)stale_after, text);
      free(text);
      out[i] = (cluster_out_t){.partition = cluster_partition_of(ev->member, partitions), .kind = CM_EVENT,
                               .msg_id = ev->id, .body = bodies[i], .len = strlen(bodies[i])};
    }
    int rc = cluster_publish(c, out, k, err, errlen);
    for (int i = 0; i < k; i++) free(bodies[i]);
    free(bodies);
    free(out);
    if (rc < 0) return -1;
  }
  return 0;
}
