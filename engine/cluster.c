/* cluster.c: the NATS JetStream side of Hearth's scale-out, to the interface in cluster.h.
 * Owns the libnats connection, the JetStream contexts, the key-value handles, the request
 * servers and every natsStatus turned into a message. Written for Hearth against the API
 * documented in Debian's libnats-dev 3.4.1 header (nats.h); the partition hash is FNV-1a 64
 * (a public algorithm, written here from its definition). No code taken from elsewhere. */
#include "cluster.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <nats/nats.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define SNAP_STREAM "HEARTH_SNAP"
#define SNAP_CHUNK (256 * 1024)
#define SENT_TTL_NS (30LL * 24 * 3600 * 1000 * NS_PER_MS)
#define PUBLISH_WAIT_MS 10000
#define NS_PER_MS 1000000LL
#define DURABLE "engine"

enum { KV_CONFIG, KV_OWNERS, KV_ENGINES, KV_SENT, KV_COUNT };
static const char *const bucket_names[KV_COUNT] = {"hearth_config", "hearth_owners", "hearth_engines",
                                                   "hearth_sent"};

typedef struct cluster_server cluster_server_t;

struct cluster {
  natsConnection *nc;
  jsCtx *js;      /* synchronous JetStream calls (thread-safe) */
  jsCtx *sent_js; /* asynchronous marks of delivered actions */
  pthread_mutex_t lock; /* guards kv[] and servers */
  kvStore *kv[KV_COUNT];
  cluster_server_t *servers;
};

/* A durable reader's doorbell: a plain subscription to the partition's subjects rings it
 * (on a NATS thread) whenever a message is published there, so an idle reader asks
 * JetStream nothing; freed when that subscription is done. */
typedef struct {
  atomic_int rung;
  natsSubscription *sub;
} bell_t;

struct cluster_sub {
  cluster_t *c;
  natsSubscription *sub;
  int partition;
  bell_t *bell;
  int more;             /* the last fetch left messages behind */
  uint64_t checked_ns;  /* when JetStream was last asked (a missed ring is caught within 1 s) */
};

static int fail(char *err, size_t errlen, const char *what, natsStatus s, jsErrCode jerr);
static int fail_msg(char *err, size_t errlen, const char *msg);

static void bell_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
  (void)nc;
  (void)sub;
  atomic_store(&((bell_t *)closure)->rung, 1);
  natsMsg_Destroy(msg);
}

static void bell_done(void *closure) { free(closure); }

/* Ring s's bell on every message of its partition. 0, -1 with err. */
static int bell_start(cluster_sub_t *s, const char *filter, char *err, size_t errlen) {
  bell_t *b = calloc(1, sizeof *b);
  if (!b) return fail_msg(err, errlen, "out of memory");
  atomic_init(&b->rung, 1);
  natsStatus st = natsConnection_Subscribe(&b->sub, s->c->nc, filter, bell_on_msg, b);
  if (st == NATS_OK) st = natsSubscription_SetOnCompleteCB(b->sub, bell_done, b);
  if (st != NATS_OK) {
    natsSubscription_Destroy(b->sub);
    free(b); /* no message can have come: the callback was never armed with b for good */
    return fail(err, errlen, "subscribing to the partition's doorbell", st, 0);
  }
  s->bell = b;
  return 0;
}

static void bell_stop(bell_t *b) {
  if (!b) return;
  natsSubscription *sub = b->sub;
  natsSubscription_Unsubscribe(sub); /* b is freed by bell_done once the subscription is done */
  natsSubscription_Destroy(sub);
}

/* ---- errors ---- */

/* Write "what: status text (last error)" to err; always returns -1. */
static int fail(char *err, size_t errlen, const char *what, natsStatus s, jsErrCode jerr) {
  natsStatus last = NATS_OK;
  const char *detail = nats_GetLastError(&last);
  if (err && errlen) {
    if (jerr)
      snprintf(err, errlen, "%s: %s (%s; JetStream error %d)", what, natsStatus_GetText(s),
               detail ? detail : "no detail", (int)jerr);
    else
      snprintf(err, errlen, "%s: %s (%s)", what, natsStatus_GetText(s), detail ? detail : "no detail");
  }
  return -1;
}

static int fail_msg(char *err, size_t errlen, const char *msg) {
  if (err && errlen) snprintf(err, errlen, "%s", msg);
  return -1;
}

/* "path: strerror(errno)" into err; always -1. */
static int sys_fail(char *err, size_t errlen, const char *path) {
  if (err && errlen) snprintf(err, errlen, "%s: %s", path, strerror(errno));
  return -1;
}

/* ---- library lifetime: nats_CloseAndWait when the last cluster_t goes ---- */

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static int live_clusters;

static void live_add(int delta) {
  pthread_mutex_lock(&live_lock);
  live_clusters += delta;
  assert(live_clusters >= 0);
  int last = live_clusters == 0 && delta < 0;
  pthread_mutex_unlock(&live_lock);
  if (last) nats_CloseAndWait(5000);
}

/* ---- connection ---- */

static natsStatus set_servers(natsOptions *o, const char *url) {
  char *copy = strdup(url);
  const char *list[64];
  int n = 0;
  if (!copy) return NATS_NO_MEMORY;
  for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok && n < 64; tok = strtok_r(NULL, ",", &save))
    list[n++] = tok;
  natsStatus s = n ? natsOptions_SetServers(o, list, n) : NATS_INVALID_ARG;
  free(copy);
  return s;
}

static void sent_error(jsCtx *js, jsPubAckErr *pae, void *closure) {
  (void)js;
  (void)closure;
  log_msg(LOG_WARN, "cluster: marking an action as delivered failed", "subject", natsMsg_GetSubject(pae->Msg),
          "error", pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err), NULL);
}

/* How long a JetStream API call may take: a replicated stream on a loaded machine (or a
 * leader election) can need seconds; the library's default is 5 s. */
#define JS_API_WAIT_MS 30000

static natsStatus open_contexts(cluster_t *c) {
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = JS_API_WAIT_MS;
  natsStatus s = natsConnection_JetStream(&c->js, c->nc, &jo);
  if (s != NATS_OK) return s;
  jsOptions_Init(&jo);
  jo.Wait = JS_API_WAIT_MS;
  jo.PublishAsync.ErrHandler = sent_error;
  return natsConnection_JetStream(&c->sent_js, c->nc, &jo);
}

cluster_t *cluster_connect(const char *url, const char *name, char *err, size_t errlen) {
  cluster_t *c = calloc(1, sizeof *c);
  natsOptions *o = NULL;
  if (!c) return fail_msg(err, errlen, "out of memory"), NULL;
  pthread_mutex_init(&c->lock, NULL);
  live_add(1);
  natsStatus s = natsOptions_Create(&o);
  if (s == NATS_OK) s = set_servers(o, url);
  if (s == NATS_OK && name) s = natsOptions_SetName(o, name);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 500);
  if (s == NATS_OK) s = natsOptions_SetTimeout(o, 2000);
  if (s == NATS_OK) s = natsConnection_Connect(&c->nc, o);
  if (s != NATS_OK) {
    char what[300];
    snprintf(what, sizeof what, "connecting to NATS at %s", url);
    fail(err, errlen, what, s, 0);
  } else if ((s = open_contexts(c)) != NATS_OK) {
    fail(err, errlen, "opening JetStream", s, 0);
  }
  natsOptions_Destroy(o);
  if (s != NATS_OK) {
    cluster_close(c);
    return NULL;
  }
  return c;
}

