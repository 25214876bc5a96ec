/* lua_pattern: Lua 5.4 string patterns with a step budget (see lua_pattern.h).
 *
 * Written for Hearth from the Lua 5.4 reference manual (§6.4 string.find, string.match,
 * string.gmatch, string.gsub; §6.4.1 patterns); no code is taken from lstrlib.c.
 *
 * How it works. A pattern is first translated into an array of items (one per pattern
 * item: a single-character class with its quantifier, a capture open or close, %b, %f,
 * a back-reference, the final '$'), bracket classes becoming 256-bit sets, so that every
 * matcher step costs O(1) whatever the pattern looks like. A malformed item becomes an
 * error item: like the standard library, the error is raised only when matching reaches
 * it ("x[" finds nothing in "abc" but raises in "xyz"). Matching is the usual
 * backtracking over that array: match() walks items and recurses only where a choice
 * must be undone (after a repetition that matched, '?', a capture open or close); the
 * recursion structure, and so the depth cap of 200 ("pattern too complex"), mirrors the
 * standard library's.
 *
 * Budget: one step for each call of match(), each item it handles, each character a
 * repetition ('*', '+', '-') or %b examines, and one per 64 bytes a back-reference
 * compares. Plain finds (the `plain` argument, or a pattern without special characters)
 * are budgeted too (one string.find of a 64 KiB needle in a 24 MiB subject is otherwise
 * minutes of memcmp): memchr skips to each position holding the needle's first byte,
 * free, then one step per such candidate and one per further 64 bytes compared.
 *
 * Known differences from the standard library:
 *  - the budget error itself, for calls the standard library would finish (slowly),
 *    plain finds included (about 10 million candidate positions per call at most);
 *  - a gmatch iterator raises its errors in the coroutine that calls it (the standard
 *    one uses the state that created it);
 *  - %b counts nesting in a long instead of an int (only differs past 2^31 opens);
 *  - when called without a name (e.g. through pcall) from a table other than the one
 *    in package.loaded, "bad argument" messages say '?' instead of 'string.find' (the
 *    sandbox installs into the real string table, so there they match).
 */
#include "lua_pattern.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdint.h>
#include <string.h>

#define MAX_CAPTURES 32 /* as the standard library's LUA_MAXCAPTURES */
#define MAX_DEPTH 200   /* nested match() calls, as its MAXCCALLS */
#define SMALL_ITEMS 48  /* compiled patterns up to this size live on the C stack */
#define SMALL_SETS 8

#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)

/* ---------------------------------------------------------------- compiled patterns */

enum {
  K_END,      /* end of the pattern: success */
  K_EOS,      /* '$' as the last pattern character: end of subject */
  K_SINGLE,   /* a single-character class with quantifier (0, '*', '+', '-', '?') */
  K_OPEN,     /* '(' */
  K_POSITION, /* '()' */
  K_CLOSE,    /* ')' */
  K_BALANCE,  /* %bxy */
  K_FRONTIER, /* %f[set] */
  K_BACKREF,  /* %0 .. %9 */
  K_ERROR,    /* a malformed item: raise error_text[set] when reached */
};

enum { C_ANY, C_CHAR, C_CLASS, C_SET };

enum { E_ENDS_WITH_ESC, E_MISSING_CLOSE, E_BALANCE_ARGS, E_FRONTIER_OPEN };

static const char *const error_text[] = {
    "malformed pattern (ends with '%')",
    "malformed pattern (missing ']')",
    "malformed pattern (missing arguments to '%b')",
    "missing '[' after '%f' in pattern",
};

typedef struct {
  unsigned set;        /* set index (C_SET, K_FRONTIER) or error number (K_ERROR) */
  unsigned char kind;  /* K_* */
  unsigned char cls;   /* C_* for K_SINGLE */
  unsigned char quant; /* 0 or the quantifier character */
  unsigned char c1;    /* the character, class letter, %b opener, back-reference digit */
  unsigned char c2;    /* %b closer */
} item_t;

typedef unsigned char set_t[32];

typedef struct {
  item_t *items; /* NULL while counting */
  set_t *sets;
  size_t nitems, nsets;
} prog_t;

