/* lua_api: script sets, the `hearth` table and running one handler (see lua_api.h). */
#include "lua_api.h"

#include <assert.h>
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json_lua.h"
#include "lift.h"
#include "log.h"

scripts_t *scripts_of(lua_State *L) { return luahost_of(L)->owner; }

int raise_db_error(lua_State *L) {
  return luaL_error(L, "database error: %s", engine_db_error(scripts_of(L)->engine));
}

/* ---- argument helpers ---- */

int64_t arg_duration(lua_State *L, int idx) {
  if (lua_isinteger(L, idx)) return lua_tointeger(L, idx);
  const char *s = luaL_checkstring(L, idx);
  int64_t secs;
  char err[200];
  if (duration_parse(s, &secs, err, sizeof err) < 0) luaL_argerror(L, idx, err);
  return secs;
}

int64_t arg_time(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    if (!lua_isinteger(L, idx)) return (int64_t)lua_tonumber(L, idx);
    return lua_tointeger(L, idx);
  }
  const char *s = luaL_checkstring(L, idx);
  int64_t t;
  char err[200];
  if (rfc3339_parse(s, &t, err, sizeof err) < 0) luaL_argerror(L, idx, err);
  return t;
}

json_t *arg_json(lua_State *L, int idx, const char *what) {
  char err[256];
  json_t *v = jl_from_lua(L, idx, err, sizeof err);
  if (!v) luaL_error(L, "%s: %s", what, err);
  return v;
}

/* ---- declarations (load phase only) ---- */

static void check_loading(lua_State *L, const char *fn) {
  if (!luahost_of(L)->loading)
    luaL_error(L, "%s: can only be called while the scripts load, not from a handler", fn);
}

static handler_list_t *list_for(scripts_t *s, const char *type, int create) {
  for (int i = 0; i < s->nlists; i++)
    if (strcmp(s->lists[i].type, type) == 0) return &s->lists[i];
  if (!create) return NULL;
  if (s->nlists == s->caplists)
    s->lists = xrealloc(s->lists, (s->caplists = s->caplists ? s->caplists * 2 : 8) * sizeof *s->lists);
  handler_list_t *l = &s->lists[s->nlists++];
  memset(l, 0, sizeof *l);
  l->type = xstrdup(type);
  return l;
}

/* hearth.on(type, fn) */
static int l_on(lua_State *L) {
  check_loading(L, "hearth.on");
  const char *type = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (strcmp(type, "*") != 0 && !event_type_valid(type))
    luaL_argerror(L, 1, lua_pushfstring(L, "event type must match [a-z0-9_.]{1,64} or be \"*\", got '%s'", type));
  scripts_t *s = scripts_of(L);
  lua_pushvalue(L, 2);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  handler_list_t *l = list_for(s, type, 1);
  if (l->n == l->cap) l->v = xrealloc(l->v, (l->cap = l->cap ? l->cap * 2 : 4) * sizeof *l->v);
  l->v[l->n].ref = ref;
  l->v[l->n].campaign = xstrdup(luahost_of(L)->campaign ? luahost_of(L)->campaign : "main");
  l->n++;
  return 0;
}

/* hearth.cron(spec, fn) */
static int l_cron(lua_State *L) {
  check_loading(L, "hearth.cron");
  const char *spec = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  cron_t c;
  char err[200];
  if (cron_parse(spec, &c, err, sizeof err) < 0) luaL_argerror(L, 1, err);
  scripts_t *s = scripts_of(L);
  lua_pushvalue(L, 2);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (s->ncrons == s->capcrons)
    s->crons = xrealloc(s->crons, (s->capcrons = s->capcrons ? s->capcrons * 2 : 4) * sizeof *s->crons);
  const char *campaign = luahost_of(L)->campaign ? luahost_of(L)->campaign : "main";
  int nth = 1;
  for (int i = 0; i < s->ncrons; i++) nth += strcmp(s->crons[i].campaign, campaign) == 0;
  cron_entry_t *ce = &s->crons[s->ncrons++];
  memset(ce, 0, sizeof *ce);
  ce->ref = ref;
  ce->campaign = xstrdup(campaign);
  ce->spec = xstrdup(spec);
  ce->key = xasprintf("%s#%d %s", campaign, nth, spec);
  ce->cron = c;
  return 0;
}

