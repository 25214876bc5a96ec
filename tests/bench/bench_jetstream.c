/* bench_jetstream: the ceiling NATS JetStream itself gives on this machine, the peer
 * figure for the scale-out model. Owns nothing of Hearth: raw asynchronous publishes with
 * libnats (Debian's libnats-dev 3.4), every one waited for until JetStream has stored it
 * (js_PublishAsyncComplete), to one stream and to P streams (message i to stream i mod S,
 * as partitions spread events), from 1 and from 4 publisher threads (one connection and
 * JetStream context each), on streams of the given replica count. Each message is an
 * event-sized JSON body with a Nats-Msg-Id, as `hearth import --cluster` publishes.
 *
 * Usage: bench_jetstream URL REPLICAS [MESSAGES] [PARTITIONS]
 *   URL         nats://host:port[,nats://...] (tests/e2e/nats_cluster.py starts servers)
 *   REPLICAS    copies of every stream (1 on a single server, 3 on a three-node cluster)
 *   MESSAGES    messages per case (default 200000)
 *   PARTITIONS  streams of the "P streams" cases (default 12)
 * Prints one row per case: streams, threads, messages, seconds, messages/s, MiB/s, the
 * client's CPU seconds per 1M messages, failed publishes, and the messages the streams
 * hold afterwards (must equal the messages published). Exit 1 on any failure.
 *
 * The ideas are the libnats documentation's (asynchronous publish, waiting for the
 * outstanding acknowledgements); the code is ours. */
#include <assert.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define MAX_THREADS 4
#define MAX_STREAMS 1000
#define MAX_PENDING 4096 /* publishes in flight per context before PublishAsync stalls */
#define COMPLETE_WAIT_MS 120000
#define STALL_WAIT_MS 60000 /* a publish waits this long for room among MAX_PENDING (hang guard) */

typedef struct {
  const char *url;
  int replicas;
  long messages;
  int partitions;
} bench_args_t;

typedef struct {
  int case_no;   /* names the streams and subjects of this case */
  int streams;
  int threads;
  long messages;
  atomic_long failed;
  pthread_barrier_t start;
  const char *url;
} bench_case_t;

typedef struct {
  bench_case_t *bc;
  int index;
  int rc;
} publisher_t;

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         (double)ru.ru_stime.tv_usec / 1e6;
}

