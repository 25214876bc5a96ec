/* lua_host: the sandboxed Lua state, its limits, protected calls and script loading
 * (see lua_host.h). */
#include "lua_host.h"
#include "lua_pattern.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOOK_EVERY 1000

void budget_default(budget_t *lim) {
  lim->max_instructions = 10000000;
  lim->max_call_ms = 2000;
  lim->max_call_bytes = 64u << 20;
  lim->max_state_bytes = (size_t)1 << 30;
}

/* The allocator: refuse growth past the ceiling (per call while armed, overall always). */
static void *host_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  luahost_t *h = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    free(ptr);
    h->used -= old;
    return NULL;
  }
  if (nsize > old && h->used - old + nsize > h->ceiling) {
    h->mem_tripped = 1;
    return NULL;
  }
  void *p = realloc(ptr, nsize);
  if (!p) return NULL;
  h->used = h->used - old + nsize;
  return p;
}

luahost_t *luahost_of(lua_State *L) { return *(luahost_t **)lua_getextraspace(L); }

static void cpu_hook(lua_State *L, lua_Debug *ar);

/* Has the running call spent its instructions or passed its deadline? */
static int budget_spent(const luahost_t *h) {
  return h->instructions > h->lim.max_instructions || mono_ns() > h->deadline_ns;
}

/* Trip the budget and raise: from now on the hook fires on every instruction of this
 * thread and raises again, so a pcall inside the script only delays the end by one
 * instruction. */
static void raise_over_budget(lua_State *L, luahost_t *h) {
  h->cpu_tripped = 1;
  lua_sethook(L, cpu_hook, LUA_MASKCOUNT, 1);
  if (h->instructions > h->lim.max_instructions)
    luaL_error(L, "handler stopped: ran over its CPU budget of %I instructions",
               (lua_Integer)h->lim.max_instructions);
  luaL_error(L, "handler stopped: ran over its time budget of %I ms", (lua_Integer)h->lim.max_call_ms);
}

/* Count hook: every HOOK_EVERY instructions, pay for them and check the deadline. */
static void cpu_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  luahost_t *h = luahost_of(L);
  if (!h->armed) return;
  if (!h->cpu_tripped) {
    h->instructions += HOOK_EVERY;
    if (!budget_spent(h)) return;
  }
  raise_over_budget(L, h);
}

void luahost_charge(lua_State *L, long n) {
  luahost_t *h = luahost_of(L);
  if (!h->armed) return;
  if (!h->cpu_tripped) {
    h->instructions += n;
    if (!budget_spent(h)) return;
  }
  raise_over_budget(L, h);
}

/* Message handler: append a traceback to the error message. */
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static void arm_thread(luahost_t *h, lua_State *L) {
  h->armed = 1;
  h->cpu_tripped = h->mem_tripped = 0;
  h->instructions = 0;
  h->deadline_ns = mono_ns() + (uint64_t)h->lim.max_call_ms * 1000000u;
  size_t c = h->used + h->lim.max_call_bytes;
  h->ceiling = c < h->lim.max_state_bytes ? c : h->lim.max_state_bytes;
  lua_sethook(L, cpu_hook, LUA_MASKCOUNT, HOOK_EVERY);
}

static void arm(luahost_t *h) {
  h->armed = 1;
  h->cpu_tripped = h->mem_tripped = 0;
  h->instructions = 0;
  h->deadline_ns = mono_ns() + (uint64_t)h->lim.max_call_ms * 1000000u;
  size_t c = h->used + h->lim.max_call_bytes;
  h->ceiling = c < h->lim.max_state_bytes ? c : h->lim.max_state_bytes;
  lua_sethook(h->L, cpu_hook, LUA_MASKCOUNT, HOOK_EVERY);
}

static void disarm(luahost_t *h) {
  h->armed = 0;
  h->ceiling = h->lim.max_state_bytes;
  lua_sethook(h->L, NULL, 0, 0);
}

int luahost_resume(luahost_t *h, lua_State *co, int nargs, char **err) {
  *err = NULL;
  arm_thread(h, co);
  int nres = 0;
  int rc = lua_resume(co, h->L, nargs, &nres);
  int tripped_mem = h->mem_tripped;
  if ((rc == LUA_OK || rc == LUA_YIELD) && tripped_mem) {
    lua_pop(co, nres);
    rc = LUA_ERRMEM;
  }
  h->armed = 0;
  h->ceiling = h->lim.max_state_bytes;
  lua_sethook(co, NULL, 0, 0);
  if (rc == LUA_OK || rc == LUA_YIELD) {
    lua_pop(co, nres);
    return rc;
  }
  if (rc == LUA_ERRMEM || tripped_mem) {
    *err = tripped_mem ? xasprintf("stopped: ran over its memory budget of %zu MiB", h->lim.max_call_bytes >> 20)
                       : xstrdup("stopped: out of memory");
    lua_gc(h->L, LUA_GCCOLLECT);
  } else {
    const char *msg = lua_tostring(co, -1);
    luaL_traceback(h->L, co, msg ? msg : "(error without a message)", 0);
    *err = xstrdup(lua_tostring(h->L, -1));
    lua_pop(h->L, 1);
  }
  return -1;
}

