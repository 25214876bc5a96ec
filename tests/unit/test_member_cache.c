/* test_member_cache: unit tests for the member cache of engine/member.c on an in-memory
 * store — the memory bound after a commit, the regulars a sweep through every member
 * leaves in place, what the flush writes, and the bug where trimming let every member go.
 * The members here have ids of one length and empty parts, so each holds the same
 * footprint and a bound of n footprints keeps n of them. */
#include <stdlib.h>
#include <string.h>

#include "member.h"
#include "unit.h"

static store_t *open_store(void) {
  char err[256];
  store_t *s = store_open_copy(NULL, err, sizeof err);
  if (!s) fprintf(stderr, "store: %s\n", err);
  return s;
}

static const char *id_of(int i, char buf[32]) {
  snprintf(buf, 32, "m-%04d", i);
  return buf;
}

/* What one of these members holds. */
static size_t one(void) {
  member_t m = {.id = "m-0000"};
  return member_footprint(&m);
}

/* Look up members from..to-1 (created when absent) in one batch, then commit and trim to
 * the memory of `keep` members. */
static void batch(member_cache_t *c, store_t *s, int from, int to, size_t keep) {
  CHECK_INT(store_begin(s), 0);
  for (int i = from; i < to; i++) {
    char id[32];
    CHECK(member_cache_get(c, s, id_of(i, id), 1000) != NULL);
  }
  CHECK_INT(member_cache_flush(c, s), 0);
  CHECK_INT(store_commit(s), 0);
  member_cache_trim(c, keep * one());
}

static int cached(member_cache_t *c, int i) {
  char id[32];
  return member_cache_find(c, id_of(i, id)) != NULL;
}

/* Regression: with more members used since the last trim than the bound, trim let the
 * whole cache go, so every one of them was read and parsed again in the next batch. */
TEST(member_cache_trim_let_every_member_go) {
  store_t *s = open_store();
  member_cache_t c;
  member_cache_init(&c);
  batch(&c, s, 0, 30, 10);
  CHECK_INT((int)c.count, 10);
  CHECK(cached(&c, 29)); /* the most recent stay */
  CHECK(!cached(&c, 0));
  member_cache_free(&c);
  store_close(s);
}

TEST(regulars_outlast_a_sweep) {
  store_t *s = open_store();
  member_cache_t c;
  member_cache_init(&c);
  batch(&c, s, 0, 5, 20);    /* five regulars come in */
  batch(&c, s, 0, 5, 20);    /* and come back in a later batch: protected */
  batch(&c, s, 100, 200, 20); /* a sweep through a hundred others, one batch */
  batch(&c, s, 200, 300, 20); /* and another */
  CHECK_INT((int)c.count, 20);
  for (int i = 0; i < 5; i++) CHECK(cached(&c, i));
  CHECK(cached(&c, 299));
  CHECK(!cached(&c, 150));
  member_cache_free(&c);
  store_close(s);
}

TEST(protected_is_bounded) {
  store_t *s = open_store();
  member_cache_t c;
  member_cache_init(&c);
  batch(&c, s, 0, 8, 8);
  batch(&c, s, 0, 8, 8); /* all eight protected; at most six may stay so */
  CHECK_INT((int)c.seg[MS_PROTECTED].count, 6);
  batch(&c, s, 50, 52, 8); /* two newcomers push out the two least recent */
  CHECK_INT((int)c.count, 8);
  CHECK(cached(&c, 50) && cached(&c, 51));
  CHECK(!cached(&c, 0) && !cached(&c, 1));
  member_cache_free(&c);
  store_close(s);
}

TEST(flush_writes_what_changed_in_the_round) {
  store_t *s = open_store();
  member_cache_t c;
  member_cache_init(&c);
  batch(&c, s, 0, 3, 10);
  CHECK_INT(store_begin(s), 0);
  member_t *m = member_cache_get(&c, s, "m-0001", 2000);
  CHECK(m != NULL);
  if (m) {
    m->points = 42;
    member_touch(m, MP_ATTRS);
    json_object_set_new(member_attrs(m), "note", json_string("tab\there"));
  }
  CHECK_INT(member_cache_flush(&c, s), 0);
  CHECK_INT(store_commit(s), 0);
  member_t *row = member_read(s, "m-0001");
  CHECK(row != NULL);
  if (row) {
    CHECK_INT((int)row->points, 42);
    CHECK_STR(row->text[MP_ATTRS], "{\"note\":\"tab\\there\"}");
  }
  member_free(row);
  member_cache_free(&c);
  store_close(s);
}

/* The bound is memory: one member with a large attribute takes the room of several. */
TEST(a_large_member_takes_the_room_of_several) {
  store_t *s = open_store();
  member_cache_t c;
  member_cache_init(&c);
  size_t budget = 10 * one();
  batch(&c, s, 0, 10, 10);
  CHECK_INT((int)c.count, 10);
  CHECK_INT(store_begin(s), 0);
  member_t *m = member_cache_get(&c, s, "m-0100", 2000);
  CHECK(m != NULL);
  if (m) {
    size_t n = one() / 3; /* text, and its parsed tree several times over */
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\0';
    member_touch(m, MP_ATTRS);
    json_object_set_new(member_attrs(m), "note", json_string(big));
    free(big);
  }
  CHECK_INT(member_cache_flush(&c, s), 0);
  CHECK_INT(store_commit(s), 0);
  CHECK(m && member_footprint(m) > 2 * one() && member_footprint(m) < budget);
  member_cache_trim(&c, budget);
  CHECK(cached(&c, 100));
  CHECK(member_cache_bytes(&c) <= budget);
  CHECK((int)c.count < 9); /* she holds more than two members' room */
  CHECK(!cached(&c, 0));   /* the least recent went */
  member_cache_free(&c);
  store_close(s);
}

int main(void) {
  RUN(member_cache_trim_let_every_member_go);
  RUN(regulars_outlast_a_sweep);
  RUN(protected_is_bounded);
  RUN(flush_writes_what_changed_in_the_round);
  RUN(a_large_member_takes_the_room_of_several);
  return UNIT_DONE();
}
