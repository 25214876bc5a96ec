/* test_outbox: unit tests for the outbox delivery functions of engine/store.c — which rows
 * are due (channel, next_at, live leases, cap, order), lease/done/retry/dead, the next due
 * time and the backlog, burying rows of unknown channels, dead-letter listing and
 * re-queueing (attempts reset, next_at kept), data_version seeing another connection's
 * commit but not our own, and a failed read reaching its caller. Rows are written with
 * plain SQL on a second connection, the way another process would. Temp files live in
 * /tmp and are removed. */
#include <stdlib.h>
#include <unistd.h>

#include "store.h"
#include "unit.h"
#include "unit_db.h"

/* ---------------------------------------------------------------- helpers */

static store_t *open_temp(char path[64]) {
  if (unit_temp_db(path, "outbox") < 0) return NULL;
  char err[256];
  store_t *s = store_open(path, 0, err, sizeof err);
  if (!s) fprintf(stderr, "store_open: %s\n", err);
  CHECK(s != NULL);
  return s;
}

static void remove_temp(store_t *s, const char *path) {
  store_close(s);
  unit_remove_db(path);
}

/* Run SQL on a second connection (another process, as far as SQLite can tell). */
static void other(const char *path, const char *sql) {
  sqlite3 *db;
  char *msg = NULL;
  CHECK(sqlite3_open(path, &db) == SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    fprintf(stderr, "%s: %s\n", sql, msg);
    unit_failed_checks++;
  }
  sqlite3_free(msg);
  sqlite3_close(db);
}

/* One outbox row: seq, id, channel, delivery, next_at, leased_until (0 = NULL). */
static void add_row(const char *path, int seq, const char *channel, const char *delivery, long long next_at,
                    long long leased_until) {
  char sql[512], lease[32] = "NULL";
  if (leased_until) snprintf(lease, sizeof lease, "%lld", leased_until);
  snprintf(sql, sizeof sql,
           "INSERT INTO outbox(seq, id, member, campaign, kind, status, channel, time, body, delivery,"
           " next_at, leased_until) VALUES (%d, 'c/m/%d', 'm', 'c', 'send', 'queued', '%s', 100,"
           " '{\"id\":\"c/m/%d\"}', '%s', %lld, %s)",
           seq, seq, channel, seq, delivery, next_at, lease);
  other(path, sql);
}

typedef struct {
  int64_t seq[16];
  int attempts[16];
  int n, stop_after;
} seen_t;

static int collect(void *ud, const outbox_row_t *row) {
  seen_t *s = ud;
  if (s->n < 16) s->seq[s->n] = row->seq, s->attempts[s->n] = row->attempts;
  s->n++;
  return s->stop_after && s->n >= s->stop_after ? -1 : 0;
}

