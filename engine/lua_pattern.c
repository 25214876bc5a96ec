/* lua_pattern: Lua 5.4 string patterns whose work is charged to a budget (see
 * lua_pattern.h).
 *
 * Where the ideas come from. The semantics are the Lua 5.4 reference manual's (§6.4
 * string.find, string.match, string.gmatch, string.gsub; §6.4.1 patterns), held to the
 * real library case by case by the differential tests in tests/unit/test_lua_pattern.c.
 * The design is the backtracking virtual machine Russ Cox describes in "Regular
 * Expression Matching: the Virtual Machine Approach" (2009): the pattern is compiled
 * into an array of instructions and one loop runs them, keeping the alternatives still
 * to try on an explicit stack of choice points instead of the C stack. Capture changes
 * are undone from a trail, the way Prolog machines (Warren's abstract machine) undo
 * variable bindings on backtracking. No code is taken from Lua's lstrlib.c.
 *
 * Compiling. compile() turns the pattern into instructions: a single-character class
 * with its quantifier (OP_ONE, OP_OPT '?', OP_STAR '*', OP_PLUS '+', OP_LAZY '-'), a
 * capture open, position capture or close, %b, %f, a back-reference, the final '$', and
 * OP_END. Every class is either any character, one character, or a 256-bit set: bracket
 * classes are built into the program's own sets, and %a, %d, ... point at sets the
 * library fills once at install time, so testing a character is one bit test. A
 * malformed item becomes an OP_ERROR instruction and ends the program: like the standard
 * library, the error is raised only when matching reaches it ("x[" finds nothing in
 * "abc" but raises in "xyz"). The program is compiled twice, once to size it and once to
 * fill it, on the C stack when small, otherwise in a userdata.
 *
 * Matching. run() executes the program from one subject position. Where the pattern
 * allows a choice it pushes a choice point and goes on with the first alternative; a
 * failing instruction resumes the newest choice point: '?' retries without the
 * character, a greedy '*' or '+' gives back one character at a time, a lazy '-' takes
 * one more. Each choice point remembers how many captures were open and how long the
 * trail (the list of captures closed since) was, and resuming it restores both. Along
 * the current path the program counter only moves forward and each instruction pushes at
 * most one choice point, so the stack never holds more entries than the program has
 * instructions; it is sized so, and no depth limit is needed (the standard library's
 * recursion gives up at 200 nested calls with "pattern too complex"; this one does not).
 * search() tries start positions in turn; when the first instruction must consume a
 * given character or set member, positions that cannot start a match are skipped with
 * memchr or a bit test.
 *
 * Drivers. find and match make one search(); gmatch and gsub search repeatedly from the
 * end of the previous match and refuse a match that ends where the previous one ended
 * (an empty match right after it), moving on to the next start instead, as Lua 5.4
 * does (the differential tests pin it).
 *
 * Budget: one step for each instruction executed (backtracking included), 16 for each
 * replacement gsub makes, each character a repetition or %b scans, each 64 bytes a back-reference compares and each
 * 64 bytes skipped looking for a start; for plain finds one per candidate position (a
 * position holding the needle's first byte, found by memchr), one per further 64 bytes
 * compared and one per 1024 bytes memchr skips. Steps are paid in advance in blocks of
 * PATTERN_CHARGE_EVERY through the charge function given at install time; the blocks
 * paid for and not yet used carry over to the next call (so up to 1023 steps of one call
 * are paid by an earlier one). The sandbox counts a step as one VM instruction: on the
 * machine this was written on (Release build) a step took 1.4 to 3.5 ns (the
 * exponential ("a*"):rep(n) .. "b" case being the slowest) and an instruction of a
 * simple Lua loop 2.6 to 3.6 ns, so the handler's 10 million instructions bound a
 * pattern to a few tens of milliseconds. tests/bench/bench_patterns.c compares typical
 * calls with the standard library's.
 *
 * Known differences from the standard library:
 *  - when the charge function raises (the budget is spent), the call stops with its
 *    error instead of finishing slowly; plain finds included;
 *  - no "pattern too complex": patterns the standard library refuses for nesting deeper
 *    than 200 (e.g. string.rep('a?', 250)) are matched;
 *  - a gmatch iterator raises its errors in the coroutine that calls it (the standard
 *    one uses the state that created it);
 *  - %b counts nesting in a long instead of an int (only differs past 2^31 opens);
 *  - %a, %d, ... are tested against sets taken from <ctype.h> at install time, so a
 *    later setlocale() would not change them (Hearth never calls setlocale);
 *  - when called without a name (e.g. through pcall) from a table other than the one
 *    in package.loaded, "bad argument" messages say '?' instead of 'string.find' (the
 *    sandbox installs into the real string table, so there they match).
 */
#include "lua_pattern.h"

#include <assert.h>
#include <ctype.h>
#include <lauxlib.h>
#include <stdint.h>
#include <string.h>