#define IN_SET(set, c) (((set)[(c) >> 3] >> ((c) & 7)) & 1u)

/* Does c belong to the class %cl? A letter that names no class stands for itself. */
static int class_has(int c, int cl) {
  int r;
  switch (tolower(cl)) {
  case 'a': r = isalpha(c); break;
  case 'c': r = iscntrl(c); break;
  case 'd': r = isdigit(c); break;
  case 'g': r = isgraph(c); break;
  case 'l': r = islower(c); break;
  case 'p': r = ispunct(c); break;
  case 's': r = isspace(c); break;
  case 'u': r = isupper(c); break;
  case 'w': r = isalnum(c); break;
  case 'x': r = isxdigit(c); break;
  case 'z': r = c == 0; break; /* deprecated in the manual, still accepted by 5.4 */
  default: return cl == c;
  }
  if (isupper(cl)) r = !r;
  return r != 0;
}

static int is_class_letter(int cl) {
  int l = tolower(cl);
  return l && strchr("acdglpsuwxz", l) != NULL;
}

/* p[i] is '['; find the ']' that closes the set. The first character (after an optional
 * '^') never closes it, and '%' escapes the next one. 0 when the pattern ends first. */
static int set_close(const char *p, size_t lp, size_t i, size_t *close) {
  size_t j = i + 1;
  if (j < lp && p[j] == '^') j++;
  do {
    if (j >= lp) return 0;
    if (p[j++] == '%' && j < lp) j++;
  } while (j >= lp || p[j] != ']');
  *close = j;
  return 1;
}

/* Fill set from the bracket class p[open..close]. */
static void set_build(set_t set, const char *p, size_t open, size_t close) {
  size_t k = open;
  int negate = 0;
  memset(set, 0, sizeof(set_t));
  if (p[k + 1] == '^') {
    negate = 1;
    k++;
  }
  while (++k < close) {
    unsigned char ch = (unsigned char)p[k];
    if (ch == '%') {
      int cl = (unsigned char)p[++k];
      for (int c = 0; c < 256; c++)
        if (class_has(c, cl)) set[c >> 3] |= (unsigned char)(1u << (c & 7));
    } else if (p[k + 1] == '-' && k + 2 < close) {
      unsigned char hi = (unsigned char)p[k + 2];
      for (int c = ch; c <= hi; c++) set[c >> 3] |= (unsigned char)(1u << (c & 7));
      k += 2;
    } else {
      set[ch >> 3] |= (unsigned char)(1u << (ch & 7));
    }
  }
  if (negate)
    for (int b = 0; b < 32; b++) set[b] = (unsigned char)~set[b];
}

/* Translate p into items (and sets). With pr->items NULL, only count them. Stops at the
 * end of the pattern (K_END) or at the first malformed item (K_ERROR). */