/* hearth.channel(name, opts) */
static int l_channel(lua_State *L) {
  check_loading(L, "hearth.channel");
  const char *name = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  scripts_t *s = scripts_of(L);
  for (int i = 0; i < s->nchannels; i++)
    if (strcmp(s->channels[i].name, name) == 0)
      return luaL_error(L, "hearth.channel: channel '%s' is declared twice", name);
  lua_getfield(L, 2, "type");
  const char *type = lua_tostring(L, -1);
  if (!type || (strcmp(type, "log") != 0 && strcmp(type, "webhook") != 0))
    return luaL_error(L, "hearth.channel: '%s': type must be \"log\" or \"webhook\"", name);
  lua_pop(L, 1);
  lua_getfield(L, 2, "kinds"); /* which kinds of action it delivers */
  if (!lua_isnil(L, -1)) {
    static const char *const kinds[] = {"send", "task", "webhook", "points", "tag", "untag", "redeem"};
    if (!lua_istable(L, -1))
      return luaL_error(L, "hearth.channel: '%s': option 'kinds' must be a list such as { \"send\", \"points\" }", name);
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
      const char *k = lua_tostring(L, -1);
      int ok = 0;
      for (size_t j = 0; k && j < sizeof kinds / sizeof kinds[0]; j++) ok |= !strcmp(k, kinds[j]);
      if (!ok)
        return luaL_error(L, "hearth.channel: '%s': option 'kinds[%d]' must be send, task, webhook, points, "
                             "tag, untag or redeem", name, (int)i);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  json_t *opts = arg_json(L, 2, "hearth.channel");
  char qerr[256];
  if (restraint_channel(s->restraint, name, opts, qerr, sizeof qerr) < 0) {
    json_decref(opts);
    return luaL_error(L, "hearth.channel: %s", qerr);
  }
  if (s->nchannels == s->capchannels)
    s->channels = xrealloc(s->channels, (s->capchannels = s->capchannels ? s->capchannels * 2 : 4) * sizeof *s->channels);
  s->channels[s->nchannels].name = xstrdup(name);
  s->channels[s->nchannels].opts = opts;
  s->nchannels++;
  return 0;
}

/* hearth.restraint{ quiet = {from=, to=}, caps = { {max=, per=, channel=}, ... } }: the
 * rules every marketing send is judged by (restraint.h); the last call wins. */
static int l_restraint(lua_State *L) {
  check_loading(L, "hearth.restraint");
  luaL_checktype(L, 1, LUA_TTABLE);
  json_t *cfg = arg_json(L, 1, "hearth.restraint");
  char err[256] = "";
  int rc = restraint_configure(scripts_of(L)->restraint, cfg, err, sizeof err);
  json_decref(cfg);
  if (rc < 0) return luaL_error(L, "hearth.restraint: %s", err);
  return 0;
}

/* hearth.guard(campaign, fn): fn(m, send) -> false when a deferred send of that campaign
 * no longer applies by the time it is judged again (a journey run that has ended). */
static int l_guard(lua_State *L) {
  check_loading(L, "hearth.guard");
  const char *campaign = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!*campaign) luaL_argerror(L, 1, "campaign must not be empty");
  scripts_t *s = scripts_of(L);
  lua_pushvalue(L, 2);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  for (int i = 0; i < s->nguards; i++)
    if (!strcmp(s->guard_campaigns[i], campaign)) {
      luaL_unref(L, LUA_REGISTRYINDEX, s->guard_refs[i]);
      s->guard_refs[i] = ref;
      return 0;
    }
  s->guard_campaigns = xrealloc(s->guard_campaigns, (size_t)(s->nguards + 1) * sizeof *s->guard_campaigns);
  s->guard_refs = xrealloc(s->guard_refs, (size_t)(s->nguards + 1) * sizeof *s->guard_refs);
  s->guard_campaigns[s->nguards] = xstrdup(campaign);
  s->guard_refs[s->nguards++] = ref;
  return 0;
}

/* ---- run-time helpers ---- */

static int l_now(lua_State *L) {
  lua_pushinteger(L, scripts_of(L)->engine->now);
  return 1;
}

