/* summary: funnel per campaign, step and variant, and each experiment's lift against its
 * hold-out (see summary.h). */
#include "summary.h"

#include <math.h>
#include <string.h>

#include "lift.h"

/* Find or add the object with "name" == name in array arr. */
static json_t *named(json_t *arr, const char *name) {
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) {
    if (strcmp(json_string_value(json_object_get(v, "name")), name) == 0) return v;
  }
  v = json_pack("{s:s}", "name", name);
  json_array_append_new(arr, v);
  return v;
}

static json_t *campaign(json_t *list, const char *name) {
  json_t *c = named(list, name);
  if (!json_object_get(c, "steps")) {
    json_object_set_new(c, "metrics", json_object());
    json_object_set_new(c, "steps", json_array());
    json_object_set_new(c, "variants", json_array());
  }
  return c;
}

static void add(json_t *obj, const char *key, json_int_t n) {
  json_t *v = json_object_get(obj, key);
  json_object_set_new(obj, key, json_integer((v ? json_integer_value(v) : 0) + n));
}

static void set_conversion(json_t *obj) {
  json_t *en = json_object_get(obj, "entered"), *cv = json_object_get(obj, "converted");
  if (en && json_integer_value(en) > 0)
    json_object_set_new(obj, "conversion",
                        json_real((double)(cv ? json_integer_value(cv) : 0) / (double)json_integer_value(en)));
}

/* An outbox count: actions by status, on the campaign or on its step. */
static void add_outbox_count(void *ud, const outbox_count_t *r) {
  json_t *c = campaign(ud, r->campaign);
  json_t *target = *r->step ? named(json_object_get(c, "steps"), r->step) : json_object_get(c, "metrics");
  /* queued messages are "sent"; other queued kinds are named by kind (task, tag, points...) */
  const char *metric = strcmp(r->status, "queued") != 0 ? r->status : strcmp(r->kind, "send") == 0 ? "sent" : r->kind;
  add(target, metric, r->n);
}

/* A hearth.count counter: on the variant, else the step, else the campaign. */
static void add_funnel_row(void *ud, const funnel_row_t *r) {
  json_t *c = campaign(ud, r->campaign);
  if (*r->variant) add(named(json_object_get(c, "variants"), r->variant), r->metric, r->n);
  else if (*r->step) add(named(json_object_get(c, "steps"), r->step), r->metric, r->n);
  else add(json_object_get(c, "metrics"), r->metric, r->n);
}

static json_int_t count(json_t *obj, const char *key) {
  return obj ? json_integer_value(json_object_get(obj, key)) : 0;
}

/* {entered, converted, conversion} of a group */
static json_t *group(json_int_t entered, json_int_t converted) {
  json_t *g = json_pack("{s:I, s:I}", "entered", entered, "converted", converted);
  set_conversion(g);
  return g;
}

/* {diff, low, high, relative, significant} of treated over the hold-out, or NULL when a
 * group is empty (or the counters disagree, as after a hand-edited database). */
static json_t *lift_json(json_int_t ct, json_int_t nt, json_int_t ch, json_int_t nh) {
  lift_t l;
  if (lift_compute(ct, nt, ch, nh, LIFT_Z95, &l) < 0) return NULL;
  json_t *j = json_pack("{s:f, s:f, s:f, s:b}", "diff", l.diff, "low", l.diff_ci.low, "high", l.diff_ci.high,
                        "significant", l.significant);
  json_object_set_new(j, "relative", isnan(l.relative) ? json_null() : json_real(l.relative));
  return j;
}

/* A campaign with a "holdout" variant is an experiment: its conversion counts the treated
 * members only, "experiment" holds both groups and the lift, and each variant its own lift
 * against the same hold-out. */
static void add_experiment(json_t *c) {
  json_t *variants = json_object_get(c, "variants"), *metrics = json_object_get(c, "metrics"), *holdout = NULL, *v;
  size_t i;
  json_array_foreach(variants, i, v) if (!strcmp(json_string_value(json_object_get(v, "name")), "holdout")) holdout = v;
  json_int_t nh = count(holdout, "entered"), ch = count(holdout, "converted");
  if (!holdout || nh <= 0) return;
  json_int_t nt = count(metrics, "entered") - nh, ct = count(metrics, "converted") - ch;
  json_t *x = json_object();
  json_object_set_new(x, "treated", group(nt, ct));
  json_object_set_new(x, "holdout", group(nh, ch));
  json_t *l = lift_json(ct, nt, ch, nh);
  if (l) json_object_set_new(x, "lift", l);
  json_object_set_new(x, "method", json_string("newcombe-wilson-95"));
  json_object_set_new(c, "experiment", x);
  if (nt > 0) json_object_set_new(metrics, "conversion", json_real((double)ct / (double)nt));
  else json_object_del(metrics, "conversion");
  json_array_foreach(variants, i, v) {
    if (v == holdout) continue;
    json_t *vl = lift_json(count(v, "converted"), count(v, "entered"), ch, nh);
    if (vl) json_object_set_new(v, "lift", vl);
  }
}

/* conversion = converted / entered, for the campaign and for each variant; experiments */
static json_t *finish(json_t *list) {
  size_t i, k;
  json_t *c, *v;
  json_array_foreach(list, i, c) {
    set_conversion(json_object_get(c, "metrics"));
    json_array_foreach(json_object_get(c, "variants"), k, v) set_conversion(v);
    add_experiment(c);
  }
  json_t *root = json_object();
  json_object_set_new(root, "campaigns", list);
  return root;
}

