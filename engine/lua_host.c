/* lua_host: the sandboxed Lua state, its limits, protected calls and script loading
 * (see lua_host.h). */
#include "lua_host.h"
#include "lua_pattern.h"
#include "lua_safe.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <lauxlib.h>
#include <lualib.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOOK_EVERY 1000
#define SETTLE_BYTES_EVERY ((size_t)64 << 10) /* the allocator charges bytes this often */
#define MEMORY_RESERVE ((size_t)256 << 10)    /* lent past the ceiling to report a trip */

void budget_default(budget_t *lim) {
  lim->max_instructions = 10000000;
  lim->max_call_ms = 2000;
  lim->max_call_bytes = 64u << 20;
  lim->max_state_bytes = (size_t)1 << 30;
}

luahost_t *luahost_of(lua_State *L) { return *(luahost_t **)lua_getextraspace(L); }

static void cpu_hook(lua_State *L, lua_Debug *ar);

/* Has the running call spent its instructions or passed its deadline? Which, or 0. */
static int budget_spent(const luahost_t *h) {
  if (h->instructions > h->lim.max_instructions) return LUAHOST_TRIP_CPU;
  if (mono_ns() > h->deadline_ns) return LUAHOST_TRIP_TIME;
  return 0;
}

/* Make the thread running script code stop at its next instruction (the hook raises the
 * budget error there). Safe from the allocator: lua_sethook only sets fields. */
static void stop_at_next_instruction(luahost_t *h) {
  if (h->running) lua_sethook(h->running, cpu_hook, LUA_MASKCOUNT, 1);
}

/* Record the first reason the running call is stopped. */
static void trip(luahost_t *h, int why) {
  if (!h->trip) h->trip = why;
  stop_at_next_instruction(h);
}

/* Lend the memory reserve: the ceiling is lifted a little so that the budget error and
 * its traceback can still be built; the call is stopped at its next instruction anyway. */
static void trip_memory(luahost_t *h) {
  if (h->trip == LUAHOST_TRIP_MEMORY) return;
  h->trip = 0; /* the memory message wins: it says what to fix */
  trip(h, LUAHOST_TRIP_MEMORY);
  size_t lifted = h->used + MEMORY_RESERVE;
  h->ceiling = lifted < h->lim.max_state_bytes ? lifted : h->lim.max_state_bytes;
}

/* The allocator: refuse growth past the ceiling (per call while armed, overall always);
 * while armed, charge the bytes handed out to the call's budget every 64 KiB. A refusal
 * trips the memory budget, except when Lua's emergency collection rescues it: Lua asks
 * again for the same block right after collecting, and if that fits under the ceiling
 * the call had, the trip is undone. */
static void *host_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  luahost_t *h = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    free(ptr);
    h->used -= old;
    return NULL;
  }
  if (nsize > old) {
    int retry = h->refused.pending && h->refused.ptr == ptr && h->refused.size == nsize;
    h->refused.pending = 0;
    if (retry && h->used - old + nsize <= h->refused.ceiling) {
      /* rescued; the full collection it took is seen by the clock */
      h->trip = h->refused.trip;
      h->ceiling = h->refused.ceiling;
      if (!h->trip && h->running) lua_sethook(h->running, cpu_hook, LUA_MASKCOUNT, HOOK_EVERY);
      int why = h->trip ? 0 : budget_spent(h);
      if (why) trip(h, why);
    } else if (h->used - old + nsize > (retry ? h->refused.ceiling : h->ceiling)) {
      if (h->armed && !retry && h->trip != LUAHOST_TRIP_MEMORY) {
        h->refused.pending = 1;
        h->refused.ptr = ptr;
        h->refused.size = nsize;
        h->refused.trip = h->trip;
        h->refused.ceiling = h->ceiling;
        trip_memory(h);
      }
      return NULL;
    }
    if (h->armed) {
      h->unpaid_bytes += nsize - old;
      if (h->unpaid_bytes >= SETTLE_BYTES_EVERY) {
        h->instructions += (long)(h->unpaid_bytes / LUAHOST_BYTES_PER_UNIT);
        h->unpaid_bytes %= LUAHOST_BYTES_PER_UNIT;
        int why = h->trip ? 0 : budget_spent(h);
        if (why) trip(h, why);
      }
    }
  }
  void *p = realloc(ptr, nsize);
  if (!p) return NULL;
  h->used = h->used - old + nsize;
  return p;
}

