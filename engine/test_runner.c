/* test_runner: the Lua API of operators' tests and the case loop (see test_runner.h). */
#include "test_runner.h"

#include <dirent.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine.h"
#include "ingest.h"
#include "json_lua.h"
#include "lua_api.h"
#include "member_json.h"

#define T_MT "hearth.test.case"

typedef struct {
  char *name;
  int ref;
} test_case_t;

typedef struct {
  test_run_t *run;
  const char *path;
  char *dir;
  char **scripts; /* NULL-terminated, from use() or the default */
  test_case_t *cases;
  int ncases, capcases;
} test_file_t;

/* State of one running case, behind the `t` userdata. */
typedef struct {
  test_file_t *tf;
  engine_t *e;
  json_t *actions;       /* every action recorded or re-judged, in order */
  json_t *violations;    /* every invariant violation, in order: {rule, member, action, message} */
  size_t seen_violations; /* acknowledged by t:expect_violations */
  unsigned long seen_failures;
  int started;
  unsigned long event_n;
} case_ctx_t;

static test_file_t *file_of(lua_State *L) { return luahost_of(L)->owner; }

/* ---- declarations ---- */

static int l_test(lua_State *L) {
  if (!luahost_of(L)->loading) return luaL_error(L, "test() must be called at the top level of the test file");
  const char *name = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  test_file_t *tf = file_of(L);
  lua_pushvalue(L, 2);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (tf->ncases == tf->capcases)
    tf->cases = xrealloc(tf->cases, (size_t)(tf->capcases = tf->capcases ? tf->capcases * 2 : 8) * sizeof *tf->cases);
  tf->cases[tf->ncases].name = xstrdup(name);
  tf->cases[tf->ncases].ref = ref;
  tf->ncases++;
  return 0;
}

static void free_scripts(test_file_t *tf) {
  for (char **p = tf->scripts; p && *p; p++) free(*p);
  free(tf->scripts);
  tf->scripts = NULL;
}

/* use("onboarding.lua", "caps_setup.lua"): scripts relative to the test file's folder (never a
 * *_helpers.lua test helper). */
static int l_use(lua_State *L) {
  if (!luahost_of(L)->loading) return luaL_error(L, "use() must be called at the top level of the test file");
  int n = lua_gettop(L);
  for (int i = 1; i <= n; i++) {
    const char *name = luaL_checkstring(L, i);
    if (luahost_is_test_helper(name))
      return luaL_error(L, "use(\"%s\"): a *_helpers.lua file is a test helper, not a campaign script: "
                        "require it from the test instead", name);
  }
  test_file_t *tf = file_of(L);
  free_scripts(tf);
  tf->scripts = xcalloc((size_t)n + 1, sizeof *tf->scripts);
  for (int i = 1; i <= n; i++) tf->scripts[i - 1] = xasprintf("%s/%s", tf->dir, lua_tostring(L, i));
  return 0;
}

/* ---- the t object ---- */

static case_ctx_t *check_t(lua_State *L) {
  case_ctx_t **p = luaL_checkudata(L, 1, T_MT);
  if (!*p) luaL_error(L, "this test case has finished");
  return *p;
}

static void on_action(void *ud, json_t *a, const char *text) {
  (void)text;
  case_ctx_t *c = ud;
  json_array_append(c->actions, a);
}

static void on_violation(void *ud, const violation_t *v) {
  case_ctx_t *c = ud;
  json_array_append_new(c->violations, json_pack("{s:s, s:s, s:s, s:s}", "rule", v->rule, "member", v->member,
                                                 "action", v->action_id, "message", v->message));
}

