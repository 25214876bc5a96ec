/* lua_versions: the glue of script versions. Owns, in the `hearth` table:
 *   hearth.digest(s)           -> the SHA-256 of s, 64 hex digits
 *   hearth.fn_digest(f)        -> the SHA-256 of f's bytecode without debug information
 *                                 (lines, names, source; the first and last line numbers
 *                                 written as 0), so moving a function in its file,
 *                                 or editing another one, leaves it alone, and of the values
 *                                 of its string, number and boolean upvalues (the closures
 *                                 of one factory differ); other upvalues count by type
 *   hearth.keep_version{kind, name, hash, label, body, attr, timer, migrates, plan}
 *                              -> while loading: declare a definition (a journey) under its
 *                                 own hash; the engine keeps its body in the database
 *                                 (definition_versions) and, when `migrates`, gives each run
 *                                 in flight on another version a migration timer at once
 *   hearth.kept_version(kind, name, hash) -> body, label | nil: a definition kept earlier
 * and scripts_plan_run, which asks a definition's `plan` function what a reload would do to
 * one run (hearth reload --plan). Ideas: the Lua 5.4 manual (lua_dump with strip) and the
 * layout of its binary chunks (what ldump.c writes, in that order); the walker is ours. */
#include <lauxlib.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_lua.h"
#include "lua_api.h"
#include "versions.h"

static void push_hex_sha256(lua_State *L, const void *p, size_t n) {
  unsigned char d[32];
  unsigned int len = sizeof d;
  char hex[65];
  EVP_Digest(p, n, d, &len, EVP_sha256(), NULL);
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
  lua_pushstring(L, hex);
}

static int l_digest(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  luahost_charge(L, (long)(n / 16));
  push_hex_sha256(L, s, n);
  return 1;
}

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  sb_add(ud, p, n);
  return 0;
}

/* ---- a stripped dump without its line numbers ----
 * lua_dump with strip still writes each function's first and last line, so the same code
 * moved in its file would dump differently. This walks the Lua 5.4 binary chunk format (the
 * reference implementation's ldump.c order: header; per function source, line defined,
 * last line, parameters, code, constants, upvalues, nested functions, debug information)
 * and copies it with both line numbers written as 0. Anything unexpected: the walk fails
 * and the caller hashes the dump as it is. */
typedef struct {
  const unsigned char *p, *end;
  strbuf_t *out;
  size_t isz, nsz, lsz; /* sizes of an instruction, a float, an integer */
} walk_t;

static int copy_bytes(walk_t *w, size_t n) {
  if ((size_t)(w->end - w->p) < n) return -1;
  sb_add(w->out, (const char *)w->p, n);
  w->p += n;
  return 0;
}

/* A size: 7 bits a byte, most significant first, the last byte marked with 0x80. */
static int read_size(walk_t *w, size_t *v, int copy) {
  size_t x = 0;
  for (int i = 0; i < 10; i++) {
    if (w->p >= w->end) return -1;
    unsigned b = *w->p++;
    if (copy) sb_add(w->out, (const char *)w->p - 1, 1);
    x = (x << 7) | (b & 0x7f);
    if (b & 0x80) {
      *v = x;
      return 0;
    }
  }
  return -1;
}

static int copy_size(walk_t *w, size_t *v) { return read_size(w, v, 1); }

static int copy_string(walk_t *w) {
  size_t n;
  if (copy_size(w, &n) < 0) return -1;
  return n ? copy_bytes(w, n - 1) : 0;
}