/* "file:line: " of the innermost Lua frame of L, or "" when it has none. */
static void where_of(lua_State *L, char *buf, size_t size) {
  lua_Debug ar;
  buf[0] = '\0';
  for (int level = 0; lua_getstack(L, level, &ar); level++)
    if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
      snprintf(buf, size, "%s:%d: ", ar.short_src, ar.currentline);
      return;
    }
}

/* The message of the budget error for why. */
static void budget_message(const luahost_t *h, int why, char *buf, size_t size) {
  if (why == LUAHOST_TRIP_MEMORY)
    snprintf(buf, size, "handler stopped: ran over its memory budget of %zu MiB", h->lim.max_call_bytes >> 20);
  else if (why == LUAHOST_TRIP_CPU)
    snprintf(buf, size, "handler stopped: ran over its CPU budget of %ld instructions", h->lim.max_instructions);
  else
    snprintf(buf, size, "handler stopped: ran over its time budget of %u ms", h->lim.max_call_ms);
}

/* Raise the budget error: from now on the hook fires on every instruction of this thread
 * and raises again, so a pcall inside the script only delays the end by one instruction. */
static int raise_over_budget(lua_State *L, luahost_t *h) {
  assert(h->trip);
  lua_sethook(L, cpu_hook, LUA_MASKCOUNT, 1);
  char where[256], msg[128];
  where_of(L, where, sizeof where);
  budget_message(h, h->trip, msg, sizeof msg);
  lua_pushfstring(L, "%s%s", where, msg);
  return lua_error(L);
}

/* Count hook: every HOOK_EVERY instructions, pay for them and check the deadline; once
 * tripped, raise at every instruction. */
static void cpu_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  luahost_t *h = luahost_of(L);
  if (!h->armed) return;
  if (!h->trip) {
    h->instructions += HOOK_EVERY;
    int why = budget_spent(h);
    if (!why) return;
    h->trip = why;
  }
  raise_over_budget(L, h);
}

void luahost_charge(lua_State *L, long n) {
  luahost_t *h = luahost_of(L);
  if (!h->armed) return;
  if (!h->trip) {
    h->instructions = n > LONG_MAX - h->instructions ? LONG_MAX : h->instructions + n;
    int why = budget_spent(h);
    if (!why) return;
    h->trip = why;
  }
  raise_over_budget(L, h);
}

void luahost_reraise(lua_State *L, int status) {
  luahost_t *h = luahost_of(L);
  if (!h->armed) return;
  if (status == LUA_ERRMEM) trip_memory(h); /* refused once, no collection could help */
  if (h->trip) raise_over_budget(L, h);
}

lua_State *luahost_enter(lua_State *L, lua_State *co) {
  luahost_t *h = luahost_of(L);
  lua_State *prev = h->running;
  h->running = co;
  if (h->armed && h->trip) lua_sethook(co, cpu_hook, LUA_MASKCOUNT, 1);
  return prev;
}

void luahost_leave(lua_State *L, lua_State *prev) { luahost_of(L)->running = prev; }

static void arm(luahost_t *h) {
  h->armed = 1;
  h->trip = 0;
  h->instructions = 0;
  h->unpaid_bytes = 0;
  h->refused.pending = 0;
  h->deadline_ns = mono_ns() + (uint64_t)h->lim.max_call_ms * 1000000u;
  size_t c = h->used + h->lim.max_call_bytes;
  h->ceiling = c < h->lim.max_state_bytes ? c : h->lim.max_state_bytes;
}