static int l_duration(lua_State *L) {
  lua_pushinteger(L, arg_duration(L, 1));
  return 1;
}

/* hearth.time("2026-11-22T10:00:00+08:00") -> epoch seconds */
static int l_time(lua_State *L) {
  lua_pushinteger(L, arg_time(L, 1));
  return 1;
}

/* hearth.format_time(t) -> RFC 3339 in the engine's zone */
static int l_format_time(lua_State *L) {
  char buf[32];
  lua_pushstring(L, engine_fmt_time(scripts_of(L)->engine, arg_time(L, 1), buf));
  return 1;
}

/* A zone argument: none or nil is the engine's zone, a string an IANA name, a member
 * handle that member's zone (engine_member_tz). Raises on a name that is not a zone. */
const tz_t *arg_zone(lua_State *L, int idx) {
  engine_t *e = scripts_of(L)->engine;
  if (lua_isnoneornil(L, idx)) return e->tz;
  const member_t *m = member_handle_arg(L, idx);
  if (m) return engine_member_tz(e, m);
  if (lua_type(L, idx) != LUA_TSTRING) luaL_argerror(L, idx, "a zone name or a member handle expected");
  const char *name = lua_tostring(L, idx);
  const tz_t *z = engine_zone(e, name);
  if (!z) luaL_argerror(L, idx, lua_pushfstring(L, "'%s' is not a time zone", name));
  return z;
}

void push_local_date(lua_State *L, const tz_t *tz, int64_t t) {
  civil_t c;
  tz_to_civil(tz, t, &c);
  lua_createtable(L, 0, 9);
  lua_pushinteger(L, c.year), lua_setfield(L, -2, "year");
  lua_pushinteger(L, c.month), lua_setfield(L, -2, "month");
  lua_pushinteger(L, c.day), lua_setfield(L, -2, "day");
  lua_pushinteger(L, c.hour), lua_setfield(L, -2, "hour");
  lua_pushinteger(L, c.min), lua_setfield(L, -2, "min");
  lua_pushinteger(L, c.sec), lua_setfield(L, -2, "sec");
  lua_pushinteger(L, c.wday + 1), lua_setfield(L, -2, "wday");
  lua_pushinteger(L, c.yday + 1), lua_setfield(L, -2, "yday");
  lua_pushinteger(L, tz_local_day(tz, t)), lua_setfield(L, -2, "day_number");
}

int64_t arg_local_time(lua_State *L, int first, const tz_t *tz) {
  int y = (int)luaL_checkinteger(L, first), mo = (int)luaL_checkinteger(L, first + 1);
  int d = (int)luaL_checkinteger(L, first + 2);
  int h = (int)luaL_optinteger(L, first + 3, 0), mi = (int)luaL_optinteger(L, first + 4, 0);
  int s = (int)luaL_optinteger(L, first + 5, 0);
  return tz_from_local(tz, y, mo, d, h, mi, s);
}

/* hearth.local_date([t [, zone]]) -> {year, month, day, hour, min, sec, wday (1 = Sunday),
 * yday, day_number} in the engine's zone, or in `zone` (a name or a member handle). */
static int l_local_date(lua_State *L) {
  engine_t *e = scripts_of(L)->engine;
  int64_t t = lua_isnoneornil(L, 1) ? e->now : arg_time(L, 1);
  push_local_date(L, arg_zone(L, 2), t);
  return 1;
}

/* hearth.local_time(year, month, day [, hour, min, sec [, zone]]) -> epoch seconds in the
 * engine's zone or `zone` (a wall time in a DST gap moves forward, one in an overlap
 * takes the first). */
static int l_local_time(lua_State *L) {
  const tz_t *tz = arg_zone(L, 7);
  lua_pushinteger(L, arg_local_time(L, 1, tz));
  return 1;
}

/* hearth.cron_next(spec, after [, zone]) -> the first slot of the cron spec strictly after
 * `after`, its wall times read in the engine's zone or `zone`; nil when none within 5 years. */
static int l_cron_next(lua_State *L) {
  const char *spec = luaL_checkstring(L, 1);
  int64_t after = arg_time(L, 2);
  const tz_t *tz = arg_zone(L, 3);
  cron_t c;
  char err[200];
  if (cron_parse(spec, &c, err, sizeof err) < 0) luaL_argerror(L, 1, err);
  int64_t next = cron_next(&c, tz, after);
  if (next < 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, next);
  return 1;
}

