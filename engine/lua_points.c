/* lua_points: the points declarations a script makes while loading (see lua_api.h):
 * hearth.points_rule (when grants expire, and the notice before), hearth.item (the points
 * mall's items: cost, stock, per-member limit, window), and the expiry value shared with
 * m:add_points's `expire` option. What they declare is read by the engine through
 * scripts.h (scripts_points_rule, scripts_item); lots, stock and redemptions live in the
 * store (engine_points.c), never in Lua. Our own design, after the declaration style of
 * hearth.channel in lua_api.c. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "lua_api.h"

static void check_declaring(lua_State *L, const char *fn) {
  if (!luahost_of(L)->loading)
    luaL_error(L, "%s: can only be called while the scripts load, not from a handler", fn);
}

/* Raise for a key of the table at idx that is not in `known` (NULL-terminated). */
static void only_known(lua_State *L, int idx, const char *fn, const char *const *known) {
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    int ok = 0;
    for (int i = 0; k && known[i] && !ok; i++) ok = !strcmp(k, known[i]);
    if (!ok) luaL_error(L, "%s: unknown option '%s'", fn, k ? k : luaL_typename(L, -1));
  }
}

expiry_t arg_expiry(lua_State *L, int idx) {
  expiry_t x = {EXPIRE_NEVER, 0};
  if (lua_isboolean(L, idx) && !lua_toboolean(L, idx)) return x;
  if (lua_isinteger(L, idx)) {
    x.kind = EXPIRE_AFTER, x.n = lua_tointeger(L, idx);
    if (x.n <= 0) luaL_error(L, "expire: a duration must be positive");
    return x;
  }
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "expire must be \"never\", \"month_end\", \"year_end\", \"<N>mo\" or a duration such as \"90d\"");
  const char *s = lua_tostring(L, idx);
  size_t len = strlen(s);
  if (!strcmp(s, "never")) return x;
  if (!strcmp(s, "month_end")) return (expiry_t){EXPIRE_MONTH_END, 0};
  if (!strcmp(s, "year_end")) return (expiry_t){EXPIRE_YEAR_END, 0};
  if (len > 2 && len <= 6 && !strcmp(s + len - 2, "mo")) {
    char *end;
    long months = strtol(s, &end, 10);
    if (end == s + len - 2 && months > 0 && months <= 1200) return (expiry_t){EXPIRE_MONTHS, months};
    luaL_error(L, "expire: '%s': months must be 1-1200, as in \"12mo\"", s);
  }
  int64_t secs = 0;
  char err[200] = "zero";
  if (duration_parse(s, &secs, err, sizeof err) < 0 || secs <= 0)
    luaL_error(L, "expire: '%s' is not \"never\", \"month_end\", \"year_end\", \"<N>mo\" or a positive "
                  "duration (%s)", s, err);
  return (expiry_t){EXPIRE_AFTER, secs};
}

static const char *field_string(lua_State *L, int idx, const char *fn, const char *name, int required) {
  lua_getfield(L, idx, name);
  const char *v = NULL;
  if (lua_type(L, -1) == LUA_TSTRING && lua_rawlen(L, -1) > 0 && lua_rawlen(L, -1) <= 128)
    v = lua_tostring(L, -1);
  else if (!lua_isnil(L, -1) || required)
    luaL_error(L, "%s: '%s' must be a string of 1-128 bytes", fn, name);
  lua_pop(L, 1); /* still referenced by the table */
  return v;
}

/* hearth.points_rule{ expire = ..., notice = { before = "7d", send = "template" },
 * campaign = "name" } — without campaign, the rule of every campaign that has none. */