static void disarm(luahost_t *h) {
  h->armed = 0;
  h->ceiling = h->lim.max_state_bytes;
}

/* ---- running a call in a thread of its own ---- */

static int push_new_thread(lua_State *L) {
  lua_newthread(L);
  return 1;
}

/* A new thread on top of L's stack (protected: it allocates), or NULL. */
static lua_State *new_thread(lua_State *L) {
  if (!lua_checkstack(L, 4)) return NULL;
  lua_pushcfunction(L, push_new_thread);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    return NULL;
  }
  return lua_tothread(L, -1);
}

/* Protected: luaL_tolstring of the value on top (runs a __tostring metamethod). */
static int to_string(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* The failed thread co's error object as text, pushed on L. A table with __tostring is
 * described by it, run on L with the budget still armed. */
static void push_error_text(luahost_t *h, lua_State *co) {
  lua_State *L = h->L;
  if (lua_type(co, -1) == LUA_TSTRING || lua_type(co, -1) == LUA_TNUMBER) {
    lua_pushstring(L, lua_tostring(co, -1));
    return;
  }
  if (lua_checkstack(co, 2) && luaL_getmetafield(co, -1, "__tostring") != LUA_TNIL) {
    lua_pop(co, 1);
    lua_pushcfunction(L, to_string);
    lua_pushvalue(co, -1);
    lua_xmove(co, L, 1);
    lua_sethook(L, cpu_hook, LUA_MASKCOUNT, h->trip ? 1 : HOOK_EVERY);
    int rc = lua_pcall(L, 1, 1, 0);
    lua_sethook(L, NULL, 0, 0);
    if (rc == LUA_OK && lua_type(L, -1) == LUA_TSTRING) return;
    lua_pop(L, 1);
  }
  lua_pushfstring(L, "(error object is a %s value)", luaL_typename(co, -1));
}

/* Settle how the thread co ended (rc from lua_resume): 0 finished, 1 yielded (when
 * may_yield), -1 failed with *err set. On failure the traceback is built with the ceiling
 * lifted, then co's pending to-be-closed variables are closed, still armed. */
static int settle(luahost_t *h, lua_State *co, int rc, int may_yield, char **err) {
  lua_State *L = h->L;
  if (rc == LUA_ERRMEM && h->armed) trip_memory(h);
  if ((rc == LUA_OK || (rc == LUA_YIELD && may_yield)) && !h->trip) return rc == LUA_YIELD;
  char where[256], msg[128];
  where_of(co, where, sizeof where);
  if (h->trip) {
    budget_message(h, h->trip, msg, sizeof msg);
    lua_pushfstring(L, "%s%s", where, msg);
  } else if (rc == LUA_YIELD) {
    lua_pushfstring(L, "%sattempt to yield from outside a coroutine", where);
  } else if (rc == LUA_ERRMEM) {
    lua_pushfstring(L, "%shandler stopped: out of memory", where);
  } else {
    push_error_text(h, co);
  }
  int armed = h->armed;
  size_t ceiling = h->ceiling;
  h->armed = 0;
  h->ceiling = h->lim.max_state_bytes;
  luaL_traceback(L, co, lua_tostring(L, -1), 0);
  *err = xstrdup(lua_tostring(L, -1));
  lua_pop(L, 2);
  h->armed = armed;
  h->ceiling = ceiling;
  lua_resetthread(co);
  return -1;
}

int luahost_resume(luahost_t *h, lua_State *co, int nargs, char **err) {
  *err = NULL;
  arm(h);
  h->running = co;
  lua_sethook(co, cpu_hook, LUA_MASKCOUNT, HOOK_EVERY);
  int nres = 0;
  int rc = lua_resume(co, h->L, nargs, &nres);
  if (rc == LUA_OK || rc == LUA_YIELD) lua_pop(co, nres);
  int settled = settle(h, co, rc, 1, err);
  int tripped = h->trip;
  h->running = NULL;
  disarm(h);
  lua_sethook(co, NULL, 0, 0);
  if (tripped == LUAHOST_TRIP_MEMORY) lua_gc(h->L, LUA_GCCOLLECT);
  return settled < 0 ? -1 : settled ? LUA_YIELD : LUA_OK;
}

int luahost_call(luahost_t *h, lua_CFunction fn, void *ud, char **err) {
  lua_State *L = h->L;
  int base = lua_gettop(L);
  *err = NULL;
  /* the thread of the last call, when it finished (a call nested in a call needs its
   * own): one thread a call would be an allocation and garbage for every handler */
  lua_State *co = h->spare;
  int reused = co != NULL;
  h->spare = NULL;
  if (!co) co = new_thread(L);
  if (!co || !lua_checkstack(co, 2)) {
    lua_settop(L, base);
    *err = xstrdup("handler stopped: out of memory");
    return -1;
  }
  lua_pushcfunction(co, fn);
  lua_pushlightuserdata(co, ud);
  int nested = h->armed; /* a call from inside a call keeps the outer budget */
  if (!nested) arm(h);
  lua_State *outer = h->running;
  h->running = co;
  lua_sethook(co, cpu_hook, LUA_MASKCOUNT, h->trip ? 1 : HOOK_EVERY);
  int nres = 0;
  int rc = lua_resume(co, L, 1, &nres);
  int settled = settle(h, co, rc, 0, err);
  int tripped = h->trip;
  h->running = outer;
  if (!nested) disarm(h);
  /* Keep it only after a clean finish: a thread that failed is reset by settle, but Lua
   * 5.4.4's lua_resetthread does not restore the hooks a budget error raised inside the
   * count hook turned off, so it would run the next call with no budget at all. */
  if (!nested && rc == LUA_OK && settled == 0 && !tripped && lua_status(co) == LUA_OK) {
    lua_settop(co, 0);
    if (!reused) { /* anchor the new thread (at base + 1) instead of the old spare */
      assert(lua_tothread(L, base + 1) == co);
      lua_pushvalue(L, base + 1);
      if (h->spare_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, h->spare_ref);
      h->spare_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    h->spare = co;
  }
  lua_settop(L, base);
  if (tripped == LUAHOST_TRIP_MEMORY && !nested) lua_gc(L, LUA_GCCOLLECT);
  return settled < 0 ? -1 : 0;
}

/* ---- the sandbox ---- */

static const char *const base_allowed[] = {
    "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "rawequal",
    "rawget", "rawlen", "rawset", "select", "setmetatable", "tonumber", "tostring", "type",
    "xpcall", "_VERSION", NULL};

static const luaL_Reg libs_allowed[] = {
    {LUA_GNAME, luaopen_base}, {LUA_TABLIBNAME, luaopen_table}, {LUA_STRLIBNAME, luaopen_string},
    {LUA_MATHLIBNAME, luaopen_math}, {LUA_UTF8LIBNAME, luaopen_utf8},
    {LUA_COLIBNAME, luaopen_coroutine}, {LUA_OSLIBNAME, luaopen_os}, {NULL, NULL}};

static const char *const os_allowed[] = {"time", "date", "clock", NULL};

/* ---- each chunk's own copies of the shared tables ---- */

struct luahost_scope {
  char *name;     /* campaign, or "" for the host's default */
  int string_ref; /* its string table: what string methods find */
  int meta_ref;   /* what getmetatable("") gives it: {__index = its string table} */
};

/* Replace the table on top of the stack by a shallow copy of it. */
static void copy_table_on_top(lua_State *L) {
  int t = lua_gettop(L);
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, t + 1);
  }
  lua_remove(L, t);
}

