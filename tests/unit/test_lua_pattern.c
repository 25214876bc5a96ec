/* test_lua_pattern: unit tests for engine/lua_pattern.c — differential testing against
 * the real Lua 5.4 string.find, string.match, string.gmatch and string.gsub on a fixed
 * table of subjects x patterns x init/plain/replacement arguments covering every pattern
 * feature and error, targeted cases (argument errors, capture limits, capture undo on
 * backtracking, embedded zeros, frontier and balance edges, gsub replacement kinds,
 * gmatch inits and empty matches) and seeded random patterns and subjects; results and
 * error messages must be identical, except that patterns nested too deep for the real
 * library's recursion must give the result it would give with a deeper stack. Then the
 * budget: catastrophic patterns stop when the charge function raises, steps are charged
 * in blocks across calls, normal work on a 1 MB subject fits in a handler's budget; and
 * in the sandbox built by lua_host.c, a catastrophic pattern fails the call with the
 * standard CPU (or time) budget error that pcall cannot swallow, and luahost_charge
 * counts only inside a budgeted call. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <time.h>

#include "lua_host.h"
#include "lua_pattern.h"
#include "unit.h"
#include "unit_sandbox.h"

/* The Lua side of the differential tests: called with the real functions and ours, it
 * returns a table H whose functions run both and record differences in H.bad. */