/* The violations after the first `from`, one per line, for failure messages. */
static char *list_violations(json_t *violations, size_t from) {
  strbuf_t sb;
  sb_init(&sb);
  for (size_t i = from; i < json_array_size(violations); i++) {
    json_t *v = json_array_get(violations, i);
    sb_addf(&sb, "%sinvariant '%s', member %s, action %s: %s", i > from ? "\n" : "",
            json_string_value(json_object_get(v, "rule")), json_string_value(json_object_get(v, "member")),
            json_string_value(json_object_get(v, "action")), json_string_value(json_object_get(v, "message")));
  }
  return sb_take(&sb);
}

/* Move the clock to t, firing what is due on the way. */
static void advance_to(lua_State *L, case_ctx_t *c, int64_t t) {
  engine_t *e = c->e;
  if (c->started && t < e->now)
    luaL_error(L, "the clock cannot go back (now %I, asked %I)", (lua_Integer)e->now, (lua_Integer)t);
  c->started = 1;
  if (engine_run_until(e, t, 0) < 0) luaL_error(L, "database error: %s", engine_db_error(e));
}

/* t:at(time): set the clock (RFC 3339 or epoch seconds), firing timers on the way. */
static int t_at(lua_State *L) {
  case_ctx_t *c = check_t(L);
  advance_to(L, c, arg_time(L, 2));
  return 0;
}

/* t:advance(duration) */
static int t_advance(lua_State *L) {
  case_ctx_t *c = check_t(L);
  int64_t d = arg_duration(L, 2);
  if (!c->started) luaL_error(L, "set the clock with t:at(time) before advancing it");
  advance_to(L, c, c->e->now + d);
  return 0;
}

static int t_now(lua_State *L) {
  case_ctx_t *c = check_t(L);
  lua_pushinteger(L, c->e->now);
  return 1;
}

/* t:event(member, type [, data [, {id=, time=}]]): apply one event now (or at opts.time). */
static int t_event(lua_State *L) {
  case_ctx_t *c = check_t(L);
  const char *member = luaL_checkstring(L, 2);
  const char *type = luaL_checkstring(L, 3);
  if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
  const char *id = NULL;
  int64_t when = c->e->now;
  int has_time = c->started;
  if (lua_istable(L, 5)) {
    lua_getfield(L, 5, "id");
    id = lua_tostring(L, -1);
    lua_getfield(L, 5, "time");
    if (!lua_isnil(L, -1)) when = arg_time(L, -1), has_time = 1;
    lua_pop(L, 2);
  }
  if (!has_time) luaL_error(L, "set the clock with t:at(time) before the first event");
  advance_to(L, c, when > c->e->now || !c->started ? when : c->e->now);
  /* build the event as JSON and validate it like any input */
  char err[400];
  json_t *data = NULL;
  if (!lua_isnoneornil(L, 4) && !(data = jl_from_lua(L, 4, err, sizeof err)))
    return luaL_error(L, "t:event: data: %s", err);
  json_t *obj = json_pack("{s:s, s:s}", "type", type, "member", member);
  if (id) json_object_set_new(obj, "id", json_string(id));
  char tbuf[32];
  json_object_set_new(obj, "time", json_string(engine_fmt_time(c->e, when, tbuf)));
  if (data) json_object_set_new(obj, "data", json_is_array(data) && json_array_size(data) == 0 ? json_object() : data);
  event_t ev;
  int rc = event_from_json(obj, &ev, err, sizeof err);
  json_decref(obj);
  if (rc < 0) return luaL_error(L, "t:event: invalid event: %s", err);
  event_list_t one = {.v = &ev, .n = 1, .cap = 1};
  int result = EV_APPLIED;
  rc = ingest_batch(c->e, one.v, 1, &result);
  event_clear(&ev);
  if (rc < 0) return luaL_error(L, "database error: %s", engine_db_error(c->e));
  /* what the event made due now (hearth.emit, zero delays) happens now too */
  if (engine_run_until(c->e, c->e->now, 0) < 0) return luaL_error(L, "database error: %s", engine_db_error(c->e));
  lua_pushstring(L, result == EV_DUPLICATE ? "duplicate" : result == EV_FAILED ? "failed" : "applied");
  return 1;
}

