--[[ caps: restraint for marketing sends (SPEC §5 "caps").

What it owns
  * caps.set{...}: the one restraint configuration of the script set.
  * caps.send(m, template, opts) -> status: every marketing send of every standard module
    (and of operators' scripts) goes through it instead of m:send.
  * Member attributes "_caps.sent" (queued marketing send times, pruned to the cap
    window), "_caps.deferred" (deferred sends waiting for the end of quiet hours) and
    "_caps.n" (counter for keys it has to make up); the timer type "caps.deferred".

caps.set {
  marketing = { max = 2, per = "7d" },      -- optional; no cap when absent
  quiet     = { from = "21:00", to = "09:00" }, -- optional; local wall times "HH:MM"
}
  marketing.max   integer >= 0, required in `marketing` (0: every marketing send capped)
  marketing.per   duration ("7d", "1d12h" or seconds) > 0, required in `marketing`
  quiet.from/to   "HH:MM" (00:00-23:59), both required, different; the window is
                  [from, to): from is quiet, to is not. from > to wraps midnight
                  (21:00-09:00); from < to does not (12:00-14:00).

Rules (in this order)
  1. category = "service": passes everything, m:send as is (queued).
  2. opts.status other than "queued" (a module recording e.g. "skipped"): passed to
     m:send as is, never judged, never counted toward the cap.
  3. In quiet hours (local time of hearth.now()): recorded "deferred"; a timer with the
     same action key fires at the end of the quiet period (the next local `to`), and the
     send is judged then (rules 4-6) and recorded again with the same key and the new
     status. Deferral comes first: an unsubscribed or capped member's send at night is
     deferred too, and judged at the end against the subscription and the cap of that
     moment.
  4. attribute unsubscribed == true (the engine sets it on member.unsubscribed and
     removes it on member.subscribed): "suppressed".
  5. (re-judgement only) a guard registered by the send's campaign (caps.guard) says the
     send no longer applies (a journey run ended by an exit or its goal): "skipped".
  6. marketing cap: "capped" when `max` marketing sends were already queued to this
     member in the `per` before now: times t with now - per < t <= now; a send queued
     exactly `per` earlier no longer counts. Only queued sends count (never capped,
     suppressed, deferred or skipped ones; a deferred one counts from the moment it is
     re-judged queued).
  7. otherwise m:send -> "queued", and the time is added to "_caps.sent".
  A capped/suppressed/skipped send is recorded as an action with that status (counted
  per step by the engine), never delivered.

Choices where the SPEC is silent
  * caps.set called twice: the last call wins, entirely (parts it omits are removed),
    with a warning in the log. Call it at the top level of a script; the shipped
    scripts/00_caps.lua sets the defaults and loads first.
  * caps never set (or a part omitted): no cap / no quiet hours; suppression of
    unsubscribed members always applies.
  * Suppressed is checked before the cap.
  * A key already recorded: the engine returns the earlier status and records nothing;
    caps does not count it twice (it remembers the ids it counted inside the window).
  * A deferred send needs a stable id to be judged again: without opts.key caps makes up
    "deferred-<n>" (n per member) and without opts.campaign it uses campaign "caps" (a
    module cannot know the calling script's name). Every standard module passes both.
  * Sends made with m:send directly bypass caps and do not count toward the cap.
  * require "caps" at the top level of a script: it registers its timer handler then.

Other modules
  caps.config() -> copy of the configuration: { marketing = {max=, per= (seconds)},
                   quiet = {from="HH:MM", to="HH:MM"} } (parts absent when not set)
  caps.in_quiet(t) -> true when t (default now) is in quiet hours
  caps.quiet_end(t) -> end of the quiet period containing t (nil when t is not quiet)
  caps.guard(campaign, fn) -> fn(m, opts) is asked when a deferred send of that campaign
                   is judged again; returning false records it "skipped".
]]

local caps = {}

local ATTR_SENT = "_caps.sent"
local ATTR_PENDING = "_caps.deferred"
local ATTR_N = "_caps.n"
local TIMER = "caps.deferred"

local config = nil -- nil: never set
local guards = {}

-- ---------------------------------------------------------------- configuration

local options = require "options"

local function wall_time(v, path)
  local h, mi = options.hhmm(v, path)
  return { h = h, m = mi, s = h * 3600 + mi * 60, text = ("%02d:%02d"):format(h, mi) }
end

local function build_config(spec)
  if type(spec) ~= "table" then
    error("expects a table { marketing = { max = 2, per = \"7d\" }, quiet = { from = \"21:00\", to = \"09:00\" } }, got "
          .. options.show(spec), 0)
  end
  options.known(spec, { marketing = true, quiet = true }, "")
  local c = {}
  if spec.marketing ~= nil then
    local mk = options.table(spec.marketing, "marketing", "{ max = n, per = \"7d\" }")
    options.known(mk, { max = true, per = true }, "marketing")
    -- max: an integer, or a number or string that converts to one (as earlier versions took)
    local max = options.integer(math.tointeger(mk.max) or mk.max, "marketing.max", 0)
    local per = options.duration(mk.per, "marketing.per", 1)
    c.marketing = { max = max, per = per }
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

--- caps.set{ marketing = {max, per}, quiet = {from, to} }: the last call wins.
function caps.set(spec)
  local c = options.checked("caps.set", build_config, spec)
  if config then hearth.log("warn", "caps.set called again: the last call replaces the earlier configuration") end
  config = c
end

function caps.config()
  local out = {}
  if config and config.marketing then
    out.marketing = { max = config.marketing.max, per = config.marketing.per }
  end
  if config and config.quiet then
    out.quiet = { from = config.quiet.from.text, to = config.quiet.to.text }
  end
  return out
end

function caps.guard(campaign, fn)
  if type(campaign) ~= "string" or campaign == "" then error("caps.guard: campaign must be a non-empty string", 2) end
  if type(fn) ~= "function" then error("caps.guard: fn must be a function", 2) end
  guards[campaign] = fn
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

-- ---------------------------------------------------------------- judging

-- The opts caps passes on to m:send (a copy: the caller's table is never changed).
local SEND_OPTS = { "key", "campaign", "step", "channel", "category", "vars", "status" }
local function copy_opts(opts)
  local o = {}
  if opts then
    for _, k in ipairs(SEND_OPTS) do o[k] = opts[k] end
  end
  return o
end

local function ident(o)
  if o.key == nil then return nil end
  return (o.campaign or "") .. "/" .. o.key
end

-- Queued marketing sends inside the window ending at now: list of {time, id}.
local function recent(m, now, per)
  local kept = {}
  for _, e in ipairs(m:get(ATTR_SENT) or {}) do
    if type(e) == "table" and type(e[1]) == "number" and e[1] > now - per then kept[#kept + 1] = e end
  end
  return kept
end

local function save_sent(m, kept)
  m:set(ATTR_SENT, #kept > 0 and kept or nil)
end

local function forget_pending(m, id)
  if not id then return end
  local pend = m:get(ATTR_PENDING)
  if pend and pend[id] then
    pend[id] = nil
    m:set(ATTR_PENDING, next(pend) and pend or nil)
  end
end

-- Rules 4-7, outside quiet hours. rejudge: called at the end of quiet hours.
local function judge(m, template, o, now, rejudge)
  forget_pending(m, ident(o))
  o.status = nil
  if m:get("unsubscribed") == true then
    o.status = "suppressed"
    return m:send(template, o)
  end
  if rejudge and o.campaign and guards[o.campaign] and guards[o.campaign](m, o) == false then
    o.status = "skipped"
    return m:send(template, o)
  end
  local mk = config and config.marketing
  if not mk then return m:send(template, o) end
  local kept = recent(m, now, mk.per)
  local id = ident(o)
  if id then
    for _, e in ipairs(kept) do
      if e[2] == id then -- counted already: the engine returns the earlier status
        save_sent(m, kept)
        return m:send(template, o)
      end
    end
  end
  if #kept >= mk.max then
    save_sent(m, kept)
    o.status = "capped"
    return m:send(template, o)
  end
  local st = m:send(template, o)
  if st == "queued" then kept[#kept + 1] = { now, id or "" } end
  save_sent(m, kept)
  return st
end

local function defer(m, template, o, now)
  if o.campaign == nil then o.campaign = "caps" end
  if o.key == nil then
    local n = (math.tointeger(m:get(ATTR_N)) or 0) + 1
    m:set(ATTR_N, n)
    o.key = "deferred-" .. n
  end
  o.status = "deferred"
  local st = m:send(template, o)
  if st ~= "deferred" then return st end -- this key was judged before: nothing to do
  local id = ident(o)
  local pend = m:get(ATTR_PENDING) or {}
  if not pend[id] then
    pend[id] = true
    m:set(ATTR_PENDING, pend)
    o.status = nil
    m:at(quiet_end(config.quiet, now), TIMER, { template = template, opts = o })
  end
  return "deferred"
end

--- caps.send(m, template, opts) -> status ("queued", "capped", "suppressed", "deferred",
--- or the earlier status of a key recorded before).
function caps.send(m, template, opts)
  if type(template) ~= "string" or template == "" then
    error("caps.send: template must be a non-empty string", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then error("caps.send: opts must be a table", 2) end
  local o = copy_opts(opts)
  if o.category == "service" then return m:send(template, o) end
  if o.status ~= nil and o.status ~= "queued" then return m:send(template, o) end
  o.status = nil
  local now = hearth.now()
  if config and config.quiet and in_quiet(config.quiet, now) then
    return defer(m, template, o, now)
  end
  return judge(m, template, o, now, false)
end

-- The end of a quiet period: judge the deferred send again under the same key.
local function on_release(m, ev)
  local d = ev.data or {}
  local o = copy_opts(d.opts)
  local id = ident(o)
  if type(d.template) ~= "string" or not id then return end
  local pend = m:get(ATTR_PENDING)
  if not (pend and pend[id]) then return end -- judged already (the same key sent again)
  local now = hearth.now()
  if config and config.quiet and in_quiet(config.quiet, now) then
    -- the quiet hours were changed meanwhile: wait for the end of the new period
    m:at(quiet_end(config.quiet, now), TIMER, d)
    return
  end
  judge(m, d.template, o, now, true)
end

local ok, err = pcall(hearth.on, TIMER, on_release)
if not ok then
  error("caps: require \"caps\" at the top level of a script, while the scripts load (" .. tostring(err) .. ")", 2)
end

return caps