#define MAX_CAPTURES 32 /* the standard library's limit (LUA_MAXCAPTURES) */
#define SMALL_CODE 48   /* programs up to this many instructions live on the C stack */
#define SMALL_SETS 8
#define OPEN_CAPTURE (-1)     /* capture_t.len of a capture not closed yet */
#define POSITION_CAPTURE (-2) /* capture_t.len of a () capture */
#define NO_REJECT SIZE_MAX
/* what one gsub replacement costs beyond its matcher steps (appending the text before it
 * and the replacement, expanding %n): about 16 VM instructions, bench_budget.c */
#define GSUB_STEPS_PER_REPLACEMENT 16

typedef unsigned char set_t[32];

#define SET_HAS(set, c) (((set)[(unsigned char)(c) >> 3] >> ((unsigned char)(c) & 7)) & 1u)
#define SET_ADD(set, c) ((set)[(c) >> 3] |= (unsigned char)(1u << ((c) & 7)))

/* ---------------------------------------------------------------- the library */

/* One per install: shared by the four functions (an upvalue of each). */
typedef struct {
  pattern_charge_fn charge; /* NULL: unbounded */
  long prepaid;                 /* steps paid for and not used yet */
  set_t lower[26], upper[26];   /* %a ... %z and %A ... %Z (class letters only) */
  uint32_t letters;             /* bit (letter - 'a') set for the class letters */
} library_t;

static int is_zero(int c) { return c == 0; }

static const struct {
  char letter;
  int (*test)(int);
} NAMED_CLASSES[] = {
    {'a', isalpha}, {'c', iscntrl}, {'d', isdigit}, {'g', isgraph},  {'l', islower}, {'p', ispunct},
    {'s', isspace}, {'u', isupper}, {'w', isalnum}, {'x', isxdigit}, {'z', is_zero},
};

static void library_fill_classes(library_t *lib) {
  lib->letters = 0;
  for (size_t i = 0; i < sizeof NAMED_CLASSES / sizeof NAMED_CLASSES[0]; i++) {
    int k = NAMED_CLASSES[i].letter - 'a';
    lib->letters |= 1u << k;
    memset(lib->lower[k], 0, sizeof(set_t));
    for (int c = 0; c < 256; c++)
      if (NAMED_CLASSES[i].test(c)) SET_ADD(lib->lower[k], c);
    for (int b = 0; b < 32; b++) lib->upper[k][b] = (unsigned char)~lib->lower[k][b];
  }
}

/* The set of %letter, or NULL when the letter names no class (then it stands for itself). */
static const unsigned char *named_class(const library_t *lib, unsigned char letter) {
  if (letter >= 'a' && letter <= 'z' && (lib->letters >> (letter - 'a') & 1u))
    return lib->lower[letter - 'a'];
  if (letter >= 'A' && letter <= 'Z' && (lib->letters >> (letter - 'A') & 1u))
    return lib->upper[letter - 'A'];
  return NULL;
}

/* Slow path of spend(): pay for whole blocks until the credit is positive again. The
 * credit is updated before charging, so a charge that raises leaves it consistent. */
static void prepay(lua_State *L, library_t *lib) {
  long blocks = -lib->prepaid / PATTERN_CHARGE_EVERY + 1;
  lib->prepaid += blocks * PATTERN_CHARGE_EVERY;
  if (lib->charge) lib->charge(L, blocks * PATTERN_CHARGE_EVERY);
}

static inline void spend(lua_State *L, library_t *lib, long steps) {
  lib->prepaid -= steps;
  if (lib->prepaid < 0) prepay(L, lib);
}

/* ---------------------------------------------------------------- programs */

enum {
  OP_END,      /* the pattern matched */
  OP_EOS,      /* '$' as the last pattern character: only at the end of the subject */
  OP_ONE,      /* a single-character class, exactly once */
  OP_OPT,      /* ... with '?' */
  OP_STAR,     /* ... with '*' (greedy) */
  OP_PLUS,     /* ... with '+' (greedy) */
  OP_LAZY,     /* ... with '-' */
  OP_OPEN,     /* '(' */
  OP_POSITION, /* '()' */
  OP_CLOSE,    /* ')' */
  OP_BALANCE,  /* %bxy */
  OP_FRONTIER, /* %f[set] */
  OP_BACKREF,  /* %1 .. %9 (and %0, an error when reached) */
  OP_ERROR,    /* a malformed item: raise MALFORMED[a] when reached */
};

enum { CL_ANY, CL_CHAR, CL_SET }; /* what a single-character class accepts */

enum { E_ENDS_WITH_ESCAPE, E_MISSING_BRACKET, E_BALANCE_ARGS, E_FRONTIER_BRACKET };

static const char *const MALFORMED[] = {
    "malformed pattern (ends with '%')",
    "malformed pattern (missing ']')",
    "malformed pattern (missing arguments to '%b')",
    "missing '[' after '%f' in pattern",
};