static void servers_stop_all(cluster_t *c);

void cluster_close(cluster_t *c) {
  if (!c) return;
  servers_stop_all(c);
  if (c->sent_js) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = PUBLISH_WAIT_MS;
    natsStatus s = js_PublishAsyncComplete(c->sent_js, &po);
    if (s != NATS_OK)
      log_msg(LOG_WARN, "cluster: some delivered-action marks were not acknowledged at close", "error",
              natsStatus_GetText(s), NULL);
    jsCtx_Destroy(c->sent_js);
  }
  for (int i = 0; i < KV_COUNT; i++) kvStore_Destroy(c->kv[i]);
  jsCtx_Destroy(c->js);
  if (c->nc) {
    natsConnection_Close(c->nc);
    natsConnection_Destroy(c->nc);
  }
  pthread_mutex_destroy(&c->lock);
  free(c);
  live_add(-1);
}

/* ---- layout ---- */

static void stream_name(char *buf, size_t len, int partition) { snprintf(buf, len, "HEARTH_P%03d", partition); }

/* The key-value handle for bucket `which`, opened once and kept. NATS_NOT_FOUND: no bucket. */
static natsStatus kv_get(cluster_t *c, int which, kvStore **out) {
  natsStatus s = NATS_OK;
  pthread_mutex_lock(&c->lock);
  if (!c->kv[which]) s = js_KeyValue(&c->kv[which], c->js, bucket_names[which]);
  *out = c->kv[which];
  pthread_mutex_unlock(&c->lock);
  return s;
}

static int kv_open(cluster_t *c, int which, kvStore **out, char *err, size_t errlen) {
  natsStatus s = kv_get(c, which, out);
  if (s == NATS_OK) return 0;
  char what[120];
  snprintf(what, sizeof what, "opening bucket %s", bucket_names[which]);
  return fail(err, errlen, what, s, 0);
}

static int add_stream(cluster_t *c, const char *name, const char *subject, int replicas, char *err, size_t errlen) {
  jsStreamConfig sc;
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  const char *subjects[1] = {subject};
  jsStreamConfig_Init(&sc);
  sc.Name = name;
  sc.Subjects = subjects;
  sc.SubjectsLen = 1;
  sc.Retention = js_LimitsPolicy;
  sc.Storage = js_FileStorage;
  sc.Replicas = replicas;
  sc.Duplicates = 120LL * 1000 * NS_PER_MS;
  sc.AllowDirect = true;
  natsStatus s = js_AddStream(&si, c->js, &sc, NULL, &jerr);
  jsStreamInfo_Destroy(si);
  if (s == NATS_OK) return 0;
  char what[120];
  snprintf(what, sizeof what, "creating stream %s", name);
  return fail(err, errlen, what, s, jerr);
}

/* ttl_ns: libnats 3.4.1 passes kvConfig.TTL to the stream's MaxAge as is, in nanoseconds
 * (the server refused 6000 as "max age needs to be >= 100ms"). */
static int add_bucket(cluster_t *c, int which, int64_t ttl_ns, int replicas, char *err, size_t errlen) {
  kvConfig kc;
  kvStore *kv = NULL;
  kvConfig_Init(&kc);
  kc.Bucket = bucket_names[which];
  kc.History = 1;
  kc.TTL = ttl_ns;
  kc.StorageType = js_FileStorage;
  kc.Replicas = replicas;
  natsStatus s = js_CreateKeyValue(&kv, c->js, &kc);
  if (s != NATS_OK) {
    char what[120];
    snprintf(what, sizeof what, "creating bucket %s", bucket_names[which]);
    return fail(err, errlen, what, s, 0);
  }
  pthread_mutex_lock(&c->lock);
  if (c->kv[which]) kvStore_Destroy(kv);
  else c->kv[which] = kv;
  pthread_mutex_unlock(&c->lock);
  return 0;
}

/* Parse the layout's JSON: 0, -1. */
static int layout_parse(const char *text, int len, cluster_layout_t *l) {
  json_error_t je;
  json_t *j = json_loadb(text, (size_t)len, 0, &je);
  json_int_t p = 0, r = 0;
  int ok = j && json_unpack(j, "{s:I,s:I}", "partitions", &p, "replicas", &r) == 0;
  json_decref(j);
  if (!ok) return -1;
  l->partitions = (int)p;
  l->replicas = (int)r;
  return 0;
}

/* The layout stored in hearth_config: 1 found, 0 none, -1 with err. */
static int layout_read(cluster_t *c, cluster_layout_t *l, char *err, size_t errlen) {
  kvStore *kv = NULL;
  kvEntry *e = NULL;
  natsStatus s = kv_get(c, KV_CONFIG, &kv);
  if (s == NATS_NOT_FOUND) return 0;
  if (s != NATS_OK) return fail(err, errlen, "opening bucket hearth_config", s, 0);
  s = kvStore_Get(&e, kv, "layout");
  if (s == NATS_NOT_FOUND) return 0;
  if (s != NATS_OK) return fail(err, errlen, "reading the layout", s, 0);
  int rc = layout_parse(kvEntry_Value(e), kvEntry_ValueLen(e), l) == 0 ? 1 : -1;
  kvEntry_Destroy(e);
  if (rc < 0) fail_msg(err, errlen, "the cluster's layout (hearth_config layout) is not valid JSON");
  return rc;
}

static int layout_differs(const cluster_layout_t *have, const cluster_layout_t *want, char *err, size_t errlen) {
  if (have->partitions == want->partitions && have->replicas == want->replicas) return 0;
  snprintf(err, errlen, "the cluster has %d partitions and %d replicas, not %d and %d", have->partitions,
           have->replicas, want->partitions, want->replicas);
  return 1;
}

static int create_parts(cluster_t *c, const cluster_layout_t *l, char *err, size_t errlen) {
  for (int p = 0; p < l->partitions; p++) {
    char name[32], subject[48];
    stream_name(name, sizeof name, p);
    snprintf(subject, sizeof subject, "hearth.p.%03d.>", p);
    if (add_stream(c, name, subject, l->replicas, err, errlen) < 0) return -1;
  }
  if (add_stream(c, SNAP_STREAM, "hearth.snap.>", l->replicas, err, errlen) < 0) return -1;
  if (add_bucket(c, KV_OWNERS, CLUSTER_LEASE_SECONDS * 1000LL * NS_PER_MS, l->replicas, err, errlen) < 0) return -1;
  if (add_bucket(c, KV_ENGINES, CLUSTER_ENGINE_TTL_SECONDS * 1000LL * NS_PER_MS, l->replicas, err, errlen) < 0) return -1;
  return add_bucket(c, KV_SENT, SENT_TTL_NS, l->replicas, err, errlen);
}

int cluster_create(cluster_t *c, const cluster_layout_t *l, char *err, size_t errlen) {
  cluster_layout_t have;
  if (l->partitions < 1 || l->partitions > CLUSTER_MAX_PARTITIONS || l->replicas < 1 || l->replicas > 5)
    return fail_msg(err, errlen, "a layout needs 1..1000 partitions and 1..5 replicas");
  int found = layout_read(c, &have, err, errlen);
  if (found < 0) return -1;
  if (found && layout_differs(&have, l, err, errlen)) return -1;
  if (add_bucket(c, KV_CONFIG, 0, l->replicas, err, errlen) < 0) return -1;
  if (create_parts(c, l, err, errlen) < 0) return -1;
  if (found) return 0;
  char json[128];
  int len = snprintf(json, sizeof json, "{\"partitions\":%d,\"replicas\":%d,\"created\":%lld}", l->partitions,
                     l->replicas, (long long)time(NULL));
  uint64_t rev = 0;
  natsStatus s = kvStore_Create(&rev, c->kv[KV_CONFIG], "layout", json, len);
  if (s == NATS_OK) return 0;
  /* Another node may have written it between our read and our create: agree or refuse. */
  found = layout_read(c, &have, err, errlen);
  if (found > 0) return layout_differs(&have, l, err, errlen) ? -1 : 0;
  return found < 0 ? -1 : fail(err, errlen, "writing the layout", s, 0);
}

