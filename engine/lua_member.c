/* lua_member: the member handle `m` a handler receives. Fields (id, joined_at,
 * last_active_at, orders, spend, points, tz) and methods: get/set, tag/untag/has,
 * add_points, redeem, send/task/webhook (actions with stable ids), after/at/cancel (durable
 * timers), local_date/local_time (her own clock: engine_member_tz). A handle is valid only during the handler call it was made for. Every method
 * checks its arguments before it allocates anything in C, so a Lua error never leaks,
 * and then asks the engine (engine.h) for the change: nothing here writes state. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "json_lua.h"
#include "lua_api.h"

#define MEMBER_MT "hearth.member"
#define MAX_KEY 128

typedef struct {
  unsigned gen;
} mhandle_t;

/* The call behind the handle at index 1, or a Lua error when the handle is stale. */
static engine_call_t *check_member(lua_State *L) {
  mhandle_t *h = luaL_checkudata(L, 1, MEMBER_MT);
  scripts_t *s = scripts_of(L);
  if (!s->cur || h->gen != s->gen)
    luaL_error(L, "member handle used outside the handler it was given to");
  return s->cur;
}

const member_t *member_handle_arg(lua_State *L, int idx) {
  mhandle_t *h = luaL_testudata(L, idx, MEMBER_MT);
  if (!h) return NULL;
  scripts_t *s = scripts_of(L);
  if (!s->cur || h->gen != s->gen) luaL_error(L, "member handle used outside the handler it was given to");
  return s->cur->m;
}

static const char *check_name(lua_State *L, int idx, const char *what) {
  size_t len;
  const char *k = luaL_checklstring(L, idx, &len);
  if (len == 0 || len > MAX_KEY)
    luaL_argerror(L, idx, lua_pushfstring(L, "%s must be 1-%d bytes", what, MAX_KEY));
  return k;
}

static void push_time(lua_State *L, int64_t t) {
  if (t == NO_TIME)
    lua_pushnil(L);
  else
    lua_pushinteger(L, t);
}

static int m_index(lua_State *L) {
  /* A method first, without checking the handle: each method checks the one it is
   * called on, and Lua calls __index only on member handles (scripts cannot reach the
   * metatable: its __metatable hides it). */
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  engine_call_t *d = check_member(L);
  member_t *m = d->m;
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "id") == 0) lua_pushstring(L, m->id);
  else if (strcmp(k, "joined_at") == 0) push_time(L, m->joined_at);
  else if (strcmp(k, "last_active_at") == 0) push_time(L, m->last_active_at);
  else if (strcmp(k, "orders") == 0) lua_pushinteger(L, m->orders);
  else if (strcmp(k, "spend") == 0) lua_pushnumber(L, m->spend);
  else if (strcmp(k, "points") == 0) lua_pushinteger(L, m->points);
  else if (strcmp(k, "tz") == 0) lua_pushstring(L, tz_name(engine_member_tz(scripts_of(L)->engine, m)));
  else lua_pushnil(L);
  return 1;
}

static int m_newindex(lua_State *L) {
  return luaL_error(L, "member fields are read-only; use m:set(key, value) for attributes");
}

static int m_tostring(lua_State *L) {
  mhandle_t *h = luaL_checkudata(L, 1, MEMBER_MT);
  scripts_t *s = scripts_of(L);
  if (s->cur && h->gen == s->gen)
    lua_pushfstring(L, "member(%s)", s->cur->m->id);
  else
    lua_pushliteral(L, "member(stale)");
  return 1;
}

/* The Lua error for a change that would take a member past the size cap. */
static int too_big(lua_State *L, engine_t *e, const char *fn, const char *key) {
  return luaL_error(L, "%s('%s'): member would hold more than %d bytes of attributes and tags "
                    "(--max-member-bytes); nothing was stored", fn, key, (int)e->max_member_bytes);
}

/* m:get(key) */
static int m_get(lua_State *L) {
  engine_call_t *d = check_member(L);
  const char *k = check_name(L, 2, "attribute name");
  jl_push(L, json_object_get(member_attrs(d->m), k));
  return 1;
}

/* m:set(key, value): value nil removes the attribute. */
static int m_set(lua_State *L) {
  engine_call_t *d = check_member(L);
  const char *k = check_name(L, 2, "attribute name");
  luaL_checkany(L, 3);
  json_t *v = lua_isnil(L, 3) ? NULL : arg_json(L, 3, "m:set");
  engine_t *e = scripts_of(L)->engine;
  int rc = engine_set_attr(e, d, k, v);
  if (rc == MEMBER_TOO_BIG) return too_big(L, e, "m:set", k);
  if (rc < 0) return raise_db_error(L);
  return 0;
}