typedef struct {
  const unsigned char *set; /* CL_SET and OP_FRONTIER: the set (NULL while sizing) */
  unsigned char op;         /* OP_* */
  unsigned char cl;         /* CL_* for the single-character operations */
  unsigned char a;          /* CL_CHAR: the character; %b: opener; back-reference: digit;
                               OP_ERROR: index in MALFORMED */
  unsigned char b;          /* %b: closer */
} insn_t;

enum { RETRY_OPTION, RETRY_GREEDY, RETRY_LAZY };

/* An alternative still to try. */
typedef struct {
  const char *pos;   /* OPTION: where to resume; GREEDY: the end last tried; LAZY: the
                        end of the repetition last tried */
  const char *floor; /* GREEDY: the shortest end allowed */
  uint32_t resume;   /* the instruction to resume at (the one after the choice) */
  unsigned char kind, level, ntrail; /* RETRY_*; capture state when pushed */
} choice_t;

typedef struct {
  insn_t *code;
  choice_t *stack; /* room for one choice point per instruction */
  set_t *sets;
  size_t ncode, nsets;
} program_t;

/* Room for a small program on the C stack. */
typedef struct {
  insn_t code[SMALL_CODE];
  choice_t stack[SMALL_CODE];
  set_t sets[SMALL_SETS];
} small_program_t;

/* ---------------------------------------------------------------- compiling */

typedef struct {
  const library_t *lib;
  const char *p;
  size_t len, at;  /* the pattern and the cursor */
  insn_t *code;    /* NULL while sizing */
  set_t *sets;
  size_t ncode, nsets;
} compiler_t;

static void emit(compiler_t *c, insn_t in) {
  if (c->code) c->code[c->ncode] = in;
  c->ncode++;
}

/* Emit the error instruction that ends the program; returns 0 (stop compiling). */
static int emit_error(compiler_t *c, unsigned char which) {
  emit(c, (insn_t){.op = OP_ERROR, .a = which});
  return 0;
}

/* p[open] is '['. Find the ']' that ends the class: the first member (after an optional
 * '^') is literal even when it is ']', and '%' escapes the character after it. 0 when
 * the pattern ends first. */
static int bracket_end(const compiler_t *c, size_t open, size_t *close) {
  size_t k = open + 1;
  if (k < c->len && c->p[k] == '^') k++;
  for (;;) {
    if (k >= c->len) return 0;
    if (c->p[k] == '%') k++;
    k++;
    if (k < c->len && c->p[k] == ']') {
      *close = k;
      return 1;
    }
  }
}

/* Add what %x stands for inside a bracket class. */
static void set_add_escape(unsigned char *set, const library_t *lib, unsigned char x) {
  const unsigned char *named = named_class(lib, x);
  if (!named) {
    SET_ADD(set, x);
    return;
  }
  for (int b = 0; b < 32; b++) set[b] |= named[b];
}

/* Take a set for the bracket class p[open..close]; NULL while sizing. */
static const unsigned char *compile_set(compiler_t *c, size_t open, size_t close) {
  size_t index = c->nsets++;
  if (!c->sets) return NULL;
  unsigned char *set = c->sets[index];
  const unsigned char *p = (const unsigned char *)c->p;
  memset(set, 0, sizeof(set_t));
  size_t k = open + 1;
  int negated = p[k] == '^';
  if (negated) k++;
  while (k < close) {
    if (p[k] == '%') { /* the escaped character may be the closing ']' itself */
      set_add_escape(set, c->lib, p[k + 1]);
      k += 2;
    } else if (k + 2 < close && p[k + 1] == '-') {
      for (int x = p[k]; x <= p[k + 2]; x++) SET_ADD(set, x);
      k += 3;
    } else {
      SET_ADD(set, p[k]);
      k++;
    }
  }
  if (negated)
    for (int b = 0; b < 32; b++) set[b] = (unsigned char)~set[b];
  return set;
}

static unsigned char quantifier_op(char q) {
  switch (q) {
  case '?': return OP_OPT;
  case '*': return OP_STAR;
  case '+': return OP_PLUS;
  case '-': return OP_LAZY;
  default: return OP_ONE;
  }
}

/* A single-character class at the cursor and its quantifier. */
static int compile_single(compiler_t *c) {
  insn_t in = {.op = OP_ONE, .cl = CL_CHAR};
  size_t k = c->at;
  unsigned char ch = (unsigned char)c->p[k];
  if (ch == '%') {
    if (k + 1 >= c->len) return emit_error(c, E_ENDS_WITH_ESCAPE);
    unsigned char x = (unsigned char)c->p[k + 1];
    in.set = named_class(c->lib, x);
    in.cl = in.set ? CL_SET : CL_CHAR;
    in.a = x;
    k += 2;
  } else if (ch == '[') {
    size_t close;
    if (!bracket_end(c, k, &close)) return emit_error(c, E_MISSING_BRACKET);
    in.cl = CL_SET;
    in.set = compile_set(c, k, close);
    k = close + 1;
  } else {
    in.cl = ch == '.' ? CL_ANY : CL_CHAR;
    in.a = ch;
    k++;
  }
  if (k < c->len) in.op = quantifier_op(c->p[k]);
  if (in.op != OP_ONE) k++;
  c->at = k;
  emit(c, in);
  return 1;
}