int cluster_layout(cluster_t *c, cluster_layout_t *l, char *err, size_t errlen) {
  int found = layout_read(c, l, err, errlen);
  if (found == 0) {
    char url[256] = "";
    if (natsConnection_GetConnectedUrl(c->nc, url, sizeof url) != NATS_OK || !url[0]) snprintf(url, sizeof url, "?");
    snprintf(err, errlen, "no Hearth cluster at %s: run hearth cluster init", url);
    return -1;
  }
  return found < 0 ? -1 : 0;
}

int cluster_partition_of(const char *member, int partitions) {
  assert(partitions > 0);
  uint64_t h = 14695981039346656037ULL; /* FNV-1a 64 offset basis */
  for (const unsigned char *p = (const unsigned char *)member; *p; p++) {
    h ^= *p;
    h *= 1099511628211ULL; /* FNV 64 prime */
  }
  return (int)(h % (uint64_t)partitions);
}

/* ---- publishing ---- */

static const char *kind_token(cluster_kind_t k) { return k == CM_EVENT ? "ev" : k == CM_EMIT ? "emit" : "tick"; }

static cluster_kind_t kind_of_subject(const char *subject) {
  const char *dot = strrchr(subject, '.');
  const char *last = dot ? dot + 1 : subject;
  if (strcmp(last, "emit") == 0) return CM_EMIT;
  if (strcmp(last, "tick") == 0) return CM_TICK;
  return CM_EVENT;
}

/* The acknowledgements of one cluster_publish call, counted on NATS's threads. */
typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t done;
  int acked, failed;
  char first_error[256];
} pub_tally_t;

static void pub_acked(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
  (void)js;
  pub_tally_t *t = closure;
  pthread_mutex_lock(&t->lock);
  if (pa && !pae) {
    t->acked++;
  } else {
    if (!t->failed)
      snprintf(t->first_error, sizeof t->first_error, "publishing to %s: %s", natsMsg_GetSubject(msg),
               pae && pae->ErrText ? pae->ErrText : natsStatus_GetText(pae ? pae->Err : NATS_ERR));
    t->failed++;
  }
  pthread_cond_broadcast(&t->done);
  pthread_mutex_unlock(&t->lock);
  natsMsg_Destroy(msg);
}

static natsStatus publish_one(jsCtx *js, const cluster_out_t *m) {
  char subject[48];
  natsMsg *msg = NULL;
  assert(m->partition >= 0 && m->partition < CLUSTER_MAX_PARTITIONS);
  snprintf(subject, sizeof subject, "hearth.p.%03d.%s", m->partition, kind_token(m->kind));
  natsStatus s = natsMsg_Create(&msg, subject, NULL, m->body, (int)m->len);
  if (s == NATS_OK && m->msg_id) s = natsMsgHeader_Set(msg, "Nats-Msg-Id", m->msg_id);
  if (s == NATS_OK) s = js_PublishMsgAsync(js, &msg, NULL);
  natsMsg_Destroy(msg); /* NULL when the library took it */
  return s;
}

/* Wait until `expected` acknowledgements (good or bad) were counted. */
static void tally_wait(pub_tally_t *t, int expected) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += PUBLISH_WAIT_MS / 1000;
  pthread_mutex_lock(&t->lock);
  while (t->acked + t->failed < expected)
    if (pthread_cond_timedwait(&t->done, &t->lock, &until) == ETIMEDOUT) break;
  pthread_mutex_unlock(&t->lock);
}

int cluster_publish(cluster_t *c, const cluster_out_t *msgs, int n, char *err, size_t errlen) {
  pub_tally_t t = {.acked = 0, .failed = 0};
  jsOptions jo;
  jsCtx *js = NULL;
  int sent = 0, rc = 0;
  if (n <= 0) return 0;
  pthread_mutex_init(&t.lock, NULL);
  pthread_cond_init(&t.done, NULL);
  jsOptions_Init(&jo);
  jo.Wait = JS_API_WAIT_MS;
  jo.PublishAsync.AckHandler = pub_acked;
  jo.PublishAsync.AckHandlerClosure = &t;
  natsStatus s = natsConnection_JetStream(&js, c->nc, &jo);
  if (s != NATS_OK) rc = fail(err, errlen, "opening a JetStream context to publish", s, 0);
  for (; rc == 0 && sent < n; sent++)
    if ((s = publish_one(js, &msgs[sent])) != NATS_OK) rc = fail(err, errlen, "publishing", s, 0);
  if (js) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = PUBLISH_WAIT_MS;
    s = js_PublishAsyncComplete(js, &po);
    int unanswered = 0;
    if (s != NATS_OK) {
      natsMsgList pending = {0};
      if (js_PublishAsyncGetPendingList(&pending, js) == NATS_OK) {
        unanswered = pending.Count;
        natsMsgList_Destroy(&pending);
      }
      if (rc == 0) rc = fail(err, errlen, "waiting for JetStream's acknowledgements", s, 0);
    }
    tally_wait(&t, sent - unanswered);
    jsCtx_Destroy(js);
  }
  pthread_mutex_lock(&t.lock);
  if (rc == 0 && t.failed) rc = fail_msg(err, errlen, t.first_error);
  if (rc == 0 && t.acked != n) rc = fail_msg(err, errlen, "JetStream did not acknowledge every message");
  pthread_mutex_unlock(&t.lock);
  pthread_cond_destroy(&t.done);
  pthread_mutex_destroy(&t.lock);
  return rc;
}

/* ---- consuming ---- */

static cluster_sub_t *sub_new(cluster_t *c, natsSubscription *sub, int partition) {
  cluster_sub_t *s = calloc(1, sizeof *s);
  if (!s) {
    natsSubscription_Destroy(sub);
    return NULL;
  }
  s->c = c;
  s->sub = sub;
  s->partition = partition;
  return s;
}

static int ensure_durable(cluster_t *c, const char *stream, const char *filter, uint64_t from, char *err,
                          size_t errlen) {
  jsConsumerConfig cc;
  jsConsumerInfo *ci = NULL;
  jsErrCode jerr = 0;
  jsConsumerConfig_Init(&cc);
  cc.Durable = DURABLE;
  cc.AckPolicy = js_AckExplicit;
  cc.AckWait = 30LL * 1000 * NS_PER_MS;
  cc.DeliverPolicy = from ? js_DeliverByStartSequence : js_DeliverAll;
  cc.OptStartSeq = from;
  cc.MaxAckPending = 20000;
  cc.FilterSubject = filter;
  natsStatus s = js_AddConsumer(&ci, c->js, stream, &cc, NULL, &jerr);
  jsConsumerInfo_Destroy(ci);
  if (s == NATS_OK) return 0;
  char what[120];
  snprintf(what, sizeof what, "creating the consumer %s on %s", DURABLE, stream);
  return fail(err, errlen, what, s, jerr);
}

