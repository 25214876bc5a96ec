/* cmd_stats: `hearth stats`. Totals of the database (members, events remembered, failed
 * events, timers pending, actions by delivery state), the script version loaded last, the
 * funnel per campaign, step and variant, and per staff member the members owned and the
 * tasks open, overdue and done (judged at the engine's clock as last committed, or the
 * real time when that is later), as text or --json. Read-only; a failed read is an error
 * (exit 1), never zeros. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "engine.h"
#include "store.h"
#include "summary.h"
#include "timeutil.h"

static const char *usage =
    "usage: hearth stats [--json]\n\n"
    "Print the totals of the database and the funnel per campaign, step and variant:\n"
    "actions by status, and the counters campaigns keep (entered, converted, ...);\n"
    "then per staff member: members owned, tasks open, overdue and done. Overdue is\n"
    "judged at the engine's clock as last committed (a virtual clock's time), or the\n"
    "real time when that is later.\n";

/* The totals in the order they are printed: the name and the field of store_totals_t. */
static const struct {
  const char *name;
  size_t field;
} totals[] = {
    {"members", offsetof(store_totals_t, members)},
    {"events_remembered", offsetof(store_totals_t, events_remembered)},
    {"failed_events", offsetof(store_totals_t, failed_events)},
    {"timers_pending", offsetof(store_totals_t, timers_pending)},
    {"actions", offsetof(store_totals_t, actions)},
    {"pending_delivery", offsetof(store_totals_t, pending_delivery)},
    {"delivered", offsetof(store_totals_t, delivered)},
    {"dead_letters", offsetof(store_totals_t, dead_letters)},
};
#define N_TOTALS (sizeof totals / sizeof totals[0])

static long long total(const store_totals_t *t, size_t i) {
  return *(const int64_t *)((const char *)t + totals[i].field);
}

/* The time overdue tasks are judged at: the engine's clock as last committed, or now. */
static int64_t judged_at(store_t *s) {
  int64_t clock = store_meta_get(s, "clock", 0), now = (int64_t)time(NULL);
  return clock > now ? clock : now;
}

static void print_staff_row(void *ud, const staff_report_t *r) {
  (void)ud;
  printf("staff %s: members %lld, open_tasks %lld, overdue %lld, done %lld, done_late %lld\n", r->staff,
         (long long)r->members, (long long)r->open, (long long)r->overdue, (long long)r->done,
         (long long)r->done_late);
}

/* The script set loaded last (script_versions), as JSON; null when none was noted. */
static json_t *version_json(store_t *s, int *failed) {
  script_version_t v;
  int rc = store_script_version_latest(s, &v);
  *failed = rc < 0;
  if (rc <= 0) return json_null();
  char first[32], last[32];
  rfc3339_format(v.loaded_at, 0, first);
  rfc3339_format(v.last_loaded_at, 0, last);
  return json_pack("{s:s, s:s, s:s, s:I}", "hash", v.hash, "first_loaded_at", first, "loaded_at", last,
                   "versions", (json_int_t)v.versions);
}

static int print_json(store_t *s, const store_totals_t *t, const tz_t *tz) {
  json_t *root = summary_json(s);
  if (!root) return -1;
  int failed;
  json_object_set_new(root, "script_version", version_json(s, &failed));
  if (failed) {
    json_decref(root);
    return -1;
  }
  json_t *staff = staff_report_json(s, tz, judged_at(s));
  if (!staff) {
    json_decref(root);
    return -1;
  }
  json_object_set_new(root, "staff", staff);
  json_t *obj = json_object();
  for (size_t i = 0; i < N_TOTALS; i++) json_object_set_new(obj, totals[i].name, json_integer(total(t, i)));
  json_object_set_new(root, "totals", obj);
  char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  printf("%s\n", text);
  free(text);
  json_decref(root);
  return 0;
}

/* The totals line, then the funnel. */
static int print_text(store_t *s, const store_totals_t *t) {
  json_t *root = summary_json(s);
  if (!root) return -1;
  for (size_t i = 0; i < N_TOTALS; i++) printf("%s%s %lld", i ? ", " : "", totals[i].name, total(t, i));
  printf("\n");
  int failed;
  json_t *v = version_json(s, &failed);
  if (failed) {
    json_decref(v);
    json_decref(root);
    return -1;
  }
  if (json_is_object(v))
    printf("script version %s, loaded %s (first %s; %lld versions in all)\n",
           json_string_value(json_object_get(v, "hash")), json_string_value(json_object_get(v, "loaded_at")),
           json_string_value(json_object_get(v, "first_loaded_at")),
           (long long)json_integer_value(json_object_get(v, "versions")));
  json_decref(v);
  summary_print_doc(root, NULL, 0, stdout);
  json_decref(root);
  return store_staff_report(s, judged_at(s), print_staff_row, NULL) < 0 ? -1 : 0;
}

int cmd_stats(int argc, char **argv) {
  cli_t c;
  int rc = cli_parse(&c, argc, argv, "json", usage);
  if (rc) return c.help ? 0 : rc;
  if (access(c.db, F_OK) != 0) {
    fprintf(stderr, "hearth: no database at %s\n", c.db);
    return 1;
  }
  char err[512];
  store_t *s = store_open(c.db, 1, err, sizeof err);
  if (!s) {
    fprintf(stderr, "hearth: %s\n", err);
    return 1;
  }
  tz_t *tz = tz_load(c.tz, err, sizeof err);
  if (!tz) {
    fprintf(stderr, "hearth: --tz: %s\n", err);
    store_close(s);
    return 2;
  }
  store_totals_t t;
  int status = 0;
  if (store_totals(s, &t) < 0 || (c.json ? print_json(s, &t, tz) : print_text(s, &t)) < 0) {
    fprintf(stderr, "hearth: cannot read %s: %s\n", c.db, store_errmsg(s));
    status = 1;
  }
  tz_free(tz);
  store_close(s);
  return status;
}