/* One integer from the store's own database, read on a second connection. */
static long long read_int(const char *path, const char *q) {
  sqlite3 *db;
  sqlite3_stmt *st;
  long long v = -999;
  CHECK(sqlite3_open(path, &db) == SQLITE_OK);
  if (sqlite3_prepare_v2(db, q, -1, &st, NULL) == SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return v;
}

/* ---------------------------------------------------------------- tests */

TEST(due_rows_by_channel_time_lease_and_cap) {
  char path[64];
  store_t *s = open_temp(path);
  if (!s) return;
  add_row(path, 1, "crm", "pending", 120, 0);
  add_row(path, 2, "crm", "pending", 110, 0);     /* due earlier: first */
  add_row(path, 3, "crm", "pending", 130, 0);     /* not yet due at 125 */
  add_row(path, 4, "crm", "pending", 100, 200);   /* leased past now: skipped */
  add_row(path, 5, "crm", "pending", 100, 125);   /* lease ended at now: due */
  add_row(path, 6, "log", "pending", 100, 0);     /* another channel */
  add_row(path, 7, "crm", "delivered", 100, 0);
  add_row(path, 8, "crm", "dead", 100, 0);
  seen_t seen = {0};
  CHECK_INT(store_outbox_due(s, "crm", 125, 10, collect, &seen), 3);
  CHECK_INT(seen.seq[0], 5);
  CHECK_INT(seen.seq[1], 2);
  CHECK_INT(seen.seq[2], 1);
  seen_t capped = {0};
  CHECK_INT(store_outbox_due(s, "crm", 125, 2, collect, &capped), 2);
  CHECK_INT(capped.seq[1], 2);
  seen_t stopped = {.stop_after = 1};
  CHECK_INT(store_outbox_due(s, "crm", 125, 10, collect, &stopped), -1);
  CHECK_INT(stopped.n, 1);
  seen_t none = {0};
  CHECK_INT(store_outbox_due(s, "nope", 125, 10, collect, &none), 0);
  int64_t next = 0, backlog = 0;
  CHECK_INT(store_outbox_next_due(s, &next), 0);
  CHECK_INT(next, 100); /* seq 6 on "log" */
  CHECK_INT(store_outbox_backlog(s, &backlog), 0);
  CHECK_INT(backlog, 6);
  remove_temp(s, path);
}

TEST(lease_done_retry_dead_and_void_leases) {
  char path[64];
  store_t *s = open_temp(path);
  if (!s) return;
  add_row(path, 1, "crm", "pending", 100, 0);
  add_row(path, 2, "crm", "pending", 100, 0);
  add_row(path, 3, "crm", "pending", 100, 0);
  CHECK_INT(store_outbox_lease(s, 1, 140), 0);
  CHECK_INT(store_outbox_lease(s, 2, 150), 0);
  int64_t next = 0;
  CHECK_INT(store_outbox_next_due(s, &next), 0);
  CHECK_INT(next, 100); /* row 3 is not leased */
  CHECK_INT(store_outbox_lease(s, 3, 160), 0);
  CHECK_INT(store_outbox_next_due(s, &next), 0);
  CHECK_INT(next, 140); /* the earliest lease to end */
  seen_t seen = {0};
  CHECK_INT(store_outbox_due(s, "crm", 120, 10, collect, &seen), 0);

  CHECK_INT(store_outbox_done(s, 1), 0);
  CHECK_INT(store_outbox_retry(s, 2, 300, "HTTP 503"), 0);
  CHECK_INT(store_outbox_dead(s, 3, "HTTP 400"), 0);
  CHECK_INT(read_int(path, "SELECT attempts FROM outbox WHERE seq = 1"), 1);
  CHECK_INT(read_int(path, "SELECT delivery = 'delivered' AND leased_until IS NULL FROM outbox WHERE seq = 1"), 1);
  CHECK_INT(read_int(path, "SELECT next_at FROM outbox WHERE seq = 2"), 300);
  CHECK_INT(read_int(path, "SELECT attempts FROM outbox WHERE seq = 2"), 1);
  CHECK_INT(read_int(path, "SELECT delivery = 'pending' AND leased_until IS NULL AND last_error = 'HTTP 503'"
                           " FROM outbox WHERE seq = 2"), 1);
  CHECK_INT(read_int(path, "SELECT delivery = 'dead' AND attempts = 1 AND last_error = 'HTTP 400'"
                           " FROM outbox WHERE seq = 3"), 1);
  CHECK_INT(store_outbox_next_due(s, &next), 0);
  CHECK_INT(next, 300);
  seen_t retried = {0};
  CHECK_INT(store_outbox_due(s, "crm", 300, 10, collect, &retried), 1);
  CHECK_INT(retried.attempts[0], 1);

  CHECK_INT(store_outbox_lease(s, 2, 900), 0);
  CHECK_INT(store_outbox_void_leases(s), 0);
  CHECK_INT(read_int(path, "SELECT count(*) FROM outbox WHERE leased_until IS NOT NULL"), 0);
  int64_t backlog = 0;
  CHECK_INT(store_outbox_backlog(s, &backlog), 0);
  CHECK_INT(backlog, 1);
  remove_temp(s, path);
}

TEST(nothing_pending_next_due_is_int64_max) {
  char path[64];
  store_t *s = open_temp(path);
  if (!s) return;
  int64_t next = 0, backlog = -1;
  CHECK_INT(store_outbox_next_due(s, &next), 0);
  CHECK(next == INT64_MAX);
  CHECK_INT(store_outbox_backlog(s, &backlog), 0);
  CHECK_INT(backlog, 0);
  remove_temp(s, path);
}

TEST(bury_unknown_channels) {
  char path[64];
  store_t *s = open_temp(path);
  if (!s) return;
  add_row(path, 1, "crm", "pending", 100, 0);
  add_row(path, 2, "gone", "pending", 100, 0);
  add_row(path, 3, "gone", "pending", 100, 0);
  add_row(path, 4, "old", "delivered", 100, 0); /* not pending: left alone */
  add_row(path, 5, "log", "pending", 100, 0);
  const char *known[] = {"crm", "log"};
  int buried = -1;
  CHECK_INT(store_outbox_bury_unknown(s, known, 2, &buried), 0);
  CHECK_INT(buried, 2);
  CHECK_INT(read_int(path, "SELECT count(*) FROM outbox WHERE delivery = 'dead'"
                           " AND last_error = 'unknown channel gone'"), 2);
  CHECK_INT(read_int(path, "SELECT delivery = 'delivered' FROM outbox WHERE seq = 4"), 1);
  CHECK_INT(read_int(path, "SELECT count(*) FROM outbox WHERE delivery = 'pending'"), 2);
  CHECK_INT(store_outbox_bury_unknown(s, known, 2, &buried), 0);
  CHECK_INT(buried, 0);
  remove_temp(s, path);
}

typedef struct {
  char ids[8][32];
  int attempts[8];
  int n;
} dead_seen_t;

static int collect_dead(void *ud, const dead_letter_t *dl) {
  dead_seen_t *d = ud;
  if (d->n < 8) snprintf(d->ids[d->n], 32, "%s", dl->id), d->attempts[d->n] = dl->attempts;
  d->n++;
  return 0;
}

TEST(dead_letters_listed_newest_first_and_requeued_with_next_at_kept) {
  char path[64];
  store_t *s = open_temp(path);
  if (!s) return;
  add_row(path, 1, "crm", "pending", 100, 0);
  add_row(path, 2, "crm", "pending", 110, 0);
  add_row(path, 3, "crm", "pending", 120, 0);
  CHECK_INT(store_outbox_dead(s, 1, "HTTP 500"), 0);
  CHECK_INT(store_outbox_dead(s, 2, "HTTP 500"), 0);
  dead_seen_t all = {0};
  CHECK_INT(store_dead_letters(s, 20, collect_dead, &all), 2);
  CHECK_STR(all.ids[0], "c/m/2");
  CHECK_STR(all.ids[1], "c/m/1");
  CHECK_INT(all.attempts[0], 1);
  dead_seen_t one = {0};
  CHECK_INT(store_dead_letters(s, 1, collect_dead, &one), 1);

  CHECK_INT(store_dead_requeue(s, "c/m/3"), 0); /* pending, not a dead letter */
  CHECK_INT(store_dead_requeue(s, "nope"), 0);
  CHECK_INT(store_dead_requeue(s, "c/m/2"), 1);
  CHECK_INT(read_int(path, "SELECT delivery = 'pending' AND attempts = 0 AND next_at = 110"
                           " FROM outbox WHERE seq = 2"), 1);
  CHECK_INT(store_dead_requeue(s, NULL), 1);
  dead_seen_t none = {0};
  CHECK_INT(store_dead_letters(s, 20, collect_dead, &none), 0);
  seen_t due = {0};
  CHECK_INT(store_outbox_due(s, "crm", 120, 10, collect, &due), 3);
  remove_temp(s, path);
}

TEST(data_version_changes_on_another_connections_commit_only) {
  char path[64];
  store_t *s = open_temp(path);
  if (!s) return;
  int64_t v0 = -1, v1 = -1, v2 = -1;
  CHECK_INT(store_data_version(s, &v0), 0);
  CHECK_INT(store_meta_set(s, "ours", 1), 0);
  CHECK_INT(store_data_version(s, &v1), 0);
  CHECK_INT(v1, v0);
  add_row(path, 1, "crm", "pending", 100, 0);
  CHECK_INT(store_data_version(s, &v2), 0);
  CHECK(v2 != v1);
  remove_temp(s, path);
}

TEST(a_failed_read_reaches_the_caller) {
  char path[64];
  store_t *s = open_temp(path);
  if (!s) return;
  other(path, "DROP TABLE outbox");
  int64_t n = 12345;
  CHECK_INT(store_outbox_backlog(s, &n), -1);
  CHECK_INT(n, 12345);
  seen_t seen = {0};
  CHECK_INT(store_outbox_due(s, "crm", 100, 10, collect, &seen), -1);
  dead_seen_t dead = {0};
  CHECK_INT(store_dead_letters(s, 10, collect_dead, &dead), -1);
  CHECK_INT(store_dead_requeue(s, NULL), -1);
  int buried = 7;
  const char *known[] = {"crm"};
  CHECK_INT(store_outbox_bury_unknown(s, known, 1, &buried), -1);
  CHECK_INT(buried, 0);
  CHECK_INT(s->in_tx, 0);
  remove_temp(s, path);
}

int main(void) {
  RUN(due_rows_by_channel_time_lease_and_cap);
  RUN(lease_done_retry_dead_and_void_leases);
  RUN(nothing_pending_next_due_is_int64_max);
  RUN(bury_unknown_channels);
  RUN(dead_letters_listed_newest_first_and_requeued_with_next_at_kept);
  RUN(data_version_changes_on_another_connections_commit_only);
  RUN(a_failed_read_reaches_the_caller);
  return UNIT_DONE();
}
