/* test_ingest_ahead: unit tests for ingest.c's reading ahead: chunks come in order with
 * every line, a refused line keeps its number, message and place among the events, a
 * read that fails ends the input with its errno, and stopping while the reader waits on a
 * pipe that stays open returns at once (a hang here is CTest's timeout) and frees all. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ingest.h"
#include "unit.h"

static const char *LINES =
    "{\"id\":\"e1\",\"type\":\"checkin\",\"member\":\"m1\",\"time\":\"2026-01-01T10:00:00Z\"}\n"
    "not json\n"
    "\n"
    "{\"id\":\"e2\",\"type\":\"checkin\",\"member\":\"m2\",\"time\":\"2026-01-01T10:00:01Z\"}\n"
    "{\"id\":\"e3\",\"type\":\"checkin\",\"member\":\"m3\",\"time\":\"2026-01-01T10:00:02Z\"}\n"
    "{\"id\":\"e4\",\"type\":\"checkin\",\"time\":\"2026-01-01T10:00:03Z\"}\n"
    "{\"id\":\"e5\",\"type\":\"checkin\",\"member\":\"m5\",\"time\":\"2026-01-01T10:00:04Z\"}\n";

static FILE *text_stream(const char *text) {
  FILE *f = tmpfile();
  CHECK(f != NULL);
  if (!f) return NULL;
  fputs(text, f);
  rewind(f);
  return f;
}

TEST(chunks_in_order_with_refusals_in_place) {
  FILE *in = text_stream(LINES);
  if (!in) return;
  ingest_ahead_t *a = ingest_ahead_start(in, 2, 0);
  /* chunk 1: e1, then "not json" (line 2) after it; two lines' worth */
  ingest_chunk_t *c = ingest_ahead_next(a);
  CHECK_INT(c->events.n, 1);
  CHECK_STR(c->events.v[0].id, "e1");
  CHECK_INT(c->nrefused, 1);
  CHECK_INT(c->refused[0].lineno, 2);
  CHECK_INT(c->refused[0].before, 1);
  CHECK(strstr(c->refused[0].msg, "invalid JSON") != NULL);
  CHECK(!c->end);
  /* chunk 2: e2 (line 4, the blank line 3 skipped), e3 */
  c = ingest_ahead_next(a);
  CHECK_INT(c->events.n, 2);
  CHECK_STR(c->events.v[0].id, "e2");
  CHECK_STR(c->events.v[1].id, "e3");
  CHECK_INT(c->nrefused, 0);
  CHECK_INT(c->lines, 5);
  /* chunk 3: line 6 has no member (refused before e5), e5 */
  c = ingest_ahead_next(a);
  CHECK_INT(c->events.n, 1);
  CHECK_STR(c->events.v[0].id, "e5");
  CHECK_INT(c->nrefused, 1);
  CHECK_INT(c->refused[0].lineno, 6);
  CHECK_INT(c->refused[0].before, 0);
  CHECK(strstr(c->refused[0].msg, "member") != NULL);
  CHECK(!c->end);
  /* chunk 4: the end, nothing in it */
  c = ingest_ahead_next(a);
  CHECK(c->end);
  CHECK_INT(c->read_errno, 0);
  CHECK_INT(c->events.n + c->nrefused, 0);
  CHECK_INT(c->lines, 7);
  ingest_ahead_stop(a);
  fclose(in);
}

TEST(a_failed_read_ends_the_input_with_its_errno) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  FILE *in = fdopen(fds[1], "w"); /* reading a stream open only for writing fails */
  CHECK(in != NULL);
  if (!in) return;
  ingest_ahead_t *a = ingest_ahead_start(in, 10, 0);
  ingest_chunk_t *c = ingest_ahead_next(a);
  CHECK(c->end);
  CHECK_INT(c->read_errno, EBADF);
  ingest_ahead_stop(a);
  fclose(in);
  close(fds[0]);
}

TEST(stop_while_the_reader_waits_on_an_open_pipe) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  const char *line = "{\"id\":\"p1\",\"type\":\"checkin\",\"member\":\"m1\",\"time\":\"2026-01-01T10:00:00Z\"}\n";
  CHECK(write(fds[1], line, strlen(line)) == (ssize_t)strlen(line));
  FILE *in = fdopen(fds[0], "r");
  CHECK(in != NULL);
  if (!in) return;
  ingest_ahead_t *a = ingest_ahead_start(in, 1, 0);
  ingest_chunk_t *c = ingest_ahead_next(a); /* p1; the reader then waits for more */
  CHECK_INT(c->events.n, 1);
  CHECK_STR(c->events.v[0].id, "p1");
  ingest_ahead_stop(a); /* the write end stays open: only a cancel ends the read */
  fclose(in);
  close(fds[1]);
}

int main(void) {
  RUN(chunks_in_order_with_refusals_in_place);
  RUN(a_failed_read_ends_the_input_with_its_errno);
  RUN(stop_while_the_reader_waits_on_an_open_pipe);
  return UNIT_DONE();
}
