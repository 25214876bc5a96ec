/* test_store: unit tests for engine/store.c and the engine's batch layer — migrations and
 * user_version, idempotent reopen, refusal of a newer schema, store_seen_mark's dedupe
 * window, the ledger's CHECK (balance >= 0), timer order and store_timers_delete_upto;
 * the reports' typed reads (rows, member JSON, -1 on a missing table, /metrics without
 * the gauges it cannot read, backup); then engine_open (no scripts, in-memory, on a
 * virtual clock) with engine_feed and engine_commit and the built-in member fields,
 * engine_rollback, and engine_run_until firing rows in (due, id) order, with and without
 * a script handling them; the broadcasts' progress rows. Temp files live in /tmp and are
 * removed. */
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "event.h"
#include "member.h"
#include "member_json.h"
#include "metrics.h"
#include "store.h"
#include "summary.h"
#include "unit.h"
#include "unit_db.h"

/* ---------------------------------------------------------------- helpers */

static void temp_db(char path[64]) { unit_temp_db(path, "store"); }
static void remove_db(const char *path) { unit_remove_db(path); }

static int64_t T(const char *s) {
  int64_t t = 0;
  char err[160];
  if (rfc3339_parse(s, &t, err, sizeof err) < 0) {
    fprintf(stderr, "bad test time %s: %s\n", s, err);
    unit_failed_checks++;
  }
  return t;
}

/* First column of the first row of q as an integer (-999 when no row / an error). */
static long long q_int(sqlite3 *db, const char *q) {
  sqlite3_stmt *st;
  long long v = -999;
  if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK) {
    fprintf(stderr, "prepare %s: %s\n", q, sqlite3_errmsg(db));
    return v;
  }
  if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

/* First column of the first row of q as text, copied into buf ("" when none). */
static const char *q_text(sqlite3 *db, const char *q, char *buf, size_t len) {
  sqlite3_stmt *st;
  buf[0] = '\0';
  if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK) return buf;
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
    snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  return buf;
}

static int table_exists(sqlite3 *db, const char *name) {
  char q[200];
  snprintf(q, sizeof q, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '%s'", name);
  return q_int(db, q) == 1;
}

/* A store in a new file at path (removed again when it cannot be opened). */
static store_t *file_store(char path[64]) {
  char err[256] = "";
  temp_db(path);
  store_t *s = store_open(path, 0, err, sizeof err);
  CHECK(s != NULL);
  if (!s) {
    fprintf(stderr, "store_open: %s\n", err);
    remove_db(path);
  }
  return s;
}

static store_t *mem_store(void) {
  char err[256] = "";
  store_t *s = store_open_copy(NULL, err, sizeof err);
  if (!s) {
    fprintf(stderr, "store_open_copy: %s\n", err);
    unit_failed_checks++;
  }
  return s;
}

static int seen_mark(store_t *s, const char *id, int64_t at, int64_t cutoff) {
  int rc = store_seen_mark(s, id, at, cutoff);
  CHECK(rc >= 0);
  return rc;
}

static int timer_add(store_t *s, int64_t due, int64_t id, const char *member, const char *type,
                     const char *data, int64_t gen) {
  timer_row_t row = {.due = due, .id = id, .member = (char *)member, .type = (char *)type,
                     .data = (char *)data, .gen = gen, .campaign = "test"};
  return store_timer_add(s, &row);
}

/* The (due, id) pairs store_timers_due returns, as "due:id due:id ..." in buf. */
static const char *due_list(store_t *s, int64_t upto, int limit, char *buf, size_t len) {
  timer_row_t *rows;
  int n = store_timers_due(s, upto, limit, &rows);
  CHECK(n >= 0);
  size_t o = 0;
  buf[0] = '\0';
  for (int i = 0; i < n && o < len; i++)
    o += (size_t)snprintf(buf + o, len - o, "%s%lld:%lld", o ? " " : "", (long long)rows[i].due,
                          (long long)rows[i].id);
  store_timer_rows_free(rows, n > 0 ? n : 0);
  return buf;
}

static int64_t next_due(store_t *s) {
  int64_t due = -1;
  CHECK_INT(store_timer_next(s, &due), 1);
  return due;
}

/* An engine on db_path (a file), or in memory when db_path is NULL; scripts_dir NULL: no scripts. */
static engine_t *open_engine_at(const char *db_path, const char *scripts_dir) {
  engine_opts_t o;
  memset(&o, 0, sizeof o);
  o.tz_name = "Asia/Shanghai";
  o.stdlib_dir = NULL;
  o.memory_db = db_path == NULL;
  o.db_path = db_path;
  o.scripts_dir = scripts_dir;
  o.no_scripts = scripts_dir == NULL;
  o.dedupe_window = 30 * 86400;
  char *err = NULL;
  engine_t *e = engine_open(&o, &err);
  if (!e) {
    fprintf(stderr, "engine_open: %s\n", err ? err : "(no message)");
    unit_failed_checks++;
  } else {
    engine_use_virtual_clock(e);
  }
  free(err);
  return e;
}

static engine_t *open_engine(const char *scripts_dir) { return open_engine_at(NULL, scripts_dir); }

/* Parse and feed one event line (in the batch, opened if none is); returns EV_* (or -2 if
 * it does not parse). */
static int apply(engine_t *e, const char *json) {
  event_t ev;
  char err[256];
  if (event_parse(json, strlen(json), &ev, err, sizeof err) < 0) {
    fprintf(stderr, "test event does not parse: %s: %s\n", json, err);
    unit_failed_checks++;
    return -2;
  }
  int rc = engine_feed(e, &ev);
  event_clear(&ev);
  return rc;
}

static char *dump(json_t *v) { return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS); }

#define CHECK_JSON(v, want) do { char *_d = dump(v); CHECK_STR(_d, want); free(_d); } while (0)

/* ---------------------------------------------------------------- store */

