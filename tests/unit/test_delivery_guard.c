/* test_delivery_guard: delivery on the log channel under scale-out's guard. When an engine
 * tells the other engines that an action was sent (the guard's sent), the action's line
 * is already out of the process's buffer. Before, the line could still sit in stdio's
 * buffer: an engine killed -9 right then lost it, and the engine taking its partition
 * over skipped the action as sent (the action missing in test_cluster's kill -9 test). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "delivery.h"
#include "engine.h"
#include "event.h"
#include "unit.h"
#include "unit_db.h"

typedef struct {
  const char *out;   /* the channel's file */
  int calls;         /* sent() calls */
  int line_written;  /* of them, those whose action's line was in the file already */
} probe_t;

static int seen_none(void *ud, const char *action_id) {
  (void)ud, (void)action_id;
  return 0;
}

static void on_sent(void *ud, const char *action_id) {
  probe_t *p = ud;
  p->calls++;
  FILE *f = fopen(p->out, "r");
  if (!f) return;
  char buf[8192];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  if (strstr(buf, action_id)) p->line_written++;
}

static int feed(engine_t *e, const char *line) {
  event_t ev;
  char err[256];
  if (event_parse(line, strlen(line), &ev, err, sizeof err) < 0) {
    fprintf(stderr, "test event does not parse: %s\n", err);
    return -2;
  }
  int rc = engine_feed(e, &ev);
  event_clear(&ev);
  return rc;
}

TEST(log_line_written_before_the_guard_is_told_it_was_sent) {
  char db[64], dir[] = "/tmp/hearth-test-guard-XXXXXX", out[128], script[128];
  if (unit_temp_db(db, "guard") < 0) return;
  CHECK(mkdtemp(dir) != NULL);
  snprintf(out, sizeof out, "%s/actions.ndjson", dir);
  snprintf(script, sizeof script, "%s/thanks.lua", dir);
  FILE *f = fopen(script, "w");
  CHECK(f != NULL);
  if (!f) return;
  fprintf(f,
          "hearth.channel(\"file\", {type = \"log\", path = \"%s\"})\n"
          "hearth.on(\"order.paid\", function(m, ev)\n"
          "  m:send(\"thanks\", { key = \"thanks-\" .. ev.data.order_id, channel = \"file\" })\n"
          "end)\n",
          out);
  fclose(f);
  engine_opts_t o = {.db_path = db, .scripts_dir = dir, .tz_name = "Asia/Shanghai", .dedupe_window = 86400};
  char *err = NULL;
  engine_t *e = engine_open(&o, &err);
  if (!e) fprintf(stderr, "engine_open: %s\n", err ? err : "(no message)");
  free(err);
  CHECK(e != NULL);
  if (!e) return;
  engine_use_virtual_clock(e);
  CHECK_INT(feed(e, "{\"id\":\"e1\",\"type\":\"order.paid\",\"member\":\"m-1\",\"time\":\"2026-03-02T10:00:00+08:00\","
                    "\"data\":{\"order_id\":\"o1\",\"amount\":10}}"), EV_APPLIED);
  CHECK_INT(feed(e, "{\"id\":\"e2\",\"type\":\"order.paid\",\"member\":\"m-2\",\"time\":\"2026-03-02T10:00:01+08:00\","
                    "\"data\":{\"order_id\":\"o2\",\"amount\":10}}"), EV_APPLIED);
  CHECK_INT(engine_commit(e), 0);

  uv_loop_t loop;
  uv_loop_init(&loop);
  char why[256] = "";
  delivery_t *d = delivery_start(&loop, e, why, sizeof why);
  if (!d) fprintf(stderr, "delivery_start: %s\n", why);
  CHECK(d != NULL);
  probe_t p = {.out = out};
  if (d) {
    delivery_set_guard(d, &(delivery_guard_t){.seen = seen_none, .sent = on_sent, .ud = &p});
    delivery_pump(d);
    delivery_stop(d);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(uv_loop_close(&loop), 0);
  CHECK_INT(p.calls, 2);
  CHECK_INT(p.line_written, 2);
  engine_close(e);
  unlink(out);
  unlink(script);
  rmdir(dir);
  unit_remove_db(db);
}

int main(void) {
  RUN(log_line_written_before_the_guard_is_told_it_was_sent);
  return UNIT_DONE();
}