static int compile_frontier(compiler_t *c) {
  size_t open = c->at + 2, close;
  if (open >= c->len || c->p[open] != '[') return emit_error(c, E_FRONTIER_BRACKET);
  if (!bracket_end(c, open, &close)) return emit_error(c, E_MISSING_BRACKET);
  emit(c, (insn_t){.op = OP_FRONTIER, .set = compile_set(c, open, close)});
  c->at = close + 1;
  return 1;
}

/* One pattern item at the cursor; 0 when it was malformed (the program ends there). */
static int compile_item(compiler_t *c) {
  const char *p = c->p + c->at;
  size_t left = c->len - c->at;
  switch (p[0]) {
  case '(': {
    int position = left > 1 && p[1] == ')';
    emit(c, (insn_t){.op = position ? OP_POSITION : OP_OPEN});
    c->at += position ? 2 : 1;
    return 1;
  }
  case ')':
    emit(c, (insn_t){.op = OP_CLOSE});
    c->at++;
    return 1;
  case '$':
    if (left != 1) break; /* elsewhere '$' is an ordinary character */
    emit(c, (insn_t){.op = OP_EOS});
    c->at++;
    return 1;
  case '%':
    if (left < 2) break; /* compile_single reports it */
    if (p[1] == 'b') {
      if (left < 4) return emit_error(c, E_BALANCE_ARGS);
      emit(c, (insn_t){.op = OP_BALANCE, .a = (unsigned char)p[2], .b = (unsigned char)p[3]});
      c->at += 4;
      return 1;
    }
    if (p[1] == 'f') return compile_frontier(c);
    if (p[1] >= '0' && p[1] <= '9') {
      emit(c, (insn_t){.op = OP_BACKREF, .a = (unsigned char)p[1]});
      c->at += 2;
      return 1;
    }
    break;
  }
  return compile_single(c);
}

/* Compile p[0..len) into code and sets, or only count them when code is NULL. */
static void compile(const library_t *lib, const char *p, size_t len, program_t *prog) {
  compiler_t c = {lib, p, len, 0, prog->code, prog->sets, 0, 0};
  int ok = 1;
  while (ok && c.at < len) ok = compile_item(&c);
  if (ok) emit(&c, (insn_t){.op = OP_END});
  prog->ncode = c.ncode;
  prog->nsets = c.nsets;
}

static size_t program_bytes(const program_t *sized) {
  return sized->ncode * (sizeof(insn_t) + sizeof(choice_t)) + sized->nsets * sizeof(set_t);
}

/* Lay a program of the sized shape out in mem (code, then stack, then sets). */
static void program_place(program_t *prog, const program_t *sized, void *mem) {
  prog->code = mem;
  prog->stack = (choice_t *)(void *)(prog->code + sized->ncode);
  prog->sets = (set_t *)(void *)(prog->stack + sized->ncode);
}

/* Compile p into small, or into a new userdata pushed on the stack when it is bigger. */
static void program_build(lua_State *L, const library_t *lib, const char *p, size_t len,
                          small_program_t *small, program_t *prog) {
  program_t sized = {NULL, NULL, NULL, 0, 0};
  compile(lib, p, len, &sized);
  if (sized.ncode <= SMALL_CODE && sized.nsets <= SMALL_SETS) {
    prog->code = small->code;
    prog->stack = small->stack;
    prog->sets = small->sets;
  } else {
    program_place(prog, &sized, lua_newuserdatauv(L, program_bytes(&sized), 0));
  }
  compile(lib, p, len, prog);
  assert(prog->ncode == sized.ncode && prog->nsets == sized.nsets);
}

/* ---------------------------------------------------------------- the machine */

typedef struct {
  const char *at;
  ptrdiff_t len; /* a length, OPEN_CAPTURE or POSITION_CAPTURE */
} capture_t;

typedef struct {
  lua_State *L;
  library_t *lib;
  const char *subject, *end;
  const insn_t *code;
  choice_t *stack;
  size_t ncode;
  int level;                         /* captures opened */
  int ntrail;                        /* entries in trail */
  unsigned char trail[MAX_CAPTURES]; /* captures closed on the current path, in order */
  capture_t cap[MAX_CAPTURES];
} machine_t;

static void machine_init(machine_t *m, lua_State *L, library_t *lib, const char *s, size_t len,
                         const program_t *prog) {
  m->L = L;
  m->lib = lib;
  m->subject = s;
  m->end = s + len;
  m->code = prog->code;
  m->stack = prog->stack;
  m->ncode = prog->ncode;
  m->level = m->ntrail = 0;
}