static int walk_function(walk_t *w, int depth) {
  size_t n, line;
  if (depth > 64 || copy_string(w) < 0) return -1;
  for (int i = 0; i < 2; i++) { /* line defined, last line: written as 0 */
    if (read_size(w, &line, 0) < 0) return -1;
    sb_add(w->out, "\x80", 1);
  }
  if (copy_bytes(w, 3) < 0 || copy_size(w, &n) < 0 || n > SIZE_MAX / w->isz || copy_bytes(w, n * w->isz) < 0)
    return -1;
  if (copy_size(w, &n) < 0) return -1;
  for (size_t i = 0; i < n; i++) { /* constants: a type tag, then the value */
    if (w->p >= w->end) return -1;
    unsigned tag = *w->p;
    if (copy_bytes(w, 1) < 0) return -1;
    int rc = 0;
    if (tag == 3) rc = copy_bytes(w, w->lsz);                 /* integer */
    else if (tag == 19) rc = copy_bytes(w, w->nsz);           /* float */
    else if (tag == 4 || tag == 20) rc = copy_string(w);      /* short, long string */
    else if (tag != 0 && tag != 1 && tag != 17) rc = -1;      /* nil, false, true */
    if (rc < 0) return -1;
  }
  if (copy_size(w, &n) < 0 || n > SIZE_MAX / 3 || copy_bytes(w, n * 3) < 0) return -1; /* upvalues */
  if (copy_size(w, &n) < 0) return -1;
  for (size_t i = 0; i < n; i++)
    if (walk_function(w, depth + 1) < 0) return -1;
  /* debug information: line info, absolute line info, locals, upvalue names */
  if (copy_size(w, &n) < 0 || copy_bytes(w, n) < 0 || copy_size(w, &n) < 0) return -1;
  for (size_t i = 0; i < 2 * n; i++)
    if (copy_size(w, &line) < 0) return -1;
  if (copy_size(w, &n) < 0) return -1;
  for (size_t i = 0; i < n; i++)
    if (copy_string(w) < 0 || copy_size(w, &line) < 0 || copy_size(w, &line) < 0) return -1;
  if (copy_size(w, &n) < 0) return -1;
  for (size_t i = 0; i < n; i++)
    if (copy_string(w) < 0) return -1;
  return 0;
}

/* The dump in b without line numbers, into out: 0, or -1 (out is then unspecified). */
static int dump_without_lines(const strbuf_t *b, strbuf_t *out) {
  const unsigned char *p = (const unsigned char *)b->data;
  /* signature (4), version, format, 6 check bytes, 3 sizes, a check integer and float */
  if (b->len < 15 || memcmp(p, LUA_SIGNATURE, 4) != 0 || p[4] != 0x54) return -1;
  walk_t w = {p, p + b->len, out, p[12], p[14], p[13]};
  if (w.isz == 0 || copy_bytes(&w, 15 + w.lsz + w.nsz + 1) < 0) return -1; /* + main's upvalue count */
  if (walk_function(&w, 0) < 0 || w.p != w.end) return -1;
  return 0;
}

/* The values of a closure's upvalues that are strings, numbers or booleans (two closures
 * of one factory differ by them); any other upvalue counts by its type only. */
static void add_upvalues(lua_State *L, strbuf_t *b) {
  for (int i = 1; lua_getupvalue(L, 1, i) != NULL; i++) {
    int t = lua_type(L, -1);
    size_t n = 0;
    const char *v = NULL;
    if (t == LUA_TSTRING || t == LUA_TNUMBER) v = lua_tolstring(L, -1, &n); /* a copy: the upvalue is not changed */
    sb_addf(b, "\n%d:%s:%zu:", i, lua_typename(L, t), n);
    if (v) sb_add(b, v, n);
    if (t == LUA_TBOOLEAN) sb_adds(b, lua_toboolean(L, -1) ? "true" : "false");
    lua_pop(L, 1);
  }
}

static int l_fn_digest(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (lua_iscfunction(L, 1)) {
    push_hex_sha256(L, "C function", 10);
    return 1;
  }
  strbuf_t b;
  sb_init(&b);
  lua_settop(L, 1);
  lua_dump(L, dump_writer, &b, 1);
  luahost_charge(L, (long)(b.len / 16));
  strbuf_t c;
  sb_init(&c);
  if (dump_without_lines(&b, &c) < 0) { /* hash the dump as it is */
    sb_reset(&c);
    sb_add(&c, b.len ? b.data : "", b.len);
  }
  add_upvalues(L, &c);
  push_hex_sha256(L, c.len ? c.data : "", c.len);
  sb_free(&b);
  sb_free(&c);
  return 1;
}

static char *opt_field(lua_State *L, const char *k, int required) {
  lua_getfield(L, 1, k);
  const char *v = required ? luaL_checkstring(L, -1) : luaL_optstring(L, -1, NULL);
  char *out = v ? xstrdup(v) : NULL;
  lua_pop(L, 1);
  return out;
}