json_t *summary_json(store_t *s) {
  json_t *list = json_array();
  if (store_outbox_counts(s, add_outbox_count, list) < 0 || store_funnel_rows(s, add_funnel_row, list) < 0) {
    json_decref(list);
    return NULL;
  }
  return finish(list);
}

/* Add the integer counts of `from` (an object of counts) to `to`; conversions, lifts and
 * other derived values are left out (they are computed again from the sums). */
static void add_counts(json_t *to, json_t *from) {
  const char *k;
  json_t *v;
  json_object_foreach(from, k, v) if (json_is_integer(v)) add(to, k, json_integer_value(v));
}

static void add_named_counts(json_t *to_list, json_t *from_list) {
  size_t i;
  json_t *v;
  json_array_foreach(from_list, i, v) {
    const char *name = json_string_value(json_object_get(v, "name"));
    if (name) add_counts(named(to_list, name), v);
  }
}

json_t *summary_sum(json_t *const *parts, int n) {
  json_t *list = json_array();
  for (int p = 0; p < n; p++) {
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(parts[p], "campaigns"), i, c) {
      const char *name = json_string_value(json_object_get(c, "name"));
      if (!name) continue;
      json_t *to = campaign(list, name);
      add_counts(json_object_get(to, "metrics"), json_object_get(c, "metrics"));
      add_named_counts(json_object_get(to, "steps"), json_object_get(c, "steps"));
      add_named_counts(json_object_get(to, "variants"), json_object_get(c, "variants"));
    }
  }
  return finish(list);
}

/* "+12.5 pp (95% CI -3.1 to +28.0 pp), not significant" */
static void print_lift(FILE *out, json_t *lift) {
  fprintf(out, "%+.1f pp (95%% CI %+.1f to %+.1f pp), %s", 100.0 * json_real_value(json_object_get(lift, "diff")),
          100.0 * json_real_value(json_object_get(lift, "low")), 100.0 * json_real_value(json_object_get(lift, "high")),
          json_is_true(json_object_get(lift, "significant")) ? "significant" : "not significant");
}

/* "treated 116 entered, 71 converted (61.2%)" */
static void print_group(FILE *out, const char *name, json_t *g) {
  fprintf(out, "%s %lld entered, %lld converted", name, (long long)count(g, "entered"), (long long)count(g, "converted"));
  json_t *cv = json_object_get(g, "conversion");
  if (cv) fprintf(out, " (%.1f%%)", 100.0 * json_real_value(cv));
}

/* "queued 12, skipped 3" from the integer members of obj (name excluded); a variant's lift
 * after them. */
static void print_counts(FILE *out, json_t *obj) {
  const char *k;
  json_t *v;
  int first = 1;
  json_object_foreach(obj, k, v) {
    if (!strcmp(k, "name")) continue;
    if (json_is_integer(v))
      fprintf(out, "%s%s %lld", first ? "" : ", ", k, (long long)json_integer_value(v));
    else if (json_is_real(v))
      fprintf(out, "%s%s %.1f%%", first ? "" : ", ", k, 100.0 * json_real_value(v));
    else
      continue;
    first = 0;
  }
  json_t *lift = json_object_get(obj, "lift");
  if (lift) {
    fprintf(out, "%slift vs hold-out ", first ? "" : "; ");
    print_lift(out, lift);
    first = 0;
  }
  fputs(first ? "-\n" : "\n", out);
}

void summary_print_doc(json_t *root, const engine_stats_t *stats, unsigned long rejected, FILE *out) {
  size_t i, k;
  json_t *c, *v;
  json_array_foreach(json_object_get(root, "campaigns"), i, c) {
    fprintf(out, "campaign %s: ", json_string_value(json_object_get(c, "name")));
    print_counts(out, json_object_get(c, "metrics"));
    json_array_foreach(json_object_get(c, "steps"), k, v) {
      fprintf(out, "  step %s: ", json_string_value(json_object_get(v, "name")));
      print_counts(out, v);
    }
    json_array_foreach(json_object_get(c, "variants"), k, v) {
      fprintf(out, "  variant %s: ", json_string_value(json_object_get(v, "name")));
      print_counts(out, v);
    }
    json_t *x = json_object_get(c, "experiment");
    if (x) {
      fputs("  experiment: ", out);
      print_group(out, "treated", json_object_get(x, "treated"));
      print_group(out, "; hold-out", json_object_get(x, "holdout"));
      json_t *lift = json_object_get(x, "lift");
      if (lift) {
        fputs("; lift ", out);
        print_lift(out, lift);
      }
      fputs("\n", out);
    }
  }
  if (stats)
    fprintf(out, "events: %lu accepted, %lu duplicates, %lu rejected, %lu failed; timers fired %lu, cancelled %lu\n",
            stats->accepted, stats->duplicates, rejected, stats->failed, stats->timers_fired, stats->timers_cancelled);
}

int summary_print(store_t *s, const engine_stats_t *stats, unsigned long rejected, FILE *out) {
  json_t *root = summary_json(s);
  if (!root) return -1;
  summary_print_doc(root, stats, rejected, out);
  json_decref(root);
  return 0;
}
