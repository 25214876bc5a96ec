--[==[ segment: member segmentation (分层分群) as functions a script can call: RFM (8 classes),
fan classes (粉丝分层) and lifecycle stage (生命周期), plus helpers that keep one tag per
scheme ("rfm:important_value", "fan:iron", "lifecycle:stable").

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

return M