/* Print a failed NATS call with the library's own error text; returns -1. */
static int nats_failed(const char *what, natsStatus s, jsErrCode jerr) {
  fprintf(stderr, "bench_jetstream: %s: %s (JetStream error %d): %s\n", what, natsStatus_GetText(s), (int)jerr,
          nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
  return -1;
}

static void stream_name(char *buf, size_t len, int case_no, int stream) {
  snprintf(buf, len, "BENCH%d_P%03d", case_no, stream);
}

static void subject_name(char *buf, size_t len, int case_no, int stream) {
  snprintf(buf, len, "bench.%d.p.%03d.ev", case_no, stream);
}

/* An event the size of the month's: a join with a few data fields (about 200 bytes). */
static int event_body(char *buf, size_t len, int thread, long i) {
  int n = snprintf(buf, len,
                   "{\"id\":\"t%d-%09ld\",\"type\":\"member.joined\",\"member\":\"m-%07ld\","
                   "\"time\":\"2026-11-01T10:00:00+08:00\",\"data\":{\"channel\":\"poster\","
                   "\"store\":\"hz-01\",\"staff\":\"staff-li\",\"city\":\"Hangzhou\"}}",
                   thread, i, i % 1000000);
  assert(n > 0 && (size_t)n < len);
  return n;
}

static void count_failure(jsCtx *js, jsPubAckErr *pae, void *closure) {
  (void)js;
  (void)pae;
  atomic_fetch_add((atomic_long *)closure, 1);
}

static int connect_js(const char *url, atomic_long *failed, natsConnection **nc, jsCtx **js) {
  natsStatus s = natsConnection_ConnectTo(nc, url);
  if (s != NATS_OK) return nats_failed("connect", s, 0);
  jsOptions o;
  jsOptions_Init(&o);
  o.PublishAsync.MaxPending = MAX_PENDING;
  o.PublishAsync.StallWait = STALL_WAIT_MS;
  o.PublishAsync.ErrHandler = count_failure;
  o.PublishAsync.ErrHandlerClosure = failed;
  s = natsConnection_JetStream(js, *nc, &o);
  if (s != NATS_OK) {
    natsConnection_Destroy(*nc);
    *nc = NULL;
    return nats_failed("JetStream context", s, 0);
  }
  return 0;
}

/* This thread's share: messages index, index + threads, ... each to stream i mod S. */
static int publish_share(publisher_t *pub, jsCtx *js) {
  bench_case_t *bc = pub->bc;
  char body[512], subject[64], msg_id[48];
  for (long i = pub->index; i < bc->messages; i += bc->threads) {
    int len = event_body(body, sizeof body, pub->index, i);
    subject_name(subject, sizeof subject, bc->case_no, (int)(i % bc->streams));
    snprintf(msg_id, sizeof msg_id, "t%d-%ld", pub->index, i);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    natsStatus s = js_PublishAsync(js, subject, body, len, &po);
    if (s != NATS_OK) return nats_failed("publish", s, 0);
  }
  jsPubOptions done;
  jsPubOptions_Init(&done);
  done.MaxWait = COMPLETE_WAIT_MS;
  natsStatus s = js_PublishAsyncComplete(js, &done);
  if (s != NATS_OK) return nats_failed("waiting for the acknowledgements", s, 0);
  return 0;
}

static void *publisher_main(void *arg) {
  publisher_t *pub = arg;
  natsConnection *nc = NULL;
  jsCtx *js = NULL;
  pub->rc = connect_js(pub->bc->url, &pub->bc->failed, &nc, &js);
  pthread_barrier_wait(&pub->bc->start); /* every thread waits, connected or not */
  pthread_barrier_wait(&pub->bc->start); /* the clock starts between the two */
  if (pub->rc == 0) pub->rc = publish_share(pub, js);
  if (js) jsCtx_Destroy(js);
  if (nc) natsConnection_Destroy(nc);
  return NULL;
}

static int create_streams(jsCtx *js, const bench_case_t *bc, int replicas) {
  for (int p = 0; p < bc->streams; p++) {
    char name[64], subject[64];
    stream_name(name, sizeof name, bc->case_no, p);
    subject_name(subject, sizeof subject, bc->case_no, p);
    const char *subjects[1] = {subject};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Replicas = replicas;
    cfg.Duplicates = (int64_t)120 * 1000 * 1000 * 1000; /* 2 minutes, as Hearth's partitions */
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(&si, js, &cfg, NULL, &jerr);
    if (s != NATS_OK) return nats_failed("creating a stream", s, jerr);
    jsStreamInfo_Destroy(si);
  }
  return 0;
}

/* The messages the case's streams hold (sum over them), or -1. */
static long stored_messages(jsCtx *js, const bench_case_t *bc) {
  long total = 0;
  for (int p = 0; p < bc->streams; p++) {
    char name[64];
    stream_name(name, sizeof name, bc->case_no, p);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, js, name, NULL, &jerr);
    if (s != NATS_OK) return nats_failed("reading a stream's state", s, jerr);
    total += (long)si->State.Msgs;
    jsStreamInfo_Destroy(si);
  }
  return total;
}

static int delete_streams(jsCtx *js, const bench_case_t *bc) {
  int rc = 0;
  for (int p = 0; p < bc->streams; p++) {
    char name[64];
    stream_name(name, sizeof name, bc->case_no, p);
    jsErrCode jerr = 0;
    natsStatus s = js_DeleteStream(js, name, NULL, &jerr);
    if (s != NATS_OK) rc = nats_failed("deleting a stream", s, jerr);
  }
  return rc;
}

