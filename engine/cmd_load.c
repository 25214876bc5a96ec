/* cmd_load: `hearth load FILE|-`. Loads NDJSON member records (format and rules in
 * engine_load.h and docs/REFERENCE.md) in two passes: every line is checked first, and a
 * file with any bad line loads nothing (each bad line is reported with its number and
 * field, as `hearth import` reports them); then the records are applied in transactions of
 * --batch members through engine_load.c. Standard input is kept in a temporary file during
 * the check so that it can be read twice. Progress on stderr, a summary on stdout. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "engine_load.h"
#include "ingest.h"
#include "util.h"

static const char *usage =
    "usage: hearth load FILE|- [--batch N] [--progress N] [--json] [--quiet]\n\n"
    "Load member records, one JSON object per line:\n"
    "  {\"member\":\"m-1\",\"attrs\":{\"city\":\"Hangzhou\"},\"tags\":[\"vip\"],\"points\":1200,\n"
    "   \"staff\":\"s-9\",\"tz\":\"Asia/Shanghai\",\"joined_at\":\"2026-01-05T10:00:00+08:00\"}\n"
    "Only member is required. attrs are set key by key (null removes one); tags are added\n"
    "(none is removed); points is the balance she is to have, reached by one ledger entry\n"
    "of the difference (reason \"load\"); staff and tz are the attributes of those names.\n"
    "No handler runs and no action or timer is recorded. Loading the same file again\n"
    "changes nothing. Every line is checked before anything is written: one bad line\n"
    "(reported as FILE:LINE: rejected: field: problem) and nothing is loaded. The scripts\n"
    "folder is loaded when it exists (no handler of it runs), so engine rules declared by\n"
    "scripts apply to loaded points as to any other.\n\n"
    "  --batch N     members per transaction (default 1000); after a database error the\n"
    "                batches before it stay loaded: run the same load again\n"
    "  --progress N  a progress line on stderr every N members (default 100000)\n"
    "  --json        print the summary as JSON on stdout\n"
    "  --quiet       no progress lines\n"
    "Exit status: 0 loaded, 1 bad lines (nothing loaded) or a database error, 2 usage error.\n";

#define LOAD_PROGRESS_DEFAULT 100000
/* Bad lines reported one by one; the rest are counted. */
#define LOAD_REPORT_MAX 100

typedef struct {
  engine_t *e;
  const char *name;
  unsigned long lines, records, bad, progress_every, next_progress;
  int quiet, batch;
  uint64_t started;
  load_stats_t st;     /* what committed batches did */
  load_stats_t pending; /* what the open batch does */
} loader_t;

/* The open batch committed: count what it did. 0, or -1 (the batch was rolled back). */
static int commit_batch(loader_t *l) {
  load_stats_t *p = &l->pending;
  int rc = engine_commit(l->e);
  if (rc == 0) {
    l->st.members += p->members, l->st.created += p->created;
    l->st.changed += p->changed, l->st.ledger_entries += p->ledger_entries;
  }
  memset(p, 0, sizeof *p);
  return rc;
}

static void progress(loader_t *l, const char *what, unsigned long n) {
  if (l->quiet || n < l->next_progress) return;
  double secs = (double)(mono_ns() - l->started) / 1e9;
  fprintf(stderr, "hearth: %s %lu members (%.0f/s)\n", what, n, secs > 0 ? (double)n / secs : 0.0);
  l->next_progress = n + l->progress_every;
}

/* Pass 1: check every line, copying it to spool when that is not NULL. 0 when every line
 * is good, 1 when some are bad (reported), -1 on a read or write error (said). */
static int check_all(loader_t *l, FILE *in, FILE *spool) {
  ndjson_reader_t rd;
  ndjson_from_stream(&rd, in);
  const char *line;
  size_t len;
  int more;
  l->next_progress = l->progress_every;
  while ((more = ndjson_next(&rd, &line, &len)) > 0) {
    if (spool && (fwrite(line, 1, len, spool) != len || fputc('\n', spool) == EOF)) {
      fprintf(stderr, "hearth: cannot keep standard input in a temporary file: %s\n", strerror(errno));
      ndjson_close(&rd);
      return -1;
    }
    load_record_t r;
    char err[400];
    if (load_record_parse(l->e, line, len, &r, err, sizeof err) < 0) {
      if (++l->bad <= LOAD_REPORT_MAX) fprintf(stderr, "%s:%lu: rejected: %s\n", l->name, rd.lineno, err);
    } else {
      load_record_clear(&r);
      l->records++;
    }
    progress(l, "checked", l->records);
  }
  l->lines = rd.lineno;
  ndjson_close(&rd);
  if (more < 0) {
    fprintf(stderr, "hearth: reading %s: %s\n", l->name, strerror(errno));
    return -1;
  }
  if (l->bad > LOAD_REPORT_MAX) fprintf(stderr, "hearth: ... and %lu more bad lines\n", l->bad - LOAD_REPORT_MAX);
  return l->bad ? 1 : 0;
}

/* Apply one checked line inside the open batch: 0, or -1 (said; the batch must roll back). */
static int apply_line(loader_t *l, const char *line, size_t len, unsigned long lineno) {
  load_record_t r;
  char err[400];
  if (load_record_parse(l->e, line, len, &r, err, sizeof err) < 0) { /* the file changed since the check */
    fprintf(stderr, "%s:%lu: rejected: %s\n", l->name, lineno, err);
    return -1;
  }
  const char *base = strrchr(l->name, '/');
  char *cause = xasprintf("load:%s:%lu", base ? base + 1 : l->name, lineno);
  int rc = engine_load_member(l->e, &r, cause, &l->pending, err, sizeof err);
  free(cause);
  load_record_clear(&r);
  if (rc == MEMBER_TOO_BIG) fprintf(stderr, "%s:%lu: rejected: %s\n", l->name, lineno, err);
  else if (rc < 0) fprintf(stderr, "hearth: database error at %s:%lu: %s\n", l->name, lineno, engine_db_error(l->e));
  return rc < 0 ? -1 : 0;
}

