/* test_cluster: engine/cluster.c against a real single-node `nats-server -js` started here
 * on a free loopback port in a temporary directory (killed at the end). Without nats-server
 * on PATH the test fails with a message: it never skips. */
#include <arpa/inet.h>
#include <pthread.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nats/nats.h>

#include "cluster.h"
#include "unit.h"

static pid_t server_pid;
static char server_dir[] = "/tmp/hearth-nats-XXXXXX";
static char url[64];

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || getsockname(fd, (struct sockaddr *)&a, &len) < 0)
    return -1;
  close(fd);
  return ntohs(a.sin_port);
}

static int accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  if (fd >= 0) close(fd);
  return ok;
}

static int start_server(void) {
  if (system("command -v nats-server >/dev/null 2>&1") != 0) {
    fprintf(stderr, "FAIL: nats-server is not on PATH (install nats-server: see setup.sh)\n");
    return -1;
  }
  int port = free_port();
  if (port < 0 || !mkdtemp(server_dir)) return -1;
  char ports[16], store[64];
  snprintf(ports, sizeof ports, "%d", port);
  snprintf(store, sizeof store, "%s/js", server_dir);
  server_pid = fork();
  if (server_pid == 0) {
    execlp("nats-server", "nats-server", "-js", "-sd", store, "-a", "127.0.0.1", "-p", ports, (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 1500 && !accepts(port); i++) usleep(10000); /* guard: 15 s */
  if (!accepts(port)) {
    fprintf(stderr, "FAIL: nats-server did not accept connections on port %d\n", port);
    return -1;
  }
  snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
  return 0;
}

static void stop_server(void) {
  if (server_pid > 0) {
    kill(server_pid, SIGTERM);
    waitpid(server_pid, NULL, 0);
  }
  if (strstr(server_dir, "XXXXXX")) return; /* never made */
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", server_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", server_dir);
}

static cluster_t *c;
static char err[512];

TEST(create_is_idempotent_and_refuses_another_layout) {
  cluster_layout_t l = {.partitions = 4, .replicas = 1}, got;
  CHECK_INT(cluster_layout(c, &got, err, sizeof err), -1);
  CHECK(strstr(err, "no Hearth cluster") != NULL);
  CHECK_INT(cluster_create(c, &l, err, sizeof err), 0);
  CHECK_INT(cluster_create(c, &l, err, sizeof err), 0);
  cluster_layout_t other = {.partitions = 8, .replicas = 1};
  CHECK_INT(cluster_create(c, &other, err, sizeof err), -1);
  CHECK(strstr(err, "4 partitions") != NULL);
  CHECK_INT(cluster_layout(c, &got, err, sizeof err), 0);
  CHECK_INT(got.partitions, 4);
  CHECK_INT(got.replicas, 1);
}

/* The buckets' TTLs as the server holds them (libnats takes kvConfig.TTL in nanoseconds). */
static int64_t stream_max_age_s(const char *stream) {
  natsConnection *nc = NULL;
  jsCtx *js = NULL;
  jsStreamInfo *si = NULL;
  int64_t age = -1;
  if (natsConnection_ConnectTo(&nc, url) == NATS_OK && natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
      js_GetStreamInfo(&si, js, stream, NULL, NULL) == NATS_OK)
    age = si->Config->MaxAge / 1000000000LL;
  jsStreamInfo_Destroy(si);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return age;
}

TEST(bucket_ttls_are_the_leases_and_30_days) {
  CHECK_INT(stream_max_age_s("KV_hearth_owners"), CLUSTER_LEASE_SECONDS);
  CHECK_INT(stream_max_age_s("KV_hearth_engines"), CLUSTER_ENGINE_TTL_SECONDS);
  CHECK_INT(stream_max_age_s("KV_hearth_sent"), 30LL * 24 * 3600);
  CHECK_INT(stream_max_age_s("KV_hearth_config"), 0);
}

TEST(partition_of_is_stable_and_spreads) {
  /* FNV-1a 64 of "" is the offset basis 0xcbf29ce484222325; of "a" 0xaf63dc4c8601ec8c. */
  CHECK_INT(cluster_partition_of("", 1000), (int)(0xcbf29ce484222325ULL % 1000));
  CHECK_INT(cluster_partition_of("a", 1000), (int)(0xaf63dc4c8601ec8cULL % 1000));
  CHECK_INT(cluster_partition_of("m-1", 16), cluster_partition_of("m-1", 16));
  int counts[8] = {0};
  for (int i = 0; i < 8000; i++) {
    char id[32];
    snprintf(id, sizeof id, "member-%d", i);
    counts[cluster_partition_of(id, 8)]++;
  }
  for (int p = 0; p < 8; p++) CHECK(counts[p] > 800 && counts[p] < 1200);
}

TEST(publish_fetch_ack_progress_replay_get) {
  enum { N = 50 };
  cluster_out_t out[N];
  char bodies[N][32], ids[N][16];
  for (int i = 0; i < N; i++) {
    snprintf(bodies[i], sizeof bodies[i], "{\"i\":%d}", i);
    snprintf(ids[i], sizeof ids[i], "ev-%d", i);
    out[i] = (cluster_out_t){.partition = 2, .kind = i % 10 == 9 ? CM_TICK : CM_EVENT, .msg_id = ids[i],
                             .body = bodies[i], .len = strlen(bodies[i])};
  }
  CHECK_INT(cluster_publish(c, out, N, err, sizeof err), 0);
  CHECK_INT(cluster_publish(c, out, 5, err, sizeof err), 0); /* repeats within the window: dropped */
  cluster_out_t nowhere = {.partition = 7, .kind = CM_EVENT, .body = "{}", .len = 2}; /* no such stream */
  CHECK_INT(cluster_publish(c, &nowhere, 1, err, sizeof err), -1);
  CHECK(strstr(err, "hearth.p.007.ev") != NULL);
  cluster_progress_t p;
  CHECK_INT(cluster_progress(c, 2, &p, err, sizeof err), 0);
  CHECK_INT(p.last_seq, N);
  CHECK_INT(p.ack_floor, 0);

  cluster_sub_t *s = cluster_subscribe(c, 2, err, sizeof err);
  CHECK(s != NULL);
  if (!s) return;
  int got = 0;
  for (int round = 0; round < 100 && got < N; round++) {
    cluster_msg_t *msgs = NULL;
    int n = 0;
    CHECK_INT(cluster_fetch(s, 20, 2000, &msgs, &n, err, sizeof err), 0);
    for (int i = 0; i < n; i++, got++) {
      CHECK_INT(msgs[i].seq, got + 1);
      CHECK_STR(msgs[i].body, bodies[got]);
      CHECK_INT(msgs[i].kind, got % 10 == 9 ? CM_TICK : CM_EVENT);
      CHECK_INT(cluster_ack(&msgs[i]), 0);
    }
    cluster_msgs_free(msgs, n);
  }
  CHECK_INT(got, N);
  cluster_msg_t *none = NULL;
  int n = -1;
  CHECK_INT(cluster_fetch(s, 10, 0, &none, &n, err, sizeof err), 0); /* nothing left: no wait, no error */
  CHECK_INT(n, 0);
  cluster_msgs_free(none, n);
  cluster_unsubscribe(s);
  int floor_ok = 0;
  for (int i = 0; i < 500 && !floor_ok; i++) { /* acks are asynchronous: poll, guard 5 s */
    CHECK_INT(cluster_progress(c, 2, &p, err, sizeof err), 0);
    floor_ok = p.ack_floor == N;
    if (!floor_ok) usleep(10000);
  }
  CHECK_INT(p.ack_floor, N);
  CHECK_INT(p.pending, 0);
  CHECK_INT(p.ack_pending, 0);

  /* a new owner whose state holds the log up to 30: the consumer made anew starts at 31,
   * and everything before counts as done */
  cluster_sub_t *r = cluster_subscribe_from(c, 2, 31, err, sizeof err);
  CHECK(r != NULL);
  if (r) {
    CHECK_INT(cluster_progress(c, 2, &p, err, sizeof err), 0);
    CHECK_INT(p.ack_floor, 30);
    CHECK_INT(p.pending, N - 30);
    cluster_msg_t *msgs = NULL;
    CHECK_INT(cluster_fetch(r, 100, 2000, &msgs, &n, err, sizeof err), 0);
    CHECK(n > 0);
    if (n > 0) {
      CHECK_INT(msgs[0].seq, 31);
      CHECK_STR(msgs[0].body, bodies[30]);
      CHECK(msgs[0].msg != NULL); /* acknowledged after the new owner's commit */
    }
    cluster_msgs_free(msgs, n);
    cluster_unsubscribe(r);
  }

  cluster_msg_t one;
  CHECK_INT(cluster_get(c, 2, 7, &one, err, sizeof err), 1);
  CHECK_STR(one.body, bodies[6]);
  free(one.body);
  CHECK_INT(cluster_get(c, 2, 9999, &one, err, sizeof err), 0);
}

static void *publish_200(void *arg) {
  long t = (long)arg;
  static char errs[2][256];
  cluster_out_t out[200];
  char ids[200][24];
  for (int i = 0; i < 200; i++) {
    snprintf(ids[i], sizeof ids[i], "thread-%ld-%d", t, i);
    out[i] = (cluster_out_t){.partition = 1, .kind = CM_EMIT, .msg_id = ids[i], .body = "{}", .len = 2};
  }
  return (void *)(long)cluster_publish(c, out, 200, errs[t], sizeof errs[t]);
}

TEST(concurrent_publishers_each_get_their_own_acknowledgements) {
  pthread_t th[2];
  void *rc[2];
  for (long t = 0; t < 2; t++) pthread_create(&th[t], NULL, publish_200, (void *)t);
  for (int t = 0; t < 2; t++) pthread_join(th[t], &rc[t]);
  CHECK_INT((long)rc[0], 0);
  CHECK_INT((long)rc[1], 0);
  cluster_progress_t p;
  CHECK_INT(cluster_progress(c, 1, &p, err, sizeof err), 0);
  CHECK_INT(p.last_seq, 400);
}

TEST(progress_of_a_partition_without_consumer_is_zeros) {
  cluster_progress_t p = {1, 1, 1, 1};
  CHECK_INT(cluster_progress(c, 3, &p, err, sizeof err), 0);
  CHECK_INT(p.last_seq + p.ack_floor + p.pending + p.ack_pending, 0);
}

TEST(leases_take_renew_lost_release) {
  cluster_t *other = cluster_connect(url, "second", err, sizeof err);
  CHECK(other != NULL);
  if (!other) return;
  uint64_t rev = 0, rev2 = 0;
  CHECK_INT(cluster_lease_take(c, 1, "alpha", &rev, err, sizeof err), 1);
  CHECK_INT(cluster_lease_take(other, 1, "beta", &rev2, err, sizeof err), 0);
  char *owner = NULL;
  CHECK_INT(cluster_lease_owner(other, 1, &owner, err, sizeof err), 1);
  CHECK_STR(owner, "alpha");
  free(owner);
  uint64_t before = rev;
  CHECK_INT(cluster_lease_renew(c, 1, "alpha", &rev, err, sizeof err), 1);
  CHECK(rev > before);
  uint64_t stale = before;
  CHECK_INT(cluster_lease_renew(other, 1, "beta", &stale, err, sizeof err), 0); /* not its revision: lost */
  CHECK_INT(cluster_lease_release(other, 1, before), 0); /* not the current revision: nothing */
  CHECK_INT(cluster_lease_owner(c, 1, &owner, err, sizeof err), 1);
  CHECK_STR(owner, "alpha");
  free(owner);
  CHECK_INT(cluster_lease_release(c, 1, rev), 0);
  CHECK_INT(cluster_lease_owner(c, 1, &owner, err, sizeof err), 0);
  CHECK_INT(cluster_lease_take(other, 1, "beta", &rev2, err, sizeof err), 1);
  CHECK(rev2 > rev);
  CHECK_INT(cluster_lease_renew(c, 1, "alpha", &rev, err, sizeof err), 0); /* alpha lost it */

  CHECK_INT(cluster_engine_beat(c, "alpha", "{\"http\":\"a\"}", err, sizeof err), 0);
  CHECK_INT(cluster_engine_beat(other, "beta", "{\"http\":\"b\"}", err, sizeof err), 0);
  char **names = NULL, **jsons = NULL;
  int n = 0;
  CHECK_INT(cluster_engines(c, &names, &jsons, &n, err, sizeof err), 0);
  CHECK_INT(n, 2);
  if (n == 2) {
    CHECK_STR(names[0], "alpha");
    CHECK_STR(jsons[1], "{\"http\":\"b\"}");
  }
  for (int i = 0; i < n; i++) free(names[i]), free(jsons[i]);
  free(names), free(jsons);
  CHECK_INT(cluster_engine_leave(other, "beta"), 0);
  CHECK_INT(cluster_engines(c, &names, NULL, &n, err, sizeof err), 0);
  CHECK_INT(n, 1);
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
  cluster_close(other);
}

TEST(sent_mark_then_seen) {
  CHECK_INT(cluster_sent_seen(c, "action-1", err, sizeof err), 0);
  CHECK_INT(cluster_sent_mark(c, "action-1"), 0);
  int seen = 0;
  for (int i = 0; i < 500 && seen != 1; i++) { /* the mark is asynchronous: poll, guard 5 s */
    seen = cluster_sent_seen(c, "action-1", err, sizeof err);
    if (seen != 1) usleep(10000);
  }
  CHECK_INT(seen, 1);
  CHECK_INT(cluster_sent_seen(c, "action-2", err, sizeof err), 0);
}

static int write_file(const char *path, size_t size, unsigned seed) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  for (size_t i = 0; i < size; i++) fputc((int)((i * 31 + seed) & 0xff), f);
  return fclose(f);
}