static cluster_sub_t *bind_durable(cluster_t *c, int partition, uint64_t from, char *err, size_t errlen) {
  char stream[32], filter[48];
  natsSubscription *sub = NULL;
  jsSubOptions so;
  jsErrCode jerr = 0;
  stream_name(stream, sizeof stream, partition);
  snprintf(filter, sizeof filter, "hearth.p.%03d.>", partition);
  if (from) { /* a new owner: the consumer starts over where its state is */
    natsStatus ds = js_DeleteConsumer(c->js, stream, DURABLE, NULL, &jerr);
    if (ds != NATS_OK && ds != NATS_NOT_FOUND && jerr != JSConsumerNotFoundErr)
      return fail(err, errlen, "replacing the partition's consumer", ds, jerr), NULL;
    jerr = 0;
  }
  /* Made apart from the subscription so that unsubscribing never deletes it. */
  if (ensure_durable(c, stream, filter, from, err, errlen) < 0) return NULL;
  jsSubOptions_Init(&so);
  so.Stream = stream;
  so.Consumer = DURABLE;
  natsStatus s = js_PullSubscribe(&sub, c->js, filter, DURABLE, NULL, &so, &jerr);
  if (s != NATS_OK) return fail(err, errlen, "binding to the durable consumer", s, jerr), NULL;
  cluster_sub_t *cs = sub_new(c, sub, partition);
  if (!cs) return fail_msg(err, errlen, "out of memory"), NULL;
  if (bell_start(cs, filter, err, errlen) < 0) {
    cluster_unsubscribe(cs);
    return NULL;
  }
  return cs;
}

cluster_sub_t *cluster_subscribe(cluster_t *c, int partition, char *err, size_t errlen) {
  return bind_durable(c, partition, 0, err, errlen);
}

cluster_sub_t *cluster_subscribe_from(cluster_t *c, int partition, uint64_t from, char *err, size_t errlen) {
  assert(from >= 1);
  return bind_durable(c, partition, from, err, errlen);
}

/* Copy a fetched natsMsg into m; keeps the natsMsg for an ack when keep. */
static int msg_fill(cluster_msg_t *m, natsMsg *msg, uint64_t seq, int keep) {
  int len = natsMsg_GetDataLength(msg);
  m->seq = seq;
  m->kind = kind_of_subject(natsMsg_GetSubject(msg));
  m->len = (size_t)len;
  m->body = malloc((size_t)len + 1);
  if (!m->body) return -1;
  if (len) memcpy(m->body, natsMsg_GetData(msg), (size_t)len);
  m->body[len] = '\0';
  m->msg = keep ? msg : NULL;
  if (!keep) natsMsg_Destroy(msg);
  return 0;
}

static uint64_t stream_seq_of(natsMsg *msg) {
  jsMsgMetaData *meta = NULL;
  if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) return 0;
  uint64_t seq = meta->Sequence.Stream;
  jsMsgMetaData_Destroy(meta);
  return seq;
}

/* Messages the durable consumer has not handed out yet. 0, -1 with err. */
static int pending_of(cluster_sub_t *s, uint64_t *pending, char *err, size_t errlen) {
  char stream[32];
  jsErrCode jerr = 0;
  stream_name(stream, sizeof stream, s->partition);
  jsConsumerInfo *ci = NULL;
  natsStatus st = js_GetConsumerInfo(&ci, s->c->js, stream, DURABLE, NULL, &jerr);
  if (st != NATS_OK) return fail(err, errlen, "reading the consumer's pending count", st, jerr);
  *pending = ci->NumPending;
  jsConsumerInfo_Destroy(ci);
  return 0;
}

int cluster_fetch(cluster_sub_t *s, int max, int wait_ms, cluster_msg_t **out, int *n, char *err, size_t errlen) {
  natsMsgList list = {0};
  jsFetchRequest req;
  *out = NULL;
  *n = 0;
  assert(max > 0);
  jsFetchRequest_Init(&req);
  req.Batch = max;
  req.Expires = (wait_ms > 0 ? wait_ms : 1000) * NS_PER_MS;
  if (wait_ms <= 0) { /* idle and not rung: nothing to ask JetStream */
    uint64_t now = mono_ns();
    int rung = atomic_exchange(&s->bell->rung, 0);
    if (!rung && !s->more && now - s->checked_ns < 1000000000ull) return 0;
    s->checked_ns = now;
  }
  if (wait_ms <= 0) {
    /* Not waiting: fetch no more than the messages there are, so that the fetch returns as
     * soon as they are in (a no-wait pull with fewer messages than its batch waited for
     * its whole expiry with this server and library): the consumer says how many. */
    uint64_t pending;
    if (pending_of(s, &pending, err, errlen) < 0) return -1;
    s->more = pending > (uint64_t)max;
    if (pending == 0) return 0;
    if (pending < (uint64_t)max) req.Batch = (int)pending;
  }
  natsStatus st = natsSubscription_FetchRequest(&list, s->sub, &req);
  if (st == NATS_TIMEOUT || st == NATS_NOT_FOUND) st = NATS_OK; /* nothing there (yet) */
  if (st != NATS_OK) {
    natsMsgList_Destroy(&list);
    return fail(err, errlen, "fetching from the partition", st, 0);
  }
  if (list.Count == 0) {
    natsMsgList_Destroy(&list);
    return 0;
  }
  cluster_msg_t *msgs = calloc((size_t)list.Count, sizeof *msgs);
  int rc = msgs ? 0 : fail_msg(err, errlen, "out of memory");
  for (int i = 0; rc == 0 && i < list.Count; i++) {
    natsMsg *m = list.Msgs[i];
    list.Msgs[i] = NULL; /* ours now */
    uint64_t seq = stream_seq_of(m);
    if (msg_fill(&msgs[i], m, seq, 1) < 0) {
      natsMsg_Destroy(m);
      rc = fail_msg(err, errlen, "out of memory");
    } else {
      *n = i + 1;
    }
  }
  natsMsgList_Destroy(&list);
  if (rc < 0) {
    cluster_msgs_free(msgs, *n);
    *n = 0;
    return -1;
  }
  *out = msgs;
  return 0;
}

int cluster_ack(cluster_msg_t *m) {
  if (!m->msg) return 0;
  natsStatus s = natsMsg_Ack((natsMsg *)m->msg, NULL);
  if (s == NATS_OK) return 0;
  char seq[24];
  snprintf(seq, sizeof seq, "%" PRIu64, m->seq);
  log_msg(LOG_WARN, "cluster: acknowledging a message failed", "seq", seq, "error", natsStatus_GetText(s), NULL);
  return -1;
}

void cluster_msgs_free(cluster_msg_t *msgs, int n) {
  if (!msgs) return;
  for (int i = 0; i < n; i++) {
    free(msgs[i].body);
    natsMsg_Destroy((natsMsg *)msgs[i].msg);
  }
  free(msgs);
}

void cluster_unsubscribe(cluster_sub_t *s) {
  if (!s) return;
  /* The durable was made with js_AddConsumer, so the library does not delete it here. */
  natsStatus st = natsSubscription_Unsubscribe(s->sub);
  if (st != NATS_OK && st != NATS_INVALID_SUBSCRIPTION)
    log_msg(LOG_WARN, "cluster: unsubscribing failed", "error", natsStatus_GetText(st), NULL);
  natsSubscription_Destroy(s->sub);
  bell_stop(s->bell);
  free(s);
}