/* ---- her own clock ---- */

/* m:local_date([t]) -> hearth.local_date(t) in the member's zone (t defaults to now). */
static int m_local_date(lua_State *L) {
  engine_call_t *d = check_member(L);
  engine_t *e = scripts_of(L)->engine;
  int64_t t = lua_isnoneornil(L, 2) ? e->now : arg_time(L, 2);
  push_local_date(L, engine_member_tz(e, d->m), t);
  return 1;
}

/* m:local_time(year, month, day [, hour, min, sec]) -> that wall time in the member's zone. */
static int m_local_time(lua_State *L) {
  engine_call_t *d = check_member(L);
  const tz_t *tz = engine_member_tz(scripts_of(L)->engine, d->m);
  lua_pushinteger(L, arg_local_time(L, 2, tz));
  return 1;
}

/* ---- actions ---- */

typedef struct {
  const char *key, *step, *campaign, *channel, *status_name;
  int status;
  json_t *reason;   /* why a status other than queued (read last: it allocates) */
} action_opts_t;

/* Raise for an option the function does not know (a typo such as `categroy` would
 * otherwise pass silently). known: NULL-terminated. */
static void check_known(lua_State *L, int opts, const char *fn, const char *const *known) {
  if (lua_isnoneornil(L, opts)) return;
  luaL_checktype(L, opts, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, opts)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    int ok = 0;
    for (int i = 0; k && known[i] && !ok; i++) ok = !strcmp(k, known[i]);
    if (!ok) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (int i = 0; known[i]; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addstring(&b, known[i]);
      }
      luaL_pushresult(&b);
      luaL_error(L, "%s: unknown option '%s' (known: %s)", fn, k ? k : luaL_typename(L, -2), lua_tostring(L, -1));
    }
  }
}

static const char *opt_string(lua_State *L, int opts, const char *name) {
  if (lua_isnoneornil(L, opts)) return NULL;
  lua_getfield(L, opts, name);
  const char *v = NULL;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "option '%s' must be a string", name);
    v = lua_tostring(L, -1);
  }
  lua_pop(L, 1); /* still referenced by the options table */
  return v;
}

static const char *default_channel(scripts_t *s) {
  return s->nchannels ? s->channels[0].name : "log";
}

/* tag, untag and add_points change the member at once: a status other than queued
 * would record something that did not happen. */
static void refuse_status(lua_State *L, const action_opts_t *o, const char *fn) {
  if (o->status != AS_QUEUED)
    luaL_error(L, "%s: option 'status' is for send, task and webhook (this change applies at once)", fn);
}

/* Read the options every action kind shares. Raises on bad values; allocates nothing. */
static void check_reason(lua_State *L, int opts, const action_opts_t *o);

static void read_action_opts(lua_State *L, int opts, action_opts_t *o) {
  if (!lua_isnoneornil(L, opts)) luaL_checktype(L, opts, LUA_TTABLE);
  o->key = opt_string(L, opts, "key");
  o->step = opt_string(L, opts, "step");
  o->campaign = opt_string(L, opts, "campaign");
  o->channel = opt_string(L, opts, "channel");
  o->status_name = opt_string(L, opts, "status");
  o->status = AS_QUEUED;
  if (o->status_name && (o->status = action_status_parse(o->status_name)) < 0)
    luaL_error(L, "option 'status' must be queued, capped, suppressed, deferred, skipped or limited");
  scripts_t *s = scripts_of(L);
  if (o->channel) {
    int known = strcmp(o->channel, "log") == 0 && s->nchannels == 0;
    for (int i = 0; i < s->nchannels && !known; i++) known = strcmp(s->channels[i].name, o->channel) == 0;
    if (!known) luaL_error(L, "unknown channel '%s' (declare it with hearth.channel)", o->channel);
  } else {
    o->channel = default_channel(s);
  }
  if (o->key && (!*o->key || strlen(o->key) > 256)) luaL_error(L, "option 'key' must be 1-256 bytes");
  o->reason = NULL;
  check_reason(L, opts, o);
}