static int same_file(const char *a, const char *b) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
  return system(cmd) == 0;
}

TEST(snapshot_round_trip_and_replacement) {
  char src[128], dst[128];
  snprintf(src, sizeof src, "%s/snap.src", server_dir);
  snprintf(dst, sizeof dst, "%s/snap.dst", server_dir);
  uint64_t cursor = 0;
  CHECK_INT(cluster_snapshot_get(c, 0, dst, &cursor, err, sizeof err), 0);
  CHECK_INT(write_file(src, 1000 * 1000 + 17, 1), 0);
  CHECK_INT(cluster_snapshot_put(c, 0, src, 42, err, sizeof err), 0);
  /* another partition's snapshot in between: chunks interleave in HEARTH_SNAP */
  CHECK_INT(cluster_snapshot_put(c, 1, src, 7, err, sizeof err), 0);
  CHECK_INT(cluster_snapshot_get(c, 0, dst, &cursor, err, sizeof err), 1);
  CHECK_INT(cursor, 42);
  CHECK(same_file(src, dst));
  CHECK_INT(write_file(src, 300 * 1000, 9), 0);
  CHECK_INT(cluster_snapshot_put(c, 0, src, 99, err, sizeof err), 0);
  CHECK_INT(cluster_snapshot_get(c, 0, dst, &cursor, err, sizeof err), 1);
  CHECK_INT(cursor, 99);
  CHECK(same_file(src, dst));
}