static int l_points_rule(lua_State *L) {
  static const char *const known[] = {"expire", "notice", "campaign", NULL};
  static const char *const notice_known[] = {"before", "send", NULL};
  check_declaring(L, "hearth.points_rule");
  luaL_checktype(L, 1, LUA_TTABLE);
  only_known(L, 1, "hearth.points_rule", known);
  scripts_t *s = scripts_of(L);
  const char *campaign = field_string(L, 1, "hearth.points_rule", "campaign", 0);
  for (int i = 0; i < s->nrules; i++)
    if ((!campaign && !s->rules[i].campaign) ||
        (campaign && s->rules[i].campaign && !strcmp(campaign, s->rules[i].campaign)))
      return luaL_error(L, "hearth.points_rule: a rule for %s%s is declared twice", campaign ? "campaign " : "",
                        campaign ? campaign : "every campaign");
  lua_getfield(L, 1, "expire");
  if (lua_isnil(L, -1)) return luaL_error(L, "hearth.points_rule: 'expire' is required");
  expiry_t x = arg_expiry(L, -1);
  lua_pop(L, 1);
  int64_t before = 0;
  const char *send = NULL;
  lua_getfield(L, 1, "notice");
  if (!lua_isnil(L, -1)) {
    int t = lua_gettop(L);
    if (!lua_istable(L, t)) return luaL_error(L, "hearth.points_rule: 'notice' must be { before = \"7d\", send = \"template\" }");
    only_known(L, t, "hearth.points_rule: notice", notice_known);
    send = field_string(L, t, "hearth.points_rule: notice", "send", 1);
    lua_getfield(L, t, "before");
    before = arg_duration(L, lua_gettop(L));
    if (before <= 0) return luaL_error(L, "hearth.points_rule: notice.before must be a positive duration");
    lua_pop(L, 1);
    if (x.kind == EXPIRE_NEVER) return luaL_error(L, "hearth.points_rule: a notice needs an expiry");
  }
  lua_pop(L, 1);
  s->rules = xrealloc(s->rules, (size_t)(s->nrules + 1) * sizeof *s->rules);
  s->rules[s->nrules++] = (points_rule_t){.campaign = campaign ? xstrdup(campaign) : NULL, .expire = x,
                                          .notice_before = before, .notice_send = send ? xstrdup(send) : NULL};
  return 0;
}

/* An integer field >= min, or dflt when absent. */
static int64_t field_int(lua_State *L, int idx, const char *name, int64_t min, int64_t dflt) {
  lua_getfield(L, idx, name);
  int64_t v = dflt;
  if (!lua_isnil(L, -1)) {
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < min)
      luaL_error(L, "hearth.item: '%s' must be an integer of at least %d", name, (int)min);
    v = lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static int64_t field_time(lua_State *L, int idx, const char *name, int64_t dflt) {
  lua_getfield(L, idx, name);
  int64_t v = lua_isnil(L, -1) ? dflt : arg_time(L, lua_gettop(L));
  lua_pop(L, 1);
  return v;
}

/* hearth.item{ name = "coupon_10", cost = 100, stock = 500, per_member = 2,
 * from = time, to = time } — stock and per_member unlimited when absent. */
static int l_item(lua_State *L) {
  static const char *const known[] = {"name", "cost", "stock", "per_member", "from", "to", NULL};
  check_declaring(L, "hearth.item");
  luaL_checktype(L, 1, LUA_TTABLE);
  only_known(L, 1, "hearth.item", known);
  scripts_t *s = scripts_of(L);
  const char *name = field_string(L, 1, "hearth.item", "name", 1);
  if (scripts_item(s, name)) return luaL_error(L, "hearth.item: item '%s' is declared twice", name);
  int64_t cost = field_int(L, 1, "cost", 1, -2);
  if (cost == -2) return luaL_error(L, "hearth.item: '%s': 'cost' (points per unit) is required", name);
  int64_t stock = field_int(L, 1, "stock", 0, -1), per_member = field_int(L, 1, "per_member", 1, -1);
  int64_t from = field_time(L, 1, "from", INT64_MIN), to = field_time(L, 1, "to", INT64_MAX);
  if (from >= to) return luaL_error(L, "hearth.item: '%s': 'from' must be before 'to'", name);
  const char *campaign = luahost_of(L)->campaign ? luahost_of(L)->campaign : "main";
  s->items = xrealloc(s->items, (size_t)(s->nitems + 1) * sizeof *s->items);
  s->items[s->nitems++] = (item_decl_t){.name = xstrdup(name), .campaign = xstrdup(campaign), .cost = cost,
                                        .stock = stock, .per_member = per_member, .from = from, .to = to};
  return 0;
}

void points_api_install(lua_State *L) {
  lua_pushcfunction(L, l_points_rule);
  lua_setfield(L, -2, "points_rule");
  lua_pushcfunction(L, l_item);
  lua_setfield(L, -2, "item");
}

void points_decls_free(scripts_t *s) {
  for (int i = 0; i < s->nrules; i++) free(s->rules[i].campaign), free(s->rules[i].notice_send);
  free(s->rules);
  for (int i = 0; i < s->nitems; i++) free(s->items[i].name), free(s->items[i].campaign);
  free(s->items);
}

const points_rule_t *scripts_points_rule(scripts_t *s, const char *campaign) {
  const points_rule_t *global = NULL;
  for (int i = 0; i < s->nrules; i++) {
    if (!s->rules[i].campaign) global = &s->rules[i];
    else if (campaign && !strcmp(s->rules[i].campaign, campaign)) return &s->rules[i];
  }
  return global;
}

const item_decl_t *scripts_item(scripts_t *s, const char *name) {
  for (int i = 0; i < s->nitems; i++)
    if (!strcmp(s->items[i].name, name)) return &s->items[i];
  return NULL;
}