/* hearth.log(level, ...) */
static int l_log(lua_State *L) {
  const char *lvl = luaL_checkstring(L, 1);
  int level = log_level_parse(lvl);
  if (level < 0) luaL_argerror(L, 1, "level must be debug, info, warn or error");
  if (!log_enabled(level)) return 0;
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 2; i <= n; i++) {
    if (i > 2) luaL_addchar(&b, ' ');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  scripts_t *s = scripts_of(L);
  const char *campaign = s->cur ? s->cur->campaign : luahost_of(L)->campaign;
  const char *member = s->cur && s->cur->m ? s->cur->m->id : NULL;
  log_msg(level, lua_tostring(L, -1), "campaign", campaign, "member", member, NULL);
  return 0;
}

/* hearth.count(metric [, {campaign=, step=, variant=, n=}]): add n (default 1) to a
 * funnel counter, inside the transaction of the handler that counts. */
static int l_count(lua_State *L) {
  engine_call_t *d = call_current(L);
  const char *metric = luaL_checkstring(L, 1);
  const char *campaign = d->campaign, *step = "", *variant = "";
  lua_Integer n = 1;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "campaign");
    campaign = luaL_optstring(L, -1, campaign);
    lua_getfield(L, 2, "step");
    step = luaL_optstring(L, -1, step);
    lua_getfield(L, 2, "variant");
    variant = luaL_optstring(L, -1, variant);
    lua_getfield(L, 2, "n");
    n = luaL_optinteger(L, -1, 1);
  }
  if (!*metric || strlen(metric) > 64) luaL_argerror(L, 1, "metric must be 1-64 bytes");
  if (engine_count(scripts_of(L)->engine, d, campaign, step, variant, metric, n) < 0) return raise_db_error(L);
  return 0;
}

/* hearth.emit(member_id, type [, data]): deliver an event of `type` to another member (or
 * this one) as soon as the current batch commits, through the same path as timers: it is
 * durable in the same transaction as the handler that emits it and fires exactly once.
 * m:cancel does not affect it. A member that does not exist when it fires is not created:
 * the event is dropped. Returns nothing. */
static int l_emit(lua_State *L) {
  engine_call_t *d = call_current(L);
  size_t len;
  const char *member = luaL_checklstring(L, 1, &len);
  if (!member_id_valid(member, len)) luaL_argerror(L, 1, "member id must be 1-128 bytes of UTF-8");
  const char *type = luaL_checkstring(L, 2);
  if (!event_type_valid(type))
    luaL_argerror(L, 2, lua_pushfstring(L, "event type must match [a-z0-9_.]{1,64}, got '%s'", type));
  char *data = NULL;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    json_t *j = arg_json(L, 3, "hearth.emit data");
    data = json_dumps(j, JSON_COMPACT);
    json_decref(j);
  }
  int rc = engine_emit(scripts_of(L)->engine, d, member, type, data);
  free(data);
  if (rc < 0) return raise_db_error(L);
  return 0;
}

/* hearth.counter(metric [, {campaign=, step=, variant=}]) -> the sum of the funnel
 * counters kept with hearth.count (campaign defaults to the running one; step and variant,
 * when not given, are summed over). Reads what is committed plus this batch's changes. */
static int l_counter(lua_State *L) {
  scripts_t *s = scripts_of(L);
  const char *metric = luaL_checkstring(L, 1);
  const char *campaign = s->cur ? s->cur->campaign : luahost_of(L)->campaign, *step = NULL, *variant = NULL;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "campaign");
    campaign = luaL_optstring(L, -1, campaign);
    lua_getfield(L, 2, "step");
    step = luaL_optstring(L, -1, NULL);
    lua_getfield(L, 2, "variant");
    variant = luaL_optstring(L, -1, NULL);
  }
  int64_t n;
  if (engine_counter(s->engine, metric, campaign, step, variant, &n) < 0) return raise_db_error(L);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* hearth.lift(converted, entered, base_converted, base_entered [, confidence]) ->
 * {diff, low, high, relative, significant}, or nil when a group is empty: the first group's
 * conversion minus the second's with its interval (lift.c; confidence 80, 90, 95 (default)
 * or 99 percent). */
