--[[ caps: the restraint configuration of a script set, for the engine's judge.

Every marketing send, from a module or a bare m:send, is judged by the engine in one
place (engine/restraint.c; docs/modules/caps.md): quiet hours in the member's own zone,
subscription, reachability (friend deleted), every cap window, and channel quotas. Only
category = "service" passes. This module turns the operator's table into those rules.

caps.set {
  marketing = { max = 2, per = "7d" },                 -- one window, or a list of them:
  -- marketing = { { max = 1, per = "day" }, { max = 2, per = "7d" } },
  channels  = { wecom = { max = 3, per = "7d" } },     -- windows of one channel's sends
  quiet     = { from = "21:00", to = "09:00" },        -- her local wall times "HH:MM"
}
  max    integer >= 0 (0: every marketing send capped)
  per    a duration ("7d", "1d12h" or seconds) > 0, a rolling window; or "day", "week"
         (from Monday) or "month": her local calendar day, week or month
  quiet  from/to "HH:MM", different; [from, to) is quiet; from > to wraps midnight.
Channel quotas (WeCom's limits on mass messages) are a property of the channel:
hearth.channel("wecom", { type = "webhook", ..., quota = "wecom" }).

Rules, as the engine applies them (in this order)
  1. category = "service": passes everything (queued).
  2. opts.status other than "queued" (a module recording e.g. "skipped"): recorded as is.
  3. In quiet hours in her zone: "deferred" to their end, then judged again (4-7) under the
     same id; a guard (caps.guard) may say the send no longer applies: "skipped".
  4. unsubscribed: "suppressed"; 5. friend deleted: "suppressed".
  6. a cap window full (max queued marketing sends in it already): "capped".
  7. the channel's quota reached: "limited". Otherwise "queued".
  Every status but queued carries a `reason` naming the rule and its numbers.

caps.send(m, template, opts) is m:send(template, opts): kept for scripts written for it.
caps.set called twice: the last call wins, entirely, with a warning in the log.
caps.config(), caps.in_quiet(t), caps.quiet_end(t): the configuration, read back (quiet
hours in the engine's zone; the judge uses each member's own).
caps.guard(campaign, fn): fn(m, send) -> false when a deferred send of that campaign no
longer applies by the end of quiet hours (hearth.guard).
]]

local caps = {}

local config = nil -- nil: never set
local options = require "options"

local function wall_time(v, path)
  local h, mi = options.hhmm(v, path)
  return { h = h, m = mi, s = h * 3600 + mi * 60, text = ("%02d:%02d"):format(h, mi) }
end

local function window(spec, path)
  local w = options.table(spec, path, "{ max = n, per = \"7d\" }")
  options.known(w, { max = true, per = true }, path)
  -- max: an integer, or a number or string that converts to one (as earlier versions took)
  local max = options.integer(math.tointeger(w.max) or w.max, path .. ".max", 0)
  local per = w.per
  if per ~= "day" and per ~= "week" and per ~= "month" then per = options.duration(w.per, path .. ".per", 1) end
  -- the engine takes the operator's own text ("7d"), so that reasons quote it
  return { max = max, per = per, text = type(w.per) == "string" and w.per or per }
end

-- One window { max, per } or a list of them.
local function windows(spec, path)
  if type(spec) == "table" and spec[1] ~= nil then
    local out = {}
    for i, w in ipairs(spec) do out[i] = window(w, ("%s[%d]"):format(path, i)) end
    return out
  end
  return { window(spec, path) }
end

local function build_config(spec)
  if type(spec) ~= "table" then
    error("expects a table { marketing = { max = 2, per = \"7d\" }, quiet = { from = \"21:00\", to = \"09:00\" } }, got "
          .. options.show(spec), 0)
  end
  options.known(spec, { marketing = true, quiet = true, channels = true }, "")
  local c = {}
  if spec.marketing ~= nil then c.marketing = windows(spec.marketing, "marketing") end
  if spec.channels ~= nil then
    options.table(spec.channels, "channels", "{ name = { max = n, per = \"7d\" } }")
    c.channels = {}
    for name, ws in pairs(spec.channels) do
      options.string(name, "channels key")
      c.channels[name] = windows(ws, "channels." .. name)
    end
  end
  if spec.quiet ~= nil then
    local q = options.table(spec.quiet, "quiet", "{ from = \"21:00\", to = \"09:00\" }")
    options.known(q, { from = true, to = true }, "quiet")
    local from = wall_time(q.from, "quiet.from")
    local to = wall_time(q.to, "quiet.to")
    if from.s == to.s then options.fail("quiet.to", "a time other than quiet.from", q.to) end
    c.quiet = { from = from, to = to }
  end
  return c
end

-- The engine's rules (hearth.restraint) from a checked configuration.
local function rules(c)
  local r = { caps = {} }
  for _, w in ipairs(c.marketing or {}) do r.caps[#r.caps + 1] = { max = w.max, per = w.text } end
  local names = {}
  for name in pairs(c.channels or {}) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    for _, w in ipairs(c.channels[name]) do r.caps[#r.caps + 1] = { channel = name, max = w.max, per = w.text } end
  end
  if c.quiet then r.quiet = { from = c.quiet.from.text, to = c.quiet.to.text } end
  if #r.caps == 0 then r.caps = nil end
  return r
end

--- caps.set{ marketing = {max, per}, quiet = {from, to} }: the last call wins.
function caps.set(spec)
  local c = options.checked("caps.set", build_config, spec)
  if config then hearth.log("warn", "caps.set called again: the last call replaces the earlier configuration") end
  config = c
  hearth.restraint(rules(c))
end

function caps.config()
  local out = {}
  if config and config.marketing then
    local m = config.marketing
    local function plain(w) return { max = w.max, per = w.per } end
    if #m == 1 then
      out.marketing = plain(m[1])
    else
      out.marketing = {}
      for i, w in ipairs(m) do out.marketing[i] = plain(w) end
    end
  end
  if config and config.channels then out.channels = config.channels end
  if config and config.quiet then
    out.quiet = { from = config.quiet.from.text, to = config.quiet.to.text }
  end
  return out
end

function caps.guard(campaign, fn)
  if type(campaign) ~= "string" or campaign == "" then error("caps.guard: campaign must be a non-empty string", 2) end
  if type(fn) ~= "function" then error("caps.guard: fn must be a function", 2) end
  hearth.guard(campaign, fn)
end

-- ---------------------------------------------------------------- quiet hours

local function seconds_of_day(t)
  local d = hearth.local_date(t)
  return d.hour * 3600 + d.min * 60 + d.sec, d
end

local function in_quiet(q, t)
  local s = seconds_of_day(t)
  if q.from.s < q.to.s then return s >= q.from.s and s < q.to.s end
  return s >= q.from.s or s < q.to.s
end

-- End of the quiet period containing t: the next local `to` (today if still ahead).
local function quiet_end(q, t)
  local s, d = seconds_of_day(t)
  local day = d.day
  if s >= q.to.s then day = day + 1 end
  return hearth.local_time(d.year, d.month, day, q.to.h, q.to.m, 0)
end

function caps.in_quiet(t)
  t = t or hearth.now()
  return config ~= nil and config.quiet ~= nil and in_quiet(config.quiet, t)
end

function caps.quiet_end(t)
  t = t or hearth.now()
  if not caps.in_quiet(t) then return nil end
  return quiet_end(config.quiet, t)
end

-- ---------------------------------------------------------------- sending

--- caps.send(m, template, opts) -> status: m:send, which the engine judges.
function caps.send(m, template, opts)
  if type(template) ~= "string" or template == "" then
    error("caps.send: template must be a non-empty string", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then error("caps.send: opts must be a table", 2) end
  return m:send(template, opts)
end

return caps