/* Pass 2: every record, --batch members per transaction. 0, or -1 (said). */
static int apply_all(loader_t *l, FILE *in) {
  ndjson_reader_t rd;
  ndjson_from_stream(&rd, in);
  const char *line;
  size_t len;
  int more, in_batch = 0, rc = 0;
  unsigned long batch_first = 0, done = 0;
  l->next_progress = l->progress_every;
  while (rc == 0 && (more = ndjson_next(&rd, &line, &len)) > 0) {
    if (!in_batch) {
      if (engine_begin(l->e) < 0) {
        fprintf(stderr, "hearth: database error: %s\n", engine_db_error(l->e));
        rc = -1;
        break;
      }
      in_batch = 1;
      batch_first = rd.lineno;
    }
    if (apply_line(l, line, len, rd.lineno) < 0) {
      rc = -1;
      break;
    }
    if (++done % (unsigned long)l->batch == 0) {
      in_batch = 0;
      if (commit_batch(l) < 0) {
        fprintf(stderr, "hearth: database error committing lines %lu-%lu: %s\n", batch_first, rd.lineno,
                engine_db_error(l->e));
        rc = -1;
      }
      progress(l, "loaded", done);
    }
  }
  if (rc == 0 && more < 0) {
    fprintf(stderr, "hearth: reading %s: %s\n", l->name, strerror(errno));
    rc = -1;
  }
  if (in_batch && rc == 0 && commit_batch(l) < 0) {
    fprintf(stderr, "hearth: database error committing lines %lu-%lu: %s\n", batch_first, rd.lineno,
            engine_db_error(l->e));
    rc = -1;
  } else if (in_batch && rc < 0) {
    engine_rollback(l->e);
    memset(&l->pending, 0, sizeof l->pending);
    fprintf(stderr, "hearth: lines %lu-%lu not loaded (rolled back)%s\n", batch_first, rd.lineno,
            batch_first > 1 ? "; the lines before them are loaded: fix the line and load the file again" : "");
  }
  ndjson_close(&rd);
  return rc;
}

static void print_summary(const loader_t *l, double secs, int json) {
  if (json) {
    json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}", "file", l->name, "lines",
                          (json_int_t)l->lines, "records", (json_int_t)l->records, "rejected", (json_int_t)l->bad,
                          "members", (json_int_t)l->st.members, "created", (json_int_t)l->st.created, "changed",
                          (json_int_t)l->st.changed, "ledger_entries", (json_int_t)l->st.ledger_entries,
                          "seconds", secs);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    printf("%s\n", text ? text : "{}");
    free(text);
    json_decref(o);
    return;
  }
  if (l->bad) {
    printf("%s: %lu bad lines of %lu: nothing loaded\n", l->name, l->bad, l->lines);
    return;
  }
  printf("%s: %lu members loaded (%lu new, %lu changed, %lu unchanged), %lu ledger entries\n", l->name,
         l->st.members, l->st.created, l->st.changed, l->st.members - l->st.changed, l->st.ledger_entries);
}

static engine_t *open_engine(const cli_t *c) {
  engine_opts_t eo;
  cli_engine_opts(c, &eo);
  eo.no_scripts = access(c->scripts, F_OK) != 0;
  char *err;
  engine_t *e = engine_open(&eo, &err);
  if (!e) {
    fprintf(stderr, "hearth: %s%s", err, *err && err[strlen(err) - 1] == '\n' ? "" : "\n");
    free(err);
  }
  return e;
}

int cmd_load(int argc, char **argv) {
  cli_t c;
  int rc = cli_parse(&c, argc, argv, "batch progress json quiet", usage);
  if (rc) return c.help ? 0 : rc;
  if (c.npositional != 1) return cli_usage_error(usage, "load takes one FILE (or - for standard input)");
  const char *name = c.positional[0];
  int from_stdin = strcmp(name, "-") == 0;
  FILE *in = from_stdin ? stdin : fopen(name, "r");
  if (!in) {
    fprintf(stderr, "hearth: cannot open %s: %s\n", name, strerror(errno));
    return 1;
  }
  FILE *spool = from_stdin ? tmpfile() : NULL;
  if (from_stdin && !spool) {
    fprintf(stderr, "hearth: cannot make a temporary file for standard input: %s\n", strerror(errno));
    return 1;
  }
  engine_t *e = open_engine(&c);
  if (!e) {
    if (!from_stdin) fclose(in);
    if (spool) fclose(spool);
    return 1;
  }
  loader_t l = {.e = e, .name = from_stdin ? "<stdin>" : name, .quiet = c.quiet, .batch = c.batch,
                .progress_every = c.progress ? (unsigned long)c.progress : LOAD_PROGRESS_DEFAULT,
                .started = mono_ns()};
  int checked = check_all(&l, in, spool);
  FILE *again = spool ? spool : in;
  int status = 1;
  if (checked == 0) {
    if (fflush(again) != 0 || fseek(again, 0, SEEK_SET) != 0) {
      fprintf(stderr, "hearth: cannot read %s again: %s\n", l.name, strerror(errno));
    } else {
      l.started = mono_ns();
      status = apply_all(&l, again) == 0 ? 0 : 1;
    }
  }
  if (checked >= 0) print_summary(&l, (double)(mono_ns() - l.started) / 1e9, c.json);
  if (!from_stdin) fclose(in);
  if (spool) fclose(spool);
  engine_close(e);
  return status;
}