static int l_lift(lua_State *L) {
  lua_Integer c1 = luaL_checkinteger(L, 1), n1 = luaL_checkinteger(L, 2);
  lua_Integer c2 = luaL_checkinteger(L, 3), n2 = luaL_checkinteger(L, 4);
  lua_Integer conf = luaL_optinteger(L, 5, 95);
  double z = conf == 80 ? 1.2815515655446004 : conf == 90 ? 1.6448536269514722 : conf == 95 ? LIFT_Z95
           : conf == 99 ? 2.5758293035489004 : 0;
  if (z == 0) luaL_argerror(L, 5, "confidence must be 80, 90, 95 or 99 (percent)");
  if (c1 < 0 || c1 > n1 || c2 < 0 || c2 > n2) luaL_error(L, "hearth.lift: converted must be within 0..entered");
  lift_t l;
  if (lift_compute(c1, n1, c2, n2, z, &l) < 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 5);
  lua_pushnumber(L, l.diff);
  lua_setfield(L, -2, "diff");
  lua_pushnumber(L, l.diff_ci.low);
  lua_setfield(L, -2, "low");
  lua_pushnumber(L, l.diff_ci.high);
  lua_setfield(L, -2, "high");
  if (!isnan(l.relative)) {
    lua_pushnumber(L, l.relative);
    lua_setfield(L, -2, "relative");
  }
  lua_pushboolean(L, l.significant);
  lua_setfield(L, -2, "significant");
  return 1;
}

/* hearth.campaign() -> the campaign running now: the handler's (or cron entry's) script,
 * or the script being loaded. */
static int l_campaign(lua_State *L) {
  scripts_t *s = scripts_of(L);
  const char *c = s->cur ? s->cur->campaign : luahost_of(L)->campaign;
  if (c)
    lua_pushstring(L, c);
  else
    lua_pushnil(L);
  return 1;
}

static const luaL_Reg hearth_fns[] = {
    {"count", l_count}, {"counter", l_counter}, {"lift", l_lift}, {"emit", l_emit}, {"campaign", l_campaign},
    {"on", l_on}, {"cron", l_cron}, {"channel", l_channel}, {"restraint", l_restraint},
    {"guard", l_guard}, {"now", l_now},
    {"duration", l_duration}, {"time", l_time}, {"format_time", l_format_time},
    {"local_date", l_local_date}, {"local_time", l_local_time}, {"cron_next", l_cron_next},
    {"log", l_log}, {NULL, NULL}};

/* Installed into the sandbox base (on top of the stack). */
static void install_api(lua_State *L, void *ud) {
  (void)ud;
  luaL_newlib(L, hearth_fns);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  cron_api_install(L);
  points_api_install(L);
  broadcast_api_install(L);
  staff_api_install(L);
  versions_api_install(L);
  invariant_api_install(L);
  lua_setfield(L, -2, "hearth");
  member_api_install(L);
}

scripts_t *scripts_load(engine_t *e, strbuf_t *errors) {
  scripts_t *s = xcalloc(1, sizeof *s);
  s->engine = e;
  s->restraint = restraint_new();
  s->invariants = invariants_new();
  s->host = luahost_new(&e->limits, e->stdlib_dir, e->scripts_dir, install_api, s);
  if (!s->host) {
    sb_adds(errors, "cannot create the Lua state\n");
    restraint_free(s->restraint);
    invariants_free(s->invariants);
    free(s);
    return NULL;
  }
  s->host->owner = s;
  int failed = 0;
  if (e->script_files) {
    for (char **f = e->script_files; *f; f++) failed += luahost_load_file(s->host, *f, errors) < 0;
  } else if (e->scripts_dir) {
    failed = luahost_load_scripts(s->host, e->scripts_dir, errors) != 0;
  }
  if (failed) {
    scripts_free(s);
    return NULL;
  }
  return s;
}