int cluster_get(cluster_t *c, int partition, uint64_t seq, cluster_msg_t *out, char *err, size_t errlen) {
  char stream[32];
  natsMsg *msg = NULL;
  jsErrCode jerr = 0;
  memset(out, 0, sizeof *out);
  stream_name(stream, sizeof stream, partition);
  natsStatus s = js_GetMsg(&msg, c->js, stream, seq, NULL, &jerr);
  if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) return 0;
  if (s != NATS_OK) return fail(err, errlen, "reading a message by sequence", s, jerr);
  if (msg_fill(out, msg, seq, 0) < 0) return fail_msg(err, errlen, "out of memory");
  return 1;
}

int cluster_progress(cluster_t *c, int partition, cluster_progress_t *p, char *err, size_t errlen) {
  char stream[32];
  jsStreamInfo *si = NULL;
  jsConsumerInfo *ci = NULL;
  jsErrCode jerr = 0;
  memset(p, 0, sizeof *p);
  stream_name(stream, sizeof stream, partition);
  natsStatus s = js_GetStreamInfo(&si, c->js, stream, NULL, &jerr);
  if (s != NATS_OK) return fail(err, errlen, "reading the partition's stream", s, jerr);
  p->last_seq = si->State.LastSeq;
  jsStreamInfo_Destroy(si);
  jerr = 0;
  s = js_GetConsumerInfo(&ci, c->js, stream, DURABLE, NULL, &jerr);
  if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr) return 0;
  if (s != NATS_OK) return fail(err, errlen, "reading the partition's consumer", s, jerr);
  p->ack_floor = ci->AckFloor.Stream;
  /* a consumer made anew for a new owner starts past what that owner's state holds: all
   * before its start is done, though never acknowledged to this consumer */
  if (ci->Config && ci->Config->OptStartSeq > 0 && ci->Config->OptStartSeq - 1 > p->ack_floor)
    p->ack_floor = ci->Config->OptStartSeq - 1;
  p->pending = ci->NumPending;
  p->ack_pending = (uint64_t)ci->NumAckPending;
  jsConsumerInfo_Destroy(ci);
  return 0;
}

/* ---- engines and owners ---- */

int cluster_engine_beat(cluster_t *c, const char *engine, const char *json, char *err, size_t errlen) {
  kvStore *kv = NULL;
  uint64_t rev = 0;
  if (kv_open(c, KV_ENGINES, &kv, err, errlen) < 0) return -1;
  natsStatus s = kvStore_PutString(&rev, kv, engine, json);
  return s == NATS_OK ? 0 : fail(err, errlen, "putting the engine's entry", s, 0);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void strings_free(char **v, int n) {
  if (!v) return;
  for (int i = 0; i < n; i++) free(v[i]);
  free(v);
}

int cluster_engines(cluster_t *c, char ***names, char ***jsons, int *n, char *err, size_t errlen) {
  kvStore *kv = NULL;
  kvKeysList keys = {0};
  *names = NULL;
  if (jsons) *jsons = NULL;
  *n = 0;
  if (kv_open(c, KV_ENGINES, &kv, err, errlen) < 0) return -1;
  natsStatus s = kvStore_Keys(&keys, kv, NULL);
  if (s == NATS_NOT_FOUND) return 0;
  if (s != NATS_OK) return fail(err, errlen, "listing the engines", s, 0);
  char **nm = calloc((size_t)keys.Count + 1, sizeof *nm), **js = calloc((size_t)keys.Count + 1, sizeof *js);
  int count = 0, rc = nm && js ? 0 : fail_msg(err, errlen, "out of memory");
  for (int i = 0; rc == 0 && i < keys.Count; i++) nm[count++] = strdup(keys.Keys[i]);
  kvKeysList_Destroy(&keys);
  if (rc == 0) qsort(nm, (size_t)count, sizeof *nm, cmp_names);
  for (int i = 0; rc == 0 && i < count; i++) {
    kvEntry *e = NULL;
    s = kvStore_Get(&e, kv, nm[i]);
    if (s == NATS_OK) js[i] = strdup(kvEntry_ValueString(e));
    else if (s != NATS_NOT_FOUND) rc = fail(err, errlen, "reading an engine's entry", s, 0);
    kvEntry_Destroy(e);
    if (rc == 0 && (!nm[i] || (s == NATS_OK && !js[i]))) rc = fail_msg(err, errlen, "out of memory");
  }
  if (rc < 0) {
    strings_free(nm, count);
    strings_free(js, count);
    return -1;
  }
  *names = nm;
  *n = count;
  if (jsons) *jsons = js;
  else strings_free(js, count);
  return 0;
}

int cluster_engine_leave(cluster_t *c, const char *engine) {
  kvStore *kv = NULL;
  char err[256];
  if (kv_open(c, KV_ENGINES, &kv, err, sizeof err) < 0) {
    log_msg(LOG_WARN, "cluster: leaving the registry failed", "error", err, NULL);
    return -1;
  }
  natsStatus s = kvStore_Delete(kv, engine);
  if (s == NATS_OK) return 0;
  log_msg(LOG_WARN, "cluster: leaving the registry failed", "error", natsStatus_GetText(s), NULL);
  return -1;
}

static void owner_key(char *buf, size_t len, int partition) { snprintf(buf, len, "p%03d", partition); }

static int lease_value(char *buf, size_t len, const char *engine) {
  json_t *j = json_pack("{s:s,s:I}", "engine", engine, "at", (json_int_t)time(NULL));
  char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!text) return -1;
  int n = snprintf(buf, len, "%s", text);
  free(text);
  return n > 0 && (size_t)n < len ? n : -1;
}

/* The lease entry's revision: 1 with *rev, 0 none, -1 with err. */
static int lease_revision(kvStore *kv, const char *key, uint64_t *rev, char *err, size_t errlen) {
  kvEntry *e = NULL;
  natsStatus s = kvStore_Get(&e, kv, key);
  if (s == NATS_NOT_FOUND) return 0;
  if (s != NATS_OK) return fail(err, errlen, "reading a lease", s, 0);
  *rev = kvEntry_Revision(e);
  kvEntry_Destroy(e);
  return 1;
}

int cluster_lease_take(cluster_t *c, int partition, const char *engine, uint64_t *revision, char *err, size_t errlen) {
  kvStore *kv = NULL;
  char key[16], val[512];
  uint64_t rev = 0;
  if (kv_open(c, KV_OWNERS, &kv, err, errlen) < 0) return -1;
  owner_key(key, sizeof key, partition);
  int len = lease_value(val, sizeof val, engine);
  if (len < 0) return fail_msg(err, errlen, "the engine's name does not fit a lease");
  natsStatus s = kvStore_Create(&rev, kv, key, val, len);
  if (s == NATS_OK) {
    *revision = rev;
    return 1;
  }
  char create_err[300];
  fail(create_err, sizeof create_err, "taking a lease", s, 0);
  int held = lease_revision(kv, key, &rev, err, errlen);
  if (held == 0) return fail_msg(err, errlen, create_err); /* failed, yet nobody holds it */
  return held < 0 ? -1 : 0;
}