/* Check the `reason` option (a table, with a status other than queued); allocates nothing. */
static void check_reason(lua_State *L, int opts, const action_opts_t *o) {
  if (lua_isnoneornil(L, opts)) return;
  lua_getfield(L, opts, "reason");
  int t = lua_type(L, -1);
  lua_pop(L, 1);
  if (t == LUA_TNIL) return;
  if (t != LUA_TTABLE) luaL_error(L, "option 'reason' must be a table such as { rule = \"when\" }");
  if (o->status == AS_QUEUED) luaL_error(L, "option 'reason' goes with a status other than queued");
}

/* The action a script asked for, from its options; `fields` is stolen. */
static action_spec_t spec_of(const char *kind, const action_opts_t *o, json_t *fields) {
  return (action_spec_t){.kind = kind, .key = o->key, .campaign = o->campaign, .step = o->step,
                         .channel = o->channel, .status = o->status, .fields = fields, .reason = o->reason};
}

/* Record the action; `fields` is stolen. Pushes the resulting status and whether it was
 * recorded now (false: the key was seen before and nothing changed). */
/* Stop the handler: the action's id was recorded before (engine_act's refusal). */
static int raise_repeated(lua_State *L, engine_call_t *d) {
  lua_pushstring(L, d->refusal ? d->refusal : "action recorded before");
  free(d->refusal);
  d->refusal = NULL;
  return lua_error(L);
}

static int record_action(lua_State *L, engine_call_t *d, const char *kind, const action_opts_t *o,
                         json_t *fields) {
  action_spec_t a = spec_of(kind, o, fields);
  int recorded;
  int status = engine_act(scripts_of(L)->engine, d, &a, &recorded);
  if (status == ENGINE_ACT_REPEATED) return raise_repeated(L, d);
  if (status < 0) return raise_db_error(L);
  lua_pushstring(L, action_status_names[status]);
  lua_pushboolean(L, recorded);
  return 2;
}

static json_t *opt_json(lua_State *L, int opts, const char *name, char *err, size_t errlen, int *bad) {
  *bad = 0;
  if (lua_isnoneornil(L, opts)) return NULL;
  lua_getfield(L, opts, name);
  json_t *v = NULL;
  if (!lua_isnil(L, -1)) {
    v = jl_from_lua(L, -1, err, errlen);
    if (!v) *bad = 1;
  }
  lua_pop(L, 1);
  return v;
}

/* m:send(template, opts) -> status, recorded. opts: vars, channel, category ("marketing" or
 * "service"), key, step, campaign, status. */
static const char *const SEND_OPTIONS[] = {"key", "step", "campaign", "channel", "status", "reason",
                                            "category", "vars", "staff", NULL};
static const char *const TASK_OPTIONS[] = {"key", "step", "campaign", "channel", "status", "reason",
                                           "vars", "staff", "due", NULL};
static const char *const WEBHOOK_OPTIONS[] = {"key", "step", "campaign", "channel", "status", "reason", NULL};
static const char *const CHANGE_OPTIONS[] = {"key", "step", "campaign", "channel", "status", NULL};
static const char *const POINTS_OPTIONS[] = {"key", "step", "campaign", "channel", "status", "expire", NULL};
static const char *const REDEEM_OPTIONS[] = {"key", "step", "campaign", "channel", "qty", NULL};

/* m:send(template, opts) -> status, recorded. opts: vars, channel, category ("marketing",
 * the default, or "service"), staff (for channel quotas; default her "staff" attribute),
 * key, step, campaign, status, reason. Every marketing send is judged by the engine's
 * restraint (restraint.h); only category "service" passes it. */
static int m_send(lua_State *L) {
  engine_call_t *d = check_member(L);
  const char *tpl = check_name(L, 2, "template");
  check_known(L, 3, "m:send", SEND_OPTIONS);
  action_opts_t o;
  read_action_opts(L, 3, &o);
  const char *category = opt_string(L, 3, "category");
  if (category && strcmp(category, "marketing") != 0 && strcmp(category, "service") != 0)
    luaL_error(L, "option 'category' must be \"marketing\" or \"service\"");
  const char *staff = opt_string(L, 3, "staff");
  char err[256];
  int bad;
  json_t *vars = opt_json(L, 3, "vars", err, sizeof err, &bad);
  if (bad) luaL_error(L, "m:send: vars: %s", err);
  json_t *reason = opt_json(L, 3, "reason", err, sizeof err, &bad);
  if (bad) {
    json_decref(vars);
    luaL_error(L, "m:send: reason: %s", err);
  }
  json_t *f = json_object();
  json_object_set_new(f, "template", json_string(tpl));
  json_object_set_new(f, "channel", json_string(o.channel));
  json_object_set_new(f, "category", json_string(category ? category : "marketing"));
  json_object_set_new(f, "vars", vars ? vars : json_object());
  if (staff) json_object_set_new(f, "staff", json_string(staff));
  o.reason = reason;
  return record_action(L, d, "send", &o, f);
}

