--[==[ segment: member segmentation (分层分群) as functions a script can call: RFM (8 classes),
fan classes (粉丝分层) and lifecycle stage (生命周期), plus helpers that keep one tag per
scheme ("rfm:important_value", "fan:iron", "lifecycle:stable"), and named segment
definitions (segment.define / matches / where): a conjunction of conditions on tags,
attribute values, lists and ranges, inactivity, classes and a function, held in the
script's own state (no attribute, no counter, no action).

Owns: the private attributes "_segment.last_order" and "_segment.first_order" (epoch
seconds of the member's latest / first order.paid), kept by the handler segment.track()
registers; the tags with the prefixes the tag_* helpers are given (default "rfm:", "fan:",
"lifecycle:").

Example:
  local segment = require "segment"
  segment.track()                               -- at the top level: keep the last order time
  local TH = { recency_days = 30, frequency = 3, monetary = 500 }
  hearth.on("order.paid", function(m, ev)
    segment.tag_rfm(m, TH)                      -- replaces the previous "rfm:*" tag
    if segment.fan_class(m, TH) == "iron" then m:tag("vip_care") end
  end)
  hearth.cron("0 4 * * *", function()
    for m in hearth.members {} do segment.tag_lifecycle(m) end
  end)

Functions (m is a member handle, or a plain table {orders=, spend=, joined_at=,
last_active_at=, last_order_at=, tz=} for a snapshot; times in epoch seconds; days are
counted on the member's own clock: a handle's m.tz, a snapshot's tz (an IANA name), else
the engine's zone):
  segment.track()                    register the order.paid handler (load time only; a
                                     second call does nothing)
  segment.last_order_at(m)           time of the last order, see "Recency" below
  segment.rfm(m, th)                 -> class, r_high, f_high, m_high
  segment.fan_class(m, th)           -> "iron" | "true_love" | "strength" | "ordinary" | "potential"
  segment.lifecycle(m, opts)         -> "introduction" | "growth" | "stable" | "decline" | "churned"
  segment.tag_rfm(m, th [, opts]), segment.tag_fan(m, th [, opts]),
  segment.tag_lifecycle(m [, lopts [, opts]])
                                     -> class, changed: tag the member with <prefix><class>
                                     and remove any other tag with that prefix. opts: prefix,
                                     key (the tag actions' keys become key.."/tag/<tag>" and
                                     key.."/untag/<tag>"), campaign, step.

Named segments:
  segment.define{ name, tags, any_tags, not_tags, attrs = { k = value | {values} |
                  {min=, max=} }, rfm = {classes}, fan = {classes}, thresholds = th,
                  lifecycle = {stages}, inactive = "30d", active_within = "7d",
                  where = function(m) } -> name
  segment.matches(name, m) -> boolean: every condition given holds
  segment.where(name) -> function(m) -> boolean (a broadcast audience, a sweep's filter)
  attrs keys are the handle's fields (orders, spend, points, joined_at, last_active_at,
  tz, id), else attributes; ranges are inclusive at both ends; a value that is no number
  is outside a range. Inactivity: now - (last_active_at, else joined_at) >= inactive (a
  member with neither time is not inactive); active_within: that difference < it.

Thresholds th = { recency_days =, frequency =, monetary = } (all required for rfm;
fan_class needs frequency and monetary). An optional th.now (epoch) replaces hearth.now().

Definitions and the choices where the SPEC is silent:
  Recency  days = local calendar days between the last order and now (hearth.local_date
           day_number difference, in the member's zone). R is high when the member has ordered and days <=
           recency_days (an order exactly recency_days days ago is still recent).
           The last order time is "_segment.last_order", kept by segment.track(). m.last_active_at
           moves with every event, so it is NOT used when that attribute exists; for a member
           with orders but no tracked time (orders before track() was deployed) it is the
           fallback, an approximation. A member with no orders has low R.
  Frequency F is high when m.orders >= frequency (the engine's count; refunds do not lower it).
  Monetary M is high when m.spend >= monetary (refunds already subtracted).
  RFM classes (R, F, M):
           high high high important_value    重要价值   high low high  important_develop  重要发展
           low  high high important_keep     重要保持   low  low high  important_recall   重要挽留
           high high low  general_value      一般价值   high low low   general_develop    一般发展
           low  high low  general_keep       一般保持   low  low low   general_recall     一般挽留
  Fan classes: orders = 0 -> potential (潜力粉: registered, never bought); otherwise high spend
           (spend >= monetary) and high frequency (orders >= frequency): iron (铁杆粉);
           low spend + high frequency: true_love (真爱粉); high spend + low frequency:
           strength (实力粉); low + low: ordinary (普通粉).
  Lifecycle, first rule that holds, with inactive days = local days since the last activity
           (opts.by = "activity", default: m.last_active_at, which every event moves; "order":
           the last order, for members who never ordered their joining) and tenure = local
           days since joined_at (unknown joined_at: counted as long-standing):
           1. churned       inactive days >= churned_days (default 180)
           2. decline       inactive days >= decline_days (default 60)
           3. introduction  no order yet (orders = 0)
           4. growth        orders < stable_orders (default 3) or tenure < stable_days (default 90)
           5. stable        otherwise (a repeat buyer of some standing, still active)
]==]

local options = require "options"

local M = {}

local LAST, FIRST = "_segment.last_order", "_segment.first_order"

local function is_handle(m) return type(m) == "userdata" end

local function field(m, k)
  local v = m[k]
  return v
end

local function check_member(m, fn)
  if not is_handle(m) and type(m) ~= "table" then
    error(fn .. ": expects a member handle or a table {orders=, spend=, ...}", 3)
  end
end

local tracked = false

--- Register the order.paid handler keeping the first and last order times.
function M.track()
  if tracked then return end
  hearth.on("order.paid", function(m, ev)
    local last = m:get(LAST)
    if type(last) ~= "number" or ev.time > last then m:set(LAST, ev.time) end
    local first = m:get(FIRST)
    if type(first) ~= "number" or ev.time < first then m:set(FIRST, ev.time) end
  end)
  tracked = true
end

--- The time of the member's last order: tracked, else (orders > 0) last_active_at, else nil.
function M.last_order_at(m)
  check_member(m, "segment.last_order_at")
  local t
  if is_handle(m) then t = m:get(LAST) else t = m.last_order_at end
  if type(t) == "number" then return t end
  local orders = tonumber(field(m, "orders")) or 0
  if orders > 0 then
    local la = field(m, "last_active_at")
    if type(la) == "number" then return la end
  end
  return nil
end

-- t.now (epoch seconds, raising an option error at level 0 naming `path`) or hearth.now().
local function now_of(t, path)
  if t and t.now ~= nil then
    if type(t.now) ~= "number" then options.fail(path, "epoch seconds", t.now) end
    return t.now
  end
  return hearth.now()
end

-- The member's zone for hearth.local_date: the handle itself (her own clock), a snapshot's
-- tz = "<IANA name>", or nil (the engine's zone).
local function zone_of(m)
  if is_handle(m) then return m end
  local z = m.tz
  if type(z) == "string" then return z end
  return nil
end

local function days_between(m, a, b)
  local z = zone_of(m)
  return hearth.local_date(b, z).day_number - hearth.local_date(a, z).day_number
end

local function need(th, k, min, fn, strict)
  local v = th[k]
  if type(v) ~= "number" or v ~= v or v < min or (strict and v == min) then
    error(fn .. ": " .. options.message("thresholds." .. k, "a number " .. (strict and ">" or ">=") .. " " .. min, v), 4)
  end
  return v
end

local function check_th(th, fn, with_r)
  if type(th) ~= "table" then
    error(fn .. ": " .. options.message("thresholds", "a table { recency_days =, frequency =, monetary = }", th), 3)
  end
  local r = with_r and need(th, "recency_days", 0, fn) or nil
  return r, need(th, "frequency", 0, fn, true), need(th, "monetary", 0, fn)
end

local RFM = {
  ["111"] = "important_value", ["101"] = "important_develop",
  ["011"] = "important_keep", ["001"] = "important_recall",
  ["110"] = "general_value", ["100"] = "general_develop",
  ["010"] = "general_keep", ["000"] = "general_recall",
}

--- RFM class of the member against thresholds.
function M.rfm(m, th)
  check_member(m, "segment.rfm")
  local rd, fq, mo = check_th(th, "segment.rfm", true)
  local ok, now = pcall(now_of, th, "thresholds.now")
  if not ok then error("segment.rfm: " .. tostring(now), 2) end
  local last = M.last_order_at(m)
  local r = last ~= nil and days_between(m, last, now) <= rd
  local f = (tonumber(field(m, "orders")) or 0) >= fq
  local mm = (tonumber(field(m, "spend")) or 0) >= mo
  local key = (r and "1" or "0") .. (f and "1" or "0") .. (mm and "1" or "0")
  return RFM[key], r, f, mm
end

--- Fan class of the member.
function M.fan_class(m, th)
  check_member(m, "segment.fan_class")
  local _, fq, mo = check_th(th, "segment.fan_class", false)
  local orders = tonumber(field(m, "orders")) or 0
  if orders <= 0 then return "potential" end
  local hs = (tonumber(field(m, "spend")) or 0) >= mo
  local hf = orders >= fq
  if hs and hf then return "iron" end
  if hf then return "true_love" end
  if hs then return "strength" end
  return "ordinary"
end

local LC_DEFAULTS = { churned_days = 180, decline_days = 60, stable_orders = 3, stable_days = 90 }

local LC_KNOWN = { churned_days = 1, decline_days = 1, stable_orders = 1, stable_days = 1, by = 1, now = 1 }

local function lifecycle_opts(o)
  if o ~= nil then options.spec(o) end
  o = o or {}
  options.known(o, LC_KNOWN, "")
  local r = {}
  for k, dflt in pairs(LC_DEFAULTS) do
    local v = o[k]
    if v == nil then v = dflt end
    r[k] = options.number(v, k, 0)
  end
  if r.decline_days > r.churned_days then
    options.fail("decline_days", "at most 'churned_days' (" .. r.churned_days .. ")", r.decline_days)
  end
  r.by = options.enum(o.by or "activity", "by", { "activity", "order" })
  r.now = now_of(o, "now")
  return r
end

--- Lifecycle stage of the member.
function M.lifecycle(m, opts)
  check_member(m, "segment.lifecycle")
  local o = options.checked("segment.lifecycle", lifecycle_opts, opts)
  local orders = tonumber(field(m, "orders")) or 0
  local joined = field(m, "joined_at")
  if type(joined) ~= "number" then joined = nil end
  local last
  if o.by == "order" then
    last = orders > 0 and M.last_order_at(m) or joined
  else
    last = field(m, "last_active_at")
    if type(last) ~= "number" then last = joined end
  end
  local inactive = last and days_between(m, last, o.now) or 0
  if inactive >= o.churned_days then return "churned" end
  if inactive >= o.decline_days then return "decline" end
  if orders <= 0 then return "introduction" end
  local tenure = joined and days_between(m, joined, o.now) or math.huge
  if orders < o.stable_orders or tenure < o.stable_days then return "growth" end
  return "stable"
end

-- Keep exactly one tag with the prefix: <prefix><class>.
local function retag(m, prefix, class, opts, fn)
  if not is_handle(m) then error(fn .. ": expects a member handle", 3) end
  local want = prefix .. class
  local changed = false
  local function o(kind, t)
    local r = { campaign = opts.campaign, step = opts.step }
    if opts.key then r.key = opts.key .. "/" .. kind .. "/" .. t end
    return r
  end
  for _, t in ipairs(m:tags()) do
    if t ~= want and t:sub(1, #prefix) == prefix then
      m:untag(t, o("untag", t))
      changed = true
    end
  end
  if m:tag(want, o("tag", want)) then changed = true end
  return changed
end

local function tag_opts(opts, default_prefix, fn)
  if opts ~= nil and type(opts) ~= "table" then error(fn .. ": " .. options.message("opts", "a table", opts), 3) end
  opts = opts or {}
  local p = opts.prefix or default_prefix
  if type(p) ~= "string" or #p == 0 or #p > 64 then
    error(fn .. ": " .. options.message("opts.prefix", "a string of 1-64 bytes", p), 3)
  end
  for _, k in ipairs { "key", "campaign", "step" } do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then
      error(fn .. ": " .. options.message("opts." .. k, "a string", opts[k]), 3)
    end
  end
  return opts, p
end

function M.tag_rfm(m, th, opts)
  local o, p = tag_opts(opts, "rfm:", "segment.tag_rfm")
  check_member(m, "segment.tag_rfm")
  local rd, fq, mo = check_th(th, "segment.tag_rfm", true)
  local class = M.rfm(m, th)
  return class, retag(m, p, class, o, "segment.tag_rfm")
end

function M.tag_fan(m, th, opts)
  local o, p = tag_opts(opts, "fan:", "segment.tag_fan")
  check_member(m, "segment.tag_fan")
  check_th(th, "segment.tag_fan", false)
  local class = M.fan_class(m, th)
  return class, retag(m, p, class, o, "segment.tag_fan")
end

function M.tag_lifecycle(m, lopts, opts)
  local o, p = tag_opts(opts, "lifecycle:", "segment.tag_lifecycle")
  check_member(m, "segment.tag_lifecycle")
  options.checked("segment.tag_lifecycle", lifecycle_opts, lopts)
  local class = M.lifecycle(m, lopts)
  return class, retag(m, p, class, o, "segment.tag_lifecycle")
end

-- ---------------------------------------------------------------- segment definitions

-- Named segments: a conjunction of conditions on a member, checked once at define time
-- and evaluated by segment.matches / the predicate segment.where returns.

local segments = {}

local SEG_KEYS = { name = 1, tags = 1, any_tags = 1, not_tags = 1, attrs = 1, rfm = 1, fan = 1, thresholds = 1,
                   lifecycle = 1, inactive = 1, active_within = 1, where = 1 }
local RANGE_KEYS = { min = 1, max = 1 }
local RFM_CLASSES = { "general_develop", "general_keep", "general_recall", "general_value", "important_develop",
                      "important_keep", "important_recall", "important_value" }
local FAN_CLASSES = { "iron", "ordinary", "potential", "strength", "true_love" }
local LC_STAGES = { "churned", "decline", "growth", "introduction", "stable" }
-- the fields a member handle has itself; any other attrs key is an attribute (m:get)
local HANDLE_FIELDS = { id = true, joined_at = true, last_active_at = true, orders = true, spend = true,
                        points = true, tz = true }

-- A list of names out of `choices` -> a set.
local function class_set(v, path, choices)
  options.list(v, path, "a non-empty list of names")
  if #v == 0 then options.fail(path, "a non-empty list of names", v) end
  local set = {}
  for i, c in ipairs(v) do set[options.enum(c, options.index(path, i), choices)] = true end
  return set
end

local function tag_list(v, path)
  if v == nil then return nil end
  return options.tags(v, path)
end

local function is_scalar(v)
  local t = type(v)
  return t == "string" or t == "boolean" or (t == "number" and v == v)
end

-- One attrs condition: a value (equal), a list of values (any of them), or a range
-- { min =, max = } of numbers (inclusive, either side optional).
local function attr_condition(v, path)
  if is_scalar(v) then return { eq = v } end
  if type(v) ~= "table" or next(v) == nil then
    options.fail(path, "a value, a list of values or a range { min =, max = }", v)
  end
  if v[1] ~= nil then
    options.list(v, path, "a value, a list of values or a range { min =, max = }")
    for i, x in ipairs(v) do
      if not is_scalar(x) then options.fail(options.index(path, i), "a string, a number or a boolean", x) end
    end
    return { any = v }
  end
  options.known(v, RANGE_KEYS, path)
  local c = {}
  for _, k in ipairs({ "min", "max" }) do
    local x = v[k]
    if x ~= nil and (type(x) ~= "number" or x ~= x) then options.fail(options.field(path, k), "a number", x) end
    c[k] = x
  end
  if c.min and c.max and c.min > c.max then
    options.fail(options.field(path, "max"), "at least 'min' (" .. options.show(c.min) .. ")", c.max)
  end
  return c
end

local function build_segment(spec)
  local name = options.definition(spec, SEG_KEYS, segments)
  local d = { name = name }
  d.tags, d.any_tags, d.not_tags = tag_list(spec.tags, "tags"), tag_list(spec.any_tags, "any_tags"),
                                   tag_list(spec.not_tags, "not_tags")
  if spec.attrs ~= nil then
    options.table(spec.attrs, "attrs", 'of conditions like { city = "sh", spend = { min = 500 } }')
    d.attrs = {}
    local keys = {}
    for k in pairs(spec.attrs) do
      if type(k) ~= "string" or k == "" or #k > 128 then
        options.reject("attrs", "must be keyed by attribute names (1-128 bytes), got the key " .. options.show(k))
      end
      keys[#keys + 1] = k
    end
    table.sort(keys)
    for _, k in ipairs(keys) do d.attrs[#d.attrs + 1] = { key = k, cond = attr_condition(spec.attrs[k], options.field("attrs", k)) } end
  end
  if spec.rfm ~= nil then d.rfm = class_set(spec.rfm, "rfm", RFM_CLASSES) end
  if spec.fan ~= nil then d.fan = class_set(spec.fan, "fan", FAN_CLASSES) end
  if spec.lifecycle ~= nil then d.lifecycle = class_set(spec.lifecycle, "lifecycle", LC_STAGES) end
  if d.rfm or d.fan then
    local th = spec.thresholds
    if th == nil then options.reject(d.rfm and "rfm" or "fan", "needs option 'thresholds'") end
    options.table(th, "thresholds", "{ recency_days =, frequency =, monetary = }")
    options.known(th, { recency_days = 1, frequency = 1, monetary = 1 }, "thresholds")
    if d.rfm then options.number(th.recency_days, "thresholds.recency_days", 0) end
    options.number(th.frequency, "thresholds.frequency", 0, nil, true)
    options.number(th.monetary, "thresholds.monetary", 0)
    d.thresholds = { recency_days = th.recency_days, frequency = th.frequency, monetary = th.monetary }
  elseif spec.thresholds ~= nil then
    options.reject("thresholds", "is used by 'rfm' or 'fan' only (neither is set)")
  end
  if spec.inactive ~= nil then d.inactive = options.duration(spec.inactive, "inactive", 1) end
  if spec.active_within ~= nil then d.active_within = options.duration(spec.active_within, "active_within", 1) end
  if spec.where ~= nil then d.where = options.func(spec.where, "where", "a function(m) -> boolean") end
  return d
end

local function has_tag(m, tag)
  if is_handle(m) then return m:has(tag) end
  for _, t in ipairs(type(m.tags) == "table" and m.tags or {}) do
    if t == tag then return true end
  end
  return false
end

-- A handle's own field, else its attribute; a snapshot's field, else snapshot.attrs[k].
local function attr_value(m, k)
  if is_handle(m) then
    if HANDLE_FIELDS[k] then return m[k] end
    return m:get(k)
  end
  local v = m[k]
  if v == nil and type(m.attrs) == "table" then v = m.attrs[k] end
  return v
end

local function attr_holds(v, c)
  if c.eq ~= nil then return v == c.eq end
  if c.any then
    for _, x in ipairs(c.any) do
      if v == x then return true end
    end
    return false
  end
  if type(v) ~= "number" then return false end
  return (not c.min or v >= c.min) and (not c.max or v <= c.max)
end

-- The time of the member's last activity: last_active_at, else joined_at; nil if neither.
local function last_activity(m)
  local t = attr_value(m, "last_active_at")
  if type(t) ~= "number" then t = attr_value(m, "joined_at") end
  return type(t) == "number" and t or nil
end

local function tags_hold(d, m)
  for _, t in ipairs(d.tags or {}) do
    if not has_tag(m, t) then return false end
  end
  for _, t in ipairs(d.not_tags or {}) do
    if has_tag(m, t) then return false end
  end
  if d.any_tags then
    for _, t in ipairs(d.any_tags) do
      if has_tag(m, t) then return true end
    end
    return false
  end
  return true
end

local function matches(d, m)
  if not tags_hold(d, m) then return false end
  for _, a in ipairs(d.attrs or {}) do
    if not attr_holds(attr_value(m, a.key), a.cond) then return false end
  end
  if d.inactive or d.active_within then
    local last = last_activity(m)
    if not last then return false end
    local idle = hearth.now() - last
    if d.inactive and idle < d.inactive then return false end
    if d.active_within and idle >= d.active_within then return false end
  end
  if d.rfm and not d.rfm[(M.rfm(m, d.thresholds))] then return false end
  if d.fan and not d.fan[M.fan_class(m, d.thresholds)] then return false end
  if d.lifecycle and not d.lifecycle[M.lifecycle(m)] then return false end
  if d.where and not d.where(m) then return false end
  return true
end

--- segment.define{ name, tags, any_tags, not_tags, attrs, rfm, fan, thresholds, lifecycle,
--- inactive, active_within, where } -> name. A member is in the segment when every
--- condition given holds.
function M.define(spec)
  local d = options.checked("segment.define", build_segment, spec)
  segments[d.name] = d
  return d.name
end

local function segment_of(name, fn)
  local d = segments[name]
  if not d then error(("%s: no segment named %s"):format(fn, options.show(name)), 3) end
  return d
end

--- segment.matches(name, m) -> true / false.
function M.matches(name, m)
  local d = segment_of(name, "segment.matches")
  check_member(m, "segment.matches")
  return matches(d, m)
end

--- segment.where(name) -> function(m) -> true / false (for a broadcast audience, a sweep's
--- filter, a test).
function M.where(name)
  local d = segment_of(name, "segment.where")
  return function(m)
    check_member(m, "segment.where")
    return matches(d, m)
  end
end

return M