/* Publish the case's messages from its threads and print its row: 0, or -1. */
static int run_publishers(bench_case_t *bc, double *seconds, double *cpu) {
  pthread_t tids[MAX_THREADS];
  publisher_t pubs[MAX_THREADS];
  assert(bc->threads >= 1 && bc->threads <= MAX_THREADS);
  pthread_barrier_init(&bc->start, NULL, (unsigned)bc->threads + 1);
  int started = 0, rc = 0;
  for (int t = 0; t < bc->threads; t++) {
    pubs[t] = (publisher_t){.bc = bc, .index = t, .rc = 0};
    if (pthread_create(&tids[t], NULL, publisher_main, &pubs[t]) != 0) {
      fprintf(stderr, "bench_jetstream: pthread_create failed\n");
      abort(); /* the barrier would wait for it forever */
    }
    started++;
  }
  pthread_barrier_wait(&bc->start);
  double t0 = now_seconds(), c0 = cpu_seconds();
  pthread_barrier_wait(&bc->start);
  for (int t = 0; t < started; t++) {
    pthread_join(tids[t], NULL);
    if (pubs[t].rc != 0) rc = -1;
  }
  *seconds = now_seconds() - t0;
  *cpu = cpu_seconds() - c0;
  pthread_barrier_destroy(&bc->start);
  return rc;
}

static int run_case(jsCtx *admin, const bench_args_t *a, bench_case_t *bc) {
  if (create_streams(admin, bc, a->replicas) != 0) return -1;
  double seconds = 0, cpu = 0;
  int rc = run_publishers(bc, &seconds, &cpu);
  long stored = stored_messages(admin, bc);
  long failed = atomic_load(&bc->failed);
  if (stored < 0) rc = -1;
  if (rc == 0 && (failed != 0 || stored != bc->messages)) {
    fprintf(stderr, "bench_jetstream: %ld failed publishes, %ld stored of %ld\n", failed, stored, bc->messages);
    rc = -1;
  }
  if (rc != 0) {
    printf("| %d | %7d | %7d | %8ld | FAILED: %ld failed publishes, %ld stored |\n", a->replicas, bc->streams,
           bc->threads, bc->messages, failed, stored);
    fflush(stdout);
    delete_streams(admin, bc);
    return -1;
  }
  char sample[512];
  double bytes = (double)event_body(sample, sizeof sample, 0, 0) * (double)bc->messages;
  printf("| %d | %7d | %7d | %8ld | %7.2f | %9.0f | %6.1f | %7.2f | %6ld | %8ld |\n", a->replicas, bc->streams,
         bc->threads, bc->messages, seconds, (double)bc->messages / seconds, bytes / seconds / 1048576.0,
         cpu * 1e6 / (double)bc->messages, failed, stored);
  fflush(stdout);
  if (delete_streams(admin, bc) != 0) rc = -1;
  return rc;
}

static int parse_args(int argc, char **argv, bench_args_t *a) {
  if (argc < 3 || argc > 5) {
    fprintf(stderr, "usage: bench_jetstream URL REPLICAS [MESSAGES] [PARTITIONS]\n");
    return -1;
  }
  a->url = argv[1];
  a->replicas = atoi(argv[2]);
  a->messages = argc > 3 ? atol(argv[3]) : 200000;
  a->partitions = argc > 4 ? atoi(argv[4]) : 12;
  if (a->replicas < 1 || a->replicas > 5 || a->messages < 1 || a->partitions < 1 ||
      a->partitions > MAX_STREAMS) {
    fprintf(stderr, "bench_jetstream: REPLICAS 1..5, MESSAGES >= 1, PARTITIONS 1..%d\n", MAX_STREAMS);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  bench_args_t a;
  if (parse_args(argc, argv, &a) != 0) return 2;
  atomic_long admin_failed = 0;
  natsConnection *nc = NULL;
  jsCtx *admin = NULL;
  if (connect_js(a.url, &admin_failed, &nc, &admin) != 0) return 1;
  printf("| R | streams | threads | messages | seconds | messages/s | MiB/s | client CPU-s/1M | failed | stored |\n");
  printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  const int streams[2] = {1, a.partitions};
  const int threads[2] = {1, 4};
  int rc = 0, case_no = 0;
  for (int si = 0; si < 2 && rc == 0; si++) {
    for (int ti = 0; ti < 2 && rc == 0; ti++) {
      bench_case_t bc = {.case_no = case_no++, .streams = streams[si], .threads = threads[ti],
                         .messages = a.messages, .url = a.url};
      atomic_init(&bc.failed, 0);
      rc = run_case(admin, &a, &bc);
    }
  }
  jsCtx_Destroy(admin);
  natsConnection_Destroy(nc);
  nats_Close();
  return rc == 0 ? 0 : 1;
}