/* Push a copy of the master base in which every table (each library, hearth) is copied
 * too: what one chunk changes in it, no other chunk sees. */
static void push_base_copy(lua_State *L) {
  luahost_t *h = luahost_of(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->sandbox_ref);
  int master = lua_gettop(L);
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, master)) {
    if (lua_type(L, -1) == LUA_TTABLE) copy_table_on_top(L);
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, master + 1);
  }
  lua_remove(L, master);
}

/* Push a fresh environment over a base copy of its own; with_string also pushes that
 * copy's string table (above the environment). */
static void push_env(lua_State *L, int with_string) {
  push_base_copy(L);
  int base = lua_gettop(L);
  lua_createtable(L, 0, 4);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, base);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "_G");
  if (with_string) lua_getfield(L, base, "string");
  lua_remove(L, base);
}

void luahost_push_env(lua_State *L) { push_env(L, 0); }

/* The string table on top becomes campaign's (popped); replaces an earlier one. */
static void set_scope(lua_State *L, luahost_t *h, const char *campaign) {
  int string_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_createtable(L, 0, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, string_ref);
  lua_setfield(L, -2, "__index");
  int meta_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  int k = 0;
  while (k < h->nscopes && strcmp(h->scopes[k].name, campaign) != 0) k++;
  if (k == h->nscopes) {
    h->scopes = xrealloc(h->scopes, (size_t)(h->nscopes + 1) * sizeof *h->scopes);
    h->scopes[h->nscopes++] = (struct luahost_scope){xstrdup(campaign), LUA_NOREF, LUA_NOREF};
  }
  luaL_unref(L, LUA_REGISTRYINDEX, h->scopes[k].string_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, h->scopes[k].meta_ref);
  h->scopes[k].string_ref = string_ref;
  h->scopes[k].meta_ref = meta_ref;
  if (h->active_scope == k) h->active_scope = -1; /* its tables changed: switch again */
}

