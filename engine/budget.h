/* budget: what one handler call may spend: instructions, wall-clock time and memory, and
 * the ceiling of the whole script state. The sandbox enforces it; the engine and the CLI
 * only carry it, so this header has no Lua in it. */
#ifndef HEARTH_BUDGET_H
#define HEARTH_BUDGET_H

#include <stddef.h>

typedef struct {
  long max_instructions;      /* per call, C work charged by luahost_charge included; default 10,000,000 */
  unsigned max_call_ms;       /* wall clock per call; default 2000 */
  size_t max_call_bytes;      /* memory a call may add; default 64 MiB */
  size_t max_state_bytes;     /* whole state; default 1 GiB */
} budget_t;

void budget_default(budget_t *b);

#endif