int luahost_call(luahost_t *h, lua_CFunction fn, void *ud, char **err) {
  lua_State *L = h->L;
  int base = lua_gettop(L);
  *err = NULL;
  if (!lua_checkstack(L, 4)) {
    *err = xstrdup("Lua stack exhausted");
    return -1;
  }
  lua_pushcfunction(L, msghandler);
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, ud);
  int nested = h->armed; /* a call from inside a call keeps the outer budget */
  if (!nested) arm(h);
  int rc = lua_pcall(L, 1, 0, base + 1);
  int tripped_mem = h->mem_tripped;
  if (rc == LUA_OK && tripped_mem && !nested) rc = LUA_ERRMEM; /* caught by the script's pcall: still over */
  if (!nested) disarm(h);
  if (rc != LUA_OK) {
    if (rc == LUA_ERRMEM || tripped_mem) {
      if (tripped_mem)
        *err = xasprintf("handler stopped: ran over its memory budget of %zu MiB",
                         h->lim.max_call_bytes >> 20);
      else
        *err = xstrdup("handler stopped: out of memory");
    } else {
      const char *msg = lua_tostring(L, -1);
      *err = xstrdup(msg ? msg : "(error without a message)");
    }
  }
  lua_settop(L, base);
  if (rc != LUA_OK && tripped_mem) lua_gc(L, LUA_GCCOLLECT);
  return rc == LUA_OK ? 0 : -1;
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

/* load(chunk [, name [, mode [, env]]]) for scripts: text only, default env a fresh one. */
static int safe_load(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *name = luaL_optstring(L, 2, "=(load)");
  const char *mode = luaL_optstring(L, 3, "t");
  if (strcmp(mode, "t") != 0) return luaL_error(L, "load: only text chunks are allowed (mode \"t\")");
  int has_env = !lua_isnone(L, 4);
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

void luahost_push_env(lua_State *L) {
  luahost_t *h = luahost_of(L);
  lua_createtable(L, 0, 4);
  lua_createtable(L, 0, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->sandbox_ref);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "_G");
}

/* Load path as a text chunk named after its real path, with a fresh environment. */
static int load_chunk(lua_State *L, const char *path) {
  size_t len;
  char *text = read_file(path, &len);
  if (!text) {
    lua_pushfstring(L, "%s: cannot read: %s", path, strerror(errno));
    return -1;
  }
  lua_pushfstring(L, "@%s", path);
  int rc = luaL_loadbufferx(L, text, len, lua_tostring(L, -1), "t");
  free(text);
  lua_remove(L, -2);
  if (rc != LUA_OK) return -1;
  luahost_push_env(L);
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
  if (load_chunk(L, path) < 0) return lua_error(L);
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

/* xpcall(f, msgh, ...) for scripts: Lua runs a message handler with hooks disabled, so a
 * looping handler would escape the CPU budget. Here f runs under pcall and msgh is
 * called afterwards with the error, as ordinary (hooked) code. Scripts have no debug
 * library, so the difference (msgh runs after the stack unwound) cannot be observed. */
static int xpcall_finish(lua_State *L, int status, lua_KContext base) {
  if (status == LUA_OK || status == LUA_YIELD) {
    lua_pushboolean(L, 1);
    lua_insert(L, (int)base + 1);
    return lua_gettop(L) - (int)base;
  }
  lua_pushvalue(L, 2); /* msgh */
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  lua_pushboolean(L, 0);
  lua_insert(L, -2);
  return 2;
}

static int safe_xpcall(lua_State *L) {
  int n = lua_gettop(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  for (int i = 3; i <= n; i++) lua_pushvalue(L, i);
  int base = n; /* results start above the arguments */
  int status = lua_pcallk(L, n - 2 > 0 ? n - 2 : 0, LUA_MULTRET, 0, base, xpcall_finish);
  return xpcall_finish(L, status, base);
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
  const char *libnames[] = {"table", "string", "math", "utf8", "coroutine", NULL};
  for (const char **n = libnames; *n; n++) {
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
  lua_pushcfunction(L, safe_xpcall);
  lua_setfield(L, -2, "xpcall");
  lua_pushcfunction(L, safe_setmetatable);
  lua_setfield(L, -2, "setmetatable");
  lua_pushvalue(L, -1);
  h->sandbox_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (ctx->install) ctx->install(L, ctx->ud);
  return 0;
}

luahost_t *luahost_new(const budget_t *lim, const char *stdlib_dir, const char *scripts_dir,
                       void (*install)(lua_State *L, void *ud), void *ud) {
  luahost_t *h = xcalloc(1, sizeof *h);
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
  free(h);
}

/* ---- loading scripts ---- */

/* Protected body: load the file named by the light userdata argument and run it. */
static int load_and_run(lua_State *L) {
  const char *path = lua_touserdata(L, 1);
  if (load_chunk(L, path) < 0) return lua_error(L);
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