TEST(migrations_create_schema) {
  char path[64];
  store_t *s = file_store(path);
  if (!s) return;
  CHECK_INT(q_int(s->db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
  const char *tables[] = {"meta", "members", "member_tags", "ledger", "seen_events",
                          "outbox", "timers", "failed_events", "cron_state"};
  for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
    if (!table_exists(s->db, tables[i])) fprintf(stderr, "missing table %s\n", tables[i]);
    CHECK(table_exists(s->db, tables[i]));
  }
  char buf[64];
  CHECK_STR(q_text(s->db, "PRAGMA journal_mode", buf, sizeof buf), "wal");
  CHECK_INT(q_int(s->db, "PRAGMA synchronous"), 2); /* FULL */
  CHECK_INT(s->in_tx, 0);
  store_close(s);
  remove_db(path);
}

TEST(reopen_is_idempotent) {
  char path[64], err[256] = "";
  store_t *s = file_store(path);
  if (!s) return;
  CHECK_INT(store_meta_set(s, "event_seq", 42), 0);
  CHECK_INT(store_begin(s), 0);
  CHECK_INT(store_meta_set(s, "timer_seq", 7), 0);
  CHECK_INT(store_commit(s), 0);
  long long objects = q_int(s->db, "SELECT count(*) FROM sqlite_master");
  CHECK(objects >= 9);
  store_close(s);

  for (int round = 0; round < 2; round++) {
    s = store_open(path, 0, err, sizeof err);
    CHECK(s != NULL);
    if (!s) {
      fprintf(stderr, "reopen: %s\n", err);
      break;
    }
    CHECK_INT(q_int(s->db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    CHECK_INT(q_int(s->db, "SELECT count(*) FROM sqlite_master"), objects);
    CHECK_INT(store_meta_get(s, "event_seq", -1), 42);
    CHECK_INT(store_meta_get(s, "timer_seq", -1), 7);
    CHECK_INT(store_meta_get(s, "absent", -5), -5);
    store_close(s);
  }
  /* read-only open of a current database works and reads the same */
  s = store_open(path, 1, err, sizeof err);
  CHECK(s != NULL);
  if (s) {
    CHECK_INT(store_meta_get(s, "event_seq", -1), 42);
    store_close(s);
  }
  remove_db(path);
}

TEST(newer_schema_refused) {
  char path[64], err[256] = "";
  temp_db(path);
  sqlite3 *db = NULL;
  CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
  char q[64];
  snprintf(q, sizeof q, "CREATE TABLE future(x); PRAGMA user_version = %d", STORE_SCHEMA_VERSION + 1);
  CHECK_INT(sqlite3_exec(db, q, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);

  store_t *s = store_open(path, 0, err, sizeof err);
  CHECK(s == NULL);
  if (s) store_close(s);
  CHECK(strstr(err, "newer") != NULL);
  if (!strstr(err, "newer")) fprintf(stderr, "message: %s\n", err);

  err[0] = '\0';
  s = store_open(path, 1, err, sizeof err);
  CHECK(s == NULL);
  if (s) store_close(s);
  CHECK(err[0] != '\0');

  /* nothing was migrated into it */
  CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
  CHECK_INT(q_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION + 1);
  CHECK(!table_exists(db, "members"));
  sqlite3_close(db);
  remove_db(path);

  /* not a database at all: refused with a message, no crash */
  temp_db(path);
  FILE *f = fopen(path, "w");
  if (f) {
    for (int i = 0; i < 256; i++) fputs("this is not sqlite ", f);
    fclose(f);
  }
  err[0] = '\0';
  s = store_open(path, 0, err, sizeof err);
  CHECK(s == NULL);
  if (s) store_close(s);
  CHECK(err[0] != '\0');
  remove_db(path);
}

TEST(seen_mark_dedupe_window) {
  store_t *s = mem_store();
  if (!s) return;
  const int64_t W = 30 * 86400, t0 = 1800000000;
  CHECK_INT(seen_mark(s, "e-1", t0, t0 - W), 1);              /* new */
  CHECK_INT(seen_mark(s, "e-1", t0 + 10, t0 + 10 - W), 0);    /* inside the window */
  CHECK_INT(seen_mark(s, "e-1", t0 + W, t0), 0);              /* exactly W later: still seen */
  CHECK_INT(q_int(s->db, "SELECT at FROM seen_events WHERE id = 'e-1'"), t0); /* not moved */
  CHECK_INT(seen_mark(s, "e-1", t0 + W + 1, t0 + 1), 1);      /* after the window: new again */
  /* the renewed mark is in a generation of its own (opened: the first was older than W) */
  CHECK_INT(q_int(s->db, "SELECT max(at) FROM seen_events WHERE id = 'e-1'"), t0 + W + 1);
  CHECK_INT(seen_mark(s, "e-1", t0 + W + 2, t0 + 2), 0);      /* and seen from then on */
  CHECK_INT(seen_mark(s, "e-2", t0, t0 - W), 1);              /* another id is independent */

  /* window INT64_MIN = forever */
  CHECK_INT(seen_mark(s, "f-1", t0, INT64_MIN), 1);
  CHECK_INT(seen_mark(s, "f-1", t0 + 100 * 365 * 86400LL, INT64_MIN), 0);
  CHECK_INT(seen_mark(s, "f-1", INT64_MAX, INT64_MIN), 0);
  CHECK_INT(q_int(s->db, "SELECT count(DISTINCT id) FROM seen_events"), 3);
  store_close(s);
}

/* Marks live in generations, one opened when the current one is older than the window:
 * a live mark in the previous generation is still a duplicate, an expired one is not, and
 * a purge drops a generation whole once all its marks are older than its bound. */
TEST(seen_generations_purged_whole) {
  store_t *s = mem_store();
  if (!s) return;
  const int64_t W = 2 * 86400, t0 = 1800000000; /* t0 on the hour */
  CHECK_INT(store_begin(s), 0);                          /* the catalog read once per transaction */
  CHECK_INT(seen_mark(s, "a", t0, t0 - W), 1);
  CHECK_INT(seen_mark(s, "c", t0 + W / 2, t0 - W / 2), 1);
  CHECK_INT(store_commit(s), 0);
  CHECK_INT(q_int(s->db, "SELECT count(*) FROM seen_gens"), 1);
  CHECK_INT(q_int(s->db, "SELECT last_at FROM seen_gens"), t0 + W / 2);
  CHECK_INT(store_begin(s), 0);
  CHECK_INT(seen_mark(s, "b", t0 + W + 1, t0 + 1), 1);   /* opens generation 1 */
  CHECK_INT(seen_mark(s, "c", t0 + W + 2, t0 + 2), 0);   /* live in generation 0: a duplicate */
  CHECK_INT(seen_mark(s, "a", t0 + W + 3, t0 + 3), 1);   /* expired in generation 0: new */
  CHECK_INT(store_commit(s), 0);
  CHECK_INT(q_int(s->db, "SELECT count(*) FROM seen_gens"), 2);
  CHECK_INT(q_int(s->db, "SELECT last_at FROM seen_gens WHERE gen = 1"), t0 + W + 3600);

  int64_t n = -1;
  CHECK_INT(store_seen_count_before(s, t0 + W / 2, &n), 0);
  CHECK_INT(n, 0);                                       /* c's mark is not older than that */
  CHECK_INT(store_seen_count_before(s, t0 + W / 2 + 1, &n), 0);
  CHECK_INT(n, 2);                                       /* generation 0: a and c */
  CHECK_INT(store_seen_purge(s, t0 + W / 2 + 1, 1), 1);
  CHECK_INT(q_int(s->db, "SELECT count(*) FROM seen_gens"), 2);   /* not empty yet */
  CHECK_INT(store_seen_purge(s, t0 + W / 2 + 1, 10), 1);
  CHECK_INT(q_int(s->db, "SELECT count(*) FROM seen_gens"), 1);   /* emptied, dropped */
  CHECK_INT(store_seen_purge(s, t0 + W / 2 + 1, 10), 0);
  CHECK_INT(q_int(s->db, "SELECT count(*) FROM seen_events WHERE gen = 1"), 2);

  /* a generation opened in a transaction rolled back is gone, and so is its mark */
  CHECK_INT(store_begin(s), 0);
  CHECK_INT(seen_mark(s, "d", t0 + 3 * W + 10, t0 + 2 * W + 10), 1); /* opens generation 2 */
  store_rollback(s);
  CHECK_INT(q_int(s->db, "SELECT count(*) FROM seen_gens"), 1);
  CHECK_INT(seen_mark(s, "d", t0 + 3 * W + 10, t0 + 2 * W + 10), 1);
  CHECK_INT(q_int(s->db, "SELECT max(gen) FROM seen_gens"), 2);
  store_close(s);
}

TEST(ledger_balance_check) {
  store_t *s = mem_store();
  if (!s) return;
  ledger_row_t r1 = {.member = "m-1", .n = 1, .time = 1800000000, .delta = 10, .balance = 10,
                     .reason = "welcome", .campaign = "c", .cause = "e-1"};
  CHECK_INT(store_ledger_add(s, &r1), 0);
  ledger_row_t r2 = {.member = "m-1", .n = 2, .time = 1800000001, .delta = -11, .balance = -1,
                     .reason = "overspend", .campaign = "c", .cause = "e-2"};
  CHECK_INT(store_ledger_add(s, &r2), -1);
  CHECK_INT(sqlite3_extended_errcode(s->db), SQLITE_CONSTRAINT_CHECK);
  ledger_row_t r3 = {.member = "m-1", .n = 2, .time = 1800000002, .delta = -10, .balance = 0,
                     .reason = "spend all", .campaign = "c", .cause = "e-3"}; /* exactly zero is fine */
  CHECK_INT(store_ledger_add(s, &r3), 0);
  CHECK_INT(q_int(s->db, "SELECT count(*) FROM ledger"), 2);
  CHECK_INT(q_int(s->db, "SELECT min(balance) FROM ledger"), 0);

  /* the members table refuses negative points too */
  member_row_t neg = {.id = "m-1", .created_at = 1800000000, .joined_at = STORE_NO_TIME,
                      .last_active_at = STORE_NO_TIME, .points = -1};
  CHECK_INT(store_member_put(s, &neg), -1);
  CHECK_INT(q_int(s->db, "SELECT count(*) FROM members"), 0);
  store_close(s);
}

/* store_member_update writes back an existing row (created_at kept), found by its rid,
 * and says when there is none, so that the member cache inserts it instead. */
TEST(member_update_only_an_existing_row) {
  store_t *s = mem_store();
  if (!s) return;
  member_row_t r = {.id = "m-1", .created_at = 100, .joined_at = 100,
                    .last_active_at = 100, .points = 5, .attrs = "{\"a\":1}", .rid = 1};
  CHECK_INT(store_member_update(s, &r), 0);                   /* no row yet */
  CHECK_INT(q_int(s->db, "SELECT count(*) FROM members"), 0);
  r.rid = 0;
  CHECK_INT(store_member_put(s, &r), 0);
  CHECK(r.rid > 0);
  member_row_t other = {.id = "m-2", .created_at = 100, .rid = r.rid};
  CHECK_INT(store_member_update(s, &other), 0); /* her rid, another id: not her row */
  CHECK_INT(q_int(s->db, "SELECT count(*) FROM members WHERE id = 'm-1' AND attrs = '{\"a\":1}'"), 1);
  member_row_t later = r;
  later.created_at = 999; /* not written by an update */
  later.last_active_at = 200;
  later.points = 7;
  later.ledger_n = 3;
  later.attrs = "{\"a\":2}";
  CHECK_INT(store_member_update(s, &later), 1);
  member_row_t got;
  CHECK_INT(store_member_get(s, "m-1", &got), 1);
  CHECK_INT(got.created_at, 100);
  CHECK_INT(got.last_active_at, 200);
  CHECK_INT(got.points, 7);
  CHECK_INT(got.ledger_n, 3);
  CHECK_INT(got.rid, r.rid);
  CHECK(strcmp(got.attrs, "{\"a\":2}") == 0);
  free(got.attrs), free(got.tags), free(got.gens), free(got.sends);
  member_row_t again = later; /* a put of a row that is there (another writer's): written over */
  again.rid = 0;
  again.points = 9;
  CHECK_INT(store_member_put(s, &again), 0);
  CHECK_INT(again.rid, r.rid);
  CHECK_INT(q_int(s->db, "SELECT points FROM members WHERE id = 'm-1'"), 9);
  CHECK_INT(q_int(s->db, "SELECT count(*) FROM members"), 1);
  later.points = -1; /* the CHECK holds for an update too */
  CHECK_INT(store_member_update(s, &later), -1);
  store_close(s);
}

TEST(timers_ordered_and_deleted_up_to) {
  store_t *s = mem_store();
  if (!s) return;
  const int64_t rows[][2] = {{300, 5}, {100, 9}, {200, 2}, {100, 3}, {200, 7}, {400, 1}};
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
    CHECK_INT(timer_add(s, rows[i][0], rows[i][1], "m", "tick", NULL, 0), 0);
  /* (due, id) is the key */
  CHECK(timer_add(s, 100, 3, "m", "tick", NULL, 0) < 0);
  char buf[256];
  CHECK_STR(due_list(s, 250, 100, buf, sizeof buf), "100:3 100:9 200:2 200:7");
  CHECK_STR(due_list(s, 250, 3, buf, sizeof buf), "100:3 100:9 200:2");
  CHECK_STR(due_list(s, 99, 100, buf, sizeof buf), "");
  CHECK_STR(due_list(s, INT64_MAX, 100, buf, sizeof buf), "100:3 100:9 200:2 200:7 300:5 400:1");

  CHECK_INT(next_due(s), 100);

  /* the id bound: only rows with id <= it (rows that existed when the batch was read) */
  CHECK_INT(store_timers_delete_upto(s, 200, 2, INT64_MAX), 0);
  CHECK_INT(sqlite3_changes(s->db), 3);
  CHECK_STR(due_list(s, INT64_MAX, 100, buf, sizeof buf), "200:7 300:5 400:1");
  CHECK_INT(next_due(s), 200);

  CHECK_INT(store_timers_delete_upto(s, 300, 4, INT64_MAX), 0); /* an id between rows of the same due */
  CHECK_STR(due_list(s, INT64_MAX, 100, buf, sizeof buf), "300:5 400:1");

  /* rows newer than the id bound stay even when (due, id) is below the cut */
  CHECK_INT(store_timers_delete_upto(s, 400, 1, 4), 0);
  CHECK_STR(due_list(s, INT64_MAX, 100, buf, sizeof buf), "300:5");
  store_close(s);
}

/* The earliest due time is read once a transaction and kept as timers are added; a
 * delete or a rollback (to a savepoint too) reads it again, and so does a transaction
 * after another connection added one. */
TEST(timer_next_follows_adds_deletes_and_rollbacks) {
  char path[64];
  store_t *s = file_store(path);
  if (!s) return;
  int64_t due = -1;
  CHECK_INT(store_begin(s), 0);
  CHECK_INT(store_timer_next(s, &due), 0);
  CHECK_INT(timer_add(s, 300, 1, "m", "tick", NULL, 0), 0);
  CHECK_INT(next_due(s), 300);
  CHECK_INT(timer_add(s, 100, 2, "m", "tick", NULL, 0), 0);
  CHECK_INT(timer_add(s, 200, 3, "m", "tick", NULL, 0), 0);
  CHECK_INT(next_due(s), 100);
  CHECK_INT(store_savepoint(s), 0);
  CHECK_INT(timer_add(s, 50, 4, "m", "tick", NULL, 0), 0);
  CHECK_INT(next_due(s), 50);
  CHECK_INT(store_rollback_to(s), 0);
  CHECK_INT(next_due(s), 100);
  CHECK_INT(store_timers_delete_upto(s, 100, 2, INT64_MAX), 0);
  CHECK_INT(next_due(s), 200);
  CHECK_INT(store_commit(s), 0);

  sqlite3 *other = NULL; /* another writer, between two transactions */
  CHECK_INT(sqlite3_open(path, &other), SQLITE_OK);
  CHECK_INT(sqlite3_exec(other, "INSERT INTO timers(due, id, member, type, gen) VALUES (10, 9, 'm', 'tick', 0)",
                         NULL, NULL, NULL), SQLITE_OK);
  CHECK_INT(next_due(s), 10); /* outside a transaction: read each time */
  CHECK_INT(sqlite3_exec(other, "DELETE FROM timers WHERE id = 9", NULL, NULL, NULL), SQLITE_OK);
  CHECK_INT(store_begin(s), 0);
  CHECK_INT(next_due(s), 200);
  CHECK_INT(store_commit(s), 0);
  sqlite3_close(other);
  store_close(s);
  remove_db(path);
}

/* Row i's member and data texts in timers_due_keep_their_texts. */
static void row_texts(int i, char member[32], char data[32]) {
  snprintf(member, 32, "member-%d", i);
  snprintf(data, 32, "{\"n\":%d}", i);
}

/* A batch's rows hold their texts: each as written, NULL where none was. */
TEST(timers_due_keep_their_texts) {
  store_t *s = mem_store();
  if (!s) return;
  for (int i = 0; i < 300; i++) {
    char member[32], data[32];
    row_texts(i, member, data);
    timer_row_t row = {.due = 100, .id = i + 1, .member = member, .type = i % 2 ? "odd" : "even",
                       .data = i % 3 ? data : NULL, .gen = 0, .campaign = i % 5 ? "c" : NULL,
                       .depth = i, .chain = i % 7 ? NULL : "c:even > c:odd"};
    CHECK_INT(store_timer_add(s, &row), 0);
  }
  timer_row_t *rows;
  CHECK_INT(store_timers_due(s, 100, 1000, &rows), 300);
  for (int i = 0; i < 300; i++) {
    char member[32], data[32];
    row_texts(i, member, data);
    CHECK_STR(rows[i].member, member);
    CHECK_STR(rows[i].type, i % 2 ? "odd" : "even");
    if (i % 3) CHECK_STR(rows[i].data, data); else CHECK(rows[i].data == NULL);
    if (i % 5) CHECK_STR(rows[i].campaign, "c"); else CHECK(rows[i].campaign == NULL);
    if (i % 7) CHECK(rows[i].chain == NULL); else CHECK_STR(rows[i].chain, "c:even > c:odd");
    CHECK_INT(rows[i].depth, i);
  }
  store_timer_rows_free(rows, 300);
  CHECK_INT(store_timers_due(s, 99, 1000, &rows), 0);
  store_timer_rows_free(rows, 0);
  store_close(s);
}

TEST(store_open_copy_snapshot_not_written) {
  char path[64], err[256] = "";
  store_t *s = file_store(path);
  if (!s) return;
  CHECK_INT(store_meta_set(s, "event_seq", 5), 0);
  store_close(s);
  s = store_open_copy(path, err, sizeof err);
  CHECK(s != NULL);
  if (s) {
    CHECK_INT(store_meta_get(s, "event_seq", -1), 5);
    CHECK_INT(store_meta_set(s, "event_seq", 6), 0);
    store_close(s);
  }
  s = store_open(path, 1, err, sizeof err);
  CHECK(s != NULL);
  if (s) {
    CHECK_INT(store_meta_get(s, "event_seq", -1), 5);
    store_close(s);
  }
  remove_db(path);
}

/* ---------------------------------------------------------------- reports (read side) */

/* Rows the report reads return, written with plain SQL (rows as the engine writes them). */
static const char *REPORT_ROWS =
    "INSERT INTO members(id, created_at, joined_at, last_active_at, orders, spend, points, attrs, tags)"
    " VALUES ('m-1', 100, NULL, 300, 2, 12.5, 7, '{\"city\":\"Hangzhou\"}', '{\"vip\":true,\"a\":true}');"
    "INSERT INTO ledger(member, n, time, delta, balance, reason, campaign, cause) VALUES"
    " ('m-1', 1, 110, 10, 10, 'welcome', 'onboard', 'e-1'),"
    " ('m-1', 2, 120, -3, 7, 'spend', NULL, NULL),"
    " ('m-2', 1, 130, 5, 5, 'other', 'onboard', 'e-9');"
    "INSERT INTO outbox(id, member, campaign, step, kind, status, channel, time, body, delivery) VALUES"
    " ('a-1', 'm-1', 'onboard', 'day0', 'send', 'queued', 'log', 110, '{\"id\":\"a-1\"}', 'pending'),"
    " ('a-2', 'm-1', 'onboard', NULL, 'points', 'queued', NULL, 120, '{\"id\":\"a-2\"}', NULL),"
    " ('a-3', 'm-2', 'onboard', 'day0', 'send', 'queued', 'log', 130, '{\"id\":\"a-3\"}', 'dead'),"
    " ('a-4', 'm-2', 'recall', 'day0', 'send', 'skipped', 'log', 140, '{\"id\":\"a-4\"}', NULL);"
    "INSERT INTO failed_events(at, member, event, campaign, error) VALUES"
    " (150, 'm-1', '{\"type\":\"x\"}', 'onboard', 'first boom'),"
    " (160, 'm-1', '{\"type\":\"y\"}', NULL, 'second boom');"
    "INSERT INTO funnel(campaign, step, variant, metric, n) VALUES"
    " ('onboard', '', '', 'entered', 4), ('onboard', '', 'A', 'entered', 3),"
    " ('onboard', 'day0', '', 'entered', 2), ('recall', '', '', 'entered', 5),"
    " ('onboard', '', '', 'converted', 1);"
    "INSERT INTO seen_gens(gen, opened_at, last_at) VALUES (0, 1, 2);"
    "INSERT INTO seen_events(gen, id, at) VALUES (0, 'e-1', 1), (0, 'e-2', 2);"
    "INSERT INTO timers(due, id, member, type, gen) VALUES (500, 1, 'm-1', 'tick', 0);";

static store_t *report_store(void) {
  store_t *s = mem_store();
  if (s && sqlite3_exec(s->db, REPORT_ROWS, NULL, NULL, NULL) != SQLITE_OK) {
    fprintf(stderr, "report rows: %s\n", sqlite3_errmsg(s->db));
    unit_failed_checks++;
  }
  return s;
}

/* What the row callbacks saw, as text: "a|b|c;a|b|c;" */
typedef struct {
  char text[1024];
  size_t len;
} seen_t;

static void seen_add(seen_t *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seen_add(seen_t *v, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(v->text + v->len, sizeof v->text - v->len, fmt, ap);
  va_end(ap);
  if (n > 0) v->len += (size_t)n;
  if (v->len >= sizeof v->text) v->len = sizeof v->text - 1;
}

static const char *nul(const char *s) { return s ? s : "NULL"; }

static void seen_member(void *ud, const member_view_t *m) {
  seen_add(ud, "%lld|%s|%lld|%lld|%.1f|%lld|%s|%s;", (long long)m->created_at,
           m->joined_at == STORE_NO_TIME ? "none" : "set", (long long)m->last_active_at, (long long)m->orders,
           m->spend, (long long)m->points, nul(m->attrs), nul(m->tags));
}

static void seen_ledger(void *ud, const ledger_entry_t *e) {
  seen_add(ud, "%lld|%lld|%lld|%s|%s|%s;", (long long)e->time, (long long)e->delta, (long long)e->balance,
           e->reason, nul(e->campaign), nul(e->cause));
}

static void seen_action(void *ud, const action_view_t *a) {
  seen_add(ud, "%s|%s|%s;", a->body, a->status, nul(a->delivery));
}

static void seen_failure(void *ud, const failure_view_t *f) {
  seen_add(ud, "%lld|%s|%s|%s;", (long long)f->at, f->event, nul(f->campaign), f->error);
}

static void seen_outbox(void *ud, const outbox_count_t *c) {
  seen_add(ud, "%s|%s|%s|%s|%lld;", c->campaign, c->step, c->status, c->kind, (long long)c->n);
}

static void seen_funnel(void *ud, const funnel_row_t *r) {
  seen_add(ud, "%s|%s|%s|%s|%lld;", r->campaign, r->step, r->variant, r->metric, (long long)r->n);
}

static int64_t funnel_total(store_t *s, const char *metric, const char *campaign, const char *step,
                            const char *variant) {
  funnel_key_t k = {.metric = metric, .campaign = campaign, .step = step, .variant = variant};
  int64_t n = -999;
  CHECK_INT(store_funnel_total(s, &k, &n), 0);
  return n;
}

TEST(report_reads_return_typed_rows) {
  store_t *s = report_store();
  if (!s) return;
  seen_t v = {0};
  CHECK_INT(store_member_view(s, "m-1", seen_member, &v), 1);
  CHECK_STR(v.text, "100|none|300|2|12.5|7|{\"city\":\"Hangzhou\"}|{\"vip\":true,\"a\":true};");
  v = (seen_t){0};
  CHECK_INT(store_member_view(s, "nobody", seen_member, &v), 0);
  CHECK_STR(v.text, "");

  v = (seen_t){0}; /* newest first, limited; NULL campaign and cause stay NULL */
  CHECK_INT(store_member_ledger(s, "m-1", 10, seen_ledger, &v), 2);
  CHECK_STR(v.text, "120|-3|7|spend|NULL|NULL;110|10|10|welcome|onboard|e-1;");
  v = (seen_t){0};
  CHECK_INT(store_member_ledger(s, "m-1", 1, seen_ledger, &v), 1);
  CHECK_STR(v.text, "120|-3|7|spend|NULL|NULL;");
  v = (seen_t){0};
  CHECK_INT(store_member_actions(s, "m-1", 10, seen_action, &v), 2);
  CHECK_STR(v.text, "{\"id\":\"a-2\"}|queued|NULL;{\"id\":\"a-1\"}|queued|pending;");
  v = (seen_t){0};
  CHECK_INT(store_member_failures(s, "m-1", -1, seen_failure, &v), 2);
  CHECK_STR(v.text, "160|{\"type\":\"y\"}|NULL|second boom;150|{\"type\":\"x\"}|onboard|first boom;");
  v = (seen_t){0};
  CHECK_INT(store_member_failures(s, "nobody", 10, seen_failure, &v), 0);

  char *first = NULL;
  CHECK_INT(store_first_failure(s, &first), 1);
  CHECK_STR(first, "first boom");
  free(first);

  v = (seen_t){0};
  CHECK_INT(store_outbox_counts(s, seen_outbox, &v), 3);
  CHECK_STR(v.text, "onboard||queued|points|1;onboard|day0|queued|send|2;recall|day0|skipped|send|1;");
  v = (seen_t){0};
  CHECK_INT(store_funnel_rows(s, seen_funnel, &v), 5);
  CHECK_STR(v.text, "onboard|||converted|1;onboard|||entered|4;onboard||A|entered|3;"
                    "onboard|day0||entered|2;recall|||entered|5;");
  CHECK_INT(funnel_total(s, "entered", NULL, NULL, NULL), 14);
  CHECK_INT(funnel_total(s, "entered", "onboard", NULL, NULL), 9);
  CHECK_INT(funnel_total(s, "entered", "onboard", "", "A"), 3);
  CHECK_INT(funnel_total(s, "entered", NULL, "day0", NULL), 2);
  CHECK_INT(funnel_total(s, "nothing", NULL, NULL, NULL), 0);

  store_totals_t t;
  memset(&t, 0xff, sizeof t);
  CHECK_INT(store_totals(s, &t), 0);
  CHECK_INT(t.members, 1);
  CHECK_INT(t.events_remembered, 2);
  CHECK_INT(t.failed_events, 2);
  CHECK_INT(t.timers_pending, 1);
  CHECK_INT(t.actions, 4);
  CHECK_INT(t.pending_delivery, 1);
  CHECK_INT(t.delivered, 0);
  CHECK_INT(t.dead_letters, 1);
  store_gauges_t g;
  memset(&g, 0xff, sizeof g);
  CHECK_INT(store_gauges(s, &g), 0);
  CHECK_INT(g.timers_pending, 1);
  CHECK_INT(g.dead_letters, 1);
  CHECK_INT(g.database_bytes, q_int(s->db, "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"));
  CHECK(g.database_bytes > 0);

  /* an empty store: no rows, zeros that are real zeros, and no first failure */
  store_close(s);
  s = mem_store();
  if (!s) return;
  first = (char *)"unchanged";
  CHECK_INT(store_first_failure(s, &first), 0);
  CHECK(first == NULL);
  CHECK_INT(store_totals(s, &t), 0);
  CHECK_INT(t.members + t.actions + t.timers_pending, 0);
  v = (seen_t){0};
  CHECK_INT(store_funnel_rows(s, seen_funnel, &v), 0);
  store_close(s);
}

/* The member document of member_json_read over the same rows. */
/* Points lots come back soonest expiry first (never last), the next due moment is the
 * earliest expiry or pending notice of a lot with points left, and a redemption is
 * refunded once. */
TEST(points_lots_order_next_due_and_refund_once) {
  store_t *s = mem_store();
  if (!s) return;
  CHECK_INT(store_begin(s), 0);
  lot_row_t a = {.member = "m-1", .n = 1, .granted = 10, .expires = STORE_NEVER, .notice_at = STORE_NO_TIME,
                 .amount = 5, .remaining = 5};
  lot_row_t b = {.member = "m-1", .n = 2, .granted = 20, .expires = 900, .notice_at = 800, .notice = "soon",
                 .amount = 7, .remaining = 7, .campaign = "c"};
  lot_row_t c = {.member = "m-1", .n = 3, .granted = 30, .expires = 500, .notice_at = STORE_NO_TIME,
                 .amount = 9, .remaining = 9};
  CHECK_INT(store_lot_add(s, &a), 0);
  CHECK_INT(store_lot_add(s, &b), 0);
  CHECK_INT(store_lot_add(s, &c), 0);
  lot_row_t *lots;
  int n = store_lots_live(s, "m-1", &lots);
  CHECK_INT(n, 3);
  if (n == 3) {
    CHECK_INT(lots[0].n * 100 + lots[1].n * 10 + lots[2].n, 321);
    CHECK_STR(lots[1].notice, "soon");
    CHECK_INT(lots[1].notice_at, 800);
    CHECK(lots[2].notice == NULL && lots[2].notice_at == STORE_NO_TIME);
  }
  store_lots_free(lots, n);
  int64_t due = 0;
  CHECK_INT(store_lots_next_due(s, "m-1", &due), 0);
  CHECK_INT(due, 500);
  CHECK_INT(store_lot_update(s, "m-1", 3, 0, STORE_NO_TIME), 0); /* spent: no longer live */
  CHECK_INT(store_lots_next_due(s, "m-1", &due), 0);
  CHECK_INT(due, 800);
  CHECK_INT(store_lots_next_due(s, "nobody", &due), 0);
  CHECK(due == STORE_NEVER);
  int64_t used = -1;
  CHECK_INT(store_item_used(s, "cup", &used), 0);
  CHECK_INT(used, 0);
  CHECK_INT(store_item_add_used(s, "cup", 2), 0);
  CHECK_INT(store_item_add_used(s, "cup", -1), 0);
  CHECK_INT(store_item_used(s, "cup", &used), 0);
  CHECK_INT(used, 1);
  redemption_row_t r = {.id = "c/m-1/o-1", .member = "m-1", .item = "cup", .campaign = "c", .status = "queued",
                        .time = 40, .qty = 1, .cost = 7, .expires = 900};
  CHECK_INT(store_redemption_add(s, &r), 0);
  int64_t held = -1;
  CHECK_INT(store_redeemed_qty(s, "m-1", "cup", &held), 0);
  CHECK_INT(held, 1);
  redemption_row_t got;
  CHECK_INT(store_redemption_get(s, "c/m-1/o-1", &got), 1);
  CHECK(got.refunded == STORE_NO_TIME && got.cost == 7 && got.expires == 900);
  CHECK_STR(got.status, "queued");
  store_redemption_free(&got);
  CHECK_INT(store_redemption_refund(s, "c/m-1/o-1", 50), 1);
  CHECK_INT(store_redemption_refund(s, "c/m-1/o-1", 60), 0);
  CHECK_INT(store_redeemed_qty(s, "m-1", "cup", &held), 0);
  CHECK_INT(held, 0);
  CHECK_INT(store_redemption_get(s, "c/m-1/o-1", &got), 1);
  CHECK_INT(got.refunded, 50);
  store_redemption_free(&got);
  CHECK_INT(store_redemption_get(s, "c/m-1/o-2", &got), 0);
  CHECK_INT(store_commit(s), 0);
  store_close(s);
}

TEST(report_member_json_found_absent) {
  store_t *s = report_store();
  if (!s) return;
  char err[200];
  tz_t *tz = tz_load("UTC", err, sizeof err);
  CHECK(tz != NULL);
  if (!tz) {
    store_close(s);
    return;
  }
  json_t *j = (json_t *)1;
  CHECK_INT(member_json_read(s, tz, "m-1", 1, &j), 1);
  if (j) {
    char *d = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    CHECK_STR(d, "{\"id\":\"m-1\",\"created_at\":\"1970-01-01T00:01:40+00:00\",\"joined_at\":null,"
                 "\"last_active_at\":\"1970-01-01T00:05:00+00:00\",\"orders\":2,\"spend\":12.5,\"points\":7,"
                 "\"attrs\":{\"city\":\"Hangzhou\"},\"tags\":[\"a\",\"vip\"],"
                 /* her 7 points in no lot row: they never expire (lot 0) */
                 "\"lots\":[{\"n\":0,\"granted\":null,\"expires\":null,\"amount\":7,\"left\":7,\"campaign\":\"\"}],"
                 "\"ledger\":[{\"time\":\"1970-01-01T00:02:00+00:00\",\"type\":\"spend\",\"delta\":-3,\"balance\":7,\"reason\":\"spend\","
                 "\"campaign\":\"\",\"cause\":\"\"}],"
                 "\"actions\":[{\"id\":\"a-2\",\"status\":\"queued\"}],"
                 "\"failed\":[{\"at\":\"1970-01-01T00:02:40+00:00\",\"event\":{\"type\":\"y\"},\"campaign\":\"\","
                 "\"error\":\"second boom\"}]}");
    free(d);
    json_decref(j);
  }
  j = (json_t *)1;
  CHECK_INT(member_json_read(s, tz, "nobody", 5, &j), 0);
  CHECK(j == NULL);
  tz_free(tz);
  store_close(s);
}

/* Drop table in s behind the store's back (as a damaged or foreign database would be). */
static void drop_table(store_t *s, const char *table) {
  char q[96];
  snprintf(q, sizeof q, "DROP TABLE %s", table);
  CHECK_INT(sqlite3_exec(s->db, q, NULL, NULL, NULL), SQLITE_OK);
}

TEST(report_reads_fail_on_a_missing_table) {
  /* a statement already prepared (the table existed) and one prepared after the drop:
   * both report -1, never an empty list or a zero */
  store_t *s = report_store();
  if (!s) return;
  seen_t v = {0};
  CHECK_INT(store_member_ledger(s, "m-1", 10, seen_ledger, &v), 2);
  CHECK_INT(store_funnel_rows(s, seen_funnel, &v), 5);
  store_totals_t t;
  CHECK_INT(store_totals(s, &t), 0);
  drop_table(s, "ledger");
  drop_table(s, "funnel");
  drop_table(s, "timers");
  v = (seen_t){0};
  CHECK_INT(store_member_ledger(s, "m-1", 10, seen_ledger, &v), -1);
  CHECK_INT(store_funnel_rows(s, seen_funnel, &v), -1);
  CHECK_STR(v.text, "");
  funnel_key_t k = {.metric = "entered"};
  int64_t n = -5;
  CHECK_INT(store_funnel_total(s, &k, &n), -1);
  CHECK_INT(n, -5);
  CHECK_INT(store_totals(s, &t), -1);
  store_gauges_t g;
  CHECK_INT(store_gauges(s, &g), -1);
  CHECK(strstr(store_errmsg(s), "no such table") != NULL);
  /* what does not touch the dropped tables still reads */
  CHECK_INT(store_member_view(s, "m-1", seen_member, &v), 1);
  CHECK_INT(store_outbox_counts(s, seen_outbox, &v), 3);
  CHECK(summary_json(s) == NULL);

  char err[200];
  tz_t *tz = tz_load("UTC", err, sizeof err);
  json_t *j = (json_t *)1;
  if (tz) CHECK_INT(member_json_read(s, tz, "m-1", 5, &j), -1);
  CHECK(j == NULL);
  j = (json_t *)1;
  if (tz) CHECK_INT(member_json_read(s, tz, "nobody", 5, &j), 0); /* absent is still absent */
  tz_free(tz);
  store_close(s);

  s = report_store();
  if (!s) return;
  drop_table(s, "failed_events");
  drop_table(s, "members");
  char *first = (char *)"unchanged";
  CHECK_INT(store_first_failure(s, &first), -1);
  CHECK(first == NULL);
  CHECK_INT(store_member_view(s, "m-1", seen_member, &v), -1);
  store_close(s);
}

TEST(report_metrics_leave_out_unreadable_gauges) {
  engine_t *e = open_engine(NULL);
  if (!e) return;
  char *text = NULL;
  CHECK_INT(metrics_render(e, NULL, NULL, &text), 0);
  CHECK(text && strstr(text, "\nhearth_timers_pending 0\n"));
  CHECK(text && strstr(text, "\nhearth_dead_letters 0\n"));
  CHECK(text && strstr(text, "\nhearth_database_bytes "));
  free(text);
  drop_table(e->store, "timers");
  text = NULL;
  CHECK_INT(metrics_render(e, NULL, NULL, &text), -1);
  CHECK(text && strstr(text, "hearth_events_total{outcome=\"accepted\"} 0\n")); /* the rest is there */
  CHECK(text && !strstr(text, "hearth_timers_pending"));
  CHECK(text && !strstr(text, "hearth_database_bytes"));
  free(text);
  engine_close(e);
}

TEST(report_backup_copies_and_refuses) {
  char src[64], dst[96], err[256] = "";
  temp_db(src);
  store_t *s = store_open(src, 0, err, sizeof err);
  CHECK(s != NULL);
  if (!s) {
    remove_db(src);
    return;
  }
  CHECK_INT(sqlite3_exec(s->db, REPORT_ROWS, NULL, NULL, NULL), SQLITE_OK);
  snprintf(dst, sizeof dst, "%s.copy", src);
  int pages = store_backup(s, dst, err, sizeof err);
  CHECK(pages > 0);
  if (pages <= 0) fprintf(stderr, "store_backup: %s\n", err);
  store_t *copy = store_open(dst, 1, err, sizeof err);
  CHECK(copy != NULL);
  if (copy) {
    store_totals_t a, b;
    CHECK_INT(store_totals(s, &a), 0);
    CHECK_INT(store_totals(copy, &b), 0);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    CHECK_INT(b.members, 1);
    store_close(copy);
  }
  /* onto an existing path: refused, the file left as it was */
  struct stat before, after;
  CHECK_INT(stat(dst, &before), 0);
  err[0] = '\0';
  CHECK_INT(store_backup(s, dst, err, sizeof err), -1);
  CHECK(strstr(err, "exists") != NULL);
  CHECK_INT(stat(dst, &after), 0);
  CHECK_INT(after.st_size, before.st_size);
  /* into a folder that does not exist: -1 with a message, nothing created */
  err[0] = '\0';
  CHECK_INT(store_backup(s, "/tmp/hearth-no-such-dir/x/copy.db", err, sizeof err), -1);
  CHECK(err[0] != '\0');
  store_close(s);
  remove_db(dst);
  remove_db(src);
}

/* ---------------------------------------------------------------- engine */

TEST(engine_batch_applies_builtins) {
  engine_t *e = open_engine(NULL);
  if (!e) return;
  CHECK(e->scripts == NULL);
  e->now = T("2026-11-25T12:00:00+08:00");
  CHECK_INT(engine_begin(e), 0);
  CHECK_INT(apply(e, "{\"id\":\"j-1\",\"type\":\"member.joined\",\"member\":\"m-1\","
                     "\"time\":\"2026-11-22T10:00:00+08:00\",\"data\":{\"channel\":\"wecom\","
                     "\"store\":\"sh-1\",\"staff\":\"s-1\",\"referrer\":\"m-0\",\"other\":1}}"),
            EV_APPLIED);
  CHECK_INT(apply(e, "{\"id\":\"p-1\",\"type\":\"order.paid\",\"member\":\"m-1\","
                     "\"time\":\"2026-11-22T11:00:00+08:00\",\"data\":{\"amount\":100.5}}"),
            EV_APPLIED);
  CHECK_INT(apply(e, "{\"id\":\"p-1\",\"type\":\"order.paid\",\"member\":\"m-1\","
                     "\"time\":\"2026-11-22T11:30:00+08:00\",\"data\":{\"amount\":100.5}}"),
            EV_DUPLICATE);
  CHECK_INT(apply(e, "{\"type\":\"order.paid\",\"member\":\"m-1\","
                     "\"time\":\"2026-11-22T12:00:00+08:00\",\"data\":{\"amount\":20}}"),
            EV_APPLIED);
  CHECK_INT(apply(e, "{\"type\":\"order.refunded\",\"member\":\"m-1\","
                     "\"time\":\"2026-11-22T13:00:00+08:00\",\"data\":{\"amount\":30.5}}"),
            EV_APPLIED);
  CHECK_INT(apply(e, "{\"type\":\"member.updated\",\"member\":\"m-1\","
                     "\"time\":\"2026-11-22T09:00:00+08:00\",\"data\":{\"store\":null,\"vip\":true}}"),
            EV_APPLIED);
  CHECK_INT(apply(e, "{\"type\":\"member.joined\",\"member\":\"m-1\","
                     "\"time\":\"2026-11-23T09:00:00+08:00\",\"data\":{\"channel\":\"web\"}}"),
            EV_APPLIED);
  CHECK_INT(apply(e, "{\"type\":\"member.unsubscribed\",\"member\":\"m-2\"}"), EV_APPLIED);
  CHECK_INT(apply(e, "{\"type\":\"order.refunded\",\"member\":\"m-3\","
                     "\"time\":\"2026-11-20T10:00:00+08:00\",\"data\":{\"amount\":5}}"),
            EV_APPLIED);
  CHECK_INT(engine_commit(e), 0);
  CHECK_INT(e->stats.accepted, 8);
  CHECK_INT(e->stats.duplicates, 1);
  CHECK_INT(store_meta_get(e->store, "event_seq", -1), 8);

  member_t *m = member_read(e->store, "m-1");
  CHECK(m != NULL);
  if (m) {
    CHECK_INT(m->joined_at, T("2026-11-22T10:00:00+08:00"));
    CHECK_INT(m->created_at, T("2026-11-22T10:00:00+08:00"));
    CHECK_INT(m->last_active_at, T("2026-11-23T09:00:00+08:00"));
    CHECK_INT(m->orders, 2);
    CHECK(m->spend > 89.99 && m->spend < 90.01); /* 100.5 + 20 - 30.5 */
    CHECK_INT(m->points, 0);
    CHECK_JSON(member_attrs(m), "{\"channel\":\"wecom\",\"referrer\":\"m-0\",\"staff\":\"s-1\",\"vip\":true}");
    CHECK_JSON(member_tags(m), "{}");
    member_free(m);
  }
  m = member_read(e->store, "m-2");
  CHECK(m != NULL);
  if (m) {
    CHECK_INT(m->joined_at, NO_TIME);
    CHECK_INT(m->last_active_at, e->now); /* no time: the time of receipt */
    CHECK_JSON(member_attrs(m), "{\"unsubscribed\":true}");
    member_free(m);
  }
  m = member_read(e->store, "m-3");
  CHECK(m != NULL);
  if (m) {
    CHECK_INT(m->orders, 0);
    CHECK(m->spend == 0.0);
    member_free(m);
  }
  CHECK(member_read(e->store, "m-4") == NULL);

  /* a second batch: the id is still a duplicate, subscribed removes the flag */
  CHECK_INT(engine_begin(e), 0);
  CHECK_INT(apply(e, "{\"id\":\"j-1\",\"type\":\"member.joined\",\"member\":\"m-1\"}"), EV_DUPLICATE);
  CHECK_INT(apply(e, "{\"type\":\"member.subscribed\",\"member\":\"m-2\"}"), EV_APPLIED);
  CHECK_INT(engine_commit(e), 0);
  m = member_read(e->store, "m-2");
  if (m) {
    CHECK_JSON(member_attrs(m), "{}");
    member_free(m);
  }
  engine_close(e);
}

TEST(engine_rollback_leaves_nothing) {
  engine_t *e = open_engine(NULL);
  if (!e) return;
  e->now = T("2026-11-25T12:00:00+08:00");
  CHECK_INT(engine_begin(e), 0);
  CHECK_INT(apply(e, "{\"id\":\"k-1\",\"type\":\"member.joined\",\"member\":\"keep\"}"), EV_APPLIED);
  CHECK_INT(engine_commit(e), 0);
  int64_t seq = e->event_seq;

  CHECK_INT(engine_begin(e), 0);
  CHECK_INT(apply(e, "{\"id\":\"r-1\",\"type\":\"member.joined\",\"member\":\"gone\"}"), EV_APPLIED);
  CHECK_INT(apply(e, "{\"id\":\"r-2\",\"type\":\"order.paid\",\"member\":\"keep\","
                     "\"data\":{\"amount\":50}}"), EV_APPLIED);
  engine_rollback(e);
  CHECK(member_read(e->store, "gone") == NULL);
  member_t *m = member_read(e->store, "keep");
  CHECK(m != NULL);
  if (m) {
    CHECK_INT(m->orders, 0);
    CHECK(m->spend == 0.0);
    member_free(m);
  }
  CHECK_INT(e->event_seq, seq);
  CHECK_INT(store_meta_get(e->store, "event_seq", -1), seq);
  CHECK_INT(q_int(e->store->db, "SELECT count(*) FROM seen_events"), 1);
  CHECK_INT(e->store->in_tx, 0);

  /* the ids of the rolled back batch are new again */
  CHECK_INT(engine_begin(e), 0);
  CHECK_INT(apply(e, "{\"id\":\"r-1\",\"type\":\"member.joined\",\"member\":\"gone\"}"), EV_APPLIED);
  CHECK_INT(engine_commit(e), 0);
  m = member_read(e->store, "gone");
  CHECK(m != NULL);
  member_free(m);
  engine_close(e);
}

TEST(engine_run_until_fires_in_order_without_scripts) {
  engine_t *e = open_engine(NULL);
  if (!e) return;
  const int64_t base = T("2026-11-22T10:00:00+08:00");
  /* inserted out of order; (due, id) order is t-a, t-b, t-c, t-d; t-e is later */
  CHECK_INT(timer_add(e->store, base + 200, 4, "t-c", "tick", NULL, 0), 0);
  CHECK_INT(timer_add(e->store, base + 100, 9, "t-b", "tick", NULL, 0), 0);
  CHECK_INT(timer_add(e->store, base + 100, 2, "t-a", "tick", NULL, 0), 0);
  CHECK_INT(timer_add(e->store, base + 200, 8, "t-d", "tick", NULL, 0), 0);
  CHECK_INT(timer_add(e->store, base + 900, 1, "t-e", "tick", NULL, 0), 0);
  CHECK_INT(engine_next_due(e), base + 100);
  e->timer_seq = 9; /* as if the engine had handed out these ids */
  CHECK_INT(store_meta_set(e->store, "timer_seq", 9), 0);

  CHECK_INT(engine_run_until(e, base + 100, 0), 0);
  CHECK_INT(e->now, base + 100); /* the clock moved to the last fired timer */
  CHECK_INT(e->stats.timers_fired, 2);
  member_t *a = member_read(e->store, "t-a"), *b = member_read(e->store, "t-b");
  member_t *c = member_read(e->store, "t-c");
  CHECK(a != NULL);
  CHECK(b != NULL);
  CHECK(c == NULL);
  if (a) CHECK_INT(a->created_at, base + 100);
  member_free(a), member_free(b), member_free(c);
  char buf[256], want[256];
  snprintf(want, sizeof want, "%lld:4 %lld:8 %lld:1", (long long)(base + 200),
           (long long)(base + 200), (long long)(base + 900));
  CHECK_STR(due_list(e->store, INT64_MAX, 100, buf, sizeof buf), want);
  CHECK_INT(engine_next_due(e), base + 200);

  CHECK_INT(engine_run_until(e, base + 200, 0), 0);
  CHECK_INT(e->now, base + 200);
  CHECK_INT(e->stats.timers_fired, 4);
  c = member_read(e->store, "t-c");
  member_t *d = member_read(e->store, "t-d"), *x = member_read(e->store, "t-e");
  CHECK(c != NULL);
  CHECK(d != NULL);
  CHECK(x == NULL); /* not due yet */
  member_free(c), member_free(d), member_free(x);
  CHECK_INT(engine_run_until(e, base + 500, 0), 0);
  CHECK_INT(e->stats.timers_fired, 4);
  CHECK_INT(e->now, base + 500);
  CHECK_INT(engine_next_due(e), base + 900);

  /* a timer whose generation no longer matches is dropped, not fired */
  CHECK_INT(timer_add(e->store, base + 950, ++e->timer_seq, "t-e", "tick", NULL, 1), 0);
  CHECK_INT(store_meta_set(e->store, "timer_seq", e->timer_seq), 0);
  CHECK_INT(engine_run_until(e, base + 1000, 0), 0);
  CHECK_INT(e->stats.timers_fired, 5);
  CHECK_INT(e->stats.timers_cancelled, 1);
  CHECK_INT(engine_next_due(e), INT64_MAX);
  engine_close(e);
}

static const char *TIMER_SCRIPT =
    "hearth.on('tick', function(m, ev)\n"
    "  local seen = m:get('seen') or {}\n"
    "  seen[#seen + 1] = ev.data.n\n"
    "  m:set('seen', seen)\n"
    "  m:set('at_' .. ev.data.n, ev.time)\n"
    "  m:set('now_' .. ev.data.n, hearth.now())\n"
    "end)\n";

/* A fresh scripts directory (dir) holding TIMER_SCRIPT as ticks.lua (path): 0, or -1
 * (counted as a failed check). */
static int timer_scripts(char dir[64], char path[128]) {
  snprintf(dir, 64, "/tmp/hearth-test-scripts-XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    unit_failed_checks++;
    return -1;
  }
  snprintf(path, 128, "%s/ticks.lua", dir);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (!f) return -1;
  fputs(TIMER_SCRIPT, f);
  fclose(f);
  return 0;
}

TEST(engine_run_until_fires_in_order_with_a_script) {
  char dir[64], path[128];
  if (timer_scripts(dir, path) < 0) return;

  engine_t *e = open_engine(dir);
  if (e) {
    CHECK(e->scripts != NULL);
    CHECK_INT(timer_add(e->store, 300, 5, "m-t", "tick", "{\"n\":\"c\"}", 0), 0);
    CHECK_INT(timer_add(e->store, 200, 7, "m-t", "tick", "{\"n\":\"b2\"}", 0), 0);
    CHECK_INT(timer_add(e->store, 100, 6, "m-t", "tick", "{\"n\":\"a\"}", 0), 0);
    CHECK_INT(timer_add(e->store, 200, 3, "m-t", "tick", "{\"n\":\"b1\"}", 0), 0);
    CHECK_INT(timer_add(e->store, 250, 1, "m-t", "tick", "{\"n\":\"x\"}", 4), 0);
    e->timer_seq = 7; /* as if the engine had handed out these ids */
    CHECK_INT(store_meta_set(e->store, "timer_seq", 7), 0);
    CHECK_INT(engine_run_until(e, 1000, 0), 0);
    CHECK_INT(e->stats.timers_fired, 4);
    CHECK_INT(e->stats.timers_cancelled, 1);
    CHECK_INT(e->stats.handler_errors, 0);
    member_t *m = member_read(e->store, "m-t");
    CHECK(m != NULL);
    if (m) {
      CHECK_JSON(json_object_get(member_attrs(m), "seen"), "[\"a\",\"b1\",\"b2\",\"c\"]");
      CHECK_INT(json_integer_value(json_object_get(member_attrs(m), "at_b2")), 200);
      CHECK_INT(json_integer_value(json_object_get(member_attrs(m), "now_b1")), 200);
      CHECK_INT(json_integer_value(json_object_get(member_attrs(m), "now_c")), 300);
      CHECK(json_object_get(member_attrs(m), "at_x") == NULL);
      member_free(m);
    }
    CHECK_INT(engine_next_due(e), INT64_MAX);
    engine_close(e);
  }
  unlink(path);
  rmdir(dir);
}

/* engine_open notes the script set's version in a commit before the clock has started: it
 * wrote the real time as the stored clock, so a cluster partition restored from a snapshot
 * started its virtual clock at the real time (sends a month late in test_cluster). */
TEST(engine_open_keeps_the_stored_clock) {
  char dir[64], path[128], db[64];
  if (timer_scripts(dir, path) < 0 || unit_temp_db(db, "clock") < 0) return;
  engine_t *e = open_engine_at(db, dir);
  if (e) {
    CHECK_INT(engine_run_until(e, 1000, 0), 0);
    CHECK_INT(engine_begin(e), 0);
    CHECK_INT(engine_commit(e), 0);
    CHECK_INT(store_meta_get(e->store, "clock", -1), 1000);
    engine_close(e);
  }
  e = open_engine_at(db, dir); /* its version note commits before anything moves the clock */
  if (e) {
    CHECK_INT(store_meta_get(e->store, "clock", -1), 1000);
    engine_close(e);
  }
  unlink(path);
  rmdir(dir);
  unit_remove_db(db);
}

TEST(engine_many_members_in_one_batch) {
  /* more members than the cache's first table size: they survive its growth */
  engine_t *e = open_engine(NULL);
  if (!e) return;
  e->now = T("2026-11-25T12:00:00+08:00");
  enum { N = 5000 };
  char line[200];
  CHECK_INT(engine_begin(e), 0);
  for (int i = 0; i < N; i++) {
    snprintf(line, sizeof line, "{\"type\":\"order.paid\",\"member\":\"m-%d\",\"data\":{\"amount\":%d}}", i, i);
    if (apply(e, line) != EV_APPLIED) {
      CHECK(0);
      break;
    }
  }
  for (int i = 0; i < N; i += 7) { /* looked up again after the growth */
    snprintf(line, sizeof line, "{\"type\":\"order.paid\",\"member\":\"m-%d\",\"data\":{\"amount\":1}}", i);
    CHECK_INT(apply(e, line), EV_APPLIED);
  }
  CHECK_INT(engine_commit(e), 0);
  CHECK_INT(q_int(e->store->db, "SELECT count(*) FROM members"), N);
  CHECK_INT(q_int(e->store->db, "SELECT sum(orders) FROM members"), N + (N + 6) / 7);
  const int probe[] = {0, 1, 1023, 1024, 2047, 4998, 4999};
  for (size_t k = 0; k < sizeof probe / sizeof probe[0]; k++) {
    snprintf(line, sizeof line, "m-%d", probe[k]);
    member_t *m = member_read(e->store, line);
    CHECK(m != NULL);
    if (!m) continue;
    int again = probe[k] % 7 == 0;
    CHECK_INT(m->orders, 1 + again);
    CHECK(m->spend == (double)(probe[k] + again));
    member_free(m);
  }
  engine_close(e);
}

TEST(timer_set_by_another_process_fires_once) {
  /* Regression (engine/engine.c: load_seqs used to run only in engine_open and
   * engine_rollback; firing deletes only rows with id <= e->timer_seq): when a second
   * process (`hearth import` while `hearth run` is up) sets a timer, its id comes from that
   * process's sequence, above the first engine's stale one, so the first engine fires the
   * row but never deletes it and fires it again on every call (engine_advance loops).
   * Both engines also write their own stale event_seq/timer_seq back at commit, so ids
   * (timer ids, "@seq" action ids) repeat across processes. */
  char path[64];
  temp_db(path);
  engine_t *a = open_engine_at(path, NULL); /* the daemon, opened first */
  engine_t *b = open_engine_at(path, NULL); /* an import run while it is up */
  if (a && b) {
    CHECK_INT(engine_begin(b), 0); /* b sets a timer the way the engine does */
    CHECK_INT(timer_add(b->store, 100, ++b->timer_seq, "m-x", "tick", NULL, 0), 0);
    CHECK_INT(engine_commit(b), 0);
    CHECK_INT(store_meta_get(a->store, "timer_seq", -1), 1);
    CHECK_INT(engine_run_until(a, 1000, 0), 0);
    CHECK_INT(a->stats.timers_fired, 1);
    CHECK_INT(engine_run_until(a, 2000, 0), 0); /* fired once, not again */
    CHECK_INT(a->stats.timers_fired, 1);
    CHECK_INT(engine_next_due(a), INT64_MAX);
    /* and the sequence a writes back does not go below what b committed */
    CHECK(store_meta_get(a->store, "timer_seq", -1) >= 1);
  }
  engine_close(a);
  engine_close(b);
  remove_db(path);
}

/* store_broadcast_*: a row written, read back, replaced (one row per name), listed by
 * time; an absent name is 0; NULL times stay NULL. */
static int count_rows(void *ud, const broadcast_row_t *r) {
  (void)r;
  (*(int *)ud)++;
  return 0;
}

TEST(broadcast_rows_round_trip) {
  char path[64], err[256] = "";
  temp_db(path);
  store_t *s = store_open(path, 0, err, sizeof err);
  CHECK(s != NULL);
  if (!s) {
    remove_db(path);
    return;
  }
  broadcast_row_t got;
  CHECK_INT(store_broadcast_get(s, "d11", &got), 0);
  broadcast_row_t row = {.name = "d11", .at = T("2026-11-11T10:00:00+08:00"), .state = "running",
                         .cursor = "m-0042", .seen = 84, .matched = 12, .started_at = 100,
                         .finished_at = STORE_NO_TIME};
  CHECK_INT(store_broadcast_put(s, &row), 0);
  row.name = "early";
  row.at -= 86400;
  row.state = "done";
  CHECK_INT(store_broadcast_put(s, &row), 0);
  CHECK_INT(store_broadcast_get(s, "d11", &got), 1);
  CHECK_STR(got.state, "running");
  CHECK_STR(got.cursor, "m-0042");
  CHECK_INT(got.seen, 84);
  CHECK_INT(got.matched, 12);
  CHECK_INT(got.started_at, 100);
  CHECK_INT(got.finished_at, STORE_NO_TIME);
  store_broadcast_row_free(&got);
  row = (broadcast_row_t){.name = "d11", .at = T("2026-11-11T10:00:00+08:00"), .state = "done",
                          .cursor = "m-0099", .seen = 200, .matched = 30, .started_at = 100, .finished_at = 160};
  CHECK_INT(store_broadcast_put(s, &row), 0);
  CHECK_INT(store_broadcast_get(s, "d11", &got), 1);
  CHECK_STR(got.state, "done");
  CHECK_INT(got.finished_at, 160);
  store_broadcast_row_free(&got);
  int n = 0;
  CHECK_INT(store_broadcast_list(s, count_rows, &n), 2);
  CHECK_INT(n, 2);
  store_close(s);
  remove_db(path);
}

int main(void) {
  RUN(migrations_create_schema);
  RUN(reopen_is_idempotent);
  RUN(newer_schema_refused);
  RUN(seen_mark_dedupe_window);
  RUN(seen_generations_purged_whole);
  RUN(ledger_balance_check);
  RUN(member_update_only_an_existing_row);
  RUN(timers_ordered_and_deleted_up_to);
  RUN(timers_due_keep_their_texts);
  RUN(timer_next_follows_adds_deletes_and_rollbacks);
  RUN(store_open_copy_snapshot_not_written);
  RUN(report_reads_return_typed_rows);
  RUN(points_lots_order_next_due_and_refund_once);
  RUN(report_member_json_found_absent);
  RUN(report_reads_fail_on_a_missing_table);
  RUN(report_metrics_leave_out_unreadable_gauges);
  RUN(report_backup_copies_and_refuses);
  RUN(engine_batch_applies_builtins);
  RUN(engine_rollback_leaves_nothing);
  RUN(engine_run_until_fires_in_order_without_scripts);
  RUN(engine_run_until_fires_in_order_with_a_script);
  RUN(engine_open_keeps_the_stored_clock);
  RUN(engine_many_members_in_one_batch);
  RUN(timer_set_by_another_process_fires_once);
  RUN(broadcast_rows_round_trip);
  return UNIT_DONE();
}