/* Does action a match every field of the filter table at idx? */
static int matches(lua_State *L, json_t *a, int idx) {
  if (lua_isnoneornil(L, idx)) return 1;
  char err[200];
  json_t *f = jl_from_lua(L, idx, err, sizeof err);
  if (!f) return 0;
  int ok = 1;
  const char *k;
  json_t *v;
  json_object_foreach(f, k, v) {
    json_t *got = json_object_get(a, k);
    if (!got) got = json_object_get(json_object_get(a, "vars"), k);
    if (!json_equal(got, v)) {
      ok = 0;
      break;
    }
  }
  json_decref(f);
  return ok;
}

static void describe_filter(lua_State *L, int idx, luaL_Buffer *b) {
  char err[200];
  json_t *f = lua_isnoneornil(L, idx) ? NULL : jl_from_lua(L, idx, err, sizeof err);
  char *s = f ? json_dumps(f, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  luaL_addstring(b, s ? s : "{}");
  free(s);
  json_decref(f);
}

/* t:actions([filter]) -> list of matching actions (tables) */
static int t_actions(lua_State *L) {
  case_ctx_t *c = check_t(L);
  lua_newtable(L);
  size_t i;
  json_t *a;
  int n = 0;
  json_array_foreach(c->actions, i, a) {
    if (!matches(L, a, 2)) continue;
    jl_push(L, a);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

static int count_matching(lua_State *L, case_ctx_t *c, int idx) {
  size_t i;
  json_t *a;
  int n = 0;
  json_array_foreach(c->actions, i, a) n += matches(L, a, idx);
  return n;
}

/* List the recorded actions briefly, for failure messages. */
static void add_recorded(case_ctx_t *c, luaL_Buffer *b) {
  size_t i;
  json_t *a;
  luaL_addstring(b, "; recorded actions:");
  if (!json_array_size(c->actions)) luaL_addstring(b, " none");
  json_array_foreach(c->actions, i, a) {
    if (i >= 12) {
      luaL_addstring(b, "\n    ...");
      break;
    }
    luaL_addstring(b, "\n    ");
    const char *fields[] = {"id", "status", "template", "text", "tag", "time"};
    for (int k = 0; k < 6; k++) {
      json_t *v = json_object_get(a, fields[k]);
      if (!json_is_string(v)) continue;
      luaL_addstring(b, fields[k]);
      luaL_addchar(b, '=');
      luaL_addstring(b, json_string_value(v));
      luaL_addchar(b, ' ');
    }
  }
}

/* t:expect_action(filter [, n]): at least one (or exactly n) matching actions; returns the first. */
static int t_expect_action(lua_State *L) {
  case_ctx_t *c = check_t(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  int want = (int)luaL_optinteger(L, 3, -1);
  int n = count_matching(L, c, 2);
  if ((want < 0 && n == 0) || (want >= 0 && n != want)) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_where(L, 1);
    luaL_addvalue(&b);
    if (want < 0)
      luaL_addstring(&b, "expected an action matching ");
    else
      lua_pushfstring(L, "expected %d actions matching ", want), luaL_addvalue(&b);
    describe_filter(L, 2, &b);
    lua_pushfstring(L, ", found %d", n);
    luaL_addvalue(&b);
    add_recorded(c, &b);
    luaL_pushresult(&b);
    return lua_error(L);
  }
  size_t i;
  json_t *a;
  json_array_foreach(c->actions, i, a) {
    if (matches(L, a, 2)) {
      jl_push(L, a);
      return 1;
    }
  }
  return 0;
}

/* t:expect_no_action(filter) */
static int t_expect_no_action(lua_State *L) {
  lua_settop(L, 2);
  lua_pushinteger(L, 0);
  return t_expect_action(L);
}

/* t:member(id) -> the member as `hearth member` shows it, or nil */
static int t_member(lua_State *L) {
  case_ctx_t *c = check_t(L);
  const char *id = luaL_checkstring(L, 2);
  json_t *m = member_json(c->e->store, c->e->tz, id, 1000);
  if (!m) {
    lua_pushnil(L);
    return 1;
  }
  jl_push(L, m);
  json_decref(m);
  return 1;
}

static json_t *member_or_fail(lua_State *L, case_ctx_t *c, const char *id) {
  json_t *m = member_json(c->e->store, c->e->tz, id, 1);
  if (!m) {
    luaL_where(L, 1);
    luaL_error(L, "%sno member '%s'", lua_tostring(L, -1), id);
  }
  return m;
}

/* t:expect_points(id, n) */
static int t_expect_points(lua_State *L) {
  case_ctx_t *c = check_t(L);
  const char *id = luaL_checkstring(L, 2);
  lua_Integer want = luaL_checkinteger(L, 3);
  json_t *m = member_or_fail(L, c, id);
  json_int_t got = json_integer_value(json_object_get(m, "points"));
  json_decref(m);
  if (got != want) {
    luaL_where(L, 1);
    return luaL_error(L, "%s%s: expected %I points, has %I", lua_tostring(L, -1), id, want, (lua_Integer)got);
  }
  return 0;
}

static int has_tag(json_t *m, const char *tag) {
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(m, "tags"), i, v) {
    if (!strcmp(json_string_value(v), tag)) return 1;
  }
  return 0;
}

static int expect_tag(lua_State *L, int want) {
  case_ctx_t *c = check_t(L);
  const char *id = luaL_checkstring(L, 2);
  const char *tag = luaL_checkstring(L, 3);
  json_t *m = member_or_fail(L, c, id);
  int got = has_tag(m, tag);
  char *tags = json_dumps(json_object_get(m, "tags"), JSON_COMPACT);
  json_decref(m);
  if (got != want) {
    luaL_where(L, 1);
    lua_pushfstring(L, "%s%s: expected %s tag '%s'; tags: %s", lua_tostring(L, -1), id,
                    want ? "the" : "no", tag, tags ? tags : "[]");
    free(tags);
    return lua_error(L);
  }
  free(tags);
  return 0;
}

static int t_expect_tag(lua_State *L) { return expect_tag(L, 1); }
static int t_expect_no_tag(lua_State *L) { return expect_tag(L, 0); }

/* t:expect_attr(id, key, value) (value nil: attribute absent) */
static int t_expect_attr(lua_State *L) {
  case_ctx_t *c = check_t(L);
  const char *id = luaL_checkstring(L, 2);
  const char *key = luaL_checkstring(L, 3);
  char err[200];
  json_t *want = lua_isnoneornil(L, 4) ? NULL : jl_from_lua(L, 4, err, sizeof err);
  if (!lua_isnoneornil(L, 4) && !want) return luaL_error(L, "t:expect_attr: %s", err);
  json_t *m = member_json(c->e->store, c->e->tz, id, 1);
  json_t *got = m ? json_object_get(json_object_get(m, "attrs"), key) : NULL;
  int ok = want ? json_equal(got, want) : got == NULL;
  char *gs = got ? json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  char *ws = want ? json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  json_decref(m);
  json_decref(want);
  if (!ok) {
    luaL_where(L, 1);
    lua_pushfstring(L, "%s%s: expected %s = %s, got %s", lua_tostring(L, -1), id, key, ws ? ws : "nil", gs ? gs : "nil");
    free(gs);
    free(ws);
    return lua_error(L);
  }
  free(gs);
  free(ws);
  return 0;
}

/* t:eq(got, want [, what]): deep equality of JSON-able values */
static int t_eq(lua_State *L) {
  check_t(L);
  luaL_checkany(L, 3);
  char err[200];
  json_t *a = lua_isnil(L, 2) ? json_null() : jl_from_lua(L, 2, err, sizeof err);
  json_t *b = lua_isnil(L, 3) ? json_null() : jl_from_lua(L, 3, err, sizeof err);
  int ok = a && b && json_equal(a, b);
  char *as = a ? json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS) : NULL;
  char *bs = b ? json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS) : NULL;
  json_decref(a);
  json_decref(b);
  if (!ok) {
    luaL_where(L, 1);
    lua_pushfstring(L, "%s%s%sexpected %s, got %s", lua_tostring(L, -1), luaL_optstring(L, 4, ""),
                    lua_isnoneornil(L, 4) ? "" : ": ", bs ? bs : "?", as ? as : "?");
    free(as);
    free(bs);
    return lua_error(L);
  }
  free(as);
  free(bs);
  return 0;
}