/* The owner of a task: opts.staff, else her "staff" attribute, else hearth.staff's
 * fallback; NULL when none of them names one. */
static const char *task_owner(lua_State *L, const member_t *m, const char *staff) {
  if (staff) return staff;
  json_t *v = json_object_get(member_attrs((member_t *)m), "staff");
  if (json_is_string(v) && json_string_length(v) > 0) return json_string_value(v);
  return staff_task_fallback(scripts_of(L));
}

/* m:task(text, opts) -> status, recorded. opts: staff (default: the member's "staff"
 * attribute, then hearth.staff's fallback), due (a duration after now; default
 * hearth.staff's task_due, else 1d), vars, key, step, campaign, status, channel. A task
 * nobody owns is recorded `skipped` with reason {rule = "no_owner"}. */
static int m_task(lua_State *L) {
  engine_call_t *d = check_member(L);
  const char *text = luaL_checkstring(L, 2);
  check_known(L, 3, "m:task", TASK_OPTIONS);
  action_opts_t o;
  read_action_opts(L, 3, &o);
  const char *staff = opt_string(L, 3, "staff");
  int64_t due_after = staff_task_due(scripts_of(L));
  if (!lua_isnoneornil(L, 3)) {
    lua_getfield(L, 3, "due");
    if (!lua_isnil(L, -1)) due_after = arg_duration(L, lua_gettop(L));
    lua_pop(L, 1);
    if (due_after <= 0) luaL_error(L, "m:task: option 'due' must be a positive duration");
  }
  const char *owner = task_owner(L, d->m, staff);
  char err[256];
  int bad;
  json_t *vars = opt_json(L, 3, "vars", err, sizeof err, &bad);
  if (bad) luaL_error(L, "m:task: vars: %s", err);
  o.reason = opt_json(L, 3, "reason", err, sizeof err, &bad);
  if (bad) {
    json_decref(vars);
    luaL_error(L, "m:task: reason: %s", err);
  }
  if (!owner && o.status == AS_QUEUED) { /* nobody would do it: recorded, not given to nobody */
    o.status = AS_SKIPPED;
    o.reason = json_pack("{s:s}", "rule", "no_owner");
  }
  engine_t *e = scripts_of(L)->engine;
  char tbuf[32];
  json_t *f = json_object();
  json_object_set_new(f, "text", json_string(text));
  json_object_set_new(f, "staff", owner ? json_string(owner) : json_null());
  json_object_set_new(f, "due", json_string(engine_fmt_time(e, e->now + due_after, tbuf)));
  json_object_set_new(f, "channel", json_string(o.channel));
  json_object_set_new(f, "vars", vars ? vars : json_object());
  action_spec_t a = spec_of("task", &o, f);
  a.task_due = e->now + due_after;
  int recorded;
  int status = engine_act(e, d, &a, &recorded);
  if (status == ENGINE_ACT_REPEATED) return raise_repeated(L, d);
  if (status < 0) return raise_db_error(L);
  lua_pushstring(L, action_status_names[status]);
  lua_pushboolean(L, recorded);
  return 2;
}

/* m:webhook(payload, opts) -> status, recorded */
static int m_webhook(lua_State *L) {
  engine_call_t *d = check_member(L);
  luaL_checkany(L, 2);
  check_known(L, 3, "m:webhook", WEBHOOK_OPTIONS);
  action_opts_t o;
  read_action_opts(L, 3, &o);
  char err[256];
  int bad;
  o.reason = opt_json(L, 3, "reason", err, sizeof err, &bad);
  if (bad) luaL_error(L, "m:webhook: reason: %s", err);
  char perr[256];
  json_t *payload = jl_from_lua(L, 2, perr, sizeof perr);
  if (!payload) {
    json_decref(o.reason);
    luaL_error(L, "m:webhook: %s", perr);
  }
  json_t *f = json_object();
  json_object_set_new(f, "channel", json_string(o.channel));
  json_object_set_new(f, "payload", payload);
  return record_action(L, d, "webhook", &o, f);
}

