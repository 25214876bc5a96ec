/* json_read: a JSON reader for the texts the engine parses on every event (event lines,
 * POST bodies, member parts, timer data). For every text it accepts it builds the very
 * value json_loadb builds (the same types, numbers, strings and key order), without
 * jansson's byte-at-a-time lexer. Whatever it does not take on itself (any syntax error,
 * an integer or real out of range, "\u0000", a duplicate key, nesting deeper than
 * JR_MAX_DEPTH, a flag other than JSON_REJECT_DUPLICATES and JSON_DECODE_ANY) it hands
 * to json_loadb, so what is refused, and the error that says why, are jansson's own. */
#ifndef HEARTH_JSON_READ_H
#define HEARTH_JSON_READ_H

#include <jansson.h>
#include <stddef.h>

/* Deeper than this, the text goes to jansson (which allows 2048 levels). */
#define JR_MAX_DEPTH 64

/* json_loadb(text, len, flags, error), as fast as the reader can. */
json_t *jr_loadb(const char *text, size_t len, size_t flags, json_error_t *error);
/* json_loads(text, flags, error): text is NUL-terminated. */
json_t *jr_loads(const char *text, size_t flags, json_error_t *error);
/* The reader alone: the value, or NULL where jr_loadb hands the text to jansson. For the
 * tests, which check that it takes the common texts on and never disagrees with jansson. */
json_t *jr_read(const char *text, size_t len, size_t flags);

#endif