static inline int accepts(const insn_t *in, unsigned char c) {
  if (in->cl == CL_CHAR) return c == in->a;
  if (in->cl == CL_SET) return (int)SET_HAS(in->set, c);
  return 1;
}

/* How far a greedy repetition of in reaches from s. */
static const char *reach(machine_t *m, const insn_t *in, const char *s) {
  const char *e = m->end;
  if (in->cl != CL_ANY) {
    e = s;
    while (e < m->end && accepts(in, (unsigned char)*e)) e++;
  }
  spend(m->L, m->lib, e - s);
  return e;
}

static void push_choice(machine_t *m, size_t *top, unsigned char kind, size_t resume,
                        const char *pos, const char *floor) {
  /* the program counter only moves forward along a path and each instruction pushes at
   * most one choice point, so the stack never outgrows the program */
  assert(*top < m->ncode);
  choice_t *c = &m->stack[(*top)++];
  c->pos = pos;
  c->floor = floor;
  c->resume = (uint32_t)resume;
  c->kind = kind;
  c->level = (unsigned char)m->level;
  c->ntrail = (unsigned char)m->ntrail;
}

static void open_capture(machine_t *m, const char *s, ptrdiff_t kind) {
  if (m->level >= MAX_CAPTURES) luaL_error(m->L, "too many captures");
  m->cap[m->level].at = s;
  m->cap[m->level].len = kind;
  m->level++;
}

static void close_capture(machine_t *m, const char *s) {
  int l = m->level - 1;
  while (l >= 0 && m->cap[l].len != OPEN_CAPTURE) l--;
  if (l < 0) luaL_error(m->L, "invalid pattern capture");
  m->cap[l].len = s - m->cap[l].at;
  assert(m->ntrail < MAX_CAPTURES); /* each entry closes a different open capture */
  m->trail[m->ntrail++] = (unsigned char)l;
}

/* Back to the capture state a choice point saw. */
static void undo_captures(machine_t *m, int level, int ntrail) {
  while (m->ntrail > ntrail) m->cap[m->trail[--m->ntrail]].len = OPEN_CAPTURE;
  m->level = level;
}

static const char *balance(machine_t *m, const insn_t *in, const char *s) {
  if (s >= m->end || (unsigned char)*s != in->a) return NULL;
  long open = 1;
  for (const char *q = s + 1; q < m->end; q++) {
    unsigned char c = (unsigned char)*q;
    if (c == in->b) {
      if (--open == 0) {
        spend(m->L, m->lib, q - s);
        return q + 1;
      }
    } else if (c == in->a) {
      open++;
    }
  }
  spend(m->L, m->lib, m->end - s);
  return NULL;
}

static int at_frontier(const machine_t *m, const insn_t *in, const char *s) {
  unsigned char before = s > m->subject ? (unsigned char)s[-1] : 0;
  unsigned char here = s < m->end ? (unsigned char)*s : 0;
  return !SET_HAS(in->set, before) && SET_HAS(in->set, here);
}

static const char *backref(machine_t *m, const insn_t *in, const char *s) {
  int l = in->a - '1';
  if (l < 0 || l >= m->level || m->cap[l].len == OPEN_CAPTURE)
    luaL_error(m->L, "invalid capture index %%%d", l + 1);
  ptrdiff_t len = m->cap[l].len;
  if (len == POSITION_CAPTURE) return NULL; /* a position is no text */
  spend(m->L, m->lib, len >> 6);
  if (m->end - s < len || memcmp(s, m->cap[l].at, (size_t)len) != 0) return NULL;
  return s + len;
}

/* Resume the newest choice point: sets *pc and *s and returns 1, or 0 when none is left. */
static int backtrack(machine_t *m, size_t *top, size_t *pc, const char **s) {
  while (*top > 0) {
    choice_t *c = &m->stack[*top - 1];
    undo_captures(m, c->level, c->ntrail);
    *pc = c->resume;
    switch (c->kind) {
    case RETRY_OPTION: /* without the optional character */
      *s = c->pos;
      --*top;
      return 1;
    case RETRY_GREEDY: /* one character shorter */
      *s = --c->pos;
      if (c->pos == c->floor) --*top;
      return 1;
    default: /* RETRY_LAZY: one character longer, if the class takes it */
      spend(m->L, m->lib, 1);
      if (c->pos < m->end && accepts(&m->code[c->resume - 1], (unsigned char)*c->pos)) {
        *s = ++c->pos;
        return 1;
      }
      --*top;
    }
  }
  return 0;
}

