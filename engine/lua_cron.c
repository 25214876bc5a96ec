/* lua_cron: cron entries and member sweeps.
 *
 * Scheduling: each entry has a next slot. At start-up an entry whose last run (kept in
 * cron_state) is followed by one or more missed slots runs once, for the latest missed
 * slot, not once per missed slot; an entry never run before waits for its next slot.
 *
 * Running: a cron function runs as a coroutine with fn(slot_time). Inside it,
 * `for m in hearth.members{tag=..., attr={k=v}, inactive_for="30d", chunk=500} do ... end`
 * walks members in id order, a chunk at a time: each chunk is one transaction, committed
 * before the coroutine yields back to the engine, which resumes it later (the daemon on
 * its next loop turn, dry-run at once). So a sweep over millions neither stalls ingest
 * nor holds them in memory. The slot is recorded as run when the run starts: a crash in
 * the middle of a sweep does not repeat the chunks already committed. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "json_lua.h"
#include "log.h"
#include "lua_api.h"

#define SWEEP_CHUNK 500

struct cron_job {
  int entry;
  lua_State *co;
  int co_ref;
  int64_t slot;
  char event_key[160];
  dispatch_t d;
};

static scripts_t *scripts_of(lua_State *L) { return luahost_of(L)->owner; }

static int64_t read_last_slot(engine_t *e, const char *key) {
  sqlite3_stmt *st = store_stmt(e->store, ST_CRON_GET);
  bind_text(st, 1, key);
  int64_t v = INT64_MIN;
  if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return v;
}

void cron_schedule(scripts_t *s, int64_t now) {
  engine_t *e = s->engine;
  for (int i = 0; i < s->ncrons; i++) {
    cron_entry_t *c = &s->crons[i];
    int64_t last = read_last_slot(e, c->key);
    if (last == INT64_MIN) {
      c->next_slot = cron_next(&c->cron, e->tz, now - 1);
      continue;
    }
    int64_t slot = cron_next(&c->cron, e->tz, last), missed = INT64_MIN;
    while (slot >= 0 && slot <= now) {
      missed = slot;
      slot = cron_next(&c->cron, e->tz, slot);
    }
    c->next_slot = missed != INT64_MIN ? missed : slot;
    if (c->next_slot < 0) c->next_slot = INT64_MAX;
  }
}

int64_t cron_next_due(scripts_t *s) {
  int64_t t = INT64_MAX;
  for (int i = 0; i < s->ncrons; i++)
    if (!s->crons[i].job && s->crons[i].next_slot < t) t = s->crons[i].next_slot;
  return t;
}

int cron_pending(scripts_t *s) {
  for (int i = 0; i < s->ncrons; i++)
    if (s->crons[i].job) return 1;
  return 0;
}

static void job_free(scripts_t *s, cron_job_t *j) {
  if (!j) return;
  luaL_unref(s->host->L, LUA_REGISTRYINDEX, j->co_ref);
  s->crons[j->entry].job = NULL;
  free(j);
}

void cron_free_jobs(scripts_t *s) {
  for (int i = 0; i < s->ncrons; i++) job_free(s, s->crons[i].job);
}

/* Protected: make the coroutine for an entry and anchor it in the registry. */
static int make_thread(lua_State *L) {
  cron_job_t *j = lua_touserdata(L, 1);
  scripts_t *s = scripts_of(L);
  j->co = lua_newthread(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->crons[j->entry].ref);
  lua_xmove(L, j->co, 1);
  lua_pushinteger(j->co, j->slot);
  j->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

static void record_cron_failure(scripts_t *s, cron_job_t *j, const char *err) {
  engine_t *e = s->engine;
  cron_entry_t *c = &s->crons[j->entry];
  char tbuf[32];
  log_msg(LOG_ERROR, "cron run failed", "campaign", c->campaign, "cron", c->spec, "slot",
          engine_fmt_time(e, j->slot, tbuf), "error", err, NULL);
  sqlite3_stmt *st = store_stmt(e->store, ST_FAILED_ADD);
  bind_int(st, 1, e->now);
  bind_text(st, 2, j->d.m ? j->d.m->id : "");
  char *ev = xasprintf("{\"cron\":\"%s\",\"slot\":%lld}", c->key, (long long)j->slot);
  bind_text(st, 3, ev);
  bind_text(st, 4, c->campaign);
  bind_text(st, 5, err);
  store_exec_stmt(e->store, st);
  free(ev);
}

/* One step of a run inside an open transaction: resume and settle. 1 finished, 0
 * suspended (its chunk committed), -1 database error. */
static int job_step(scripts_t *s, cron_job_t *j, int nargs) {
  engine_t *e = s->engine;
  char *err = NULL;
  s->cur = &j->d;
  int rc = luahost_resume(s->host, j->co, nargs, &err);
  s->cur = NULL;
  s->gen++;
  if (j->d.m) member_undo_end(&j->d.undo), j->d.m = NULL;
  if (j->d.db_failed) {
    free(err);
    engine_rollback(e);
    job_free(s, j);
    return -1;
  }
  if (rc == LUA_YIELD) return 0; /* the sweep committed its chunk before yielding */
  if (rc == LUA_OK) {
    job_free(s, j);
    return engine_commit(e) < 0 ? -1 : 1;
  }
  /* failed: drop the chunk in hand, keep the slot recorded, keep the traceback */
  engine_rollback(e);
  int dbrc = 0;
  if (engine_begin(e) < 0) dbrc = -1;
  else {
    sqlite3_stmt *st = store_stmt(e->store, ST_CRON_SET);
    bind_text(st, 1, s->crons[j->entry].key);
    bind_int(st, 2, j->slot);
    store_exec_stmt(e->store, st);
    record_cron_failure(s, j, err);
    if (engine_commit(e) < 0) dbrc = -1;
  }
  e->stats.handler_errors++;
  free(err);
  job_free(s, j);
  return dbrc < 0 ? -1 : 1;
}

static int job_start(scripts_t *s, int idx, int64_t slot) {
  engine_t *e = s->engine;
  cron_entry_t *c = &s->crons[idx];
  cron_job_t *j = xcalloc(1, sizeof *j);
  j->entry = idx;
  j->slot = slot;
  snprintf(j->event_key, sizeof j->event_key, "cron:%s@%lld", c->key, (long long)slot);
  j->d = (dispatch_t){.s = s, .ev = NULL, .event_key = j->event_key, .campaign = c->campaign,
                      .sp_open = 1, .cron = 1};
  char *err = NULL;
  if (luahost_call(s->host, make_thread, j, &err) < 0) {
    log_msg(LOG_ERROR, "cannot start cron run", "campaign", c->campaign, "error", err, NULL);
    free(err);
    free(j);
    return 0;
  }
  c->job = j;
  if (engine_begin(e) < 0) return -1;
  sqlite3_stmt *st = store_stmt(e->store, ST_CRON_SET);
  bind_text(st, 1, c->key);
  bind_int(st, 2, slot);
  if (store_exec_stmt(e->store, st) != SQLITE_DONE) {
    engine_rollback(e);
    return -1;
  }
  return job_step(s, j, 1);
}

int cron_resume_one(scripts_t *s) {
  for (int i = 0; i < s->ncrons; i++) {
    cron_job_t *j = s->crons[i].job;
    if (!j) continue;
    if (engine_begin(s->engine) < 0) return -1;
    return job_step(s, j, 0) < 0 ? -1 : 0;
  }
  return 0;
}

int cron_run_due(scripts_t *s, int64_t t, int sync) {
  engine_t *e = s->engine;
  for (int i = 0; i < s->ncrons; i++) {
    cron_entry_t *c = &s->crons[i];
    if (c->job || c->next_slot > t) continue;
    int64_t slot = c->next_slot;
    int64_t nxt = cron_next(&c->cron, e->tz, slot);
    c->next_slot = nxt < 0 ? INT64_MAX : nxt;
    if (e->virtual_clock) e->now = slot;
    int rc = job_start(s, i, slot);
    while (rc == 0 && sync && c->job) {
      if (engine_begin(e) < 0) return -1;
      rc = job_step(s, c->job, 0);
    }
    if (rc < 0) return -1;
  }
  return 0;
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
  sqlite3_stmt *st = store_stmt(e->store, sw->tag ? ST_SWEEP_TAG : ST_SWEEP_ALL);
  bind_text(st, 1, sw->last_id ? sw->last_id : "");
  bind_int(st, 2, sw->chunk);
  if (sw->tag) bind_text(st, 3, sw->tag);
  sw->ids = xcalloc((size_t)sw->chunk, sizeof *sw->ids);
  int rc;
  while (sw->n < sw->chunk && (rc = sqlite3_step(st)) == SQLITE_ROW)
    sw->ids[sw->n++] = xstrdup((const char *)sqlite3_column_text(st, 0));
  sqlite3_reset(st);
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
 * commits and yields to the engine. */
static int sweep_next(lua_State *L) {
  sweep_t *sw = lua_touserdata(L, lua_upvalueindex(1));
  scripts_t *s = scripts_of(L);
  dispatch_t *d = dispatch_current(L);
  engine_t *e = s->engine;
  if (d->m) {
    member_undo_end(&d->undo);
    d->m = NULL;
  }
  for (;;) {
    while (sw->i < sw->n) {
      member_t *m = member_cache_get(&e->members, e->store, sw->ids[sw->i++], e->now);
      if (!m) {
        d->db_failed = 1;
        return luaL_error(L, "database error: %s", store_errmsg(e->store));
      }
      if (!sweep_matches(sw, m)) continue;
      d->m = m;
      s->action_n = 0;
      member_undo_begin(&d->undo, m);
      s->gen++;
      lua_member_push(L, d);
      return 1;
    }
    if (sw->eof) {
      lua_pushnil(L);
      return 1;
    }
    if (sw->fetched) {
      /* a chunk is done: commit it and let the engine breathe */
      sweep_clear_ids(sw);
      sw->fetched = 0;
      if (engine_commit(e) < 0) {
        d->db_failed = 1;
        return luaL_error(L, "database error while committing a sweep chunk");
      }
      return lua_yieldk(L, 0, 0, sweep_continue);
    }
    if (sweep_fetch(e, sw) == 0) sw->eof = 1;
    sw->fetched = 1;
  }
}

/* hearth.members{tag=, attr={k=v}, inactive_for=, chunk=} -> iterator */
static int l_members(lua_State *L) {
  dispatch_t *d = dispatch_current(L);
  if (!d->cron || !lua_isyieldable(L))
    return luaL_error(L, "hearth.members: sweeps run only in cron functions (hearth.cron)");
  luaL_checktype(L, 1, LUA_TTABLE);
  engine_t *e = d->s->engine;
  lua_getfield(L, 1, "tag");
  const char *tag = luaL_optstring(L, -1, NULL);
  lua_getfield(L, 1, "inactive_for");
  int64_t cut = INT64_MIN;
  if (!lua_isnil(L, -1)) cut = e->now - lua_check_duration(L, -1);
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

void lua_cron_install(lua_State *L) {
  luaL_newmetatable(L, "hearth.sweep");
  lua_pushcfunction(L, sweep_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_members);
  lua_setfield(L, -2, "members");
}
