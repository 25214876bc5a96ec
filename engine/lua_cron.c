/* lua_cron: cron runs as coroutines, and member sweeps.
 *
 * A cron function runs as a coroutine with fn(slot_time). Inside it,
 * `for m in hearth.members{tag=..., attr={k=v}, inactive_for="30d", chunk=500} do ... end`
 * walks members in id order, a chunk at a time, and yields between chunks; the engine
 * commits each chunk as one transaction and resumes the run later (the daemon between
 * other work, dry-run at once). So a sweep over millions neither stalls ingest nor holds
 * them in memory. When a run is due, which slot it is for, and its transactions are the
 * engine's (engine.c, "cron"): this file only starts and resumes coroutines. */
#include <assert.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "json_lua.h"
#include "lua_api.h"

#define SWEEP_CHUNK 500

int scripts_cron_count(scripts_t *s) { return s->ncrons; }

static cron_entry_t *entry(scripts_t *s, int i) {
  assert(i >= 0 && i < s->ncrons);
  return &s->crons[i];
}

const char *scripts_cron_key(scripts_t *s, int i) { return entry(s, i)->key; }
const char *scripts_cron_campaign(scripts_t *s, int i) { return entry(s, i)->campaign; }
const char *scripts_cron_spec(scripts_t *s, int i) { return entry(s, i)->spec; }
const cron_t *scripts_cron_expr(scripts_t *s, int i) { return &entry(s, i)->cron; }

void scripts_cron_drop(scripts_t *s, int i) {
  cron_entry_t *c = entry(s, i);
  if (!c->co) return;
  luaL_unref(s->host->L, LUA_REGISTRYINDEX, c->co_ref);
  c->co = NULL;
}

typedef struct {
  cron_entry_t *c;
  int64_t slot;
} start_t;