/* Run the program from s: the end of the match, or NULL. */
static const char *run(machine_t *m, const char *s) {
  size_t pc = 0, top = 0;
  m->level = m->ntrail = 0;
  for (;;) {
    const insn_t *in = &m->code[pc];
    spend(m->L, m->lib, 1);
    switch (in->op) {
    case OP_END:
      return s;
    case OP_EOS:
      if (s == m->end) return s;
      break;
    case OP_ONE:
      if (s < m->end && accepts(in, (unsigned char)*s)) {
        s++;
        pc++;
        continue;
      }
      break;
    case OP_OPT:
      if (s < m->end && accepts(in, (unsigned char)*s)) {
        push_choice(m, &top, RETRY_OPTION, pc + 1, s, NULL);
        s++;
      }
      pc++;
      continue;
    case OP_PLUS:
    case OP_STAR: {
      if (in->op == OP_PLUS) { /* one compulsory character, then as for '*' */
        if (s >= m->end || !accepts(in, (unsigned char)*s)) break;
        s++;
      }
      const char *e = reach(m, in, s);
      if (e > s) push_choice(m, &top, RETRY_GREEDY, pc + 1, e, s);
      s = e;
      pc++;
      continue;
    }
    case OP_LAZY:
      push_choice(m, &top, RETRY_LAZY, pc + 1, s, NULL);
      pc++;
      continue;
    case OP_OPEN:
    case OP_POSITION:
      open_capture(m, s, in->op == OP_POSITION ? POSITION_CAPTURE : OPEN_CAPTURE);
      pc++;
      continue;
    case OP_CLOSE:
      close_capture(m, s);
      pc++;
      continue;
    case OP_BALANCE:
      if (!(s = balance(m, in, s))) break;
      pc++;
      continue;
    case OP_FRONTIER:
      if (!at_frontier(m, in, s)) break;
      pc++;
      continue;
    case OP_BACKREF:
      if (!(s = backref(m, in, s))) break;
      pc++;
      continue;
    default:
      assert(in->op == OP_ERROR);
      luaL_error(m->L, "%s", MALFORMED[in->a]);
      return NULL;
    }
    if (!backtrack(m, &top, &pc, &s)) return NULL;
  }
}

/* ---------------------------------------------------------------- searching */

typedef struct {
  size_t start, stop; /* offsets of a match */
} hit_t;

/* The first offset >= from where the program can start a match, or len + 1 when none
 * can. Only a program whose first instruction must consume a character or a set member
 * rules positions out; the others may start anywhere. */
static size_t next_start(machine_t *m, size_t from) {
  const insn_t *first = &m->code[0];
  size_t len = (size_t)(m->end - m->subject);
  if ((first->op != OP_ONE && first->op != OP_PLUS) || first->cl == CL_ANY || from >= len)
    return from;
  const char *s = m->subject + from, *q;
  if (first->cl == CL_CHAR) {
    q = memchr(s, first->a, len - from);
    if (!q) q = m->end;
  } else {
    for (q = s; q < m->end && !SET_HAS(first->set, *q); q++) {
    }
  }
  spend(m->L, m->lib, (q - s) >> 6);
  return q == m->end ? len + 1 : (size_t)(q - m->subject);
}

/* The first match starting at from or later (only at from when anchored) that does not
 * end at offset reject. */
static int search(machine_t *m, size_t from, int anchored, size_t reject, hit_t *hit) {
  size_t len = (size_t)(m->end - m->subject);
  for (size_t at = from; at <= len; at++) {
    if (!anchored && (at = next_start(m, at)) > len) break;
    const char *e = run(m, m->subject + at);
    if (e && (size_t)(e - m->subject) != reject) {
      hit->start = at;
      hit->stop = (size_t)(e - m->subject);
      return 1;
    }
    if (anchored) break;
  }
  return 0;
}

/* ---------------------------------------------------------------- captures */

static capture_t whole_match(const machine_t *m, hit_t hit) {
  capture_t c = {m->subject + hit.start, (ptrdiff_t)(hit.stop - hit.start)};
  return c;
}

/* Capture i (0-based) of the last match; with no captures, capture 0 is the whole one. */
static capture_t capture_of(const machine_t *m, int i, capture_t whole) {
  if (m->level == 0 && i == 0) return whole;
  if (i >= m->level) luaL_error(m->L, "invalid capture index %%%d", i + 1);
  if (m->cap[i].len == OPEN_CAPTURE) luaL_error(m->L, "unfinished capture");
  return m->cap[i];
}

static void push_capture(const machine_t *m, capture_t c) {
  if (c.len == POSITION_CAPTURE)
    lua_pushinteger(m->L, (lua_Integer)(c.at - m->subject) + 1);
  else
    lua_pushlstring(m->L, c.at, (size_t)c.len);
}

/* Push the captures of the last match, or the whole match when there are none and
 * with_whole is set; returns how many were pushed. */
static int push_captures(const machine_t *m, capture_t whole, int with_whole) {
  int n = m->level > 0 ? m->level : with_whole;
  luaL_checkstack(m->L, n, "too many captures");
  for (int i = 0; i < n; i++) push_capture(m, capture_of(m, i, whole));
  return n;
}

