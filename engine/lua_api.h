/* lua_api: the script set behind scripts.h, as the Lua glue's files share it. A script set
 * is one sandboxed Lua state (lua_host) plus what its scripts declared while loading:
 * handlers by event type, cron entries and channels. The glue checks arguments and asks
 * the engine (engine.h) for every change; it keeps no state of the engine's. The member
 * handle lives in lua_member.c, cron runs and sweeps in lua_cron.c. */
#ifndef HEARTH_LUA_API_H
#define HEARTH_LUA_API_H

#include <lua.h>

#include "cron.h"
#include "engine.h"
#include "lua_host.h"
#include "scripts.h"

typedef struct {
  int ref;          /* the function, in the registry */
  char *campaign;   /* the script that declared it */
} handler_t;

typedef struct {
  char *type;       /* event type, or "*" */
  handler_t *v;
  int n, cap;
} handler_list_t;

typedef struct {
  int ref;            /* the function, in the registry */
  char *campaign;
  char *spec;
  char *key;          /* stable name in cron_state: campaign#n spec */
  cron_t cron;
  lua_State *co;      /* the run suspended between sweep chunks, or NULL */
  int co_ref;
} cron_entry_t;

struct scripts {
  luahost_t *host;
  engine_t *engine;
  handler_list_t *lists;
  int nlists, caplists;
  cron_entry_t *crons;
  int ncrons, capcrons;
  channel_decl_t *channels;
  int nchannels, capchannels;
  restraint_t *restraint;  /* hearth.restraint and the channels' quotas */
  char **guard_campaigns;  /* hearth.guard: campaign -> function (registry ref) */
  int *guard_refs;
  int nguards;
  points_rule_t *rules;   /* hearth.points_rule, in declaration order */
  int nrules;
  item_decl_t *items;     /* hearth.item */
  int nitems;
  broadcast_decl_t *broadcasts; /* hearth.broadcast, in declaration order (lua_broadcast.c) */
  int nbroadcasts, capbroadcasts;
  int staff_declared;      /* hearth.staff was called */
  char *staff_fallback;    /* its owner of tasks whose member has none, or NULL */
  int64_t task_due;        /* its default due time of a task, seconds after it is set */
  invariants_t *invariants; /* hearth.invariant (lua_invariant.c) */
  engine_call_t *cur;     /* the call in progress, or NULL */
  unsigned gen;           /* bumped after each call and each sweep member: stale handles are refused */
  version_decl_t *versions; /* hearth.keep_version, in declaration order (lua_versions.c) */
  int *plan_refs;           /* each one's plan function (registry ref) */
  int nversions, capversions;
};

/* The call in progress; raises when there is none (a handle used outside its handler). */
engine_call_t *call_current(lua_State *L);
/* Raise the Lua error for a failed engine change (the engine has marked the call). */
int raise_db_error(lua_State *L);
scripts_t *scripts_of(lua_State *L);

/* lua_cron.c */
void cron_api_install(lua_State *L);

/* lua_points.c: hearth.points_rule, hearth.item, the `expire` option */
void points_api_install(lua_State *L);
void points_decls_free(scripts_t *s);
/* The expiry at idx: "never", "month_end", "year_end", "<N>mo", a duration string or
 * seconds; false is "never". Raises on anything else. */
expiry_t arg_expiry(lua_State *L, int idx);
/* lua_broadcast.c: hearth.broadcast (into the hearth table on top of the stack) */
void broadcast_api_install(lua_State *L);
void broadcast_api_free(scripts_t *s);
/* lua_staff.c: hearth.staff, m:assign_owner, what m:task needs of them. */
void staff_api_install(lua_State *L);
int m_assign_owner(lua_State *L);
int64_t staff_task_due(scripts_t *s);
const char *staff_task_fallback(scripts_t *s);
/* lua_versions.c: hearth.digest, fn_digest, keep_version, kept_version; freeing. */
void versions_api_install(lua_State *L);
void versions_decls_free(scripts_t *s);
/* lua_invariant.c */
void invariant_api_install(lua_State *L);

/* lua_member.c */
void member_api_install(lua_State *L);
void member_api_push(lua_State *L, scripts_t *s);
/* The member behind a member handle at idx; NULL when the value is not a member handle.
 * Raises when the handle is stale. */
const member_t *member_handle_arg(lua_State *L, int idx);

/* Shared argument helpers. */
int64_t arg_duration(lua_State *L, int idx);
int64_t arg_time(lua_State *L, int idx);
json_t *arg_json(lua_State *L, int idx, const char *what);
/* A zone: none/nil the engine's, a string an IANA name, a member handle her zone. */
const tz_t *arg_zone(lua_State *L, int idx);
/* year, month, day [, hour, min, sec] from index `first` on, as an instant in tz. */
int64_t arg_local_time(lua_State *L, int first, const tz_t *tz);
/* The hearth.local_date table of instant t in tz. */
void push_local_date(lua_State *L, const tz_t *tz, int64_t t);

#endif