/* The string metatable is shared by every string, so it cannot be copied: its __index and
 * __metatable are switched to the running campaign's own (two table stores when the
 * campaign is not the one before; a string method call costs what it did: one table
 * lookup). */
void luahost_activate(luahost_t *h, const char *campaign) {
  assert(h->nscopes > 0);
  int k = 0; /* the default */
  for (int i = 1; i < h->nscopes && campaign; i++)
    if (strcmp(h->scopes[i].name, campaign) == 0) k = i;
  if (k == h->active_scope) return;
  h->active_scope = k;
  lua_State *L = h->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->string_mt_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->scopes[k].string_ref);
  lua_setfield(L, -2, "__index");
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->scopes[k].meta_ref);
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
}

/* load(chunk [, name [, mode [, env]]]) for scripts: text only, default env a fresh one;
 * parsing is paid for before it starts (LUAHOST_LOAD_UNITS_PER_BYTE). */
static int safe_load(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *name = luaL_optstring(L, 2, "=(load)");
  const char *mode = luaL_optstring(L, 3, "t");
  if (strcmp(mode, "t") != 0) return luaL_error(L, "load: only text chunks are allowed (mode \"t\")");
  int has_env = !lua_isnone(L, 4);
  luahost_charge(L, len > (size_t)(LONG_MAX / LUAHOST_LOAD_UNITS_PER_BYTE)
                        ? LONG_MAX : (long)len * LUAHOST_LOAD_UNITS_PER_BYTE);
  if (luaL_loadbufferx(L, s, len, name, "t") != LUA_OK) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  if (has_env)
    lua_pushvalue(L, 4);
  else
    luahost_push_env(L);
  if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
  return 1;
}

/* Load path as a text chunk named after its real path, with a fresh environment; a
 * campaign script's string table becomes the campaign's scope, and is activated. */