/* ---------------------------------------------------------------- find and match */

static library_t *library_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

/* The 0-based offset for a 1-based init, negative counting from the end; past the end
 * gives an offset > len. */
static size_t start_offset(lua_Integer init, size_t len) {
  if (init > 0) return (size_t)(init - 1);
  if (init < 0 && init >= -(lua_Integer)len) return len - (size_t)(-init);
  return 0;
}

static int has_specials(const char *p, size_t len) {
  for (size_t i = 0; i < len; i++) {
    switch (p[i]) {
    case '^': case '$': case '*': case '+': case '?': case '.': case '(': case '[': case '%': case '-':
      return 1;
    }
  }
  return 0;
}

/* The first occurrence of needle (nlen > 0) in hay, budgeted as described at the top. */
static const char *plain_search(lua_State *L, library_t *lib, const char *hay, size_t hlen,
                                const char *needle, size_t nlen) {
  if (nlen > hlen) return NULL;
  const char *from = hay, *last = hay + (hlen - nlen); /* the last possible start */
  while (from <= last) {
    const char *cand = memchr(from, (unsigned char)needle[0], (size_t)(last - from) + 1);
    if (!cand) {
      spend(L, lib, (last - from) >> 10);
      return NULL;
    }
    spend(L, lib, 1 + ((cand - from) >> 10));
    size_t same = 1;
    while (same < nlen) {
      size_t chunk = nlen - same < 64 ? nlen - same : 64;
      if (memcmp(cand + same, needle + same, chunk) != 0) break;
      same += chunk;
      if (same < nlen) spend(L, lib, 1);
    }
    if (same == nlen) return cand;
    from = cand + 1;
  }
  return NULL;
}

static int push_plain_find(lua_State *L, const char *s, size_t len, size_t from, const char *p,
                           size_t plen) {
  const char *hit = plen == 0 ? s + from : plain_search(L, library_of(L), s + from, len - from, p, plen);
  if (!hit) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
  lua_pushinteger(L, (lua_Integer)(hit - s) + (lua_Integer)plen);
  return 2;
}

static int find_or_match(lua_State *L, int find) {
  size_t len, plen;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *p = luaL_checklstring(L, 2, &plen);
  size_t from = start_offset(luaL_optinteger(L, 3, 1), len);
  if (from > len) {
    lua_pushnil(L);
    return 1;
  }
  if (find && (lua_toboolean(L, 4) || !has_specials(p, plen)))
    return push_plain_find(L, s, len, from, p, plen);
  int anchored = plen > 0 && p[0] == '^';
  small_program_t small;
  program_t prog;
  library_t *lib = library_of(L);
  program_build(L, lib, p + anchored, plen - (size_t)anchored, &small, &prog);
  machine_t m;
  machine_init(&m, L, lib, s, len, &prog);
  hit_t hit;
  if (!search(&m, from, anchored, NO_REJECT, &hit)) {
    lua_pushnil(L);
    return 1;
  }
  if (!find) return push_captures(&m, whole_match(&m, hit), 1);
  lua_pushinteger(L, (lua_Integer)hit.start + 1);
  lua_pushinteger(L, (lua_Integer)hit.stop);
  return 2 + push_captures(&m, whole_match(&m, hit), 0);
}

static int pat_find(lua_State *L) { return find_or_match(L, 1); }
static int pat_match(lua_State *L) { return find_or_match(L, 0); }

/* ---------------------------------------------------------------- gmatch */

/* The iterator's state; its program follows it in the same userdata. */
typedef struct {
  size_t next;   /* where the next search starts; > len when finished */
  size_t reject; /* the end of the last match (NO_REJECT before the first) */
  program_t prog;
} iterator_t;

/* Upvalues: the subject, the iterator_t, the library. */
static int gmatch_next(lua_State *L) {
  size_t len;
  const char *s = lua_tolstring(L, lua_upvalueindex(1), &len);
  iterator_t *it = lua_touserdata(L, lua_upvalueindex(2));
  machine_t m;
  machine_init(&m, L, lua_touserdata(L, lua_upvalueindex(3)), s, len, &it->prog);
  hit_t hit;
  if (it->next > len || !search(&m, it->next, 0, it->reject, &hit)) {
    it->next = len + 1;
    return 0;
  }
  it->next = it->reject = hit.stop;
  return push_captures(&m, whole_match(&m, hit), 1);
}