/* Protected body for t:eval: run a chunk in the engine's state, JSON its result. */
typedef struct {
  const char *code;
  json_t *result;
  char err[300];
} eval_t;

static int eval_body(lua_State *L) {
  eval_t *ev = lua_touserdata(L, 1);
  if (luaL_loadbufferx(L, ev->code, strlen(ev->code), "=t:eval", "t") != LUA_OK) return lua_error(L);
  luahost_push_env(L);
  lua_setupvalue(L, -2, 1);
  lua_call(L, 0, 1);
  if (!lua_isnil(L, -1)) ev->result = jl_from_lua(L, -1, ev->err, sizeof ev->err);
  return 0;
}

/* t:eval(code) -> the JSON-able value the chunk returns, evaluated in the campaign's
 * Lua state (e.g. "return require('referral').k_factor('invite')"). */
static int t_eval(lua_State *L) {
  case_ctx_t *c = check_t(L);
  eval_t ev = {.code = luaL_checkstring(L, 2)};
  char *err = NULL;
  scripts_t *s = c->e->scripts;
  if (luahost_call(s->host, eval_body, &ev, &err) < 0) {
    lua_pushstring(L, err);
    free(err);
    json_decref(ev.result);
    return lua_error(L);
  }
  if (!ev.result) {
    lua_pushnil(L);
    return 1;
  }
  json_t *r = ev.result;
  jl_push(L, r);
  json_decref(r);
  return 1;
}

