/* test_wal_sync: unit tests for engine/wal_sync.c and store_sync_behind — each commit's
 * log is synced, one sync a commit; a sync covers what the commit wrote; with one commit
 * allowed to wait (the import), a commit waits for the sync of the one before it, so a
 * failed sync stops the next commit and store_sync with the sync's own error; with more
 * (the daemon), only the commit past the window waits; a transaction that changed nothing
 * never waits; a write outside a transaction is synced too; the outbox hands out only rows
 * of commits on disk, and says it held some back; and what was committed is there after
 * the store is closed. */
#include <pthread.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store.h"
#include "unit.h"
#include "unit_db.h"
#include "wal_sync.h"

static store_t *behind_store_of(char path[64], int max_unsynced) {
  char err[400] = "";
  if (unit_temp_db(path, "walsync") < 0) return NULL;
  store_t *s = store_open(path, 0, err, sizeof err);
  CHECK(s != NULL);
  if (s && store_sync_behind(s, max_unsynced, err, sizeof err) < 0) {
    fprintf(stderr, "store_sync_behind: %s\n", err);
    CHECK(0);
    store_close(s);
    s = NULL;
  }
  if (!s) unit_remove_db(path);
  return s;
}

static store_t *behind_store(char path[64]) { return behind_store_of(path, 1); }

/* One transaction that writes a meta row. */
static int commit_one(store_t *s, const char *key, int64_t v) {
  if (store_begin(s) < 0) return -1;
  if (store_meta_set(s, key, v) < 0 || store_commit(s) < 0) {
    store_rollback(s);
    return -1;
  }
  return 0;
}

/* A sync that records how long the log was when it ran, then syncs it. */
typedef struct {
  long calls;
  off_t size_at[64];
} recorder_t;

static int record_size(int fd, void *ud) {
  recorder_t *r = ud;
  struct stat st;
  if (fstat(fd, &st) < 0) return -1;
  if (r->calls < 64) r->size_at[r->calls] = st.st_size;
  r->calls++;
  return fdatasync(fd);
}

static off_t wal_size(const char *path) {
  char wal[80];
  snprintf(wal, sizeof wal, "%s-wal", path);
  struct stat st;
  return stat(wal, &st) == 0 ? st.st_size : -1;
}

TEST(one_sync_a_commit_covering_what_it_wrote) {
  char path[64];
  store_t *s = behind_store(path);
  if (!s) return;
  recorder_t rec = {0};
  wal_sync_use(s->wal_sync, record_size, &rec);
  off_t after[10];
  for (int i = 0; i < 10; i++) {
    CHECK_INT(commit_one(s, "k", i), 0);
    after[i] = wal_size(path);
  }
  CHECK_INT(store_sync(s), 0);
  /* each commit waited for the sync of the one before it, so no sync covered two */
  CHECK_INT(wal_sync_runs(s->wal_sync), 10);
  CHECK_INT(rec.calls, 10);
  for (int i = 0; i < 10 && i < rec.calls; i++) CHECK(rec.size_at[i] >= after[i]);
  store_close(s);
  char err[200];
  s = store_open(path, 1, err, sizeof err); /* what was committed is there */
  CHECK(s != NULL);
  if (s) CHECK_INT(store_meta_get(s, "k", -1), 9);
  store_close(s);
  unit_remove_db(path);
}

static int fail_sync(int fd, void *ud) {
  (void)fd;
  (*(long *)ud)++;
  errno = EIO;
  return -1;
}

TEST(a_failed_sync_stops_the_next_commit) {
  char path[64];
  store_t *s = behind_store(path);
  if (!s) return;
  long calls = 0;
  wal_sync_use(s->wal_sync, fail_sync, &calls);
  CHECK_INT(commit_one(s, "k", 1), 0); /* written; its sync fails on the thread */
  CHECK_INT(commit_one(s, "k", 2), -1); /* waits for that sync first, and is refused */
  CHECK(strstr(store_errmsg(s), "cannot sync the write-ahead log") != NULL);
  CHECK(strstr(store_errmsg(s), strerror(EIO)) != NULL);
  CHECK_INT(store_sync(s), -1);
  CHECK_INT(calls, 1);
  CHECK_INT(store_meta_get(s, "k", -1), 1); /* the second transaction was rolled back */
  store_close(s);
  unit_remove_db(path);
}

