/* cmd_export: `hearth export members|actions|ledger`. Streams one table out of the
 * database, read-only (the daemon may be running: WAL readers never block it), a page of
 * rows at a time through the store's export cursors (store.h, "data in and out"), so
 * memory stays constant over millions of rows. Each row becomes one NDJSON line (members
 * and actions in the shapes `hearth member` prints) or one CSV record (RFC 4180: a
 * header, quoted fields, CRLF, nested values as JSON text). Times are RFC 3339 in --tz.
 * Our own design; the quoting rules are RFC 4180's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "member_json.h"
#include "util.h"

static const char *usage =
    "usage: hearth export members|actions|ledger [--format ndjson|csv] [--since TIME]\n"
    "                     [--out FILE|-] [--progress N] [--quiet]\n\n"
    "Write one table of the database as NDJSON (default: one JSON object per line) or CSV\n"
    "(RFC 4180: a header row, CRLF line ends, nested values as JSON text in one column).\n"
    "Opens the database read-only and reads it a page at a time, so it runs beside the\n"
    "daemon and in constant memory; rows committed while it runs may or may not appear.\n\n"
    "  members   id, created_at, joined_at, last_active_at, orders, spend, points, attrs,\n"
    "            tags: `hearth member` without its lists; in id order\n"
    "  actions   every recorded action as stored (the dry-run's lines) with its status and\n"
    "            delivery state; CSV: id, time, member, campaign, step, action, status,\n"
    "            delivery, channel, reason, fields (the kind's own fields, JSON)\n"
    "  ledger    every points entry: member, n, time, delta, balance, reason, campaign,\n"
    "            cause; in (member, n) order\n\n"
    "  --format F   ndjson (default) or csv\n"
    "  --since TIME only rows at or after TIME (RFC 3339, or a date YYYY-MM-DD at midnight\n"
    "               in --tz): actions and ledger entries by their time; members created,\n"
    "               joined or active then, or with a ledger entry then\n"
    "  --out FILE   write FILE (through FILE.tmp, renamed when complete); - or none: stdout\n"
    "  --progress N a progress line on stderr every N rows (default 100000)\n"
    "  --quiet      no progress lines\n"
    "Times are RFC 3339 in the engine zone (--tz). Exit status: 0 ok, 1 database or write\n"
    "error, 2 usage error.\n";

/* Rows asked of the store at a time. */
#define EXPORT_PAGE 1000
#define EXPORT_PROGRESS_DEFAULT 100000

enum { TABLE_MEMBERS, TABLE_ACTIONS, TABLE_LEDGER };

static const char *const members_columns[] = {"id", "created_at", "joined_at", "last_active_at", "orders",
                                              "spend", "points", "attrs", "tags", NULL};
static const char *const actions_columns[] = {"id", "time", "member", "campaign", "step", "action",
                                              "status", "delivery", "channel", "reason", "fields", NULL};
static const char *const ledger_columns[] = {"member", "n", "time", "delta", "balance", "reason",
                                             "campaign", "cause", "type", "lots", NULL};

typedef struct {
  FILE *out;
  const tz_t *tz;
  int csv, table;
  unsigned long rows, progress_every, next_progress;
  int quiet;
  uint64_t started;
  char *cursor_id;   /* members, ledger: the last key handed over */
  int64_t cursor_n;  /* ledger: n of the last entry; actions: the last seq */
} exporter_t;

/* ---- CSV (RFC 4180) ---- */