/* t:expect_failures(n): exactly n handler failures so far (they fail a case otherwise). */
static int t_expect_failures(lua_State *L) {
  case_ctx_t *c = check_t(L);
  lua_Integer want = luaL_checkinteger(L, 2);
  lua_Integer got = (lua_Integer)c->e->stats.handler_errors;
  if (got != want) {
    luaL_where(L, 1);
    return luaL_error(L, "%sexpected %I handler failures, got %I", lua_tostring(L, -1), want, got);
  }
  c->seen_failures = c->e->stats.handler_errors;
  return 0;
}

/* t:violations() -> every invariant violation so far, in order: {rule=, member=, action=, message=}. */
static int t_violations(lua_State *L) {
  case_ctx_t *c = check_t(L);
  jl_push(L, c->violations);
  return 1;
}

/* t:expect_violations(n): exactly n invariant violations so far (they fail a case otherwise). */
static int t_expect_violations(lua_State *L) {
  case_ctx_t *c = check_t(L);
  lua_Integer want = luaL_checkinteger(L, 2);
  lua_Integer got = (lua_Integer)json_array_size(c->violations);
  if (got != want) {
    char *list = list_violations(c->violations, 0);
    luaL_where(L, 1);
    lua_pushfstring(L, "%sexpected %I invariant violations, got %I%s%s", lua_tostring(L, -1), want, got,
                    got ? ":\n" : "", list ? list : "");
    free(list);
    return lua_error(L);
  }
  c->seen_violations = json_array_size(c->violations);
  return 0;
}

/* t:counter(metric [, {campaign=, step=, variant=}]) -> the funnel counter (hearth.count),
 * summed over what is not given. */