TEST(store_sync_with_nothing_committed) {
  char path[64];
  store_t *s = behind_store(path);
  if (!s) return;
  CHECK_INT(store_sync(s), 0);
  CHECK_INT(wal_sync_runs(s->wal_sync), 0);
  store_close(s);
  unit_remove_db(path);
}

TEST(a_database_without_a_log_is_refused) {
  char err[200] = "";
  CHECK(wal_sync_start("/tmp/hearth-test-no-such-database-wal", err, sizeof err) == NULL);
  CHECK(strstr(err, "/tmp/hearth-test-no-such-database-wal") != NULL);
  store_t *mem = store_open_copy(NULL, err, sizeof err); /* in memory: no log to sync */
  CHECK(mem != NULL);
  if (mem) {
    CHECK_INT(store_sync_behind(mem, 1, err, sizeof err), -1);
    CHECK(strstr(err, "has no write-ahead log to sync") != NULL);
    CHECK(mem->wal_sync == NULL);
    CHECK_INT(commit_one(mem, "k", 1), 0); /* commits go on as before */
    CHECK_INT(store_sync(mem), 0);
  }
  store_close(mem);
}

TEST(only_the_commit_past_the_window_waits) {
  char path[64];
  store_t *s = behind_store_of(path, 3);
  if (!s) return;
  long calls = 0;
  wal_sync_use(s->wal_sync, fail_sync, &calls);
  CHECK_INT(commit_one(s, "k", 1), 0); /* its sync fails on the thread */
  CHECK_INT(commit_one(s, "k", 2), 0); /* two may wait behind it: neither looks */
  CHECK_INT(commit_one(s, "k", 3), 0);
  CHECK_INT(commit_one(s, "k", 4), -1); /* needs commit 1 on disk first, and is refused */
  CHECK(strstr(store_errmsg(s), "cannot sync the write-ahead log") != NULL);
  CHECK_INT(store_meta_get(s, "k", -1), 3);
  store_close(s);
  unit_remove_db(path);
}

TEST(a_transaction_that_changed_nothing_does_not_wait) {
  char path[64];
  store_t *s = behind_store(path);
  if (!s) return;
  long calls = 0;
  wal_sync_use(s->wal_sync, fail_sync, &calls);
  CHECK_INT(commit_one(s, "k", 1), 0); /* its sync fails on the thread */
  CHECK_INT(store_begin(s), 0);
  CHECK_INT(store_meta_get(s, "k", -1), 1);
  CHECK_INT(store_commit(s), 0); /* nothing written: it neither waits nor fails */
  CHECK_INT(store_last_commit(s), 1);
  CHECK_INT(commit_one(s, "k", 2), -1); /* a write waits, and is refused */
  store_close(s);
  unit_remove_db(path);
}

/* A sync that waits until the test opens its gate. */
typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t opened;
  int open;
} gate_t;

static int gated_sync(int fd, void *ud) {
  gate_t *g = ud;
  pthread_mutex_lock(&g->lock);
  while (!g->open) pthread_cond_wait(&g->opened, &g->lock);
  pthread_mutex_unlock(&g->lock);
  return fdatasync(fd);
}

static void gate_open(gate_t *g) {
  pthread_mutex_lock(&g->lock);
  g->open = 1;
  pthread_cond_broadcast(&g->opened);
  pthread_mutex_unlock(&g->lock);
}

static void gate_close(gate_t *g) {
  pthread_mutex_lock(&g->lock);
  g->open = 0;
  pthread_mutex_unlock(&g->lock);
}

/* One transaction that writes action a with write (store_action_add or _rejudge). */
static int commit_action(store_t *s, const action_row_t *a, int (*write)(store_t *, const action_row_t *)) {
  if (store_begin(s) < 0) return -1;
  if (write(s, a) < 0 || store_commit(s) < 0) {
    store_rollback(s);
    return -1;
  }
  return 0;
}