static void hex_sha256(const void *p, size_t n, char out[65]) {
  unsigned char d[32];
  unsigned int len = sizeof d;
  EVP_Digest(p, n, d, &len, EVP_sha256(), NULL);
  for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* A chunk's label in the manifest: stdlib/<rel> for a standard module, the path inside
 * the scripts folder for a script or a module of its own, else the file name. */
static const char *chunk_label(const luahost_t *h, const char *path, char *buf, size_t n) {
  size_t k;
  if (h->stdlib_dir && strncmp(path, h->stdlib_dir, k = strlen(h->stdlib_dir)) == 0 && path[k] == '/') {
    snprintf(buf, n, "stdlib/%s", path + k + 1);
    return buf;
  }
  if (h->scripts_dir && strncmp(path, h->scripts_dir, k = strlen(h->scripts_dir)) == 0 && path[k] == '/')
    return path + k + 1;
  const char *b = strrchr(path, '/');
  return b ? b + 1 : path;
}

static void note_chunk(luahost_t *h, const char *path, const char *text, size_t len) {
  char label[1024], hex[65];
  hex_sha256(text, len, hex);
  sb_addf(&h->manifest, "%s\t%s\n", chunk_label(h, path, label, sizeof label), hex);
}

void luahost_version(const luahost_t *h, char out[65]) {
  hex_sha256(h->manifest.len ? h->manifest.data : "", h->manifest.len, out);
}

static int load_chunk(lua_State *L, const char *path, const char *campaign) {
  size_t len;
  char *text = read_file(path, &len);
  if (!text) {
    lua_pushfstring(L, "%s: cannot read: %s", path, strerror(errno));
    return -1;
  }
  note_chunk(luahost_of(L), path, text, len);
  lua_pushfstring(L, "@%s", path);
  int rc = luaL_loadbufferx(L, text, len, lua_tostring(L, -1), "t");
  free(text);
  lua_remove(L, -2);
  if (rc != LUA_OK) return -1;
  push_env(L, campaign != NULL);
  if (campaign) {
    luahost_t *h = luahost_of(L);
    set_scope(L, h, campaign);
    luahost_activate(h, campaign);
  }
  lua_setupvalue(L, -2, 1);
  return 0;
}

static int file_exists(const char *p) {
  FILE *f = fopen(p, "r");
  if (f) fclose(f);
  return f != NULL;
}

/* require(name): stdlib/<name>.lua, then <scripts>/<name>.lua ('.' = '/'); cached. */
static int safe_require(lua_State *L) {
  luahost_t *h = luahost_of(L);
  const char *name = luaL_checkstring(L, 1);
  for (const char *p = name; *p; p++)
    if (!(*p == '_' || *p == '.' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9')))
      return luaL_error(L, "require: bad module name '%s'", name);
  lua_getfield(L, LUA_REGISTRYINDEX, "hearth.loaded");
  if (lua_getfield(L, -1, name) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  char rel[512];
  snprintf(rel, sizeof rel, "%s", name);
  for (char *p = rel; *p; p++)
    if (*p == '.') *p = '/';
  const char *dirs[2] = {h->stdlib_dir, h->scripts_dir};
  char path[1024] = "";
  int found = 0;
  for (int i = 0; i < 2 && !found; i++) {
    if (!dirs[i]) continue;
    snprintf(path, sizeof path, "%s/%s.lua", dirs[i], rel);
    found = file_exists(path);
  }
  if (!found)
    return luaL_error(L, "module '%s' not found (looked for %s/%s.lua and %s/%s.lua; "
                      "only Lua modules from the standard library and the scripts folder "
                      "can be required)", name, h->stdlib_dir ? h->stdlib_dir : "stdlib", rel,
                      h->scripts_dir ? h->scripts_dir : "scripts", rel);
  if (load_chunk(L, path, NULL) < 0) return lua_error(L);
  lua_pushstring(L, name);
  lua_call(L, 1, 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, name);
  return 1;
}

/* setmetatable for scripts: no __gc (finalizers run outside any budget). */
static int safe_setmetatable(lua_State *L) {
  if (lua_istable(L, 2) && lua_getfield(L, 2, "__gc") != LUA_TNIL)
    return luaL_error(L, "setmetatable: __gc metamethods are not allowed in scripts");
  lua_settop(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getglobal(L, "setmetatable");
  lua_insert(L, 1);
  lua_call(L, 2, 1);
  return 1;
}

/* print(...) goes to the log at info level. */
static int safe_print(lua_State *L) {
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  fprintf(stderr, "%s\n", lua_tostring(L, -1));
  return 0;
}

struct install_ctx {
  void (*install)(lua_State *L, void *ud);
  void *ud;
};

/* Build the base table: allowed base functions and libraries, and the hearth API. Runs
 * protected (it allocates). */
static int build_sandbox(lua_State *L) {
  struct install_ctx *ctx = lua_touserdata(L, 1);
  luahost_t *h = luahost_of(L);
  for (const luaL_Reg *lib = libs_allowed; lib->func; lib++) {
    luaL_requiref(L, lib->name, lib->func, 1);
    lua_pop(L, 1);
  }
  lua_newtable(L); /* registry cache for require */
  lua_setfield(L, LUA_REGISTRYINDEX, "hearth.loaded");

  lua_newtable(L); /* the sandbox base */
  lua_pushglobaltable(L);
  for (const char *const *n = base_allowed; *n; n++) {
    lua_getfield(L, -1, *n);
    lua_setfield(L, -3, *n);
  }
  lua_getfield(L, -1, "string"); /* no bytecode out either */
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  /* find/match/gmatch/gsub whose steps are paid from the call's budget (the hook never
   * fires inside C): one matcher step costs one instruction, see luahost_charge */
  pattern_install(L, -1, luahost_charge);
  lua_pop(L, 1);
  /* the base holds copies of the libraries: the sandbox's wrappers (lua_safe.c) go into
   * the copies, the real tables keep the originals they call */
  const char *libnames[] = {"table", "string", "math", "utf8", "coroutine", NULL};
  for (const char **n = libnames; *n; n++) {
    lua_getfield(L, -1, *n);
    copy_table_on_top(L);
    lua_setfield(L, -3, *n);
  }
  lua_newtable(L); /* os: time, date, clock only */
  lua_getfield(L, -2, "os");
  for (const char *const *n = os_allowed; *n; n++) {
    lua_getfield(L, -1, *n);
    lua_setfield(L, -3, *n);
  }
  lua_pop(L, 1);
  lua_setfield(L, -3, "os");
  lua_pop(L, 1); /* the real globals, never seen by scripts */
  lua_pushcfunction(L, safe_load);
  lua_setfield(L, -2, "load");
  lua_pushcfunction(L, safe_require);
  lua_setfield(L, -2, "require");
  lua_pushcfunction(L, safe_print);
  lua_setfield(L, -2, "print");
  lua_pushcfunction(L, safe_setmetatable);
  lua_setfield(L, -2, "setmetatable");
  safe_lib_install(L, lua_gettop(L));
  lua_pushvalue(L, -1);
  h->sandbox_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (ctx->install) ctx->install(L, ctx->ud);
  /* the string metatable, and the default scope its __index starts with */
  lua_pushliteral(L, "");
  lua_getmetatable(L, -1);
  h->string_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  push_base_copy(L);
  lua_getfield(L, -1, "string");
  set_scope(L, h, "");
  lua_pop(L, 1);
  luahost_activate(h, NULL);
  return 0;
}

luahost_t *luahost_new(const budget_t *lim, const char *stdlib_dir, const char *scripts_dir,
                       void (*install)(lua_State *L, void *ud), void *ud) {
  luahost_t *h = xcalloc(1, sizeof *h);
  h->spare_ref = LUA_NOREF;
  h->active_scope = -1;
  sb_init(&h->manifest);
  if (lim)
    h->lim = *lim;
  else
    budget_default(&h->lim);
  h->ceiling = h->lim.max_state_bytes;
  h->stdlib_dir = stdlib_dir ? xstrdup(stdlib_dir) : NULL;
  h->scripts_dir = scripts_dir ? xstrdup(scripts_dir) : NULL;
  h->L = lua_newstate(host_alloc, h);
  if (!h->L) {
    luahost_free(h);
    return NULL;
  }
  *(luahost_t **)lua_getextraspace(h->L) = h;
  /* Lua 5.4's generational collector: a handler's tables (an event, the values m:get
   * converts) die young, and the scripts' own state stays old, so a minor collection
   * walks only what is new */
  lua_gc(h->L, LUA_GCGEN, 0, 0);
  struct install_ctx ctx = {install, ud};
  lua_pushcfunction(h->L, build_sandbox);
  lua_pushlightuserdata(h->L, &ctx);
  if (lua_pcall(h->L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "hearth: cannot build the Lua sandbox: %s\n", lua_tostring(h->L, -1));
    luahost_free(h);
    return NULL;
  }
  return h;
}

void luahost_free(luahost_t *h) {
  if (!h) return;
  if (h->L) lua_close(h->L);
  free(h->stdlib_dir);
  free(h->scripts_dir);
  free(h->campaign);
  sb_free(&h->manifest);
  for (int i = 0; i < h->nscopes; i++) free(h->scopes[i].name);
  free(h->scopes);
  free(h);
}

/* ---- loading scripts ---- */

/* Protected body: load the file named by the light userdata argument and run it. */
static int load_and_run(lua_State *L) {
  const char *path = lua_touserdata(L, 1);
  luahost_t *h = luahost_of(L);
  if (load_chunk(L, path, h->campaign ? h->campaign : "main") < 0) return lua_error(L);
  lua_call(L, 0, 0);
  return 0;
}

static void add_first_line(strbuf_t *errors, const char *msg) {
  const char *nl = strchr(msg, '\n');
  sb_add(errors, msg, nl ? (size_t)(nl - msg) : strlen(msg));
  sb_adds(errors, "\n");
}

static char *stem_of(const char *path) {
  const char *b = strrchr(path, '/');
  b = b ? b + 1 : path;
  const char *dot = strrchr(b, '.');
  return xstrndup(b, dot ? (size_t)(dot - b) : strlen(b));
}

int luahost_load_file(luahost_t *h, const char *path, strbuf_t *errors) {
  free(h->campaign);
  h->campaign = stem_of(path);
  h->loading = 1;
  char *err = NULL;
  int rc = luahost_call(h, load_and_run, (void *)path, &err);
  h->loading = 0;
  if (rc < 0) {
    add_first_line(errors, err);
    free(err);
  }
  return rc;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_suffix(const char *n, size_t len, const char *suffix) {
  size_t k = strlen(suffix);
  return len >= k && strcmp(n + len - k, suffix) == 0;
}

int luahost_is_test_helper(const char *name) {
  const char *base = strrchr(name, '/');
  base = base ? base + 1 : name;
  return has_suffix(base, strlen(base), "_helpers.lua");
}

/* A campaign script: *.lua, not hidden, not a test (*_test.lua), not a test helper. */
static int is_script_name(const char *n) {
  size_t len = strlen(n);
  if (len < 5 || !has_suffix(n, len, ".lua") || n[0] == '.') return 0;
  return !has_suffix(n, len, "_test.lua") && !luahost_is_test_helper(n);
}

int luahost_load_scripts(luahost_t *h, const char *dir, strbuf_t *errors) {
  DIR *d = opendir(dir);
  if (!d) {
    sb_addf(errors, "%s: cannot open scripts folder: %s\n", dir, strerror(errno));
    return -1;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!is_script_name(e->d_name)) continue;
    if (n == cap) names = xrealloc(names, (cap = cap ? cap * 2 : 16) * sizeof *names);
    names[n++] = xstrdup(e->d_name);
  }
  closedir(d);
  if (n) qsort(names, n, sizeof *names, cmp_names);
  int failed = 0;
  for (size_t i = 0; i < n; i++) {
    char *path = xasprintf("%s/%s", dir, names[i]);
    if (luahost_load_file(h, path, errors) < 0) failed++;
    free(path);
    free(names[i]);
  }
  free(names);
  return failed;
}