static int t_counter(lua_State *L) {
  case_ctx_t *c = check_t(L);
  const char *metric = luaL_checkstring(L, 2);
  const char *campaign = NULL, *step = NULL, *variant = NULL;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "campaign");
    campaign = lua_tostring(L, -1);
    lua_getfield(L, 3, "step");
    step = lua_tostring(L, -1);
    lua_getfield(L, 3, "variant");
    variant = lua_tostring(L, -1);
  }
  funnel_key_t key = {.metric = metric, .campaign = campaign, .step = step, .variant = variant};
  int64_t n;
  if (store_funnel_total(c->e->store, &key, &n) < 0)
    return luaL_error(L, "database error: %s", store_errmsg(c->e->store));
  lua_pushinteger(L, n);
  return 1;
}

/* t:staff() -> { [staff] = {members, open_tasks, overdue, done, done_late} }, overdue
 * judged at the case's virtual clock. */
static int t_staff(lua_State *L) {
  case_ctx_t *c = check_t(L);
  json_t *r = staff_report_json(c->e->store, c->e->tz, c->e->now);
  if (!r) return luaL_error(L, "database error: %s", store_errmsg(c->e->store));
  json_t *by = json_object(), *row;
  size_t i;
  json_array_foreach(json_object_get(r, "staff"), i, row) {
    json_object_set(by, json_string_value(json_object_get(row, "staff")), row);
    json_object_del(row, "staff");
  }
  json_decref(r);
  jl_push(L, by);
  json_decref(by);
  return 1;
}

static const luaL_Reg t_methods[] = {
    {"staff", t_staff},
    {"counter", t_counter},
    {"at", t_at}, {"advance", t_advance}, {"now", t_now}, {"event", t_event},
    {"actions", t_actions}, {"expect_action", t_expect_action},
    {"expect_no_action", t_expect_no_action}, {"member", t_member},
    {"expect_points", t_expect_points}, {"expect_tag", t_expect_tag},
    {"expect_no_tag", t_expect_no_tag}, {"expect_attr", t_expect_attr}, {"eq", t_eq},
    {"eval", t_eval}, {"expect_failures", t_expect_failures}, {"violations", t_violations},
    {"expect_violations", t_expect_violations}, {NULL, NULL}};

static void install_test_api(lua_State *L, void *ud) {
  (void)ud;
  lua_pushcfunction(L, l_test);
  lua_setfield(L, -2, "test");
  lua_pushcfunction(L, l_use);
  lua_setfield(L, -2, "use");
  luaL_newmetatable(L, T_MT);
  luaL_newlib(L, t_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/* ---- running ---- */

typedef struct {
  case_ctx_t *ctx;
  int ref;
} run_args_t;

static int run_case_body(lua_State *L) {
  run_args_t *a = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->ref);
  case_ctx_t **p = lua_newuserdatauv(L, sizeof *p, 0);
  *p = a->ctx;
  luaL_setmetatable(L, T_MT);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "hearth.test.t");
  lua_call(L, 1, 0);
  return 0;
}

/* Make the stale `t` handle refuse further use. */
static void retire_t(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, "hearth.test.t") == LUA_TUSERDATA) {
    case_ctx_t **p = lua_touserdata(L, -1);
    *p = NULL;
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "hearth.test.t");
}

/* The error of the first failed event (malloc'd; NULL when none), or why it cannot be read. */
static char *first_failure(engine_t *e) {
  char *msg;
  if (store_first_failure(e->store, &msg) < 0) return xasprintf("(cannot read it: %s)", store_errmsg(e->store));
  return msg;
}

static void report(test_run_t *r, const char *path, const char *name, const char *err) {
  if (!err) {
    r->passed++;
    printf("ok   %s: %s\n", path, name);
    return;
  }
  r->failed++;
  printf("FAIL %s: %s\n", path, name);
  /* indent the message */
  for (const char *p = err; *p;) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    printf("     %.*s\n", (int)n, p);
    p = nl ? nl + 1 : p + n;
  }
}

