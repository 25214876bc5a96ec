--[[ options: the checks of the standard modules' option tables, in one wording, and the
FNV-1a hash two modules share. Our own code; it gathers what journey, caps, streak,
referral, recall, reward, tiers, benefits, segment and channel each used to check alone.

What it owns
  * The wording of every option error (the path names the option from the top of the
    table the operator wrote: 'steps[2].after', 'milestones[7].points'):
      option '<path>' must be <what it must be>, got <what it got>
      option '<path>' is unknown (known: a, b, c)
      option '<path>' <anything else, e.g. needs option 'churned_after'>
  * Checks: each takes the value and its path, returns the value checked (some normalise:
    a duration becomes seconds, one tag a list of one tag) or raises that message with
    error(msg, 0), so without a position. A module's define builds its definition
    through options.checked, which raises the message again as "<module>.define: <msg>"
    at the operator's line that called define (file:line: in front).
  * options.declare: hearth.on / hearth.cron at define time, a failure (not at the top
    level of a script, a cron spec the engine refuses) raised at that line too.
  * options.hash(s): FNV-1a 32-bit of s (journey's variant assignment, benefits' timer
    type names).

Uses hearth.duration (the engine's duration parser) and nothing else.
]]

local options = {}

-- ---------------------------------------------------------------- messages

local SHOWN_BYTES = 60

-- How a value appears after "got": strings quoted (cut at SHOWN_BYTES, never inside a
-- UTF-8 character), numbers and booleans as written, other values by their type ("a table",
-- "an empty table", "a function").
local function show(v)
  local t = type(v)
  if t == "string" then
    local s = v
    if #s > SHOWN_BYTES then
      local cut = SHOWN_BYTES
      while cut > 0 and (s:byte(cut + 1) or 0) & 0xC0 == 0x80 do cut = cut - 1 end
      s = s:sub(1, cut) .. "..."
    end
    return (string.format("%q", s):gsub("\\\n", "\\n"))
  elseif t == "number" then
    return math.type(v) == "integer" and tostring(v) or string.format("%.14g", v)
  elseif t == "nil" or t == "boolean" then
    return tostring(v)
  elseif t == "table" and next(v) == nil then
    return "an empty table"
  end
  return "a " .. t
end
options.show = show

--- options.message(path, must [, got]) -> "option '<path>' must be <must>, got <got>"
--- (without ", got ..." when got is not passed at all).
function options.message(path, must, ...)
  local msg = string.format("option '%s' must be %s", path, must)
  if select("#", ...) > 0 then msg = msg .. ", got " .. show((...)) end
  return msg
end

--- options.fail(path, must [, got]): raise options.message(path, must [, got]) at level 0.
function options.fail(path, must, ...)
  error(options.message(path, must, ...), 0)
end
local fail = options.fail

--- options.reject(path, text): raise "option '<path>' <text>".
function options.reject(path, text)
  error(string.format("option '%s' %s", path, text), 0)
end

--- The path of field k of the option at path ("" is the top of the table).
function options.field(path, k)
  if path == "" then return tostring(k) end
  return path .. "." .. tostring(k)
end
local field = options.field

--- The path of the i-th entry (or key i) of the option at path.
function options.index(path, i)
  return string.format("%s[%s]", path, tostring(i))
end
local index = options.index

--- options.checked(fn, check, spec) -> check(spec) (a module's build of its definition from
--- the option table), whose option errors are raised again as "<fn>: <message>" at the
--- operator's line that called the module's function `fn`. Call it from that function
--- itself, as `local def = options.checked(...)` (a tail call `return options.checked(...)`
--- would move the level by one).
function options.checked(fn, check, spec)
  local ok, def = pcall(check, spec)
  if not ok then error(fn .. ": " .. tostring(def), 3) end
  return def
end

--- options.declare(fn, path, register, ...): register(...) (hearth.on, hearth.cron) for
--- the module's function `fn` at define time; a failure is raised as
--- options.declare_error(fn, path, err, first argument) at the operator's line that
--- called `fn`. Call it from `fn` itself, as a statement (not `return options.declare(...)`).
--- path: the option the first argument came from (a cron spec), or nil.
function options.declare(fn, path, register, ...)
  local ok, err = pcall(register, ...)
  if not ok then error(options.declare_error(fn, path, err, (...)), 3) end
end

--- options.definition(spec, known, defs [, check_name]) -> name: the start every define
--- shares: spec is a table, its keys are in `known`, spec.name passes check_name (default
--- options.name) and is not a key of `defs` yet.
function options.definition(spec, known, defs, check_name)
  options.spec(spec)
  options.known(spec, known, "")
  local name = (check_name or options.name)(spec.name, "name")
  options.unique(defs, name)
  return name
end

--- options.declare_error(fn, path, err, value): the message for a hearth.on / hearth.cron
--- call that failed inside `fn` ("tiers.define"): the call was not made while the scripts
--- load, or the engine refused the cron spec `value` of option `path`.
function options.declare_error(fn, path, err, value)
  err = tostring(err)
  if err:find("while the scripts load", 1, true) then
    return fn .. ": call it at the top level of a script, while the scripts load"
  end
  local reason = err:match("%(cron '.-': (.*)%)$")
  if path and reason then
    return fn .. ": " .. options.message(path, "a five-field cron spec (" .. reason .. ")", value)
  end
  return fn .. ": " .. err
end

--- A definition's name that `defs` (name -> definition) does not hold yet.
function options.unique(defs, name, path)
  if defs[name] ~= nil then options.fail(path or "name", "a name no other definition uses (it is defined twice)", name) end
  return name
end

-- ---------------------------------------------------------------- tables

--- The option table itself (what define was given): a table.
function options.spec(v)
  if type(v) ~= "table" then error("expects a table of options, got " .. show(v), 0) end
  return v
end

--- A table (any keys).
function options.table(v, path, example)
  if type(v) ~= "table" then fail(path, example and ("a table " .. example) or "a table", v) end
  return v
end

local function sorted_names(allowed)
  local names = {}
  for n in pairs(allowed) do names[#names + 1] = tostring(n) end
  table.sort(names)
  return table.concat(names, ", ")
end

--- Every key of t is a key of `allowed` (a set); path is where t is ("" for the top).
function options.known(t, allowed, path)
  for k in pairs(t) do
    if not allowed[k] then
      options.reject(field(path, k), "is unknown (known: " .. sorted_names(allowed) .. ")")
    end
  end
  return t
end

--- A table keyed by counts, integers >= 1 (`what` names them: "streak lengths"); each
--- value passes check(value, "<path>[<key>]"). Returns a new table: key -> check's result.
function options.by_count(v, path, example, what, check)
  options.table(v, path, example)
  local out = {}
  for k, x in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 then
      options.reject(path, "must be keyed by " .. what .. " (integers >= 1), got the key " .. show(k))
    end
    out[k] = check(x, index(path, k))
  end
  return out
end

--- A list: a table whose keys are exactly 1..#v. Returns v.
function options.list(v, path, what)
  if type(v) ~= "table" then fail(path, what, v) end
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 or k > #v then fail(path, what, v) end
  end
  return v
end

-- ---------------------------------------------------------------- scalars

--- A non-empty string of at most max bytes (no limit without max); what: how to call it
--- ("a template name"), default "a non-empty string".
function options.string(v, path, what, max)
  if type(v) ~= "string" or v == "" or (max and #v > max) then
    what = what or "a non-empty string"
    fail(path, max and string.format("%s of 1-%d bytes", what, max) or what, v)
  end
  return v
end

--- A string matching pattern `pat` with at most max bytes; what says so in words.
function options.matching(v, path, pat, max, what)
  if type(v) ~= "string" or #v > max or not v:match(pat) then fail(path, what, v) end
  return v
end

--- A definition name: 1-64 bytes of letters, digits, '_', '.', '-'.
function options.name(v, path)
  return options.matching(v, path or "name", "^[%w_%.%-]+$", 64,
                          "a name of 1-64 letters, digits, '_', '.' or '-'")
end

--- An event type ([a-z0-9_.]{1,64}).
function options.event_type(v, path)
  return options.matching(v, path, "^[a-z0-9_.]+$", 64, 'an event type like "order.paid" ([a-z0-9_.]{1,64})')
end

--- An event type or a list of them -> a list (a new table).
function options.event_types(v, path)
  if type(v) == "string" then return { options.event_type(v, path) } end
  options.list(v, path, 'an event type or a list of event types like { "order.paid" }')
  local out = {}
  for i, t in ipairs(v) do out[i] = options.event_type(t, index(path, i)) end
  return out
end

--- true or false.
function options.boolean(v, path)
  if type(v) ~= "boolean" then fail(path, "true or false", v) end
  return v
end

--- A function; what: its shape ("a function(m)").
function options.func(v, path, what)
  if type(v) ~= "function" then fail(path, what or "a function", v) end
  return v
end

-- The words for a range: "an integer >= 0", "a positive integer", "an integer in 1-100000".
local function range_words(kind, min, max)
  if max then return string.format("%s in %s-%s", kind, min, max) end
  if kind == "an integer" and min == 1 then return "a positive integer" end
  return string.format("%s >= %s", kind, min)
end

--- An integer (math.type "integer") in [min, max] (max optional).
function options.integer(v, path, min, max)
  if math.type(v) ~= "integer" or v < min or (max and v > max) then
    fail(path, range_words("an integer", min, max), v)
  end
  return v
end

--- A number (not NaN) in [min, max]; above = true makes min excluded ("> min").
function options.number(v, path, min, max, above)
  local ok = type(v) == "number" and v == v and v >= min and (not max or v <= max) and not (above and v == min)
  if not ok then
    local words
    if above and max then words = string.format("a number in (%s, %s]", min, max)
    elseif above then words = string.format("a number > %s", min)
    else words = range_words("a number", min, max) end
    fail(path, words, v)
  end
  return v
end

--- One of the strings in `choices` (a list, in the order the message shows them).
function options.enum(v, path, choices)
  for _, c in ipairs(choices) do
    if v == c then return v end
  end
  local q = {}
  for i, c in ipairs(choices) do q[i] = string.format("%q", c) end
  local words = #q == 2 and (q[1] .. " or " .. q[2]) or ("one of " .. table.concat(q, ", "))
  fail(path, words, v)
end

-- ---------------------------------------------------------------- time

--- A duration (a string like "3d" or "1d12h", or integer seconds) of at least min seconds
--- (default 0; 1: a positive duration) -> seconds.
function options.duration(v, path, min)
  min = min or 0
  local ok, secs = pcall(hearth.duration, v)
  if type(v) ~= "string" and math.type(v) ~= "integer" then ok = false end
  if not ok or math.type(secs) ~= "integer" or secs < min then
    fail(path, (min > 0 and "a positive duration" or "a duration") .. ' like "3d" or "1d12h"', v)
  end
  return secs
end

--- A local wall time "HH:MM" (00:00-23:59; one-digit hours "9:30" are accepted) -> h, m.
function options.hhmm(v, path)
  local h, mi
  if type(v) == "string" then h, mi = v:match("^(%d%d?):(%d%d)$") end
  h, mi = tonumber(h), tonumber(mi)
  if not h or h > 23 or mi > 59 then fail(path, 'a local time "HH:MM" (00:00-23:59)', v) end
  return h, mi
end

--- A cron spec's type (the engine parses it when the module registers it).
function options.cron(v, path, example)
  if type(v) ~= "string" then fail(path, string.format('a cron spec like "%s"', example or "0 3 1 * *"), v) end
  return v
end

-- ---------------------------------------------------------------- tags

--- A tag (1-128 bytes) or a non-empty list of tags -> a list (a new table).
function options.tags(v, path)
  if type(v) == "string" then return { options.string(v, path, "a tag", 128) } end
  options.list(v, path, "a tag or a non-empty list of tags")
  if #v == 0 then fail(path, "a tag or a non-empty list of tags", v) end
  local out = {}
  for i, t in ipairs(v) do out[i] = options.string(t, index(path, i), "a tag", 128) end
  return out
end

-- ---------------------------------------------------------------- hashing

--- FNV-1a 32-bit of the bytes of s.
function options.hash(s)
  local h = 2166136261
  for i = 1, #s do
    h = h ~ s:byte(i)
    h = (h * 16777619) & 0xffffffff
  end
  return h
end

return options