/* ---- tags ---- */

static int change_tag(lua_State *L, const char *kind) {
  engine_call_t *d = check_member(L);
  const char *t = check_name(L, 2, "tag");
  check_known(L, 3, kind[0] == 't' ? "m:tag" : "m:untag", CHANGE_OPTIONS);
  action_opts_t o;
  read_action_opts(L, 3, &o);
  refuse_status(L, &o, kind[0] == 't' ? "m:tag" : "m:untag");
  json_t *f = json_object();
  json_object_set_new(f, "tag", json_string(t));
  action_spec_t a = spec_of(kind, &o, f);
  engine_t *e = scripts_of(L)->engine;
  int rc = kind[0] == 't' ? engine_tag(e, d, t, &a) : engine_untag(e, d, t, &a);
  if (rc == MEMBER_TOO_BIG) return too_big(L, e, "m:tag", t);
  if (rc == ENGINE_ACT_REPEATED) return raise_repeated(L, d);
  if (rc < 0) return raise_db_error(L);
  lua_pushboolean(L, rc);
  return 1;
}

/* m:tag(t [, opts]) -> true when the tag was added, false when the member had it. */
static int m_tag(lua_State *L) { return change_tag(L, "tag"); }

/* m:untag(t [, opts]) -> true when the tag was removed. */
static int m_untag(lua_State *L) { return change_tag(L, "untag"); }

static int m_has(lua_State *L) {
  engine_call_t *d = check_member(L);
  const char *t = check_name(L, 2, "tag");
  lua_pushboolean(L, json_object_get(member_tags(d->m), t) != NULL);
  return 1;
}

/* m:tags() -> sorted array of the member's tags */
static int m_tags(lua_State *L) {
  engine_call_t *d = check_member(L);
  lua_createtable(L, (int)json_object_size(member_tags(d->m)), 0);
  const char *k;
  json_t *v;
  int i = 0;
  json_object_foreach(member_tags(d->m), k, v) {
    (void)v;
    lua_pushstring(L, k);
    lua_rawseti(L, -2, ++i);
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "hearth.sort");
  if (lua_isfunction(L, -1)) {
    lua_pushvalue(L, -2);
    lua_call(L, 1, 0);
  } else {
    lua_pop(L, 1);
  }
  return 1;
}

/* ---- points ---- */

/* m:add_points(n, reason [, opts]) -> new balance. Never below zero: raises instead.
 * With opts.key, a key already recorded changes nothing (the grant is idempotent).
 * opts.expire (grants only): when this grant's lot expires, instead of the campaign's
 * hearth.points_rule (see arg_expiry). */
static int m_add_points(lua_State *L) {
  engine_call_t *d = check_member(L);
  lua_Integer n = luaL_checkinteger(L, 2);
  const char *reason = luaL_checkstring(L, 3);
  if (!*reason) luaL_argerror(L, 3, "a reason is required");
  if (n == 0) luaL_argerror(L, 2, "points must not be 0");
  check_known(L, 4, "m:add_points", POINTS_OPTIONS);
  action_opts_t o;
  read_action_opts(L, 4, &o);
  refuse_status(L, &o, "m:add_points");
  expiry_t x, *expire = NULL;
  if (!lua_isnoneornil(L, 4)) {
    lua_getfield(L, 4, "expire");
    if (!lua_isnil(L, -1)) {
      if (n < 0) luaL_error(L, "m:add_points: option 'expire' is for grants (a spend takes the soonest to expire)");
      x = arg_expiry(L, lua_gettop(L));
      expire = &x;
    }
    lua_pop(L, 1);
  }
  member_t *m = d->m;
  action_spec_t a = spec_of("points", &o, NULL);
  int rc = engine_add_points(scripts_of(L)->engine, d, n, reason, expire, &a);
  if (rc == POINTS_BELOW_ZERO)
    return luaL_error(L, "add_points: balance %I would go below zero (%I)", (lua_Integer)m->points, n);
  if (rc == POINTS_OVERFLOW) return luaL_error(L, "add_points: balance overflow");
  if (rc == ENGINE_ACT_REPEATED) return raise_repeated(L, d);
  if (rc < 0) return raise_db_error(L);
  lua_pushinteger(L, m->points);
  return 1;
}

/* m:redeem(item [, opts]) -> status, recorded. opts: qty (default 1), key (the stable
 * id: the same key again changes nothing and returns the earlier status), step,
 * campaign, channel. `limited` when the item's window, stock, per-member limit or her
 * balance does not allow it (the action's reason names the rule and its numbers). */