static void compile(const char *p, size_t lp, prog_t *pr) {
  size_t i = 0, ni = 0, ns = 0;
  int fill = pr->items != NULL;
  for (;;) {
    item_t it = {0, K_END, 0, 0, 0, 0};
    int last = 0;
    if (i >= lp) {
      last = 1;
    } else {
      unsigned char c = (unsigned char)p[i];
      unsigned char next = i + 1 < lp ? (unsigned char)p[i + 1] : 0;
      if (c == '(') {
        it.kind = next == ')' ? K_POSITION : K_OPEN;
        i += next == ')' ? 2 : 1;
      } else if (c == ')') {
        it.kind = K_CLOSE;
        i++;
      } else if (c == '$' && i + 1 == lp) {
        it.kind = K_EOS;
        i++;
      } else if (c == '%' && i + 1 < lp && next == 'b') {
        if (lp - i < 4) {
          it.kind = K_ERROR;
          it.set = E_BALANCE_ARGS;
        } else {
          it.kind = K_BALANCE;
          it.c1 = (unsigned char)p[i + 2];
          it.c2 = (unsigned char)p[i + 3];
          i += 4;
        }
      } else if (c == '%' && i + 1 < lp && next == 'f') {
        size_t close;
        if (i + 2 >= lp || p[i + 2] != '[') {
          it.kind = K_ERROR;
          it.set = E_FRONTIER_OPEN;
        } else if (!set_close(p, lp, i + 2, &close)) {
          it.kind = K_ERROR;
          it.set = E_MISSING_CLOSE;
        } else {
          it.kind = K_FRONTIER;
          it.set = (unsigned)ns;
          if (fill) set_build(pr->sets[ns], p, i + 2, close);
          ns++;
          i = close + 1;
        }
      } else if (c == '%' && i + 1 < lp && next >= '0' && next <= '9') {
        it.kind = K_BACKREF;
        it.c1 = next;
        i += 2;
      } else {
        size_t end; /* just past the class */
        it.kind = K_SINGLE;
        if (c == '%') {
          if (i + 1 >= lp) {
            it.kind = K_ERROR;
            it.set = E_ENDS_WITH_ESC;
          } else {
            it.cls = is_class_letter(next) ? C_CLASS : C_CHAR;
            it.c1 = next;
          }
          end = i + 2;
        } else if (c == '[') {
          size_t close = 0;
          if (!set_close(p, lp, i, &close)) {
            it.kind = K_ERROR;
            it.set = E_MISSING_CLOSE;
          } else {
            it.cls = C_SET;
            it.set = (unsigned)ns;
            if (fill) set_build(pr->sets[ns], p, i, close);
            ns++;
          }
          end = close + 1;
        } else {
          it.cls = c == '.' ? C_ANY : C_CHAR;
          it.c1 = c;
          end = i + 1;
        }
        if (it.kind == K_SINGLE) {
          i = end;
          if (i < lp && (p[i] == '*' || p[i] == '+' || p[i] == '-' || p[i] == '?'))
            it.quant = (unsigned char)p[i++];
        }
      }
      last = it.kind == K_ERROR;
    }
    if (fill) pr->items[ni] = it;
    ni++;
    if (last) break;
  }
  pr->nitems = ni;
  pr->nsets = ns;
}

/* Room for a small compiled pattern on the C stack. */
typedef struct {
  item_t items[SMALL_ITEMS];
  set_t sets[SMALL_SETS];
} small_prog_t;

/* Compile p into small, or into a new userdata pushed on the stack when it is bigger. */
static void prog_build(lua_State *L, const char *p, size_t lp, prog_t *pr, small_prog_t *small) {
  prog_t count = {NULL, NULL, 0, 0};
  compile(p, lp, &count);
  if (count.nitems <= SMALL_ITEMS && count.nsets <= SMALL_SETS) {
    pr->items = small->items;
    pr->sets = small->sets;
  } else {
    size_t isz = count.nitems * sizeof(item_t);
    char *mem = lua_newuserdatauv(L, isz + count.nsets * sizeof(set_t), 0);
    pr->items = (item_t *)(void *)mem;
    pr->sets = (set_t *)(void *)(mem + isz);
  }
  compile(p, lp, pr);
}

/* ---------------------------------------------------------------- matching */

typedef struct {
  lua_State *L;
  const char *src, *end; /* the whole subject */
  const item_t *items;
  const set_t *sets;
  long steps, budget;
  int level, depth;
  struct {
    const char *init;
    ptrdiff_t len; /* length, CAP_UNFINISHED or CAP_POSITION */
  } cap[MAX_CAPTURES];
} mstate_t;

static void over_budget(mstate_t *ms) {
  luaL_error(ms->L,
             "string pattern ran over its budget of %I steps (simplify the pattern or "
             "shorten the subject)",
             (lua_Integer)ms->budget);
}

#define SPEND(ms, n)                                        \
  do {                                                      \
    if (((ms)->steps -= (long)(n)) < 0) over_budget(ms);    \
  } while (0)

static void ms_init(mstate_t *ms, lua_State *L, const char *s, size_t ls, const prog_t *pr,
                    long budget) {
  ms->L = L;
  ms->src = s;
  ms->end = s + ls;
  ms->items = pr->items;
  ms->sets = (const set_t *)pr->sets;
  ms->budget = budget;
  ms->steps = budget;
  ms->level = 0;
  ms->depth = MAX_DEPTH;
}

/* Before each attempt at a new subject position. */
static void ms_reset(mstate_t *ms) {
  ms->level = 0;
  ms->depth = MAX_DEPTH;
}