static int pat_gmatch(lua_State *L) {
  size_t len, plen;
  luaL_checklstring(L, 1, &len);
  const char *p = luaL_checklstring(L, 2, &plen);
  size_t from = start_offset(luaL_optinteger(L, 3, 1), len);
  library_t *lib = library_of(L);
  lua_settop(L, 2); /* the pattern stays on the stack while it is compiled */
  program_t sized = {NULL, NULL, NULL, 0, 0};
  compile(lib, p, plen, &sized); /* '^' is an ordinary character here (manual §6.4) */
  iterator_t *it = lua_newuserdatauv(L, sizeof *it + program_bytes(&sized), 0);
  it->next = from;
  it->reject = NO_REJECT;
  program_place(&it->prog, &sized, it + 1);
  compile(lib, p, plen, &it->prog);
  lua_remove(L, 2); /* the program needs no pattern text; the subject stays as an upvalue */
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, gmatch_next, 3);
  return 1;
}

/* ---------------------------------------------------------------- gsub */

static void add_capture(const machine_t *m, luaL_Buffer *b, capture_t c) {
  if (c.len == POSITION_CAPTURE) {
    lua_pushinteger(m->L, (lua_Integer)(c.at - m->subject) + 1);
    luaL_addvalue(b);
  } else {
    luaL_addlstring(b, c.at, (size_t)c.len);
  }
}

/* Append the replacement string (argument 3) with its %0 .. %9 and %% expanded. */
static void add_expansion(const machine_t *m, luaL_Buffer *b, capture_t whole) {
  size_t rlen;
  const char *r = lua_tolstring(m->L, 3, &rlen), *rend = r + rlen;
  for (;;) {
    const char *pct = memchr(r, '%', (size_t)(rend - r));
    if (!pct) {
      luaL_addlstring(b, r, (size_t)(rend - r));
      return;
    }
    luaL_addlstring(b, r, (size_t)(pct - r));
    int d = pct + 1 < rend ? (unsigned char)pct[1] : -1;
    if (d == '%')
      luaL_addchar(b, '%');
    else if (d == '0')
      add_capture(m, b, whole);
    else if (d >= '1' && d <= '9')
      add_capture(m, b, capture_of(m, d - '1', whole));
    else
      luaL_error(m->L, "invalid use of '%c' in replacement string", '%');
    r = pct + 2;
  }
}

/* Append the replacement for the last match; 0 when the original text was kept (a
 * function or table gave false or nil). */
static int add_replacement(const machine_t *m, luaL_Buffer *b, int kind, capture_t whole) {
  lua_State *L = m->L;
  if (kind == LUA_TSTRING || kind == LUA_TNUMBER) {
    add_expansion(m, b, whole);
    return 1;
  }
  if (kind == LUA_TFUNCTION) {
    lua_pushvalue(L, 3);
    lua_call(L, push_captures(m, whole, 1), 1);
  } else {
    push_capture(m, capture_of(m, 0, whole));
    lua_gettable(L, 3);
  }
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    luaL_addlstring(b, whole.at, (size_t)whole.len);
    return 0;
  }
  if (!lua_isstring(L, -1))
    return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  luaL_addvalue(b);
  return 1;
}

static int pat_gsub(lua_State *L) {
  size_t len, plen;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *p = luaL_checklstring(L, 2, &plen);
  int kind = lua_type(L, 3);
  lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)len + 1);
  luaL_argexpected(L, kind == LUA_TNUMBER || kind == LUA_TSTRING || kind == LUA_TFUNCTION ||
                          kind == LUA_TTABLE,
                   3, "string/function/table");
  int anchored = plen > 0 && p[0] == '^';
  small_program_t small;
  program_t prog;
  library_t *lib = library_of(L);
  program_build(L, lib, p + anchored, plen - (size_t)anchored, &small, &prog);
  machine_t m;
  machine_init(&m, L, lib, s, len, &prog);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t done = 0, reject = NO_REJECT; /* copied up to done; the last match ended at reject */
  lua_Integer n = 0;
  int changed = 0;
  hit_t hit;
  while (n < max_n && search(&m, done, anchored, reject, &hit)) {
    luaL_addlstring(&b, s + done, hit.start - done);
    changed |= add_replacement(&m, &b, kind, whole_match(&m, hit));
    spend(L, lib, GSUB_STEPS_PER_REPLACEMENT);
    n++;
    done = reject = hit.stop;
    if (anchored) break;
  }
  if (changed) {
    luaL_addlstring(&b, s + done, len - done);
    luaL_pushresult(&b);
  } else {
    lua_pushvalue(L, 1);
  }
  lua_pushinteger(L, n);
  return 2;
}

/* ---------------------------------------------------------------- installing */

void pattern_install(lua_State *L, int string_table_index, pattern_charge_fn charge) {
  static const luaL_Reg fns[] = {
      {"find", pat_find}, {"match", pat_match}, {"gmatch", pat_gmatch}, {"gsub", pat_gsub}, {NULL, NULL}};
  int t = lua_absindex(L, string_table_index);
  library_t *lib = lua_newuserdatauv(L, sizeof *lib, 0);
  lib->charge = charge;
  lib->prepaid = 0;
  library_fill_classes(lib);
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, f->func, 1);
    lua_setfield(L, t, f->name);
  }
  lua_pop(L, 1);
}