static const char HARNESS[] =
    "-- Differential harness: called with the standard library's functions (real) and ours\n"
    "-- (mine); runs both on the same arguments and compares results and error messages.\n"
    "local real, mine = ...\n"
    "local pack, concat, fmt = table.pack, table.concat, string.format\n"
    "local H = {count = 0, nbad = 0, bad = {}}\n"
    "\n"
    "local function show(v)\n"
    "  local t = type(v)\n"
    "  if t == 'string' then return fmt('%q', v) end\n"
    "  if t == 'number' then return math.type(v) .. ' ' .. tostring(v) end\n"
    "  return t .. ' ' .. tostring(v)\n"
    "end\n"
    "\n"
    "local function showall(r)\n"
    "  local out = {}\n"
    "  for k = 1, r.n do out[k] = show(r[k]) end\n"
    "  return '(' .. concat(out, ', ') .. ')'\n"
    "end\n"
    "\n"
    "-- Not a tail call, so a \"bad argument\" message names the function 'f' for both sides.\n"
    "local function invoke(f, ...)\n"
    "  local r = pack(f(...))\n"
    "  return r\n"
    "end\n"
    "\n"
    "local function call(f, ...)\n"
    "  local ok, r = pcall(invoke, f, ...)\n"
    "  if ok then return showall(r) end\n"
    "  return 'error: ' .. tostring(r)\n"
    "end\n"
    "\n"
    "local function compare(desc, a, b)\n"
    "  H.count = H.count + 1\n"
    "  if a ~= b then\n"
    "    H.nbad = H.nbad + 1\n"
    "    if #H.bad < 25 then\n"
    "      H.bad[#H.bad + 1] = desc .. '\\n    real: ' .. a .. '\\n    mine: ' .. b\n"
    "    end\n"
    "  end\n"
    "end\n"
    "\n"
    "local function args(...)\n"
    "  local r = pack(...)\n"
    "  return showall(r)\n"
    "end\n"
    "\n"
    "-- Where the real library gives up with \"pattern too complex\" (its recursion stops at 200\n"
    "-- nested calls) ours has no such limit and must give `want`, the result a deeper stack\n"
    "-- would give (a table.pack of the values).\n"
    "H.deeper = 0\n"
    "function H.deep(what, want, ...)\n"
    "  local a, b = call(real[what], ...), call(mine[what], ...)\n"
    "  if a:find('pattern too complex', 1, true) then\n"
    "    H.deeper = H.deeper + 1\n"
    "    a = showall(want)\n"
    "  end\n"
    "  compare(what .. args(...), a, b)\n"
    "end\n"
    "\n"
    "function H.find(...)\n"
    "  compare('find' .. args(...), call(real.find, ...), call(mine.find, ...))\n"
    "end\n"
    "\n"
    "function H.match(...)\n"
    "  compare('match' .. args(...), call(real.match, ...), call(mine.match, ...))\n"
    "end\n"
    "\n"
    "local function run_gmatch(lib, ...)\n"
    "  local ok, r = pcall(invoke, lib.gmatch, ...)\n"
    "  if not ok then return 'error: ' .. tostring(r) end\n"
    "  local it, out, done = r[1], {}, false\n"
    "  for _ = 1, 60 do\n"
    "    local ok2, r2 = pcall(invoke, it)\n"
    "    if not ok2 then out[#out + 1] = 'error: ' .. tostring(r2); break end\n"
    "    out[#out + 1] = showall(r2)\n"
    "    if r2.n == 0 or r2[1] == nil then\n"
    "      if done then break end\n"
    "      done = true -- call once more after the end: still nothing\n"
    "    end\n"
    "  end\n"
    "  return concat(out, ' ')\n"
    "end\n"
    "\n"
    "function H.gmatch(...)\n"
    "  compare('gmatch' .. args(...), run_gmatch(real, ...), run_gmatch(mine, ...))\n"
    "end\n"
    "\n"
    "-- Replacement kinds for gsub besides strings and numbers.\n"
    "local FN, FN_TABLE, FN_TRUE, TAB, TAB_BAD, TAB_META, NONE = {}, {}, {}, {}, {}, {}, {}\n"
    "H.FN, H.FN_TABLE, H.FN_TRUE, H.TAB, H.TAB_BAD, H.TAB_META, H.NONE =\n"
    "  FN, FN_TABLE, FN_TRUE, TAB, TAB_BAD, TAB_META, NONE\n"
    "local kind_name = {[FN] = 'FN', [FN_TABLE] = 'FN_TABLE', [FN_TRUE] = 'FN_TRUE', [TAB] = 'TAB',\n"
    "                   [TAB_BAD] = 'TAB_BAD', [TAB_META] = 'TAB_META', [NONE] = 'NONE'}\n"
    "\n"
    "local function make_repl(kind, log)\n"
    "  if kind == FN then\n"
    "    local calls = 0\n"
    "    return function(...)\n"
    "      calls = calls + 1\n"
    "      log[#log + 1] = showall(pack(...))\n"
    "      local v, m = ..., calls % 4\n"
    "      if m == 0 then return nil end\n"
    "      if m == 1 then return '<' .. tostring(v) .. '>' end\n"
    "      if m == 2 then return false end\n"
    "      return calls * 10\n"
    "    end\n"
    "  elseif kind == FN_TABLE then\n"
    "    return function(...) log[#log + 1] = showall(pack(...)); return {} end\n"
    "  elseif kind == FN_TRUE then\n"
    "    return function() return true end\n"
    "  elseif kind == TAB then\n"
    "    return {a = 'A', b = false, ['1'] = 'one', [1] = 'pos1', [3] = 3.5, hello = 'HI',\n"
    "            ['a b'] = 'AB', aaa = 'triple', [''] = 'empty'}\n"
    "  elseif kind == TAB_BAD then\n"
    "    return {a = {}, b = 'B'}\n"
    "  elseif kind == TAB_META then\n"
    "    return setmetatable({}, {__index = function(_, k)\n"
    "      log[#log + 1] = show(k)\n"
    "      if k == 'b' then return nil end\n"
    "      return '[' .. tostring(k) .. ']'\n"
    "    end})\n"
    "  elseif kind == NONE then\n"
    "    return nil\n"
    "  end\n"
    "  return kind\n"
    "end\n"
    "\n"
    "local function run_gsub(lib, s, p, kind, ...)\n"
    "  local log = {}\n"
    "  local repl = make_repl(kind, log)\n"
    "  return call(lib.gsub, s, p, repl, ...) .. ' log ' .. concat(log, ' ')\n"
    "end\n"
    "\n"
    "function H.gsub(s, p, kind, ...)\n"
    "  local desc = 'gsub(' .. show(s) .. ', ' .. show(p) .. ', ' ..\n"
    "    (kind_name[kind] or show(kind)) .. ', ' .. args(...) .. ')'\n"
    "  compare(desc, run_gsub(real, s, p, kind, ...), run_gsub(mine, s, p, kind, ...))\n"
    "end\n"
    "\n"
    "-- ---------------------------------------------------------------- the fixed table\n"
    "\n"
    "H.subjects = {\n"
    "  '', 'a', 'aaa', 'aaab', 'b', 'abc', 'hello world', 'hello hello', 'abcabc', 'ababab',\n"
    "  '  trim me  ', 'x(a(b)c)y', 'f(a, (b), c) (d', '[[x]] [y]', 'key = val; k2=v2',\n"
    "  '123abc456', '3.14 and 42', 'a.b.c', 'a+b-c*d?', 'a\\0b\\0c', '\\0', 'a]b[c^d$e%f',\n"
    "  'THE (quick) Fox_1', 'one two  three', '\\n\\t x \\r\\v', 'caf\\195\\169 \\200\\255', '%%',\n"
    "  '$^', '\"\"x\"\"', 'aXbXc', 'aaa bbb aaa', '(()())', 'x=1,y=22;z=333',\n"
    "}\n"
    "\n"
    "H.patterns = {\n"
    "  -- plain text\n"
    "  '', 'a', 'abc', 'hello', ' ', 'o w', 'x', '\\0', 'a\\0b', '\\195\\169', 'hello hello',\n"
    "  -- single-character classes\n"
    "  '.', '..', '%a', '%c', '%d', '%g', '%l', '%p', '%s', '%u', '%w', '%x',\n"
    "  '%A', '%C', '%D', '%G', '%L', '%P', '%S', '%U', '%W', '%X', '%z', '%Z', '%.', '%%',\n"
    "  '%]', '%-', '%(', '%$', '%^', '%\\0', '%q', '%\\200',\n"
    "  -- sets\n"
    "  '[abc]', '[^abc]', '[a-c]', '[^a-c]', '[%a_]', '[%d%s]', '[%]]', '[]]', '[^]]', '[a-]',\n"
    "  '[-a]', '[a%-z]', '[%w-]', '[].]', '[c-a]', '[%a-z]', '[a-%%]', '[^%s]', '[%^]', '[^^]',\n"
    "  '[\\0-\\31]', '[\\128-\\255]', '[.]', '[%.]', '[[]', '[]', '[^]', '[a', '[', '[^', '[%',\n"
    "  '[a%]', '[%]', '[]-a]', '[a-%]]', '[%A%D]', '[^%a%d ]', '[+-]', '[*]', '[$]',\n"
    "  -- quantifiers\n"
    "  'a*', 'a+', 'a-', 'a?', '.*', '.+', '.-', '.?', '%a*', '%a+', '%a-', '%a?', '%s*',\n"
    "  '[abc]*', '[^ ]+', 'x*', 'a*b', 'a-b', 'a+b', 'a?b', 'ab*c', '.-b', '.*b', '%d+%.?%d*',\n"
    "  '%w+', '[%w_]+', 'a**', 'a*+', '*', '+a', '-', '?', 'a-?', '%s-$', 'a?a?a?', '.-.-',\n"
    "  -- anchors\n"
    "  '^a', '^', '^$', '$', 'a$', '^a$', '^.*$', '$a', 'a$b', '$*', '^^', '^%s*(.-)%s*$',\n"
    "  '^(%w+)', '.$', '%$$', '$$', '^*', '^?', '^-a',\n"
    "  -- captures\n"
    "  '(a)', '(a)(b)', '((a)(b))', '()', '()a()', '(a*)', '(.-)b', '(%w+)%s*=%s*(%w+)',\n"
    "  '(()())', '(a)()(b)', '(.)(.)(.)', '()(.-)()', '(h)(e)(l)(l)(o)', '(a', 'a)', ')', '(',\n"
    "  '(()', '(a)(', '((a)', '(a))', '(a*(.)%w(%s*))', '()$', '(%s*)$', '(a)?', '(a)*',\n"
    "  -- back-references\n"
    "  '(a)%1', '(%a+) %1', '(.)%1', '()%1', '(a)%2', '%1', '%0', '(a%1)', '(.)(.)%2%1',\n"
    "  '(%w+).-%1', '(a*)%1', '%9', '(a)%1*', '(.).-%1', '()(a)%2', '%3', '(a)(b)(c)%3',\n"
    "  '(.)%1%1', '(%a)(%a)%2%1', '(a*)(a)', '(a-)(a+)', '(.-)(%w)%2', '((a)(b))%2',\n"
    "  -- balance\n"
    "  '%b()', '%b[]', '%b\"\"', '%bxx', '%b((', '%b)(', '%b(', '%b', '%b(x', '(%b())', 'f%b()',\n"
    "  '%b()*', '%b\\0\\0', '%bab', '%b[]%b[]', '%b()%b()', '(%b())(%b())', '%b((%b))',\n"
    "  -- frontier\n"
    "  '%f[%w]%w+', '%f[%W]', '%f[%a]', '%f[%z]', '%f[^%z]', '%f[%s]', '%f[a]', '%f[^a]', '%f',\n"
    "  '%fa', '%f[a', '%f[%w]', '%f[]]', '%f[%d]%d+%f[%D]', '%f[%l]', '%f[\\0]', '%f[^\\0]',\n"
    "  '%f[%w]*', '%f[', '%f[%w](%w+)', '%f[%w]%f[%a]', '()%f[%s]()',\n"
    "  -- malformed\n"
    "  '%', 'a%', 'abc%', '%%%', 'a[', '%g[', 'x[', '(%', 'a(%b', '(a)b%', 'a%f', 'b[^',\n"
    "  '((((((((((a))))))))))', '()()()', '((()))', '^(.-)$', 'a-$', '.-$', '(.-)%s*=%s*(.-)$',\n"
    "}\n"
    "\n"
    "H.inits = {NONE, 1, 2, 0, -1, -3, 4, 100, -100}\n"
    "\n"
    "H.repls = {'%0', '[%1]', '%2', '%%', '%', 'x%', '%a', '%1%2', '<%0>', 5, 1.5, '', 'lit',\n"
    "           FN, FN_TABLE, FN_TRUE, TAB, TAB_BAD, TAB_META, NONE, '%\\0', true}\n"
    "\n"
    "function H.fixed()\n"
    "  for _, s in ipairs(H.subjects) do\n"
    "    for _, p in ipairs(H.patterns) do\n"
    "      for _, init in ipairs(H.inits) do\n"
    "        if init == NONE then\n"
    "          H.find(s, p); H.match(s, p); H.gmatch(s, p)\n"
    "        else\n"
    "          H.find(s, p, init); H.match(s, p, init); H.gmatch(s, p, init)\n"
    "        end\n"
    "      end\n"
    "      H.find(s, p, 1, true); H.find(s, p, 2, 'yes'); H.find(s, p, nil, false)\n"
    "      for _, r in ipairs(H.repls) do H.gsub(s, p, r) end\n"
    "      H.gsub(s, p, '%0%0', 1); H.gsub(s, p, FN, 2); H.gsub(s, p, '-', 0)\n"
    "      H.gsub(s, p, '-', -1)\n"
    "    end\n"
    "  end\n"
    "  return H.count\n"
    "end\n"
    "\n"
    "-- ---------------------------------------------------------------- targeted cases\n"
    "\n"
    "function H.extra()\n"
    "  local rep = string.rep\n"
    "  -- arguments: numbers as strings, bad types, init forms\n"
    "  H.find(12345, 3); H.find(12.5, '%.'); H.match(12345, '(%d)(%d)'); H.gsub(1234, 2, 9)\n"
    "  H.gsub(1234, '%d', 1.0); H.gsub('abc', 'b', 2^53)\n"
    "  H.find('abc', 'b', 2.0); H.find('abc', 'b', 2.5); H.find('abc', 'b', '2');\n"
    "  H.find('abc', 'b', 'x'); H.match('abc', 'b', {}); H.gmatch('abc', 'b', 1.5)\n"
    "  H.find(nil, 'a'); H.find('a', nil); H.find('a'); H.find(); H.match({}, 'a')\n"
    "  H.gmatch('abc'); H.gmatch(nil, 'a'); H.gsub('abc', 'b'); H.gsub('abc', 'b', true)\n"
    "  H.gsub('abc', 'b', nil, 'x'); H.gsub('abc', 'b', 'x', 1.5); H.gsub('abc', 'b', 'x', '1')\n"
    "  H.gsub('abc', nil, 'x'); H.gsub(nil, 'b', 'x'); H.gsub('abc', 'b', print == nil)\n"
    "  H.find('abc', 'b', math.maxinteger); H.find('abc', 'b', math.mininteger)\n"
    "  H.match('abc', '.', math.mininteger); H.gmatch('abc', '.', math.mininteger)\n"
    "  H.gmatch('abc', '.', math.maxinteger); H.find('', '', 1); H.find('', '', 2)\n"
    "  H.find('abc', '', 4); H.find('abc', '', 5); H.find('abc', '', 4, true)\n"
    "  H.find('abc', '', 5, true); H.match('abc', '()', 4); H.match('abc', '()', 5)\n"
    "  H.gmatch('abc', '()', 4); H.gmatch('abc', '()', 5); H.gmatch('abc', '', -1)\n"
    "  H.gsub('abc', '', '-'); H.gsub('', '', '-'); H.gsub('abc', '^', '>'); H.gsub('abc', '$', '<')\n"
    "  H.gsub('hello world', '(o)', '%1%1', 1); H.gsub('hello world', 'o', 'O', math.maxinteger)\n"
    "  H.gsub('hello world', 'o', 'O', math.mininteger)\n"
    "  H.gsub('abc', '%w', '%0%0'); H.gsub('abc', '()', '%1'); H.gsub('abc', '()(b)', '%1%2')\n"
    "  H.gsub('a,b,,c', ',', ';'); H.gsub('x = 1, y = 2', '(%w+) = (%w+)', '%2 = %1')\n"
    "  H.gsub('$name and $value', '%$(%w+)', TAB_META); H.gsub('abc', '.', {a = 1, b = true})\n"
    "  H.gsub('abc', '(b)', '%1%2'); H.gsub('abc', 'b', '%1'); H.gsub('abc', 'b', '%2')\n"
    "  H.gsub('abc', '(', 'x'); H.gsub('abc', '(b', 'x'); H.gsub('abc', 'x(', 'y')\n"
    "  -- plain find with specials\n"
    "  H.find('a.b', '.', 1, true); H.find('a+b', '+', 1, true); H.find('(x)', '(x)', 1, true)\n"
    "  H.find('a%b', '%', 1, true); H.find('a[b', '[', 1, true); H.find('^a', '^a', 1, true)\n"
    "  H.find('xaaaaaaaaaaab', 'aaaab', 1, true); H.find(rep('ab', 50) .. 'abc', 'abc', 3)\n"
    "  for _, nl in ipairs({2, 63, 64, 65, 66, 128, 129, 130, 200}) do -- 64-byte compare chunks\n"
    "    local subject = rep('a', 500) .. 'b' .. rep('a', 300) .. 'b'\n"
    "    for _, miss in ipairs({0, 1, 63, 64, 65, nl - 1}) do\n"
    "      local needle = rep('a', nl)\n"
    "      if miss > 0 and miss < nl then needle = rep('a', miss) .. 'b' .. rep('a', nl - miss - 1) end\n"
    "      H.find(subject, needle, 1, true); H.find(subject, needle, 450); H.find(subject, needle, -nl)\n"
    "      H.find(subject, needle .. 'c', 1, true)\n"
    "    end\n"
    "  end\n"
    "  -- capture limits and depth (see H.deep)\n"
    "  local deep = rep('a', 300)\n"
    "  local pack = table.pack\n"
    "  for _, n in ipairs({150, 197, 198, 199, 200, 201, 250, 299, 300, 301}) do\n"
    "    local m = math.min(n, 300)\n"
    "    H.deep('find', pack(1, m), deep, rep('a?', n)); H.deep('match', pack(deep), deep, rep('a*', n))\n"
    "    H.deep('match', pack(deep), deep, rep('a-', n) .. '$')\n"
    "    H.deep('gsub', n < 300 and pack('xx', 2) or pack('x', 1), deep, rep('a?', n), 'x')\n"
    "    H.deep('match', pack(rep('a', 300 - m)), deep, rep('a?', n) .. '(.*)$')\n"
    "    H.deep('match', pack(1, math.min(n - 10, 300) + 1), deep, '()' .. rep('a?', n - 10) .. '()')\n"
    "    H.match(deep, rep('(a)', n % 40)); H.match(deep, rep('a', n))\n"
    "  end\n"
    "  for _, n in ipairs({31, 32, 33, 40}) do\n"
    "    H.match(deep, rep('(', n) .. 'a' .. rep(')', n)); H.match(deep, rep('()', n))\n"
    "    H.find(deep, rep('(a)', n)); H.gsub(deep, rep('(a)', n), '%9')\n"
    "  end\n"
    "  H.match(deep, rep('()a', 32) .. '%32'); H.match('aa', '(a)%1%1'); H.match(deep, '(a+)%1$')\n"
    "  H.match(rep('ab', 20), '^(ab)%1%1(.-)%2$'); H.match('abab', '((a)(b))%1%2%3')\n"
    "  H.match('hello', '(l)%1'); H.match('x', '()%1'); H.match('ab', '(a)(b)%3')\n"
    "  -- embedded zeros everywhere\n"
    "  H.find('a\\0b\\0c', '%z'); H.find('a\\0b\\0c', '[%z]'); H.gsub('a\\0b\\0c', '\\0', '0')\n"
    "  H.match('a\\0b', '%f[\\0]'); H.match('a\\0b', '[\\0]+'); H.find('x\\0', '\\0$')\n"
    "  H.match('a\\0b', 'a%\\0b'); H.gsub('a\\0b', '.', '%0%0'); H.find('a\\0b', 'a\\0b', 1, true)\n"
    "  -- frontier at the ends\n"
    "  H.find('THE (quick) fox', '%f[%a]%a+', 5); H.gsub('THE (quick) fox', '%f[%a]%a+', '[%0]')\n"
    "  H.gsub('hello world from lua', '%f[%w]%w+%f[%W]', FN); H.match('abc', '%f[%a]', 2)\n"
    "  H.match('abc', '()%f[%A]'); H.match('', '%f[%z]'); H.match('', '%f[^%z]')\n"
    "  -- balance edge cases\n"
    "  H.gsub('f(a(b)c) g((d) h)i)', '%b()', '%0'); H.match('((((x))))', '%b()', 2)\n"
    "  H.match('\"a\" \"b\"', '%b\"\"'); H.gsub('\"a\" \"b\" \"c', '%b\"\"', 'Q'); H.match('xxyy', '%bxy')\n"
    "  -- gmatch specifics: init, anchors are literal, empty matches\n"
    "  H.gmatch('hello world from Lua', '%a+', 7); H.gmatch('hello', '', 3); H.gmatch('^a^a', '^a')\n"
    "  H.gmatch('abc', '.-'); H.gmatch('abc', 'b*'); H.gmatch('key=val, k2=v2', '(%w+)=(%w+)')\n"
    "  H.gmatch('abc', '()', -2); H.gmatch('abc', '$', 1); H.gmatch('ab', '()(.?)()')\n"
    "  -- gsub anchored, counts, replacement values\n"
    "  H.gsub('aaa', '^a', 'b'); H.gsub('aaa', '^a*', 'b'); H.gsub('aaa', '^', 'b', 0)\n"
    "  H.gsub('hello', 'l+', FN); H.gsub('hello', '(l)(l)', FN); H.gsub('hello', '()ll()', FN)\n"
    "  H.gsub('abc', '%w', FN_TRUE); H.gsub('abc', '%w', TAB_BAD); H.gsub('bab', '%w', TAB_BAD)\n"
    "  H.gsub('hello world', '%w+', TAB); H.gsub('a b', '%w+', TAB); H.gsub('abc', '(b)', '%0-%1')\n"
    "  H.gsub('abc', '(b)', '%%1'); H.gsub('abc', 'b', '%'); H.gsub('abc', 'x', '%')\n"
    "  H.gsub('abc', '(a)(b)(c)', '%3%2%1%0'); H.gsub('abc', '((a)(b))', '%1|%2|%3|%4')\n"
    "  H.gsub('abcdefghij', '(a)(b)(c)(d)(e)(f)(g)(h)(i)', '%9%8%7%6%5%4%3%2%1%0')\n"
    "  H.gsub('abcdefghij', '(a)(b)(c)(d)(e)(f)(g)(h)', '%9'); H.gsub('abc', '()b()', '[%1,%2]')\n"
    "  H.gsub('abc', '()', TAB); H.gsub('abc', '()', FN); H.gsub('a b c', '%s*', '-')\n"
    "  H.gsub('hello world', '%w+', '%0 %0', 1); H.gsub('abc', '.', {a = 'x', c = 7})\n"
    "  -- backtracking must undo the captures closed after a choice\n"
    "  H.match('aaa', '(a*)(a)'); H.match('xaaay', '(a-)(a+)y'); H.match('aaab', '((a*)a)b')\n"
    "  H.match('key = value = x', '(.-)%s*=%s*(.-)$'); H.match('abcabc', '(.-)c(.-)c')\n"
    "  H.match('aXbXc', '(.*)X(.*)'); H.match('aXbXc', '(.-)X(.*)'); H.match('abab', '((a)(b))*')\n"
    "  H.match('aaaa', '(a?)(a?)(a?)%1%2%3$'); H.find('abcab', '(a)(b)(.-)%1%2', 1)\n"
    "  -- gmatch with init before the start, past the end, and at every empty match\n"
    "  H.gmatch('hello', 'l', -2); H.gmatch('hello', '.', 10); H.gmatch('hello', '()', -10)\n"
    "  H.gmatch('hello', '', 6); H.gmatch('hello', '', 7); H.gmatch('^^x', '^'); H.gmatch('a a', 'a*')\n"
    "  H.gmatch('abc', '()', 0); H.gmatch('abc', '(%w*)'); H.gmatch('x=1, y=2', '(%w)=()')\n"
    "  -- find and match with init past the end, and malformed items reached late\n"
    "  H.find('abc', 'x*', 4); H.find('abc', 'x*', 5); H.match('abc', '$', 4); H.match('abc', '^', 4)\n"
    "  H.match('ab', '(a)b%'); H.gsub('ab', 'b[', 'x'); H.gmatch('xyz', 'y%f'); H.gmatch('ab ab', 'b%')\n"
    "  return H.count\n"
    "end\n"
    "\n"
    "-- ---------------------------------------------------------------- random cases\n"
    "\n"
    "local atoms = {'a', 'b', 'c', '.', '%a', '%d', '%s', '%w', '%p', '%A', '[ab]', '[^a]', '[a-c]',\n"
    "               '[%d(]', '[]]', ' ', '(', ')', '()', '%1', '%2', '%b()', '%bab', '%f[%w]',\n"
    "               '%f[%s]', '%f[^a]', '$', '^', '%', '[', ']', '1', '%.', '%%', '-', '*', '+',\n"
    "               '?', '(a)', '(.-)', '(%a+)', '%0', '%f', '%b'}\n"
    "local quants = {'', '', '', '', '*', '+', '-', '?'}\n"
    "local chars = {'a', 'a', 'b', 'c', '(', ')', ' ', '1', '2', '.', 'A', '%', '[', ']', '\\0'}\n"
    "local rpieces = {'%0', '%1', '%2', '%%', 'x', '%', '-', '%a', '%3'}\n"
    "\n"
    "function H.random(seed, n)\n"
    "  math.randomseed(seed)\n"
    "  local R = math.random\n"
    "  for _ = 1, n do\n"
    "    local parts = {}\n"
    "    if R(4) == 1 then parts[1] = '^' end\n"
    "    for _ = 1, R(0, 6) do parts[#parts + 1] = atoms[R(#atoms)] .. quants[R(#quants)] end\n"
    "    if R(6) == 1 then parts[#parts + 1] = '$' end\n"
    "    local p = concat(parts)\n"
    "    local sc, small = {}, R(2) == 1\n"
    "    for k = 1, R(0, 12) do sc[k] = small and (R(3) == 1 and 'b' or 'a') or chars[R(#chars)] end\n"
    "    local s = concat(sc)\n"
    "    local init = nil\n"
    "    if R(3) == 1 then init = R(-#s - 2, #s + 2) end\n"
    "    H.find(s, p, init); H.match(s, p, init); H.gmatch(s, p, init)\n"
    "    if R(8) == 1 then H.find(s, p, init, true) end\n"
    "    local r\n"
    "    local k = R(10)\n"
    "    if k == 1 then r = FN elseif k == 2 then r = TAB_META elseif k == 3 then r = TAB\n"
    "    else\n"
    "      local rp = {}\n"
    "      for j = 1, R(0, 3) do rp[j] = rpieces[R(#rpieces)] end\n"
    "      r = concat(rp)\n"
    "    end\n"
    "    if R(4) == 1 then H.gsub(s, p, r, R(-1, 3)) else H.gsub(s, p, r) end\n"
    "  end\n"
    "  return H.count\n"
    "end\n"
    "\n"
    "return H\n";