static int m_redeem(lua_State *L) {
  engine_call_t *d = check_member(L);
  const char *name = check_name(L, 2, "item");
  check_known(L, 3, "m:redeem", REDEEM_OPTIONS);
  const item_decl_t *item = scripts_item(scripts_of(L), name);
  if (!item) return luaL_error(L, "m:redeem: unknown item '%s' (declare it with hearth.item)", name);
  lua_Integer qty = 1;
  if (!lua_isnoneornil(L, 3)) {
    lua_getfield(L, 3, "qty");
    if (!lua_isnil(L, -1)) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > 1000000)
        luaL_error(L, "m:redeem: option 'qty' must be an integer 1-1000000");
      qty = lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
  }
  action_opts_t o;
  read_action_opts(L, 3, &o);
  action_spec_t a = spec_of("redeem", &o, NULL);
  int recorded;
  int status = engine_redeem(scripts_of(L)->engine, d, item, qty, &a, &recorded);
  if (status < 0) return raise_db_error(L);
  lua_pushstring(L, action_status_names[status]);
  lua_pushboolean(L, recorded);
  return 2;
}

/* ---- timers ---- */

static int add_timer(lua_State *L, engine_call_t *d, int64_t due, const char *type, int data_idx) {
  char *data = NULL;
  if (!lua_isnoneornil(L, data_idx)) {
    luaL_checktype(L, data_idx, LUA_TTABLE);
    json_t *j = arg_json(L, data_idx, "timer data");
    data = json_dumps(j, JSON_COMPACT);
    json_decref(j);
  }
  int rc = engine_set_timer(scripts_of(L)->engine, d, due, type, data);
  free(data);
  if (rc < 0) return raise_db_error(L);
  lua_pushinteger(L, due);
  return 1;
}

static const char *check_timer_type(lua_State *L, int idx) {
  const char *type = luaL_checkstring(L, idx);
  if (!event_type_valid(type))
    luaL_argerror(L, idx, lua_pushfstring(L, "timer type must match [a-z0-9_.]{1,64}, got '%s'", type));
  return type;
}

/* m:after(delay, type [, data]) -> due time */
static int m_after(lua_State *L) {
  engine_call_t *d = check_member(L);
  int64_t delay = arg_duration(L, 2);
  if (delay < 0) luaL_argerror(L, 2, "delay must not be negative");
  const char *type = check_timer_type(L, 3);
  return add_timer(L, d, scripts_of(L)->engine->now + delay, type, 4);
}

/* m:at(time, type [, data]) -> due time (a time in the past fires at once) */
static int m_at(lua_State *L) {
  engine_call_t *d = check_member(L);
  int64_t t = arg_time(L, 2);
  const char *type = check_timer_type(L, 3);
  return add_timer(L, d, t, type, 4);
}

/* m:cancel(type): every pending timer of that type for this member will not fire. */
static int m_cancel(lua_State *L) {
  engine_call_t *d = check_member(L);
  const char *type = check_timer_type(L, 2);
  if (engine_cancel_timers(scripts_of(L)->engine, d, type) < 0) return raise_db_error(L);
  return 0;
}

static const luaL_Reg methods[] = {
    {"get", m_get}, {"set", m_set}, {"tag", m_tag}, {"untag", m_untag}, {"has", m_has},
    {"tags", m_tags}, {"add_points", m_add_points}, {"redeem", m_redeem}, {"send", m_send}, {"task", m_task},
    {"webhook", m_webhook}, {"after", m_after}, {"at", m_at}, {"cancel", m_cancel},
    {"local_date", m_local_date}, {"local_time", m_local_time}, {"assign_owner", m_assign_owner},
    {NULL, NULL}};

void member_api_install(lua_State *L) {
  luaL_newmetatable(L, MEMBER_MT);
  luaL_newlib(L, methods);
  lua_pushcclosure(L, m_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, m_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, m_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "hearth.member");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
  lua_getglobal(L, "table"); /* keep table.sort for m:tags() even if a script replaces it */
  lua_getfield(L, -1, "sort");
  lua_setfield(L, LUA_REGISTRYINDEX, "hearth.sort");
  lua_pop(L, 1);
}

void member_api_push(lua_State *L, scripts_t *s) {
  mhandle_t *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->gen = s->gen;
  luaL_setmetatable(L, MEMBER_MT);
}