/* Protected: make the coroutine for an entry and anchor it in the registry. */
static int make_thread(lua_State *L) {
  start_t *st = lua_touserdata(L, 1);
  st->c->co = lua_newthread(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, st->c->ref);
  lua_xmove(L, st->c->co, 1);
  lua_pushinteger(st->c->co, st->slot);
  st->c->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* Resume entry i's coroutine with nargs arguments on its stack. */
static int step(scripts_t *s, int i, int nargs, engine_call_t *call, char **err) {
  cron_entry_t *c = entry(s, i);
  assert(c->co && !s->cur);
  s->cur = call;
  luahost_activate(s->host, c->campaign);
  int rc = luahost_resume(s->host, c->co, nargs, err);
  s->cur = NULL;
  s->gen++;
  if (rc == LUA_YIELD) return CRON_YIELDED;
  scripts_cron_drop(s, i);
  return rc == LUA_OK ? CRON_FINISHED : CRON_FAILED;
}

int scripts_cron_start(scripts_t *s, int i, int64_t slot, engine_call_t *call, char **err) {
  cron_entry_t *c = entry(s, i);
  assert(!c->co);
  *err = NULL;
  start_t st = {.c = c, .slot = slot};
  if (luahost_call(s->host, make_thread, &st, err) < 0) return CRON_FAILED;
  return step(s, i, 1, call, err);
}

int scripts_cron_resume(scripts_t *s, int i, engine_call_t *call, char **err) {
  *err = NULL;
  return step(s, i, 0, call, err);
}

/* ---- hearth.members ---- */

typedef struct {
  char *last_id;
  char *tag;
  json_t *attrs;      /* required attribute values, or NULL */
  int64_t inactive_cut; /* INT64_MIN when not filtering */
  int chunk;
  char **ids;
  int n, i, fetched, eof;
} sweep_t;

static void sweep_clear_ids(sweep_t *sw) {
  for (int k = 0; k < sw->n; k++) free(sw->ids[k]);
  free(sw->ids);
  sw->ids = NULL;
  sw->n = sw->i = 0;
}

static int sweep_gc(lua_State *L) {
  sweep_t *sw = lua_touserdata(L, 1);
  sweep_clear_ids(sw);
  free(sw->last_id);
  free(sw->tag);
  json_decref(sw->attrs);
  sw->last_id = sw->tag = NULL;
  sw->attrs = NULL;
  return 0;
}

/* Read the next chunk of candidate ids; 0 when there are none left, -1 on error. */
static int sweep_fetch(engine_t *e, sweep_t *sw) {
  sweep_clear_ids(sw);
  int n = engine_member_ids(e, sw->tag, sw->last_id, sw->chunk, &sw->ids);
  if (n < 0) return -1;
  sw->n = n;
  if (sw->n) {
    free(sw->last_id);
    sw->last_id = xstrdup(sw->ids[sw->n - 1]);
  }
  return sw->n;
}

static int sweep_matches(const sweep_t *sw, member_t *m) {
  if (sw->inactive_cut != INT64_MIN) {
    int64_t last = m->last_active_at != NO_TIME ? m->last_active_at : m->created_at;
    if (last > sw->inactive_cut) return 0;
  }
  if (sw->attrs) {
    const char *k;
    json_t *v;
    json_object_foreach(sw->attrs, k, v) {
      if (!json_equal(json_object_get(member_attrs((member_t *)m), k), v)) return 0;
    }
  }
  return 1;
}

static int sweep_next(lua_State *L);

static int sweep_continue(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return sweep_next(L);
}

/* The iterator: the next matching member's handle, or nil at the end. Between chunks it
 * yields to the engine, which commits the chunk. */
static int sweep_next(lua_State *L) {
  sweep_t *sw = lua_touserdata(L, lua_upvalueindex(1));
  scripts_t *s = scripts_of(L);
  engine_call_t *d = call_current(L);
  engine_t *e = s->engine;
  engine_call_member(e, d, NULL);
  for (;;) {
    while (sw->i < sw->n) {
      member_t *m = engine_member(e, sw->ids[sw->i++]);
      if (!m) {
        d->db_failed = 1;
        return raise_db_error(L);
      }
      if (!sweep_matches(sw, m)) continue;
      engine_call_member(e, d, m);
      s->gen++;
      member_api_push(L, s);
      return 1;
    }
    if (sw->eof) {
      lua_pushnil(L);
      return 1;
    }
    if (sw->fetched) {
      /* a chunk is done: the engine commits it and resumes us when it sees fit */
      sweep_clear_ids(sw);
      sw->fetched = 0;
      return lua_yieldk(L, 0, 0, sweep_continue);
    }
    int n = sweep_fetch(e, sw);
    if (n < 0) {
      d->db_failed = 1;
      return raise_db_error(L);
    }
    if (n == 0) sw->eof = 1;
    sw->fetched = 1;
  }
}

/* hearth.members{tag=, attr={k=v}, inactive_for=, chunk=} -> iterator */
static int l_members(lua_State *L) {
  engine_call_t *d = call_current(L);
  if (!d->cron || !lua_isyieldable(L))
    return luaL_error(L, "hearth.members: sweeps run only in cron functions (hearth.cron)");
  luaL_checktype(L, 1, LUA_TTABLE);
  engine_t *e = scripts_of(L)->engine;
  lua_getfield(L, 1, "tag");
  const char *tag = luaL_optstring(L, -1, NULL);
  lua_getfield(L, 1, "inactive_for");
  int64_t cut = INT64_MIN;
  if (!lua_isnil(L, -1)) cut = e->now - arg_duration(L, -1);
  lua_getfield(L, 1, "chunk");
  lua_Integer chunk = luaL_optinteger(L, -1, SWEEP_CHUNK);
  if (chunk < 1 || chunk > 100000) luaL_error(L, "hearth.members: chunk must be 1-100000");
  lua_getfield(L, 1, "attr");
  if (!lua_isnil(L, -1)) luaL_checktype(L, -1, LUA_TTABLE);
  sweep_t *sw = lua_newuserdatauv(L, sizeof *sw, 0);
  memset(sw, 0, sizeof *sw);
  sw->inactive_cut = cut;
  sw->chunk = (int)chunk;
  luaL_setmetatable(L, "hearth.sweep");
  if (tag) sw->tag = xstrdup(tag);
  if (!lua_isnil(L, -2)) {
    char err[256];
    sw->attrs = jl_from_lua(L, -2, err, sizeof err);
    if (!sw->attrs || !json_is_object(sw->attrs))
      return luaL_error(L, "hearth.members: attr must be a table of name = value");
  }
  lua_pushcclosure(L, sweep_next, 1);
  return 1;
}

void cron_api_install(lua_State *L) {
  luaL_newmetatable(L, "hearth.sweep");
  lua_pushcfunction(L, sweep_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_members);
  lua_setfield(L, -2, "members");
}
