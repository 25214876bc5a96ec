/* json_compact: a compact JSON writer for jansson values, written for the member parts
 * the engine stores at every commit. Its output is byte for byte what
 * json_dumps(v, JSON_COMPACT) writes (keys in the object's own order, strings raw UTF-8
 * with only '"', '\\' and control characters escaped, reals through jansson itself), at
 * a fraction of the cost: no per-container loop-check table, no formatted printing of
 * integers, one growing buffer. */
#ifndef HEARTH_JSON_COMPACT_H
#define HEARTH_JSON_COMPACT_H

#include <jansson.h>

/* v (an object or an array) as compact JSON, a NUL-terminated string the caller frees
 * with free(); NULL when jansson could not write it either (out of memory, a value
 * nested too deep). */
char *jc_dumps(const json_t *v);

#endif