static int single(const mstate_t *ms, const char *s, const item_t *it) {
  if (s >= ms->end) return 0;
  unsigned char c = (unsigned char)*s;
  switch (it->cls) {
  case C_ANY: return 1;
  case C_CHAR: return c == it->c1;
  case C_CLASS: return class_has(c, it->c1);
  default: return IN_SET(ms->sets[it->set], c);
  }
}

static const char *match(mstate_t *ms, const char *s, size_t i);

/* Item i repeats as often as possible from s, then gives back one character at a time
 * until the rest of the pattern matches. */
static const char *max_expand(mstate_t *ms, const char *s, size_t i) {
  const item_t *it = &ms->items[i];
  size_t n = 0;
  if (it->cls == C_ANY) {
    n = (size_t)(ms->end - s);
    SPEND(ms, n);
  } else {
    while (single(ms, s + n, it)) {
      SPEND(ms, 1);
      n++;
    }
  }
  for (;;) {
    const char *r = match(ms, s + n, i + 1);
    if (r) return r;
    if (n == 0) return NULL;
    n--;
  }
}

/* Item i repeats as few times as possible: try the rest first, then one more. */
static const char *min_expand(mstate_t *ms, const char *s, size_t i) {
  const item_t *it = &ms->items[i];
  for (;;) {
    const char *r = match(ms, s, i + 1);
    if (r) return r;
    SPEND(ms, 1);
    if (!single(ms, s, it)) return NULL;
    s++;
  }
}

static const char *balance(mstate_t *ms, const char *s, const item_t *it) {
  if (s >= ms->end || (unsigned char)*s != it->c1) return NULL;
  long open = 1;
  while (++s < ms->end) {
    SPEND(ms, 1);
    unsigned char c = (unsigned char)*s;
    if (c == it->c2) {
      if (--open == 0) return s + 1;
    } else if (c == it->c1) {
      open++;
    }
  }
  return NULL;
}

static const char *backref(mstate_t *ms, const char *s, int digit) {
  int l = digit - '1';
  if (l < 0 || l >= ms->level || ms->cap[l].len == CAP_UNFINISHED)
    luaL_error(ms->L, "invalid capture index %%%d", l + 1);
  ptrdiff_t len = ms->cap[l].len;
  if (len == CAP_POSITION) return NULL; /* a position never matches text */
  SPEND(ms, len / 64);
  if (ms->end - s >= len && memcmp(ms->cap[l].init, s, (size_t)len) == 0) return s + len;
  return NULL;
}

static const char *open_capture(mstate_t *ms, const char *s, size_t i, ptrdiff_t what) {
  if (ms->level >= MAX_CAPTURES) luaL_error(ms->L, "too many captures");
  ms->cap[ms->level].init = s;
  ms->cap[ms->level].len = what;
  ms->level++;
  const char *r = match(ms, s, i);
  if (!r) ms->level--;
  return r;
}

static const char *close_capture(mstate_t *ms, const char *s, size_t i) {
  int l = ms->level - 1;
  while (l >= 0 && ms->cap[l].len != CAP_UNFINISHED) l--;
  if (l < 0) luaL_error(ms->L, "invalid pattern capture");
  ms->cap[l].len = s - ms->cap[l].init;
  const char *r = match(ms, s, i);
  if (!r) ms->cap[l].len = CAP_UNFINISHED;
  return r;
}