int cluster_lease_renew(cluster_t *c, int partition, const char *engine, uint64_t *revision, char *err,
                        size_t errlen) {
  kvStore *kv = NULL;
  char key[16], val[512];
  uint64_t rev = 0;
  if (kv_open(c, KV_OWNERS, &kv, err, errlen) < 0) return -1;
  owner_key(key, sizeof key, partition);
  int len = lease_value(val, sizeof val, engine);
  if (len < 0) return fail_msg(err, errlen, "the engine's name does not fit a lease");
  natsStatus s = kvStore_Update(&rev, kv, key, val, len, *revision);
  if (s == NATS_OK) {
    *revision = rev;
    return 1;
  }
  char update_err[300];
  fail(update_err, sizeof update_err, "renewing a lease", s, 0);
  int held = lease_revision(kv, key, &rev, err, errlen);
  if (held < 0) return -1;
  if (held == 0 || rev != *revision) return 0; /* lapsed or taken: lost */
  return fail_msg(err, errlen, update_err);
}

int cluster_lease_release(cluster_t *c, int partition, uint64_t revision) {
  kvStore *kv = NULL;
  char key[16], err[300];
  uint64_t rev = 0;
  int held = -1;
  if (kv_open(c, KV_OWNERS, &kv, err, sizeof err) == 0) {
    owner_key(key, sizeof key, partition);
    held = lease_revision(kv, key, &rev, err, sizeof err);
  }
  if (held == 0 || (held == 1 && rev != revision)) return 0;
  if (held == 1) {
    natsStatus s = kvStore_Delete(kv, key);
    if (s == NATS_OK) return 0;
    fail(err, sizeof err, "releasing a lease", s, 0);
  }
  log_msg(LOG_WARN, "cluster: releasing a lease failed", "error", err, NULL);
  return -1;
}

int cluster_lease_owner(cluster_t *c, int partition, char **engine, char *err, size_t errlen) {
  kvStore *kv = NULL;
  kvEntry *e = NULL;
  char key[16];
  *engine = NULL;
  if (kv_open(c, KV_OWNERS, &kv, err, errlen) < 0) return -1;
  owner_key(key, sizeof key, partition);
  natsStatus s = kvStore_Get(&e, kv, key);
  if (s == NATS_NOT_FOUND) return 0;
  if (s != NATS_OK) return fail(err, errlen, "reading a lease", s, 0);
  json_error_t je;
  json_t *j = json_loadb(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 0, &je);
  kvEntry_Destroy(e);
  const char *name = json_string_value(json_object_get(j, "engine"));
  if (name) *engine = strdup(name);
  json_decref(j);
  if (!*engine) return fail_msg(err, errlen, name ? "out of memory" : "a lease without an engine");
  return 1;
}

/* ---- delivered actions ---- */

/* hex of SHA-256(data), 64 digits and a NUL into hex[65]: 0, -1. */
static int sha256_hex(const void *data, size_t len, char hex[65]) {
  unsigned char md[32];
  unsigned int mdlen = 0;
  if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) return -1;
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
  return 0;
}

static int sent_key(const char *action_id, char key[33]) {
  char hex[65];
  if (sha256_hex(action_id, strlen(action_id), hex) < 0) return -1;
  memcpy(key, hex, 32);
  key[32] = '\0';
  return 0;
}

int cluster_sent_mark(cluster_t *c, const char *action_id) {
  char key[33], subject[64];
  if (sent_key(action_id, key) < 0) return -1;
  snprintf(subject, sizeof subject, "$KV.%s.%s", bucket_names[KV_SENT], key);
  natsStatus s = js_PublishAsync(c->sent_js, subject, "1", 1, NULL);
  if (s == NATS_OK) return 0;
  log_msg(LOG_WARN, "cluster: marking an action as delivered failed", "action", action_id, "error",
          natsStatus_GetText(s), NULL);
  return -1;
}

int cluster_sent_seen(cluster_t *c, const char *action_id, char *err, size_t errlen) {
  kvStore *kv = NULL;
  kvEntry *e = NULL;
  char key[33];
  if (sent_key(action_id, key) < 0) return fail_msg(err, errlen, "SHA-256 failed");
  if (kv_open(c, KV_SENT, &kv, err, errlen) < 0) return -1;
  natsStatus s = kvStore_Get(&e, kv, key);
  kvEntry_Destroy(e);
  if (s == NATS_NOT_FOUND) return 0;
  return s == NATS_OK ? 1 : fail(err, errlen, "reading a delivered action", s, 0);
}

/* ---- snapshots ---- */

static int file_sha256(const char *path, char hex[65], char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) return sys_fail(err, errlen, path);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  unsigned char buf[65536], md[32];
  unsigned int mdlen = 0;
  size_t got;
  int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
  while (ok && (got = fread(buf, 1, sizeof buf, f)) > 0) ok = EVP_DigestUpdate(ctx, buf, got);
  ok = ok && !ferror(f) && EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen == 32;
  EVP_MD_CTX_free(ctx);
  fclose(f);
  if (!ok) return snprintf(err, errlen, "%s: reading or hashing failed", path), -1;
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
  return 0;
}

static natsStatus snap_chunk_publish(cluster_t *c, const char *subject, const char *id, int i, int n,
                                     uint64_t cursor, const char *sha, const void *data, int len) {
  natsMsg *msg = NULL;
  jsPubAck *pa = NULL;
  jsErrCode jerr = 0;
  char chunk[32], cur[24];
  snprintf(chunk, sizeof chunk, "%d/%d", i, n);
  snprintf(cur, sizeof cur, "%" PRIu64, cursor);
  natsStatus s = natsMsg_Create(&msg, subject, NULL, data, len);
  if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Hearth-Snap", id);
  if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Hearth-Chunk", chunk);
  if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Hearth-Cursor", cur);
  if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Hearth-Sha256", sha);
  if (s == NATS_OK) s = js_PublishMsg(&pa, c->js, msg, NULL, &jerr);
  jsPubAck_Destroy(pa);
  natsMsg_Destroy(msg);
  return s;
}