static void run_case(test_file_t *tf, luahost_t *h, test_case_t *tc) {
  engine_opts_t eo = {.scripts_dir = tf->dir, .stdlib_dir = tf->run->stdlib_dir, .tz_name = tf->run->tz_name,
                      .memory_db = 1, .script_files = (const char *const *)tf->scripts};
  char *err = NULL;
  engine_t *e = engine_open(&eo, &err);
  if (!e) {
    char *msg = xasprintf("cannot load the scripts under test:\n%s", err);
    report(tf->run, tf->path, tc->name, msg);
    free(msg);
    free(err);
    return;
  }
  case_ctx_t ctx = {.tf = tf, .e = e, .actions = json_array(), .violations = json_array()};
  engine_use_virtual_clock(e);
  e->on_action = on_action;
  e->on_action_ud = &ctx;
  e->on_violation = on_violation;
  e->on_violation_ud = &ctx;
  run_args_t a = {.ctx = &ctx, .ref = tc->ref};
  int rc = luahost_call(h, run_case_body, &a, &err);
  retire_t(h->L);
  if (rc == 0 && e->stats.handler_errors > ctx.seen_failures) {
    char *f = first_failure(e);
    err = xasprintf("a campaign handler failed (use t:expect_failures(n) if that is expected):\n%s", f ? f : "?");
    free(f);
  }
  if (rc == 0 && !err && json_array_size(ctx.violations) > ctx.seen_violations) {
    char *list = list_violations(ctx.violations, ctx.seen_violations);
    err = xasprintf("an invariant was violated (use t:expect_violations(n) if that is expected):\n%s", list);
    free(list);
  }
  report(tf->run, tf->path, tc->name, err);
  free(err);
  json_decref(ctx.actions);
  json_decref(ctx.violations);
  engine_close(e);
}

/* Default scripts: <stem without _test>.lua beside the test, else the whole folder. */
static void default_scripts(test_file_t *tf) {
  const char *base = strrchr(tf->path, '/');
  base = base ? base + 1 : tf->path;
  size_t n = strlen(base);
  char *candidate = xasprintf("%s/%.*s.lua", tf->dir, (int)(n - 9), base);
  struct stat sb;
  if (stat(candidate, &sb) == 0) {
    tf->scripts = xcalloc(2, sizeof *tf->scripts);
    tf->scripts[0] = candidate;
    return;
  }
  free(candidate);
}

void test_run_file(test_run_t *r, const char *path) {
  test_file_t tf = {.run = r, .path = path};
  const char *slash = strrchr(path, '/');
  tf.dir = slash ? xstrndup(path, (size_t)(slash - path)) : xstrdup(".");
  budget_t lim;
  budget_default(&lim);
  lim.max_instructions = 2000000000L; /* a test drives whole journeys */
  lim.max_call_ms = 120000;
  luahost_t *h = luahost_new(&lim, r->stdlib_dir, tf.dir, install_test_api, &tf);
  if (!h) {
    report(r, path, "(load)", "cannot create a Lua state");
    free(tf.dir);
    return;
  }
  h->owner = &tf;
  strbuf_t errors;
  sb_init(&errors);
  if (luahost_load_file(h, path, &errors) < 0) {
    report(r, path, "(load)", errors.data);
  } else {
    if (!tf.scripts) default_scripts(&tf);
    if (tf.ncases == 0) report(r, path, "(load)", "no test(...) cases declared");
    for (int i = 0; i < tf.ncases; i++) run_case(&tf, h, &tf.cases[i]);
  }
  sb_free(&errors);
  luahost_free(h);
  for (int i = 0; i < tf.ncases; i++) free(tf.cases[i].name);
  free(tf.cases);
  free_scripts(&tf);
  free(tf.dir);
}