static char *echo_handler(void *ud, int partition, const char *op, const char *body) {
  (void)ud;
  if (strcmp(op, "fail") == 0) return NULL;
  char *out = malloc(256);
  snprintf(out, 256, "{\"p\":%d,\"op\":\"%s\",\"body\":\"%s\"}", partition, op, body);
  return out;
}

typedef struct {
  char reply[256];
  char error[256];
  int calls;
} reply_box_t;

static void on_reply(void *ud, const char *reply, const char *e) {
  reply_box_t *b = ud;
  b->calls++;
  snprintf(b->reply, sizeof b->reply, "%s", reply ? reply : "");
  snprintf(b->error, sizeof b->error, "%s", e ? e : "");
}

static void walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  fprintf(stderr, "handle left open: %s\n", uv_handle_type_name(h->type));
}

TEST(serve_and_request_on_a_loop) {
  uv_loop_t loop;
  CHECK_INT(uv_loop_init(&loop), 0);
  CHECK_INT(cluster_serve(c, &loop, 3, echo_handler, NULL, err, sizeof err), 0);
  reply_box_t ok = {0}, bad = {0}, nobody = {0};
  CHECK_INT(cluster_request(c, &loop, 3, "ping", "hi", 5000, on_reply, &ok, err, sizeof err), 0);
  CHECK_INT(cluster_request(c, &loop, 3, "fail", "", 5000, on_reply, &bad, err, sizeof err), 0);
  CHECK_INT(cluster_request(c, &loop, 2, "ping", "", 2000, on_reply, &nobody, err, sizeof err), 0);
  while (ok.calls + bad.calls + nobody.calls < 3) uv_run(&loop, UV_RUN_ONCE);
  CHECK_STR(ok.reply, "{\"p\":3,\"op\":\"ping\",\"body\":\"hi\"}");
  CHECK(strstr(bad.reply, "\"error\"") != NULL);
  CHECK_STR(nobody.reply, "");
  CHECK(strstr(nobody.error, "partition 2") != NULL);
  cluster_serve_stop(c, 3);
  CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  uv_walk(&loop, walk_close, NULL);
  CHECK_INT(uv_loop_close(&loop), 0);
}

int main(void) {
  if (start_server() < 0) {
    stop_server();
    return 1;
  }
  c = cluster_connect(url, "test", err, sizeof err);
  if (!c) {
    fprintf(stderr, "FAIL: cluster_connect: %s\n", err);
    stop_server();
    return 1;
  }
  RUN(create_is_idempotent_and_refuses_another_layout);
  RUN(bucket_ttls_are_the_leases_and_30_days);
  RUN(partition_of_is_stable_and_spreads);
  RUN(publish_fetch_ack_progress_replay_get);
  RUN(concurrent_publishers_each_get_their_own_acknowledgements);
  RUN(progress_of_a_partition_without_consumer_is_zeros);
  RUN(leases_take_renew_lost_release);
  RUN(sent_mark_then_seen);
  RUN(snapshot_round_trip_and_replacement);
  RUN(serve_and_request_on_a_loop);
  if (unit_failed) fprintf(stderr, "last error: %s\n", err);
  cluster_close(c);
  stop_server();
  return UNIT_DONE();
}