int cluster_snapshot_put(cluster_t *c, int partition, const char *path, uint64_t cursor, char *err, size_t errlen) {
  static unsigned counter;
  char sha[65], id[64], subject[32];
  if (file_sha256(path, sha, err, errlen) < 0) return -1;
  FILE *f = fopen(path, "rb");
  if (!f) return sys_fail(err, errlen, path);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  int n = size > 0 ? (int)((size + SNAP_CHUNK - 1) / SNAP_CHUNK) : 1;
  snprintf(id, sizeof id, "%lld-%d-%u", (long long)time(NULL), (int)getpid(),
           __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
  snprintf(subject, sizeof subject, "hearth.snap.%03d", partition);
  char *buf = malloc(SNAP_CHUNK);
  int rc = buf ? 0 : fail_msg(err, errlen, "out of memory");
  for (int i = 1; rc == 0 && i <= n; i++) {
    size_t got = fread(buf, 1, SNAP_CHUNK, f);
    if (ferror(f)) rc = sys_fail(err, errlen, path);
    natsStatus s = rc ? NATS_OK : snap_chunk_publish(c, subject, id, i, n, cursor, sha, buf, (int)got);
    if (s != NATS_OK) rc = fail(err, errlen, "storing a snapshot chunk", s, 0);
  }
  free(buf);
  fclose(f);
  if (rc < 0) return -1;
  jsOptions jo;
  jsErrCode jerr = 0;
  jsOptions_Init(&jo);
  jo.Stream.Purge.Subject = subject;
  jo.Stream.Purge.Keep = (uint64_t)n;
  natsStatus s = js_PurgeStream(c->js, SNAP_STREAM, &jo, &jerr);
  return s == NATS_OK ? 0 : fail(err, errlen, "purging older snapshots", s, jerr);
}

/* A snapshot chunk's headers, read without its body. */
typedef struct {
  uint64_t seq;
  char id[64];
  int i, n;
} snap_chunk_t;

static int header_of(natsMsg *m, const char *key, const char **out) {
  return natsMsgHeader_Get(m, key, out) == NATS_OK && *out ? 0 : -1;
}

/* The next message on subject at or after seq: NATS_OK, NATS_NOT_FOUND at the end. */
static natsStatus snap_next(cluster_t *c, const char *subject, uint64_t seq, natsMsg **msg) {
  jsDirectGetMsgOptions o;
  jsDirectGetMsgOptions_Init(&o);
  o.Sequence = seq;
  o.NextBySubject = subject;
  natsStatus s = js_DirectGetMsg(msg, c->js, SNAP_STREAM, NULL, &o);
  return s;
}

static uint64_t direct_seq(natsMsg *m) {
  const char *v = NULL;
  return header_of(m, "Nats-Sequence", &v) == 0 ? strtoull(v, NULL, 10) : 0;
}

/* Scan the partition's chunks in order: the sequences of the latest whole snapshot into
 * seqs (n of them) and the last chunk's message in *last. 1 found, 0 none, -1 with err. */
static int snap_find(cluster_t *c, const char *subject, uint64_t **seqs, int *n, natsMsg **last, char *err,
                     size_t errlen) {
  uint64_t at = 1, *run = NULL;
  int run_len = 0, run_n = 0, found = 0;
  char run_id[64] = "";
  *seqs = NULL;
  *last = NULL;
  for (;;) {
    natsMsg *m = NULL;
    natsStatus s = snap_next(c, subject, at, &m);
    if (s == NATS_NOT_FOUND) break;
    if (s != NATS_OK) {
      free(run);
      natsMsg_Destroy(*last);
      *last = NULL;
      free(*seqs);
      *seqs = NULL;
      return fail(err, errlen, "reading snapshot chunks", s, 0);
    }
    const char *id = NULL, *chunk = NULL;
    int i = 0, cn = 0;
    uint64_t seq = direct_seq(m);
    if (header_of(m, "Hearth-Snap", &id) < 0 || header_of(m, "Hearth-Chunk", &chunk) < 0 ||
        sscanf(chunk, "%d/%d", &i, &cn) != 2 || seq == 0 || cn < 1) {
      natsMsg_Destroy(m);
      at = seq + 1;
      if (seq == 0) break;
      continue;
    }
    if (i == 1 || strcmp(id, run_id) != 0 || i != run_len + 1) { /* a new run starts (or a broken one) */
      run_len = 0;
      run_n = cn;
      snprintf(run_id, sizeof run_id, "%s", id);
      free(run);
      run = calloc((size_t)cn, sizeof *run);
      if (!run) {
        natsMsg_Destroy(m);
        return fail_msg(err, errlen, "out of memory");
      }
    }
    if (i == run_len + 1 && cn == run_n && i == 1 + run_len) run[run_len++] = seq;
    at = seq + 1;
    if (run_len == run_n && i == cn) {
      free(*seqs);
      natsMsg_Destroy(*last);
      *seqs = run;
      *n = run_n;
      *last = m;
      run = NULL;
      run_len = 0;
      run_id[0] = '\0';
      found = 1;
    } else {
      natsMsg_Destroy(m);
    }
  }
  free(run);
  return found;
}

static int write_all(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

/* Write the chunks at seqs into fd: 0, -1 with err. */
static int snap_write_chunks(cluster_t *c, const uint64_t *seqs, int n, const char *id, int fd, char *err,
                             size_t errlen) {
  for (int i = 0; i < n; i++) {
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    const char *got = NULL;
    natsStatus s = js_GetMsg(&m, c->js, SNAP_STREAM, seqs[i], NULL, &jerr);
    if (s != NATS_OK) return fail(err, errlen, "reading a snapshot chunk", s, jerr);
    int ok = header_of(m, "Hearth-Snap", &got) == 0 && strcmp(got, id) == 0;
    if (ok) ok = write_all(fd, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m)) == 0;
    natsMsg_Destroy(m);
    if (!ok) return fail_msg(err, errlen, "a snapshot chunk changed under us, or writing it failed");
  }
  return 0;
}

int cluster_snapshot_get(cluster_t *c, int partition, const char *path, uint64_t *cursor, char *err, size_t errlen) {
  char subject[32], tmp[4096], sha[65];
  uint64_t *seqs = NULL;
  natsMsg *last = NULL;
  int n = 0;
  snprintf(subject, sizeof subject, "hearth.snap.%03d", partition);
  int found = snap_find(c, subject, &seqs, &n, &last, err, errlen);
  if (found <= 0) return found;
  const char *id = NULL, *want = NULL, *cur = NULL;
  int rc = header_of(last, "Hearth-Snap", &id) == 0 && header_of(last, "Hearth-Sha256", &want) == 0 &&
                   header_of(last, "Hearth-Cursor", &cur) == 0
               ? 0
               : fail_msg(err, errlen, "a snapshot chunk without its headers");
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = rc == 0 ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600) : -1;
  if (rc == 0 && fd < 0) rc = sys_fail(err, errlen, tmp);
  if (rc == 0) rc = snap_write_chunks(c, seqs, n, id, fd, err, errlen);
  if (rc == 0 && fsync(fd) < 0) rc = sys_fail(err, errlen, tmp);
  if (fd >= 0 && close(fd) < 0 && rc == 0) rc = sys_fail(err, errlen, tmp);
  if (rc == 0) rc = file_sha256(tmp, sha, err, errlen);
  if (rc == 0 && strcmp(sha, want) != 0) rc = fail_msg(err, errlen, "the snapshot does not match its SHA-256");
  if (rc == 0 && rename(tmp, path) < 0) rc = sys_fail(err, errlen, path);
  if (rc == 0) *cursor = strtoull(cur, NULL, 10);
  if (rc < 0 && fd >= 0) unlink(tmp);
  natsMsg_Destroy(last);
  free(seqs);
  return rc < 0 ? -1 : 1;
}

/* ---- requests between nodes ---- */

typedef struct request_item {
  natsMsg *msg;
  struct request_item *next;
} request_item_t;

struct cluster_server {
  cluster_t *c;
  int partition;
  natsSubscription *sub;
  uv_async_t async;
  pthread_mutex_t lock;
  request_item_t *head, *tail;
  int stopping, sub_done;
  cluster_handler_t handler;
  void *ud;
  cluster_server_t *next;
};

/* On a NATS thread: queue the request for the loop. */
static void server_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
  (void)nc;
  (void)sub;
  cluster_server_t *sv = closure;
  request_item_t *it = malloc(sizeof *it);
  if (!it) {
    log_msg(LOG_ERROR, "cluster: out of memory queueing a request", NULL);
    natsMsg_Destroy(msg);
    return;
  }
  it->msg = msg;
  it->next = NULL;
  pthread_mutex_lock(&sv->lock);
  if (sv->tail) sv->tail->next = it;
  else sv->head = it;
  sv->tail = it;
  pthread_mutex_unlock(&sv->lock);
  uv_async_send(&sv->async);
}

/* On a NATS thread, once the subscription's handler can no longer run. */
static void server_on_complete(void *closure) {
  cluster_server_t *sv = closure;
  pthread_mutex_lock(&sv->lock);
  sv->sub_done = 1;
  pthread_mutex_unlock(&sv->lock);
  uv_async_send(&sv->async);
}