/* Match items i.. against the subject from s: the end of the match, or NULL. */
static const char *match(mstate_t *ms, const char *s, size_t i) {
  if (ms->depth-- == 0) luaL_error(ms->L, "pattern too complex");
  for (;;) {
    SPEND(ms, 1);
    const item_t *it = &ms->items[i];
    switch (it->kind) {
    case K_END:
      goto done;
    case K_EOS:
      if (s != ms->end) s = NULL;
      goto done;
    case K_OPEN:
      s = open_capture(ms, s, i + 1, CAP_UNFINISHED);
      goto done;
    case K_POSITION:
      s = open_capture(ms, s, i + 1, CAP_POSITION);
      goto done;
    case K_CLOSE:
      s = close_capture(ms, s, i + 1);
      goto done;
    case K_BALANCE:
      s = balance(ms, s, it);
      if (!s) goto done;
      i++;
      continue;
    case K_FRONTIER: {
      unsigned prev = s == ms->src ? 0u : (unsigned char)s[-1];
      unsigned cur = s < ms->end ? (unsigned char)*s : 0u;
      const unsigned char *set = ms->sets[it->set];
      if (!IN_SET(set, prev) && IN_SET(set, cur)) {
        i++;
        continue;
      }
      s = NULL;
      goto done;
    }
    case K_BACKREF:
      s = backref(ms, s, it->c1);
      if (!s) goto done;
      i++;
      continue;
    case K_ERROR:
      luaL_error(ms->L, "%s", error_text[it->set]);
      s = NULL;
      goto done;
    default: { /* K_SINGLE */
      int hit = single(ms, s, it);
      switch (it->quant) {
      case '?':
        if (hit) {
          const char *r = match(ms, s + 1, i + 1);
          if (r) {
            s = r;
            goto done;
          }
        }
        i++;
        continue;
      case '*':
        if (!hit) {
          i++;
          continue;
        }
        s = max_expand(ms, s, i);
        goto done;
      case '+':
        s = hit ? max_expand(ms, s + 1, i) : NULL;
        goto done;
      case '-':
        if (!hit) {
          i++;
          continue;
        }
        s = min_expand(ms, s, i);
        goto done;
      default:
        if (!hit) {
          s = NULL;
          goto done;
        }
        s++;
        i++;
        continue;
      }
    }
    }
  }
done:
  ms->depth++;
  return s;
}

/* ---------------------------------------------------------------- captures */

/* Capture i of a match s..e: its text in *cap and its length, or CAP_POSITION with the
 * position's pointer in *cap. With no captures, "capture 0" is the whole match. */
static ptrdiff_t capture_get(mstate_t *ms, int i, const char *s, const char *e, const char **cap) {
  if (i >= ms->level) {
    if (i != 0) luaL_error(ms->L, "invalid capture index %%%d", i + 1);
    *cap = s;
    return e - s;
  }
  ptrdiff_t len = ms->cap[i].len;
  *cap = ms->cap[i].init;
  if (len == CAP_UNFINISHED) luaL_error(ms->L, "unfinished capture");
  return len;
}

static void push_capture(mstate_t *ms, int i, const char *s, const char *e) {
  const char *cap;
  ptrdiff_t len = capture_get(ms, i, s, e, &cap);
  if (len == CAP_POSITION)
    lua_pushinteger(ms->L, (lua_Integer)(cap - ms->src) + 1);
  else
    lua_pushlstring(ms->L, cap, (size_t)len);
}

/* Push every capture (the whole match s..e when there are none and s is given). */
static int push_captures(mstate_t *ms, const char *s, const char *e) {
  int n = (ms->level == 0 && s) ? 1 : ms->level;
  luaL_checkstack(ms->L, n, "too many captures");
  for (int i = 0; i < n; i++) push_capture(ms, i, s, e);
  return n;
}

/* ---------------------------------------------------------------- the library functions */

static long budget_of(lua_State *L) {
  lua_Integer b = lua_tointeger(L, lua_upvalueindex(1));
  return b > 0 ? (long)b : LUA_PATTERN_DEFAULT_STEPS;
}

/* The 0-based start for a 1-based, possibly negative init (may be past the end). */
static size_t start_of(lua_Integer pos, size_t len) {
  if (pos > 0) return (size_t)pos - 1;
  if (pos == 0 || pos < -(lua_Integer)len) return 0;
  return len + (size_t)pos;
}

static int no_specials(const char *p, size_t lp) {
  for (size_t i = 0; i < lp; i++)
    if (p[i] && strchr("^$*+?.([%-", p[i])) return 0;
  return 1;
}

/* The first occurrence of n (nl > 0) in h, spending steps as described at the top. */
static const char *plain_find(mstate_t *ms, const char *h, size_t hl, const char *n, size_t nl) {
  if (nl > hl) return NULL;
  const char *cand = h, *last = h + (hl - nl); /* the last possible start */
  while (cand <= last) {
    cand = memchr(cand, (unsigned char)n[0], (size_t)(last - cand) + 1);
    if (!cand) return NULL;
    SPEND(ms, 1);
    size_t k = 1;
    while (k < nl) {
      size_t chunk = nl - k < 64 ? nl - k : 64;
      if (memcmp(cand + k, n + k, chunk) != 0) break;
      k += chunk;
      if (k < nl) SPEND(ms, 1);
    }
    if (k >= nl) return cand;
    cand++;
  }
  return NULL;
}

