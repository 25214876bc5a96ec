/* json_lua: conversion between jansson values and Lua values.
 * JSON objects <-> tables with string keys; arrays <-> sequences 1..n; integers stay
 * integers, reals stay floats. null inside an object drops the key; null inside an array
 * becomes the light userdata NULL (exposed to scripts as hearth.null) so positions hold,
 * and that sentinel converts back to null.
 * Depth is capped at JL_MAX_DEPTH both ways (jansson's encoder crashes on very deep
 * values). Lua -> JSON: a table whose keys are exactly 1..n (n >= 1) is an array, an empty
 * table is an empty object, any other table must have only string keys. */
#ifndef HEARTH_JSON_LUA_H
#define HEARTH_JSON_LUA_H

#include <stddef.h>
#include <jansson.h>
#include <lua.h>

#define JL_MAX_DEPTH 32

/* Push v (may be NULL = nil) onto L. May raise a Lua error (memory); the caller keeps
 * ownership of v, so it must not leak if this longjmps. Values nested deeper than
 * JL_MAX_DEPTH raise an error. */
void jl_push(lua_State *L, json_t *v);

/* Convert the Lua value at idx to a new json_t reference. Never raises a Lua error.
 * Returns NULL and writes a message into err for functions, userdata (except the null
 * sentinel), threads, mixed or non-string keys, NaN/inf, cycles and depth over the cap. */
json_t *jl_from_lua(lua_State *L, int idx, char *err, size_t errlen);

#endif