void scripts_free(scripts_t *s) {
  if (!s) return;
  for (int i = 0; i < s->ncrons; i++) scripts_cron_drop(s, i);
  luahost_free(s->host);
  broadcast_api_free(s);
  for (int i = 0; i < s->nlists; i++) {
    for (int j = 0; j < s->lists[i].n; j++) free(s->lists[i].v[j].campaign);
    free(s->lists[i].v);
    free(s->lists[i].type);
  }
  free(s->lists);
  for (int i = 0; i < s->ncrons; i++) free(s->crons[i].campaign), free(s->crons[i].spec), free(s->crons[i].key);
  free(s->crons);
  for (int i = 0; i < s->nchannels; i++) free(s->channels[i].name), json_decref(s->channels[i].opts);
  free(s->channels);
  restraint_free(s->restraint);
  invariants_free(s->invariants);
  for (int i = 0; i < s->nguards; i++) free(s->guard_campaigns[i]);
  free(s->guard_campaigns);
  free(s->guard_refs);
  points_decls_free(s);
  free(s->staff_fallback);
  versions_decls_free(s);
  free(s);
}

/* ---- what the engine asks of the script set ---- */

int scripts_handler_count(scripts_t *s, const char *type) {
  handler_list_t *l = list_for(s, type, 0);
  return l ? l->n : 0;
}

const char *scripts_handler_campaign(scripts_t *s, const char *type, int i) {
  handler_list_t *l = list_for(s, type, 0);
  assert(l && i >= 0 && i < l->n);
  return l->v[i].campaign;
}

int scripts_channel_count(scripts_t *s) { return s->nchannels; }

const restraint_t *scripts_restraint(scripts_t *s) { return s->restraint; }

typedef struct {
  int ref;
  json_t *send;
  int allow;
} guard_call_t;

/* Protected body of a guard: fn(m, send) ~= false. */
static int call_guard(lua_State *L) {
  guard_call_t *g = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->ref);
  member_api_push(L, scripts_of(L));
  jl_push(L, g->send);
  lua_call(L, 2, 1);
  g->allow = !(lua_isboolean(L, -1) && !lua_toboolean(L, -1));
  return 0;
}

int scripts_guard(scripts_t *s, const char *campaign, engine_call_t *call, json_t *send, char **err) {
  *err = NULL;
  for (int i = 0; i < s->nguards; i++) {
    if (strcmp(s->guard_campaigns[i], campaign)) continue;
    assert(!s->cur);
    guard_call_t g = {.ref = s->guard_refs[i], .send = send, .allow = 1};
    s->cur = call;
    luahost_activate(s->host, campaign);
    int rc = luahost_call(s->host, call_guard, &g, err);
    s->cur = NULL;
    s->gen++;
    return rc < 0 ? -1 : g.allow;
  }
  return 1;
}

const channel_decl_t *scripts_channel(scripts_t *s, int i) {
  assert(i >= 0 && i < s->nchannels);
  return &s->channels[i];
}

engine_call_t *call_current(lua_State *L) {
  engine_call_t *c = scripts_of(L)->cur;
  if (!c) luaL_error(L, "no handler is running: member handles are valid only inside their handler");
  return c;
}

static void push_event(lua_State *L, const engine_call_t *c) {
  const event_t *ev = c->ev;
  lua_createtable(L, 0, 5);
  lua_pushstring(L, c->event_key);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, ev->type);
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, ev->time);
  lua_setfield(L, -2, "time");
  lua_pushstring(L, ev->member);
  lua_setfield(L, -2, "member");
  if (ev->data)
    jl_push(L, ev->data);
  else
    lua_newtable(L);
  lua_setfield(L, -2, "data");
}

/* Protected body of one handler call: fn(m, ev). */
static int call_handler(lua_State *L) {
  scripts_t *s = scripts_of(L);
  int ref = *(int *)lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  member_api_push(L, s);
  push_event(L, s->cur);
  lua_call(L, 2, 0);
  return 0;
}

int scripts_run_handler(scripts_t *s, const char *type, int i, engine_call_t *call, char **err) {
  handler_list_t *l = list_for(s, type, 0);
  assert(l && i >= 0 && i < l->n && !s->cur);
  int ref = l->v[i].ref;
  s->cur = call;
  *err = NULL;
  luahost_activate(s->host, l->v[i].campaign);
  int rc = luahost_call(s->host, call_handler, &ref, err);
  s->cur = NULL;
  s->gen++;
  return rc;
}