static int find_aux(lua_State *L, int find) {
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  size_t init = start_of(luaL_optinteger(L, 3, 1), ls);
  if (init > ls) {
    lua_pushnil(L);
    return 1;
  }
  if (find && (lua_toboolean(L, 4) || no_specials(p, lp))) {
    mstate_t ms;
    prog_t none = {NULL, NULL, 0, 0};
    ms_init(&ms, L, s, ls, &none, budget_of(L));
    const char *hit = lp == 0 ? s + init : plain_find(&ms, s + init, ls - init, p, lp);
    if (hit) {
      lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
      lua_pushinteger(L, (lua_Integer)(hit - s) + (lua_Integer)lp);
      return 2;
    }
  } else {
    int anchor = lp > 0 && p[0] == '^';
    if (anchor) {
      p++;
      lp--;
    }
    small_prog_t small;
    prog_t pr;
    prog_build(L, p, lp, &pr, &small);
    mstate_t ms;
    ms_init(&ms, L, s, ls, &pr, budget_of(L));
    const char *s1 = s + init;
    do {
      ms_reset(&ms);
      const char *e = match(&ms, s1, 0);
      if (e) {
        if (find) {
          lua_pushinteger(L, (lua_Integer)(s1 - s) + 1);
          lua_pushinteger(L, (lua_Integer)(e - s));
          return push_captures(&ms, NULL, NULL) + 2;
        }
        return push_captures(&ms, s1, e);
      }
    } while (s1++ < ms.end && !anchor);
  }
  lua_pushnil(L);
  return 1;
}

static int pat_find(lua_State *L) { return find_aux(L, 1); }
static int pat_match(lua_State *L) { return find_aux(L, 0); }

/* gmatch: the iterator's state, followed in the same userdata by the compiled pattern. */
typedef struct {
  size_t pos;         /* where the next search starts (may be len + 1: done) */
  ptrdiff_t last;     /* end of the last match, -1 before the first */
  long budget;
  prog_t pr;
} gmatch_t;

static int gmatch_step(lua_State *L) {
  size_t ls;
  const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
  gmatch_t *g = lua_touserdata(L, lua_upvalueindex(3));
  mstate_t ms;
  ms_init(&ms, L, s, ls, &g->pr, g->budget);
  for (size_t pos = g->pos; pos <= ls; pos++) {
    ms_reset(&ms);
    const char *e = match(&ms, s + pos, 0);
    if (e && e - s != g->last) {
      g->pos = (size_t)(e - s);
      g->last = e - s;
      return push_captures(&ms, s + pos, e);
    }
  }
  g->pos = ls + 1;
  return 0;
}

static int pat_gmatch(lua_State *L) {
  size_t ls, lp;
  luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  size_t init = start_of(luaL_optinteger(L, 3, 1), ls);
  long budget = budget_of(L);
  lua_settop(L, 2); /* the subject and pattern stay alive as upvalues */
  prog_t count = {NULL, NULL, 0, 0};
  compile(p, lp, &count);
  size_t isz = count.nitems * sizeof(item_t);
  gmatch_t *g = lua_newuserdatauv(L, sizeof *g + isz + count.nsets * sizeof(set_t), 0);
  g->pos = init > ls ? ls + 1 : init;
  g->last = -1;
  g->budget = budget;
  g->pr.items = (item_t *)(void *)(g + 1);
  g->pr.sets = (set_t *)(void *)((char *)(g + 1) + isz);
  compile(p, lp, &g->pr);
  lua_pushcclosure(L, gmatch_step, 3);
  return 1;
}