/* One field: quoted when it holds a comma, a quote, CR or LF (quotes doubled). */
static void csv_field(FILE *f, const char *s) {
  if (!s) return;
  if (!strpbrk(s, ",\"\r\n")) {
    fputs(s, f);
    return;
  }
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"') fputc('"', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

/* A JSON value as one CSV field: a string as itself, null (or absent) empty, anything
 * else as compact JSON text. */
static void csv_value(FILE *f, json_t *v) {
  if (!v || json_is_null(v)) return;
  if (json_is_string(v)) {
    csv_field(f, json_string_value(v));
    return;
  }
  char *text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
  csv_field(f, text ? text : "");
  free(text);
}

static void csv_header(FILE *f, const char *const *cols) {
  for (int i = 0; cols[i]; i++) {
    if (i) fputc(',', f);
    csv_field(f, cols[i]);
  }
  fputs("\r\n", f);
}

/* The record of row: its value of each column, in order. */
static void csv_record(FILE *f, const char *const *cols, json_t *row) {
  for (int i = 0; cols[i]; i++) {
    if (i) fputc(',', f);
    csv_value(f, json_object_get(row, cols[i]));
  }
  fputs("\r\n", f);
}

/* ---- rows ---- */

static void progress(exporter_t *x) {
  if (x->quiet || x->rows < x->next_progress) return;
  double secs = (double)(mono_ns() - x->started) / 1e9;
  fprintf(stderr, "hearth: exported %lu rows (%.0f rows/s)\n", x->rows, secs > 0 ? (double)x->rows / secs : 0.0);
  x->next_progress = x->rows + x->progress_every;
}

/* Write one row (taken) as an NDJSON line or a CSV record. */
static void emit(exporter_t *x, json_t *row, const char *const *cols) {
  if (x->csv) {
    csv_record(x->out, cols, row);
  } else {
    char *text = json_dumps(row, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text) {
      fputs(text, x->out);
      fputc('\n', x->out);
    }
    free(text);
  }
  json_decref(row);
  x->rows++;
  progress(x);
}

static void set_cursor_id(exporter_t *x, const char *id) {
  free(x->cursor_id);
  x->cursor_id = xstrdup(id);
}

static void member_row(void *ud, const member_export_t *m) {
  exporter_t *x = ud;
  json_t *j = json_pack("{s:s}", "id", m->id);
  member_json_fields(j, x->tz, &m->view);
  set_cursor_id(x, m->id);
  emit(x, j, members_columns);
}

static void ledger_row(void *ud, const ledger_row_t *r) {
  exporter_t *x = ud;
  json_t *j = json_pack("{s:s, s:I, s:o, s:I, s:I, s:s, s:o, s:o}", "member", r->member, "n", (json_int_t)r->n,
                        "time", member_json_time(x->tz, r->time), "delta", (json_int_t)r->delta, "balance",
                        (json_int_t)r->balance, "reason", r->reason, "campaign",
                        r->campaign ? json_string(r->campaign) : json_null(), "cause",
                        r->cause ? json_string(r->cause) : json_null());
  /* the points entry's type (grant or spend when null; expire, redeem, refund) and the
   * lots it took from, as `hearth member` shows them */
  json_object_set_new(j, "type", r->type ? json_string(r->type) : json_null());
  json_t *lots = r->lots ? json_loads(r->lots, 0, NULL) : NULL;
  json_object_set_new(j, "lots", lots ? lots : json_null());
  set_cursor_id(x, r->member);
  x->cursor_n = r->n;
  emit(x, j, ledger_columns);
}

/* An action's CSV columns: the named members of its body, then the rest as `fields`. */
static json_t *action_columns(json_t *a) {
  json_t *row = json_object(), *fields = json_object();
  const char *k;
  json_t *v;
  json_object_foreach(a, k, v) {
    int named = 0;
    for (int i = 0; actions_columns[i] && !named; i++) named = !strcmp(k, actions_columns[i]);
    json_object_set(named ? row : fields, k, v);
  }
  json_object_set_new(row, "fields", fields);
  return row;
}

static void action_row(void *ud, const action_export_t *r) {
  exporter_t *x = ud;
  json_t *a = member_json_action(r->body, r->status, r->delivery);
  json_object_set_new(a, "time", member_json_time(x->tz, r->time)); /* the same instant, in --tz */
  x->cursor_n = r->seq;
  if (x->csv) {
    json_t *row = action_columns(a);
    json_decref(a);
    a = row;
  }
  emit(x, a, actions_columns);
}

/* One page after the cursor: how many rows, -1 on a database error. */
static int next_page(exporter_t *x, store_t *s, int64_t since) {
  switch (x->table) {
  case TABLE_MEMBERS:
    return store_export_members(s, x->cursor_id, since, EXPORT_PAGE, member_row, x);
  case TABLE_LEDGER:
    return store_export_ledger(s, x->cursor_id, x->cursor_n, since, EXPORT_PAGE, ledger_row, x);
  default:
    return store_export_actions(s, x->cursor_n, since, EXPORT_PAGE, action_row, x);
  }
}

static const char *const *table_columns(int table) {
  return table == TABLE_MEMBERS ? members_columns : table == TABLE_LEDGER ? ledger_columns : actions_columns;
}

/* Every page of the table: 0, or -1 on a database error (logged by the store). */
static int export_table(exporter_t *x, store_t *s, int64_t since) {
  if (x->csv) csv_header(x->out, table_columns(x->table));
  int n;
  while ((n = next_page(x, s, since)) == EXPORT_PAGE) {
  }
  return n < 0 ? -1 : 0;
}

/* ---- options ---- */

static int parse_table(const char *name) {
  if (!strcmp(name, "members")) return TABLE_MEMBERS;
  if (!strcmp(name, "actions")) return TABLE_ACTIONS;
  if (!strcmp(name, "ledger")) return TABLE_LEDGER;
  return -1;
}

/* --since: RFC 3339, or YYYY-MM-DD meaning midnight in tz. 0, or -1 with err. */
static int parse_since(const char *s, const tz_t *tz, int64_t *t, char *err, size_t errlen) {
  int64_t day;
  if (strlen(s) == 10 && s[4] == '-' && s[7] == '-') {
    if (date_parse(s, 10, &day) < 0) {
      set_err(err, errlen, "'%s' is not a date", s);
      return -1;
    }
    int64_t y;
    int mo, d;
    civil_from_days(day, &y, &mo, &d);
    *t = tz_from_local(tz, (int)y, mo, d, 0, 0, 0);
    return 0;
  }
  char why[160];
  if (rfc3339_parse(s, t, why, sizeof why) < 0) {
    set_err(err, errlen, "'%s' is neither RFC 3339 nor YYYY-MM-DD: %s", s, why);
    return -1;
  }
  return 0;
}

static store_t *open_readonly(const char *path) {
  char err[512];
  if (access(path, F_OK) != 0) {
    fprintf(stderr, "hearth: no database at %s\n", path);
    return NULL;
  }
  store_t *s = store_open(path, 1, err, sizeof err);
  if (!s) fprintf(stderr, "hearth: %s\n", err);
  return s;
}

/* Finish the output: flush and check it, and rename FILE.tmp to FILE (or remove it after
 * a failure). 0, or -1 (said on stderr). */
static int finish_output(FILE *out, const char *path, const char *tmp, int ok) {
  int bad = fflush(out) != 0 || ferror(out);
  int saved = errno;
  if (tmp && fclose(out) != 0) bad = 1, saved = errno;
  if (bad) fprintf(stderr, "hearth: writing %s: %s\n", path ? path : "standard output", strerror(saved));
  if (tmp) {
    if (!bad && ok && rename(tmp, path) != 0) {
      fprintf(stderr, "hearth: cannot rename %s to %s: %s\n", tmp, path, strerror(errno));
      bad = 1;
    }
    if (bad || !ok) unlink(tmp);
  }
  return bad ? -1 : 0;
}

int cmd_export(int argc, char **argv) {
  cli_t c;
  int rc = cli_parse(&c, argc, argv, "format since out progress quiet", usage);
  if (rc) return c.help ? 0 : rc;
  if (c.npositional != 1) return cli_usage_error(usage, "export takes one table: members, actions or ledger");
  int table = parse_table(c.positional[0]);
  if (table < 0) return cli_usage_error(usage, "no table '%s' (members, actions or ledger)", c.positional[0]);
  const char *format = c.format ? c.format : "ndjson";
  if (strcmp(format, "ndjson") && strcmp(format, "csv"))
    return cli_usage_error(usage, "--format must be ndjson or csv, got '%s'", format);
  char err[512];
  tz_t *tz = tz_load(c.tz, err, sizeof err);
  if (!tz) {
    fprintf(stderr, "hearth: %s\n", err);
    return 1;
  }
  int64_t since = INT64_MIN;
  if (c.since && parse_since(c.since, tz, &since, err, sizeof err) < 0) {
    tz_free(tz);
    return cli_usage_error(usage, "--since: %s", err);
  }
  store_t *s = open_readonly(c.db);
  if (!s) {
    tz_free(tz);
    return 1;
  }
  const char *path = c.out && strcmp(c.out, "-") ? c.out : NULL;
  char *tmp = path ? xasprintf("%s.tmp", path) : NULL;
  FILE *out = tmp ? fopen(tmp, "w") : stdout;
  if (!out) {
    fprintf(stderr, "hearth: cannot write %s: %s\n", tmp, strerror(errno));
    free(tmp);
    store_close(s);
    tz_free(tz);
    return 1;
  }
  exporter_t x = {.out = out, .tz = tz, .csv = !strcmp(format, "csv"), .table = table, .quiet = c.quiet,
                  .progress_every = c.progress ? (unsigned long)c.progress : EXPORT_PROGRESS_DEFAULT,
                  .started = mono_ns(), .cursor_id = xstrdup("")};
  x.next_progress = x.progress_every;
  int ok = export_table(&x, s, since) == 0;
  if (!ok) fprintf(stderr, "hearth: database error reading %s: %s\n", c.db, store_errmsg(s));
  int written = finish_output(out, path, tmp, ok);
  if (ok && written == 0 && !c.quiet)
    fprintf(stderr, "hearth: exported %lu rows of %s%s%s\n", x.rows, c.positional[0], path ? " to " : "",
            path ? path : "");
  free(x.cursor_id);
  free(tmp);
  store_close(s);
  tz_free(tz);
  return ok && written == 0 ? 0 : 1;
}