/* ---------------------------------------------------------------- helpers */

/* The test meter: what lua_pattern charges in a plain state. Units charged so far, and
 * a limit past which the charge raises (0: none), like luahost_charge in the sandbox. */
static long charged, charge_limit;

static void test_charge(lua_State *L, long units) {
  CHECK_INT(units % PATTERN_CHARGE_EVERY, 0);
  charged += units;
  if (charge_limit && charged > charge_limit)
    luaL_error(L, "test budget of %I units spent", (lua_Integer)charge_limit);
}

/* charged() from Lua: the units charged so far. */
static int charged_so_far(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)charged);
  return 1;
}

/* A plain state with the standard libraries; globals `real` (the standard find, match,
 * gmatch, gsub), `mine` (a copy of the string table with ours installed, charging
 * test_charge with the given limit), `charged` and `H` (the harness). */
static lua_State *new_state(long limit) {
  static const char *const names[] = {"find", "match", "gmatch", "gsub", NULL};
  charged = 0;
  charge_limit = limit;
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_register(L, "charged", charged_so_far);
  lua_getglobal(L, "string");
  int str = lua_gettop(L);
  lua_newtable(L);
  for (const char *const *n = names; *n; n++) {
    lua_getfield(L, str, *n);
    lua_setfield(L, -2, *n);
  }
  lua_setglobal(L, "real");
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, str)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_settable(L, -4);
  }
  pattern_install(L, -1, test_charge);
  lua_setglobal(L, "mine");
  lua_pop(L, 1);
  if (luaL_loadbuffer(L, HARNESS, sizeof HARNESS - 1, "=harness") != LUA_OK) {
    fprintf(stderr, "harness: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_getglobal(L, "real");
  lua_getglobal(L, "mine");
  lua_call(L, 2, 1);
  lua_setglobal(L, "H");
  return L;
}

/* Run code (which may use real, mine and H); 0 when it ran, else print the error. */
static int run(lua_State *L, const char *code) {
  if (luaL_dostring(L, code) != LUA_OK) {
    fprintf(stderr, "  lua: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  lua_settop(L, 0);
  return 0;
}

/* After H.* calls: report the differences; returns the number of cases compared. */
static long report(lua_State *L, const char *what) {
  lua_getglobal(L, "H");
  lua_getfield(L, -1, "count");
  long count = (long)lua_tointeger(L, -1);
  lua_getfield(L, -2, "nbad");
  long nbad = (long)lua_tointeger(L, -1);
  lua_getfield(L, -3, "bad");
  for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
    fprintf(stderr, "  %s differs: %s\n", what, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_settop(L, 0);
  printf("%s: %ld cases compared, %ld differ\n", what, count, nbad);
  CHECK_INT(nbad, 0);
  return count;
}

/* The error message of code run protected, without the `[string "..."]:N: ` position
 * that luaL_error adds for the calling chunk, or NULL when it succeeded (caller frees). */
static char *error_of(lua_State *L, const char *code) {
  char *msg = NULL;
  if (luaL_dostring(L, code) != LUA_OK) {
    const char *m = lua_tostring(L, -1);
    m = m ? m : "(no message)";
    const char *pos = strncmp(m, "[string \"", 9) == 0 ? strstr(m, "\"]:") : NULL;
    if (pos) {
      pos += 3;
      while (*pos >= '0' && *pos <= '9') pos++;
      if (pos[0] == ':' && pos[1] == ' ') m = pos + 2;
    }
    msg = strdup(m);
  }
  lua_settop(L, 0);
  return msg;
}

/* ---------------------------------------------------------------- differential tests */

TEST(fixed_table_matches_the_real_library) {
  lua_State *L = new_state(0);
  CHECK_INT(run(L, "H.fixed()"), 0);
  CHECK(report(L, "fixed table") > 100000);
  lua_close(L);
}

TEST(targeted_cases_match_the_real_library) {
  lua_State *L = new_state(0);
  CHECK_INT(run(L, "H.extra()"), 0);
  /* the depth cases did reach the standard library's recursion limit */
  CHECK_INT(run(L, "assert(H.deeper >= 30, H.deeper)"), 0);
  CHECK(report(L, "targeted cases") > 250);
  lua_close(L);
}

TEST(random_cases_match_the_real_library) {
  lua_State *L = new_state(0);
  CHECK_INT(run(L, "for seed = 1, 4 do H.random(seed * 7919, 5000) end"), 0);
  CHECK(report(L, "random cases") >= 4 * 5000 * 4);
  lua_close(L);
}

/* The error messages themselves, spelled out (the differential tests only compare). */
TEST(error_messages) {
  static const struct {
    const char *code, *want;
  } cases[] = {
      {"mine.find('a', 'a%')", "malformed pattern (ends with '%')"},
      {"mine.find('a', '[a')", "malformed pattern (missing ']')"},
      {"mine.find('a', '[%]')", "malformed pattern (missing ']')"},
      {"mine.match('a', '%f[a')", "malformed pattern (missing ']')"},
      {"mine.match('a', '%b(')", "malformed pattern (missing arguments to '%b')"},
      {"mine.match('a', '%fa')", "missing '[' after '%f' in pattern"},
      {"mine.match('a', '%f')", "missing '[' after '%f' in pattern"},
      {"mine.match('a', '%1')", "invalid capture index %1"},
      {"mine.match('a', '(a%1)')", "invalid capture index %1"},
      {"mine.match('a', '%0')", "invalid capture index %0"},
      {"mine.match('aa', '(a)%2')", "invalid capture index %2"},
      {"mine.gsub('a', 'a', '%2')", "invalid capture index %2"},
      {"mine.gsub('a', '(a)', '%3')", "invalid capture index %3"},
      {"mine.gsub('a', 'a', '%x')", "invalid use of '%' in replacement string"},
      {"mine.gsub('a', 'a', 'x%')", "invalid use of '%' in replacement string"},
      {"mine.match('a', 'a)')", "invalid pattern capture"},
      {"mine.match('a', '(a))')", "invalid pattern capture"},
      {"mine.match('a', '(a')", "unfinished capture"},
      {"mine.find('a', '(a')", "unfinished capture"},
      {"mine.gsub('a', '(a', '%1')", "unfinished capture"},
      {"mine.match('a', string.rep('()', 33))", "too many captures"},
      {"for _ in mine.gmatch('xa', 'a%') do end", "malformed pattern (ends with '%')"},
      {"mine.gsub('a', 'a', function() return {} end)", "invalid replacement value (a table)"},
      {"mine.gsub('a', 'a', {a = true})", "invalid replacement value (a boolean)"},
      {"mine.gsub('a', 'a')", "bad argument #3 to 'gsub' (string/function/table expected, got no value)"},
  };
  lua_State *L = new_state(0);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *got = error_of(L, cases[i].code);
    if (!got || strcmp(got, cases[i].want) != 0) {
      fprintf(stderr, "  %s: got \"%s\", want \"%s\"\n", cases[i].code, got ? got : "(no error)",
              cases[i].want);
      unit_failed_checks++;
    }
    free(got);
  }
  /* patterns are checked only as far as matching reaches, like the standard library */
  CHECK_INT(run(L, "assert(mine.find('abc', 'x[') == nil) assert(mine.find('abc', 'x%') == nil)\n"
                   "assert(mine.match('abc', '^b%1') == nil) assert(mine.gsub('abc', 'x)', '') == 'abc')"),
            0);
  lua_close(L);
}

/* No recursion, so no depth limit: thousands of items, choices and captures. */
TEST(deep_patterns_match_without_a_depth_limit) {
  lua_State *L = new_state(0);
  CHECK_INT(run(L, "local s = string.rep('a', 6000)\n"
                   "local i, j = mine.find(s, string.rep('a?', 5000)) assert(i == 1 and j == 5000)\n"
                   "assert(mine.match(s, string.rep('a-', 5000) .. '$') == s)\n"
                   "assert(mine.match(s, string.rep('a*', 5000) .. '$') == s)\n"
                   "assert(mine.match(s .. 'b', string.rep('(a)', 32) .. string.rep('a?', 4000) .. 'a*b$') == 'a')\n"
                   "local t = {mine.match(s, string.rep('()a?', 32))} assert(#t == 32 and t[32] == 32)\n"
                   "assert(mine.gsub(s, string.rep('a?', 5000), 'x') == 'xx')\n"
                   "assert(select(2, pcall(real.find, s, string.rep('a?', 5000))):find('too complex'))\n"),
            0);
  lua_close(L);
}

/* ---------------------------------------------------------------- the budget */

static const char BACKTRACK[] = "local s = string.rep('a', 40)\n"
                                "return s:find(string.rep('a*', 40) .. 'b')";

TEST(catastrophic_patterns_stop_when_the_charge_raises) {
  lua_State *L = new_state(10000000);
  /* s:find goes through the string metatable's __index: point it at `mine` */
  CHECK_INT(run(L, "getmetatable('').__index = mine"), 0);
  const char *fns[] = {
      BACKTRACK,
      "return mine.match(string.rep('a', 40), string.rep('a*', 40) .. 'b')",
      "return mine.gsub(string.rep('a', 40), string.rep('a*', 40) .. 'b', '')",
      "for x in mine.gmatch(string.rep('a', 40), string.rep('a*', 40) .. 'b') do end",
      "return mine.find(string.rep('a', 40), string.rep('a-', 40) .. 'b')",
      "return mine.find(string.rep('a', 40), string.rep('(a?)', 20) .. string.rep('a-', 20) .. 'b')",
      "return mine.find(string.rep('(', 100000), '%b()')",
      "return mine.match(string.rep('a', 100000), '(.-)%1$')",
      /* a plain find is one C call too: 24 MiB searched for a 64 KiB needle */
      "return mine.find(string.rep('a', 24 << 20), string.rep('a', 1 << 16) .. 'b', 1, true)",
      "return mine.find(string.rep('a', 24 << 20), string.rep('a', 1 << 16) .. 'b')",
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    charged = 0;
    char *err = error_of(L, fns[i]);
    CHECK(err != NULL);
    if (err && strcmp(err, "test budget of 10000000 units spent") != 0) {
      fprintf(stderr, "  case %zu: %s\n", i, err);
      unit_failed_checks++;
    }
    free(err);
  }
  lua_close(L);
}

TEST(steps_are_charged_in_blocks_across_calls) {
  lua_State *L = new_state(0);
  /* one slow call: about 3000 * 3000 / 2 lazy steps */
  CHECK_INT(run(L, "assert(mine.find(string.rep('a', 3000), '.-b') == nil)"), 0);
  CHECK(charged >= 3000L * 3000 / 2);
  CHECK(charged < 3000L * 3000 * 4);
  /* many cheap calls: their few steps add up (the unused part of a block carries over) */
  long before = charged;
  CHECK_INT(run(L, "for i = 1, 20000 do assert(mine.find('hello world', '(o)%s*(w)') == 5) end"), 0);
  CHECK(charged - before >= 20000L * 6);
  before = charged;
  CHECK_INT(run(L, "for i = 1, 20000 do assert(mine.find('hello world', 'o w', 1, true) == 5) end"), 0);
  CHECK(charged - before >= 20000L);
  before = charged;
  CHECK_INT(run(L, "local n = 0 for w in mine.gmatch(string.rep('ab ', 20000), '%a+') do n = n + 1 end\n"
                   "assert(n == 20000)"), 0);
  CHECK(charged - before >= 20000L * 2);
  lua_close(L);
}

/* Ordinary work on a 1 MB subject: the same results as the real library, each call well
 * inside a handler's default budget of 10 million instructions. */
TEST(one_megabyte_subject_within_the_default_budget) {
  lua_State *L = new_state(0);
  CHECK_INT(run(L,
                "local s = string.rep('lorem ipsum dolor sit amet, ', 37450) .. 'needle42 end'\n"
                "assert(#s > 1048576)\n"
                "local function same(what, ...)\n"
                "  local before = charged()\n"
                "  local a, b = table.pack(real[what](...)), table.pack(mine[what](...))\n"
                "  assert(charged() - before < 10000000, what .. ' charged ' .. (charged() - before))\n"
                "  assert(a.n == b.n, what)\n"
                "  for i = 1, a.n do assert(a[i] == b[i], what .. ' result ' .. i) end\n"
                "  return table.unpack(b, 1, b.n)\n"
                "end\n"
                "assert(same('find', s, 'needle(%d+)') == #s - 11)\n"
                "assert(same('find', s, 'needle42', 1, true) == #s - 11)\n"
                "assert(same('find', s, 'needle42') == #s - 11)\n"
                "assert(same('match', s, '(%w+) end$') == 'needle42')\n"
                "assert(same('match', s, '^%s*(.-)%s*$') == s)\n"
                "assert(same('find', s, '%f[%w]needle%d+%f[%W]') == #s - 11)\n"
                "assert(select(2, same('gsub', s, '%w+', '%0')) == 37450 * 5 + 2)\n"
                "same('gsub', s, '%s+', ' ')\n"
                "same('gsub', s, 'ipsum', 'IPSUM')\n"
                "local n = 0 for w in mine.gmatch(s, '%a+') do n = n + 1 end\n"
                "assert(n == 37450 * 5 + 2)\n"),
            0);
  lua_close(L);
}

/* ---------------------------------------------------------------- the sandbox */


TEST(sandbox_uses_our_patterns) {
  luahost_t *h = luahost_new(NULL, NULL, NULL, NULL, NULL);
  CHECK(h != NULL);
  if (!h) return;
  /* the string table (also the string metatable's __index) no longer holds the standard
   * functions: compare with a plain state's */
  lua_State *plain = luaL_newstate();
  luaL_openlibs(plain);
  static const char *const names[] = {"find", "match", "gmatch", "gsub", NULL};
  lua_getglobal(h->L, "string");
  lua_getglobal(plain, "string");
  for (const char *const *n = names; *n; n++) {
    lua_getfield(h->L, -1, *n);
    lua_getfield(plain, -1, *n);
    lua_CFunction ours = lua_tocfunction(h->L, -1), std = lua_tocfunction(plain, -1);
    CHECK(ours != NULL);
    CHECK(ours != std);
    lua_pop(h->L, 1);
    lua_pop(plain, 1);
  }
  lua_settop(h->L, 0);
  lua_close(plain);

  char *err = call_script(h, "assert(('hello world'):find('o w') == 5)\n"
                             "assert(string.find == ('').find and string.gsub == ('').gsub)\n"
                             "assert(string.gsub('abc', '%w', '%0%0') == 'aabbcc')\n"
                             "local t = {} for k, v in ('a=1, b=2'):gmatch('(%w+)=(%w+)') do t[k] = v end\n"
                             "assert(t.a == '1' and t.b == '2')\n"
                             "assert(select(2, pcall(string.find, nil)):find(\"bad argument #1 to 'string.find'\", 1, true))\n");
  CHECK(err == NULL);
  if (err) fprintf(stderr, "  %s\n", err);
  free(err);
  luahost_free(h);
}

static const char CPU_BUDGET_ERROR[] = "handler stopped: ran over its CPU budget of 10000000 instructions";

TEST(catastrophic_pattern_spends_the_handler_budget) {
  /* the default instructions, and a wall-clock deadline no loaded machine reaches first:
   * this is about the instruction budget (the deadline has its own test below) */
  budget_t lim;
  budget_default(&lim);
  lim.max_call_ms = 600000;
  luahost_t *h = luahost_new(&lim, NULL, NULL, NULL, NULL);
  CHECK(h != NULL);
  if (!h) return;
  char *err = call_script(h, BACKTRACK);
  CHECK(err && strstr(err, CPU_BUDGET_ERROR));
  free(err);
  /* a script's pcall cannot swallow it: the next instruction raises again */
  err = call_script(h, "local s = string.rep('a', 40)\n"
                       "local ok, e = pcall(string.find, s, string.rep('a*', 40) .. 'b')\n"
                       "assert(not ok and e:find('CPU budget', 1, true))\n"
                       "for i = 1, 10 do pcall(string.rep, 'x', 1) end\n"
                       "error('survived the budget')\n");
  CHECK(err && strstr(err, CPU_BUDGET_ERROR));
  CHECK(err && !strstr(err, "survived"));
  free(err);
  /* matcher steps and Lua instructions come out of the same budget: a loop of about 6
   * million instructions and patterns of about 5 million steps (each find about 1 million)
   * both fit alone, not together */
  static const char LOOP[] = "for i = 1, 6000000 do end\n";
  static const char FINDS[] = "for i = 1, 5 do string.find(string.rep('a', 1000), '.-b') end\n";
  char both[sizeof LOOP + sizeof FINDS];
  snprintf(both, sizeof both, "%s%s", LOOP, FINDS);
  err = call_script(h, LOOP);
  CHECK(err == NULL);
  free(err);
  err = call_script(h, FINDS);
  CHECK(err == NULL);
  free(err);
  err = call_script(h, both);
  CHECK(err && strstr(err, CPU_BUDGET_ERROR));
  free(err);
  /* the state is still usable, and a new call has its whole budget again */
  err = call_script(h, "assert(string.find('hello', 'l+') == 3)");
  CHECK(err == NULL);
  free(err);
  luahost_free(h);
}

TEST(catastrophic_pattern_stops_at_the_deadline) {
  budget_t lim;
  budget_default(&lim);
  lim.max_instructions = 1L << 50; /* only the clock can stop it */
  lim.max_call_ms = 100;
  luahost_t *h = luahost_new(&lim, NULL, NULL, NULL, NULL);
  CHECK(h != NULL);
  if (!h) return;
  char *err = call_script(h, BACKTRACK);
  CHECK(err && strstr(err, "handler stopped: ran over its time budget of 100 ms"));
  free(err);
  luahost_free(h);
}

static int charge_from_c(lua_State *L) {
  luahost_charge(L, *(long *)lua_touserdata(L, 1));
  return 0;
}

TEST(luahost_charge_outside_and_inside_a_call) {
  luahost_t *h = luahost_new(NULL, NULL, NULL, NULL, NULL);
  CHECK(h != NULL);
  if (!h) return;
  /* outside a budgeted call: nothing happens */
  long before = h->instructions;
  luahost_charge(h->L, 1L << 40);
  CHECK_INT(h->instructions, before);
  CHECK_INT(h->trip, 0);
  /* inside one: counted with the instructions */
  long n = 5000;
  char *err = NULL;
  CHECK_INT(luahost_call(h, charge_from_c, &n, &err), 0);
  CHECK(err == NULL);
  CHECK(h->instructions >= 5000);
  free(err);
  n = 20000000;
  CHECK_INT(luahost_call(h, charge_from_c, &n, &err), -1);
  CHECK(err && strstr(err, CPU_BUDGET_ERROR));
  free(err);
  luahost_free(h);
}

int main(void) {
  RUN(fixed_table_matches_the_real_library);
  RUN(targeted_cases_match_the_real_library);
  RUN(random_cases_match_the_real_library);
  RUN(error_messages);
  RUN(deep_patterns_match_without_a_depth_limit);
  RUN(catastrophic_patterns_stop_when_the_charge_raises);
  RUN(steps_are_charged_in_blocks_across_calls);
  RUN(one_megabyte_subject_within_the_default_budget);
  RUN(sandbox_uses_our_patterns);
  RUN(catastrophic_pattern_spends_the_handler_budget);
  RUN(catastrophic_pattern_stops_at_the_deadline);
  RUN(luahost_charge_outside_and_inside_a_call);
  return UNIT_DONE();
}