/* gsub: append the replacement string (argument 3) for the match s..e. */
static void add_replacement_string(mstate_t *ms, luaL_Buffer *b, const char *s, const char *e) {
  lua_State *L = ms->L;
  size_t l;
  const char *r = lua_tolstring(L, 3, &l);
  const char *rend = r + l;
  while (r < rend) {
    const char *esc = memchr(r, '%', (size_t)(rend - r));
    if (!esc) {
      luaL_addlstring(b, r, (size_t)(rend - r));
      break;
    }
    luaL_addlstring(b, r, (size_t)(esc - r));
    unsigned char d = esc + 1 < rend ? (unsigned char)esc[1] : 0;
    if (d == '%') {
      luaL_addchar(b, '%');
    } else if (d == '0') {
      luaL_addlstring(b, s, (size_t)(e - s));
    } else if (isdigit(d)) {
      const char *cap;
      ptrdiff_t len = capture_get(ms, d - '1', s, e, &cap);
      if (len == CAP_POSITION) {
        lua_pushinteger(L, (lua_Integer)(cap - ms->src) + 1);
        luaL_addvalue(b);
      } else {
        luaL_addlstring(b, cap, (size_t)len);
      }
    } else {
      luaL_error(L, "invalid use of '%c' in replacement string", '%');
    }
    r = esc + 2;
  }
}

/* gsub: append the replacement for the match s..e; 1 if it changed the text. */
static int add_replacement(mstate_t *ms, luaL_Buffer *b, const char *s, const char *e, int tr) {
  lua_State *L = ms->L;
  if (tr == LUA_TFUNCTION) {
    lua_pushvalue(L, 3);
    int n = push_captures(ms, s, e);
    lua_call(L, n, 1);
  } else if (tr == LUA_TTABLE) {
    push_capture(ms, 0, s, e);
    lua_gettable(L, 3);
  } else {
    add_replacement_string(ms, b, s, e);
    return 1;
  }
  if (!lua_toboolean(L, -1)) { /* nil or false: keep the original text */
    lua_pop(L, 1);
    luaL_addlstring(b, s, (size_t)(e - s));
    return 0;
  }
  if (!lua_isstring(L, -1))
    return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  luaL_addvalue(b);
  return 1;
}

static int pat_gsub(lua_State *L) {
  size_t ls, lp;
  const char *src = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  int tr = lua_type(L, 3);
  lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
  luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION ||
                          tr == LUA_TTABLE,
                   3, "string/function/table");
  if (tr == LUA_TNUMBER) lua_tolstring(L, 3, NULL); /* now a string, before the buffer */
  int anchor = lp > 0 && p[0] == '^';
  if (anchor) {
    p++;
    lp--;
  }
  small_prog_t small;
  prog_t pr;
  prog_build(L, p, lp, &pr, &small);
  mstate_t ms;
  ms_init(&ms, L, src, ls, &pr, budget_of(L));
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  const char *s = src, *last = NULL;
  lua_Integer n = 0;
  int changed = 0;
  while (n < max_n) {
    ms_reset(&ms);
    const char *e = match(&ms, s, 0);
    if (e && e != last) {
      n++;
      changed |= add_replacement(&ms, &b, s, e, tr);
      s = last = e;
    } else if (s < ms.end) {
      luaL_addchar(&b, *s++);
    } else {
      break;
    }
    if (anchor) break;
  }
  if (!changed) {
    lua_pushvalue(L, 1);
  } else {
    luaL_addlstring(&b, s, (size_t)(ms.end - s));
    luaL_pushresult(&b);
  }
  lua_pushinteger(L, n);
  return 2;
}

/* ---------------------------------------------------------------- installing */

void lua_pattern_install_budget(lua_State *L, int string_table_index, long max_steps) {
  static const luaL_Reg fns[] = {{"find", pat_find},
                                 {"match", pat_match},
                                 {"gmatch", pat_gmatch},
                                 {"gsub", pat_gsub},
                                 {NULL, NULL}};
  int t = lua_absindex(L, string_table_index);
  if (max_steps <= 0) max_steps = LUA_PATTERN_DEFAULT_STEPS;
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushinteger(L, (lua_Integer)max_steps);
    lua_pushcclosure(L, f->func, 1);
    lua_setfield(L, t, f->name);
  }
}

void lua_pattern_install(lua_State *L, int string_table_index) {
  lua_pattern_install_budget(L, string_table_index, LUA_PATTERN_DEFAULT_STEPS);
}