static int l_keep_version(lua_State *L) {
  if (!luahost_of(L)->loading)
    return luaL_error(L, "hearth.keep_version may only be called while the scripts load");
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "plan");
  luaL_checktype(L, -1, LUA_TFUNCTION);
  lua_pop(L, 1);
  /* check every field before allocating anything (strings only: no conversion allocates later) */
  static const char *const required[] = {"kind", "name", "hash", "body", "attr", "timer"};
  for (size_t i = 0; i < sizeof required / sizeof *required; i++) {
    lua_getfield(L, 1, required[i]);
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "hearth.keep_version: field '%s' must be a string", required[i]);
    lua_pop(L, 1);
  }
  lua_getfield(L, 1, "label");
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
    return luaL_error(L, "hearth.keep_version: label must be a string");
  lua_pop(L, 1);
  scripts_t *s = scripts_of(L);
  if (s->nversions == s->capversions) {
    s->capversions = s->capversions ? 2 * s->capversions : 4;
    s->versions = xrealloc(s->versions, (size_t)s->capversions * sizeof *s->versions);
    s->plan_refs = xrealloc(s->plan_refs, (size_t)s->capversions * sizeof *s->plan_refs);
  }
  lua_getfield(L, 1, "plan");
  s->plan_refs[s->nversions] = luaL_ref(L, LUA_REGISTRYINDEX); /* before anything is malloc'd */
  version_decl_t *v = &s->versions[s->nversions];
  v->kind = opt_field(L, "kind", 1);
  v->name = opt_field(L, "name", 1);
  v->hash = opt_field(L, "hash", 1);
  v->label = opt_field(L, "label", 0);
  v->body = opt_field(L, "body", 1);
  v->attr = opt_field(L, "attr", 1);
  v->timer = opt_field(L, "timer", 1);
  lua_getfield(L, 1, "migrates");
  v->migrates = lua_toboolean(L, -1);
  s->nversions++;
  return 0;
}

static int push_texts(lua_State *L) {
  const char *body = lua_touserdata(L, 1), *label = lua_touserdata(L, 2);
  lua_pushstring(L, body);
  if (label)
    lua_pushstring(L, label);
  else
    lua_pushnil(L);
  return 2;
}

static int l_kept_version(lua_State *L) {
  const char *kind = luaL_checkstring(L, 1), *name = luaL_checkstring(L, 2), *hash = luaL_checkstring(L, 3);
  char *body = NULL, *label = NULL;
  int rc = engine_kept_definition(scripts_of(L)->engine, kind, name, hash, &body, &label);
  if (rc < 0) return luaL_error(L, "hearth.kept_version: the database could not be read");
  if (rc == 0) {
    lua_pushnil(L);
    return 1;
  }
  /* the texts become Lua strings in a protected call: a memory error there must not leak them */
  lua_pushcfunction(L, push_texts);
  lua_pushlightuserdata(L, body);
  lua_pushlightuserdata(L, label);
  int status = lua_pcall(L, 2, 2, 0);
  free(body);
  free(label);
  if (status != LUA_OK) return lua_error(L);
  return 2;
}

void versions_api_install(lua_State *L) {
  static const luaL_Reg fns[] = {{"digest", l_digest}, {"fn_digest", l_fn_digest},
                                 {"keep_version", l_keep_version}, {"kept_version", l_kept_version},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}

void versions_decls_free(scripts_t *s) {
  for (int i = 0; i < s->nversions; i++) {
    version_decl_t *v = &s->versions[i];
    free(v->kind), free(v->name), free(v->hash), free(v->label), free(v->body), free(v->attr), free(v->timer);
  }
  free(s->versions);
  free(s->plan_refs);
}

int scripts_version_count(scripts_t *s) { return s->nversions; }

const version_decl_t *scripts_version(scripts_t *s, int i) {
  return i >= 0 && i < s->nversions ? &s->versions[i] : NULL;
}

void scripts_set_version(scripts_t *s, char out[65]) { luahost_version(s->host, out); }

const char *scripts_manifest(scripts_t *s) {
  return s->host->manifest.len ? s->host->manifest.data : "";
}

typedef struct {
  int ref;
  json_t *state;
  json_t *out;
} plan_call_t;

/* Protected body: plan(state) -> a table, as JSON. */
static int call_plan(lua_State *L) {
  plan_call_t *p = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref);
  jl_push(L, p->state);
  lua_call(L, 1, 1);
  char err[256];
  p->out = jl_from_lua(L, -1, err, sizeof err);
  if (!p->out) return luaL_error(L, "plan: %s", err);
  return 0;
}

int scripts_plan_run(scripts_t *s, int i, json_t *state, json_t **out, char **err) {
  if (i < 0 || i >= s->nversions) return -1;
  plan_call_t p = {s->plan_refs[i], state, NULL};
  luahost_activate(s->host, NULL);
  if (luahost_call(s->host, call_plan, &p, err) < 0) {
    json_decref(p.out);
    return -1;
  }
  *out = p.out;
  return 0;
}
