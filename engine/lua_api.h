/* lua_api: the script set and the API scripts see. A script set is one sandboxed Lua
 * state (lua_host) plus what its scripts declared while loading: handlers by event type,
 * cron entries and channels. Dispatch calls each handler of an event in its own protected
 * call with its own savepoint and member undo. The member handle lives in lua_member.c. */
#ifndef HEARTH_LUA_API_H
#define HEARTH_LUA_API_H

#include <lua.h>

#include "cron.h"
#include "engine.h"

typedef struct {
  int ref;          /* the function, in the registry */
  char *campaign;   /* the script that declared it */
} handler_t;

typedef struct {
  char *type;       /* event type, or "*" */
  handler_t *v;
  int n, cap;
} handler_list_t;

typedef struct cron_job cron_job_t;

typedef struct {
  int ref;
  char *campaign;
  char *spec;
  char *key;          /* stable name in cron_state: campaign#n spec */
  cron_t cron;
  int64_t next_slot;  /* INT64_MAX until scheduled */
  cron_job_t *job;    /* the run in progress (suspended in a sweep), or NULL */
} cron_entry_t;

typedef struct {
  char *name;
  json_t *opts;     /* as declared */
} channel_decl_t;

/* One handler invocation in progress. */
typedef struct dispatch {
  struct scripts *s;
  member_t *m;
  const event_t *ev;
  const char *event_key;
  const char *campaign;
  int fn_ref;
  int sp_open;      /* savepoint taken for this call (always 1 in cron runs: a sweep
                       chunk is one transaction) */
  int cron;         /* running a cron function: hearth.members is allowed */
  int db_failed;    /* a database error happened: the batch must be rolled back */
  member_undo_t undo;
} dispatch_t;

struct scripts {
  luahost_t *host;
  engine_t *engine;
  handler_list_t *lists;
  int nlists, caplists;
  cron_entry_t *crons;
  int ncrons, capcrons;
  channel_decl_t *channels;
  int nchannels, capchannels;
  dispatch_t *cur;        /* the call in progress, or NULL */
  unsigned gen;           /* bumped after each call: stale member handles are refused */
  int action_n;           /* actions recorded for the current event (default ids) */
};

/* Build a state, install the API and load every script in e->scripts_dir. NULL when any
 * script fails; errors holds one "file:line: message" line per failure. */
scripts_t *scripts_load(engine_t *e, strbuf_t *errors);
void scripts_free(scripts_t *s);

/* Run every handler for ev (type handlers, then "*" handlers, each in declaration order).
 * Returns the number of handlers that failed, or -1 on a database error. */
int scripts_dispatch(scripts_t *s, member_t *m, const event_t *ev, const char *event_key);

/* Called by API functions before they write: opens the call's savepoint on first use.
 * dispatch_savepoint returns -1 (and marks the batch failed) on a database error;
 * dispatch_write raises a Lua error instead. */
int dispatch_savepoint(dispatch_t *d);
void dispatch_write(lua_State *L, dispatch_t *d);
/* The call in progress; raises when there is none (a handle used outside its handler). */
dispatch_t *dispatch_current(lua_State *L);

/* lua_cron.c: scheduling and running cron entries, and hearth.members sweeps. */
void cron_schedule(scripts_t *s, int64_t now);
int64_t cron_next_due(scripts_t *s);
/* Start every entry due at or before t (each once). sync: run each to completion
 * (dry-run); otherwise a run that yields in a sweep stays pending. -1 on db error. */
int cron_run_due(scripts_t *s, int64_t t, int sync);
/* Runs suspended between sweep chunks. */
int cron_pending(scripts_t *s);
/* Resume one suspended run by one chunk. -1 on db error. */
int cron_resume_one(scripts_t *s);
void cron_free_jobs(scripts_t *s);
void lua_cron_install(lua_State *L);

/* lua_member.c */
void lua_member_install(lua_State *L);
void lua_member_push(lua_State *L, dispatch_t *d);

/* Shared argument helpers. */
int64_t lua_check_duration(lua_State *L, int idx);
int64_t lua_check_time(lua_State *L, int idx);
json_t *lua_check_json(lua_State *L, int idx, const char *what);

#endif