static char *answer(cluster_server_t *sv, natsMsg *msg) {
  json_error_t je;
  json_t *req = json_loadb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), 0, &je);
  const char *op = json_string_value(json_object_get(req, "op"));
  json_t *body = json_object_get(req, "body");
  char *body_text = json_is_string(body) ? strdup(json_string_value(body))
                    : body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY)
                           : strdup("");
  char *reply = op && body_text ? sv->handler(sv->ud, sv->partition, op, body_text) : NULL;
  if (!reply) {
    json_t *e = json_pack("{s:s}", "error", op ? "the handler failed" : "a request needs {\"op\":...}");
    reply = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
  }
  free(body_text);
  json_decref(req);
  return reply;
}

static void reply_to(cluster_server_t *sv, natsMsg *msg) {
  const char *to = natsMsg_GetReply(msg);
  char *reply = answer(sv, msg);
  if (to && reply) {
    natsStatus s = natsConnection_Publish(sv->c->nc, to, reply, (int)strlen(reply));
    if (s != NATS_OK) log_msg(LOG_WARN, "cluster: replying to a request failed", "error", natsStatus_GetText(s), NULL);
  } else if (!reply) {
    log_msg(LOG_ERROR, "cluster: out of memory answering a request", NULL);
  }
  free(reply);
}

static void server_closed(uv_handle_t *h) {
  cluster_server_t *sv = h->data;
  pthread_mutex_destroy(&sv->lock);
  free(sv);
}

/* On the loop: answer what is queued; once stopped and the subscription done, close. */
static void server_drain(uv_async_t *a) {
  cluster_server_t *sv = a->data;
  for (;;) {
    pthread_mutex_lock(&sv->lock);
    request_item_t *it = sv->head;
    if (it) {
      sv->head = it->next;
      if (!sv->head) sv->tail = NULL;
    }
    int stopping = sv->stopping, done = sv->sub_done;
    pthread_mutex_unlock(&sv->lock);
    if (!it) {
      if (stopping && done && !uv_is_closing((uv_handle_t *)a)) uv_close((uv_handle_t *)a, server_closed);
      return;
    }
    if (!stopping) reply_to(sv, it->msg);
    natsMsg_Destroy(it->msg);
    free(it);
  }
}

int cluster_serve(cluster_t *c, uv_loop_t *loop, int partition, cluster_handler_t handler, void *ud, char *err,
                  size_t errlen) {
  char subject[32];
  cluster_server_t *sv = calloc(1, sizeof *sv);
  if (!sv) return fail_msg(err, errlen, "out of memory");
  sv->c = c;
  sv->partition = partition;
  sv->handler = handler;
  sv->ud = ud;
  pthread_mutex_init(&sv->lock, NULL);
  int uerr = uv_async_init(loop, &sv->async, server_drain);
  if (uerr < 0) {
    pthread_mutex_destroy(&sv->lock);
    free(sv);
    return snprintf(err, errlen, "uv_async_init: %s", uv_strerror(uerr)), -1;
  }
  sv->async.data = sv;
  snprintf(subject, sizeof subject, "hearth.rpc.p%03d", partition);
  natsStatus s = natsConnection_Subscribe(&sv->sub, c->nc, subject, server_on_msg, sv);
  if (s == NATS_OK) s = natsSubscription_SetOnCompleteCB(sv->sub, server_on_complete, sv);
  if (s != NATS_OK) {
    natsSubscription_Destroy(sv->sub); /* unsubscribes; no message can have come yet */
    sv->sub = NULL;
    sv->stopping = sv->sub_done = 1;
    uv_close((uv_handle_t *)&sv->async, server_closed);
    return fail(err, errlen, "subscribing to the partition's requests", s, 0);
  }
  pthread_mutex_lock(&c->lock);
  sv->next = c->servers;
  c->servers = sv;
  pthread_mutex_unlock(&c->lock);
  return 0;
}

static void server_stop(cluster_server_t *sv) {
  natsStatus s = natsSubscription_Unsubscribe(sv->sub);
  if (s != NATS_OK) log_msg(LOG_WARN, "cluster: unsubscribing requests failed", "error", natsStatus_GetText(s), NULL);
  natsSubscription_Destroy(sv->sub);
  pthread_mutex_lock(&sv->lock);
  sv->stopping = 1;
  pthread_mutex_unlock(&sv->lock);
  uv_async_send(&sv->async); /* the loop closes the handle once the subscription is done */
}

void cluster_serve_stop(cluster_t *c, int partition) {
  pthread_mutex_lock(&c->lock);
  cluster_server_t **at = &c->servers, *sv = NULL;
  while (*at && (*at)->partition != partition) at = &(*at)->next;
  if (*at) {
    sv = *at;
    *at = sv->next;
  }
  pthread_mutex_unlock(&c->lock);
  if (sv) server_stop(sv);
}

static void servers_stop_all(cluster_t *c) {
  pthread_mutex_lock(&c->lock);
  cluster_server_t *sv = c->servers;
  c->servers = NULL;
  pthread_mutex_unlock(&c->lock);
  while (sv) {
    cluster_server_t *next = sv->next;
    server_stop(sv);
    sv = next;
  }
}

typedef struct {
  uv_work_t work;
  cluster_t *c;
  char subject[32];
  char *payload;
  int timeout_ms, partition;
  char *reply;
  char err[300];
  cluster_reply_t done;
  void *ud;
} request_t;

/* On libuv's thread pool. */
static void request_run(uv_work_t *w) {
  request_t *r = w->data;
  natsMsg *reply = NULL;
  natsStatus s =
      natsConnection_Request(&reply, r->c->nc, r->subject, r->payload, (int)strlen(r->payload), r->timeout_ms);
  if (s == NATS_OK) {
    int len = natsMsg_GetDataLength(reply);
    r->reply = malloc((size_t)len + 1);
    if (r->reply) {
      memcpy(r->reply, natsMsg_GetData(reply), (size_t)len);
      r->reply[len] = '\0';
    } else {
      snprintf(r->err, sizeof r->err, "out of memory");
    }
  } else if (s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS) {
    snprintf(r->err, sizeof r->err, "no owner of partition %d answered within %d ms", r->partition, r->timeout_ms);
  } else {
    fail(r->err, sizeof r->err, "requesting the partition's owner", s, 0);
  }
  natsMsg_Destroy(reply);
}

/* On the loop. */
static void request_after(uv_work_t *w, int status) {
  request_t *r = w->data;
  if (status == UV_ECANCELED) snprintf(r->err, sizeof r->err, "the request was cancelled");
  r->done(r->ud, r->reply, r->reply ? NULL : r->err);
  free(r->reply);
  free(r->payload);
  free(r);
}

int cluster_request(cluster_t *c, uv_loop_t *loop, int partition, const char *op, const char *body, int timeout_ms,
                    cluster_reply_t done, void *ud, char *err, size_t errlen) {
  request_t *r = calloc(1, sizeof *r);
  json_t *j = json_pack("{s:s,s:s}", "op", op, "body", body ? body : "");
  if (r && j) r->payload = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  if (!r || !r->payload) {
    if (r) free(r->payload);
    free(r);
    return fail_msg(err, errlen, "out of memory");
  }
  r->c = c;
  r->partition = partition;
  r->timeout_ms = timeout_ms;
  r->done = done;
  r->ud = ud;
  r->work.data = r;
  snprintf(r->subject, sizeof r->subject, "hearth.rpc.p%03d", partition);
  int uerr = uv_queue_work(loop, &r->work, request_run, request_after);
  if (uerr == 0) return 0;
  free(r->payload);
  free(r);
  return snprintf(err, errlen, "uv_queue_work: %s", uv_strerror(uerr)), -1;
}