static int count_row(void *ud, const outbox_row_t *row) {
  (void)row;
  (*(int *)ud)++;
  return 0;
}

/* The log channel's rows due at `now`, handed out in a transaction as delivery reads them. */
static int due_rows(store_t *s, int64_t now) {
  int n = 0;
  if (store_begin(s) < 0) return -1;
  int rc = store_outbox_due(s, "log", now, 100, count_row, &n);
  if (store_commit(s) < 0) return -1;
  return rc < 0 ? -1 : n;
}

TEST(delivery_gets_rows_of_synced_commits_only) {
  char path[64];
  store_t *s = behind_store_of(path, 8);
  if (!s) return;
  gate_t g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
  wal_sync_use(s->wal_sync, gated_sync, &g);
  action_row_t a = {.id = "c/m-1/k", .member = "m-1", .campaign = "c", .kind = "send", .status = "queued",
                    .channel = "log", .time = 100, .body = "{}", .deliverable = 1};
  CHECK_INT(commit_action(s, &a, store_action_add), 0); /* written; its sync waits at the gate */
  CHECK_INT(store_durable(s, store_last_commit(s)), 0);
  CHECK_INT(due_rows(s, 200), 0); /* not on disk: held back, and said so */
  CHECK_INT(store_outbox_take_held(s), 1);
  CHECK_INT(store_outbox_take_held(s), 0);
  gate_open(&g);
  CHECK_INT(store_sync(s), 0);
  CHECK_INT(store_durable(s, store_last_commit(s)), 1);
  CHECK_INT(due_rows(s, 200), 1);
  CHECK_INT(store_outbox_take_held(s), 0);
  /* a write outside a transaction (a delivery's outcome) is a commit, synced in turn */
  long runs = wal_sync_runs(s->wal_sync);
  uint64_t commits = store_last_commit(s);
  CHECK_INT(store_outbox_done(s, 1), 0);
  CHECK_INT(store_last_commit(s), commits + 1);
  CHECK_INT(store_sync(s), 0);
  CHECK(wal_sync_runs(s->wal_sync) > runs);
  CHECK_INT(due_rows(s, 200), 0); /* delivered */
  store_close(s);
  unit_remove_db(path);
}

TEST(a_send_released_later_waits_for_the_commit_that_released_it) {
  char path[64];
  store_t *s = behind_store_of(path, 8);
  if (!s) return;
  gate_t g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 1};
  wal_sync_use(s->wal_sync, gated_sync, &g);
  action_row_t a = {.id = "c/m-1/k", .member = "m-1", .campaign = "c", .kind = "send", .status = "deferred",
                    .channel = "log", .time = 100, .body = "{}", .deliverable = 0};
  CHECK_INT(commit_action(s, &a, store_action_add), 0); /* deferred: not for delivery yet */
  CHECK_INT(store_sync(s), 0); /* on disk long before its release */
  gate_close(&g);
  a.status = "queued", a.deliverable = 1, a.time = 150;
  CHECK_INT(commit_action(s, &a, store_action_rejudge), 0); /* released: pending now, its old seq kept */
  CHECK_INT(due_rows(s, 200), 0); /* the release is not on disk: held back */
  CHECK_INT(store_outbox_take_held(s), 1);
  gate_open(&g);
  CHECK_INT(store_sync(s), 0);
  CHECK_INT(due_rows(s, 200), 1);
  CHECK_INT(store_outbox_done(s, 1), 0);
  store_close(s);
  unit_remove_db(path);
}

int main(void) {
  RUN(one_sync_a_commit_covering_what_it_wrote);
  RUN(a_failed_sync_stops_the_next_commit);
  RUN(store_sync_with_nothing_committed);
  RUN(a_database_without_a_log_is_refused);
  RUN(only_the_commit_past_the_window_waits);
  RUN(a_transaction_that_changed_nothing_does_not_wait);
  RUN(delivery_gets_rows_of_synced_commits_only);
  RUN(a_send_released_later_waits_for_the_commit_that_released_it);
  return UNIT_DONE();
}
