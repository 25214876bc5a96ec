--[==[ tiers: member tiers (会员等级) by spend or order count, with upgrade rewards, a
periodic downgrade review and points multipliers per tier.

Owns, per definition `name`:
  - the tier tag  <tag_prefix><level>    (default "tier:gold")
  - the attribute <attr> = "<level>"      (default attribute "tier"; absent: no tier)
  - the private attribute "_tiers.<name>" = { tier, since, moves, ups = {level = n},
    days = { {day_number, cents, count}, ... }, ids = { {order_id, day_number, cents}, ... } }
    (days and ids only with a window; see "Windows" below)
  - funnel counters (campaign = name, step = level): "upgraded" (step = the level reached),
    "downgraded" (step = the level left).

Example:
  local tiers = require "tiers"
  tiers.define {
    name = "vip",                      -- campaign name of every action (required)
    by = "spend",                      -- "spend" (m.spend, yuan) or "orders" (m.orders)
    window = "365d",                   -- optional: only what was paid in the last 365 days
    levels = {                         -- ascending thresholds; below the first: no tier
      { name = "silver", min = 1000, multiplier = 1.2, send = "tier_silver", points = 100 },
      { name = "gold",   min = 5000, multiplier = 1.5, send = "tier_gold", points = 500,
        task = "welcome a new gold member", tag = "vip_gift" },
    },
    review = "0 3 1 * *",              -- downgrade review: 03:00 on the 1st of each month
    downgrade = "qualifying",          -- or "one": drop at most one level per review
    hold = "90d",                      -- a tier reached less than 90 days ago is kept
    on_downgrade = { send = "tier_down" },
  }
  -- elsewhere: tiers.add_points(m, 10, "order points", { key = ... }) grants 10 x multiplier

Options (defaults):
  name          required; [A-Za-z0-9_.-], 1-64 bytes; a name is defined once.
  by            "spend"
  window        nil (lifetime: the engine's m.spend / m.orders). A whole number of days
                ("365d", "52w"): only the orders of the last `window` local dates count (see
                "Windows"); only orders seen after the script was deployed are counted.
  levels        required, 1..20 levels { name, min, multiplier = 1, send, task, tag, points,
                vars, category }; names [A-Za-z0-9_.-] and unique, min >= 0 and strictly
                ascending.
  tag_prefix    "tier:"      attr  "tier"   (both must be unique across definitions)
  review        nil (no downgrades ever); a five-field cron spec.
  downgrade     "qualifying": a review moves a member straight to the highest level they still
                qualify for (or to no tier); "one": down one level per review at most.
  hold          nil; a duration: at a review, a tier reached (or last moved to) less than
                `hold` before the review slot is kept as it is.
  reward_once   true: a level's upgrade rewards (send/task/tag/points) are given the first
                time a member reaches it only; false: each time it is reached again after a
                downgrade.
  on_downgrade  nil; { send =, task =, vars =, category = } for members moved down.
  chunk         500 (members per transaction in the review sweep).

Choices where the SPEC is silent:
  - Qualifying value: by = "spend" compares the spend with `min` (>=); by = "orders" the order
    count. Without a window these are the engine's m.spend (refunds already subtracted) and
    m.orders (refunds do not lower it). With a window: see "Windows".
  - Upgrades happen at once, on order.paid (and on member.joined, so a level with min = 0 is
    given on joining). A member who jumps several levels with one order gets only the
    rewards of the level reached, not of the levels passed.
  - Refunds never downgrade at once: only the review moves members down. The review sweeps,
    in ascending level order, the members holding each level's tag and re-evaluates them
    at the slot time; it also moves up a member who qualifies higher (e.g. after a threshold
    was lowered). Members without a tier are not swept.
  - Upgrade sends and on_downgrade sends are marketing by default and go through
    require("caps").send; `category = "service"` makes them service notices.
  - Multipliers: tiers.add_points(m, n, reason, opts) grants floor(n x multiplier) for n > 0
    (a spend, n < 0, is never multiplied); nothing is granted when that is 0.

Windows (window = N days):
  - Orders are kept in day buckets: per local date (day_number) of the order.paid event,
    the summed amount and the number of orders. A member's state holds at most N buckets
    (one per date with orders, however many orders), plus the order ids of its latest 20
    orders (IDS_KEPT) with their date and amount, for refunds.
  - The window at a reference time (the event's time, the review's slot, hearth.now() for
    tiers.value) is the N local dates ending with the reference's local date. Local dates
    are the member's own (her `tz` attribute's zone, else the engine's). An order
    counts on its own local date and the N - 1 dates after it; from the N-th date after it
    on it no longer counts, whatever the time of day: an order exactly `window` old no
    longer counts, and neither does one paid 23:59 on 10 January at 00:00 on 10 January a
    year later (365d). Buckets of earlier dates are dropped when the member is next seen.
  - order.refunded (by = "spend") reduces the windowed spend, never below zero per date:
    with a data.order_id among the member's 20 latest remembered orders, off that order's
    date, up to what is left of that order; the rest (or all of it, without an order id
    or for an order no longer remembered) off the newest dates first. Approximation: the
    refund of an order older than the member's 20 latest orders comes off the newest
    dates, so the deduction stays in the window longer than the order did (the windowed
    spend is then lower than exact, by up to the refund, until that newer date leaves). It never changes a
    windowed order count (like m.orders).
  - Amounts are kept and summed in integer cents (exact; the engine keeps m.spend in whole
    cents too); tiers.value returns yuan.
  - The (time, amount, order_id) list kept by earlier versions is folded into buckets the
    first time the member is seen.
]==]

local M = {}

local defs = {}       -- name -> definition
local order = {}      -- names in definition order
local caps = require "caps"  -- at load time: caps registers its timer handler then


local options = require "options"
local field, index = options.field, options.index

local function check_duration(v, path)
  if v == nil then return nil end
  return options.duration(v, path, 1)
end

-- send, task, vars, category of a level or of on_downgrade.
local function check_action_spec(spec, path)
  if spec.send ~= nil then options.string(spec.send, field(path, "send"), "a template name") end
  if spec.task ~= nil then options.string(spec.task, field(path, "task"), "a non-empty text") end
  if spec.vars ~= nil then options.table(spec.vars, field(path, "vars")) end
  if spec.category ~= nil then options.enum(spec.category, field(path, "category"), { "marketing", "service" }) end
end

local KNOWN = { name = 1, by = 1, window = 1, levels = 1, tag_prefix = 1, attr = 1, review = 1,
  downgrade = 1, hold = 1, reward_once = 1, on_downgrade = 1, chunk = 1 }
local LEVEL_KNOWN = { name = 1, min = 1, multiplier = 1, send = 1, task = 1, tag = 1, points = 1,
  vars = 1, category = 1 }
local DOWNGRADE_KNOWN = { send = 1, task = 1, vars = 1, category = 1 }

local function validate_level(d, l, path, prev)
  options.table(l, path)
  options.known(l, LEVEL_KNOWN, path)
  options.name(l.name, field(path, "name"))
  if d.index[l.name] then options.fail(field(path, "name"), "a level name not used before", l.name) end
  options.number(l.min, field(path, "min"), 0)
  if prev and l.min <= prev then options.fail(field(path, "min"), "greater than the previous level's (" .. prev .. ")", l.min) end
  local mult = l.multiplier == nil and 1 or l.multiplier
  options.number(mult, field(path, "multiplier"), 0, 100, true)
  if l.points ~= nil then options.integer(l.points, field(path, "points"), 1) end
  check_action_spec(l, path)
  local lv = { name = l.name, min = l.min, multiplier = mult, send = l.send, task = l.task,
    tags = l.tag ~= nil and options.tags(l.tag, field(path, "tag")) or nil, points = l.points, vars = l.vars,
    category = l.category, tag = d.tag_prefix .. l.name }
  if #lv.tag > 128 then
    options.fail(field(path, "name"), "short enough for the tier tag '" .. lv.tag .. "' to fit 128 bytes", l.name)
  end
  return lv
end

local function validate(o)
  options.definition(o, KNOWN, defs)
  local d = { name = o.name }
  d.by = options.enum(o.by or "spend", "by", { "spend", "orders" })
  d.window = check_duration(o.window, "window")
  if d.window then
    if d.window % 86400 ~= 0 then
      options.fail("window", 'a whole number of days like "365d" (the window counts local dates)', o.window)
    end
    d.window_days = d.window // 86400
  end
  d.tag_prefix = o.tag_prefix or "tier:"
  if type(d.tag_prefix) ~= "string" or #d.tag_prefix > 60 then
    options.fail("tag_prefix", "a string of at most 60 bytes", o.tag_prefix)
  end
  d.attr = o.attr or "tier"
  if type(d.attr) ~= "string" or #d.attr == 0 or #d.attr > 128 or d.attr:sub(1, 1) == "_" then
    options.fail("attr", "an attribute name of 1-128 bytes not starting with '_'", o.attr)
  end
  for _, other in pairs(defs) do
    if other.tag_prefix == d.tag_prefix then
      options.fail("tag_prefix", "a prefix no other tiers use (tiers '" .. other.name .. "' does)", d.tag_prefix)
    end
    if other.attr == d.attr then
      options.fail("attr", "an attribute no other tiers use (tiers '" .. other.name .. "' does)", d.attr)
    end
  end
  if type(o.levels) ~= "table" or #o.levels == 0 or #o.levels > 20 then
    options.fail("levels", "a list of 1-20 levels { name =, min = }", o.levels)
  end
  options.list(o.levels, "levels", "a list of 1-20 levels { name =, min = }")
  d.levels, d.index = {}, {}
  local prev
  for i, l in ipairs(o.levels) do
    local lv = validate_level(d, l, index("levels", i), prev)
    lv.i = i
    prev = l.min
    d.levels[i] = lv
    d.index[l.name] = i
  end
  d.downgrade = options.enum(o.downgrade or "qualifying", "downgrade", { "qualifying", "one" })
  if o.review ~= nil then options.cron(o.review, "review") end
  d.review = o.review
  d.hold = check_duration(o.hold, "hold")
  if o.reward_once ~= nil then options.boolean(o.reward_once, "reward_once") end
  d.reward_once = o.reward_once ~= false
  if o.on_downgrade ~= nil then
    options.table(o.on_downgrade, "on_downgrade")
    options.known(o.on_downgrade, DOWNGRADE_KNOWN, "on_downgrade")
    check_action_spec(o.on_downgrade, "on_downgrade")
  end
  d.on_downgrade = o.on_downgrade
  d.chunk = options.integer(o.chunk or 500, "chunk", 1, 100000)
  return d
end

-- ---- state ----

local function state_key(d) return "_tiers." .. d.name end

-- Window buckets: st.days = { {day_number, cents, count}, ... } ascending by local day
-- number, one per local date with orders, pruned to the window; st.ids = { {order_id,
-- day_number, cents}, ... } for the IDS_KEPT latest orders that carried an order_id, so a
-- refund naming one comes off that order's day. Amounts are integer cents: exact sums, and
-- short JSON integers instead of 17-digit reals in an attribute parsed on every event.
local IDS_KEPT = 20

-- Days are the member's own local dates (her `tz` attribute's zone, else the engine's).
local function day_of(m, t) return m:local_date(t).day_number end

-- Yuan -> integer cents (the engine keeps m.spend in whole cents too).
local function to_cents(x) return math.floor(x * 100 + 0.5) end

-- Integer cents -> yuan: an integer when whole, else a float.
local function to_yuan(c)
  if c % 100 == 0 then return c // 100 end
  return c / 100
end

-- Add an order of `c` cents on local day `day` to the buckets (kept in day order).
local function add_to_bucket(st, day, c)
  local days = st.days
  local i = #days
  while i > 0 and days[i][1] > day do i = i - 1 end
  if i > 0 and days[i][1] == day then
    days[i][2] = days[i][2] + c
    days[i][3] = days[i][3] + 1
  else
    table.insert(days, i + 1, { day, c, 1 })
  end
end

local function remember_id(st, oid, day, amount)
  local ids = st.ids
  ids[#ids + 1] = { oid, day, amount }
  while #ids > IDS_KEPT do table.remove(ids, 1) end
end

local function valid_oid(oid)
  if type(oid) == "string" or math.type(oid) == "integer" then return oid end
  return nil
end

local function load_state(m, d)
  local st = m:get(state_key(d))
  if type(st) ~= "table" then st = {} end
  if type(st.ups) ~= "table" or st.ups[1] ~= nil then st.ups = {} end
  if type(st.days) ~= "table" then st.days = {} end
  if type(st.ids) ~= "table" then st.ids = {} end
  if type(st.win) == "table" then
    -- the list of (time, amount, order_id) kept by earlier versions: fold it into buckets
    for _, e in ipairs(st.win) do
      if type(e) == "table" and type(e[1]) == "number" and type(e[2]) == "number" then
        local day, c = day_of(m, math.floor(e[1])), to_cents(math.max(e[2], 0))
        add_to_bucket(st, day, c)
        local oid = valid_oid(e[3])
        if oid then remember_id(st, oid, day, c) end
      end
    end
  end
  st.win = nil
  st.moves = math.tointeger(st.moves) or 0
  return st
end

local function save_state(m, d, st)
  local copy = { tier = st.tier, since = st.since }
  if st.moves > 0 then copy.moves = st.moves end
  if next(st.ups) then copy.ups = st.ups end
  if d.window and #st.days > 0 then copy.days = st.days end
  if d.window and #st.ids > 0 then copy.ids = st.ids end
  if next(copy) == nil then copy = nil end
  if copy == nil and m:get(state_key(d)) == nil then return end
  m:set(state_key(d), copy)
end

-- The first local day number still inside the window at reference time ref: the window
-- holds the local dates (ref's date - window_days, ref's date].
local function first_day(m, d, ref) return day_of(m, ref) - d.window_days + 1 end

-- Drop the buckets (and remembered order ids) of local dates before the window at ref.
-- Returns true when something was dropped.
local function prune(m, d, st, ref)
  if not d.window then return false end
  local first, dropped = first_day(m, d, ref), false
  local kept = {}
  for _, e in ipairs(st.days) do
    if type(e) == "table" and type(e[1]) == "number" and e[1] >= first then
      kept[#kept + 1] = e
    else
      dropped = true
    end
  end
  st.days = kept
  local ids = {}
  for _, e in ipairs(st.ids) do
    if type(e) == "table" and type(e[2]) == "number" and e[2] >= first then
      ids[#ids + 1] = e
    else
      dropped = true
    end
  end
  st.ids = ids
  return dropped
end

-- The qualifying value at reference time ref (buckets of dates after ref's are ignored too).
local function value_of(m, d, st, ref)
  if not d.window then
    if d.by == "spend" then return m.spend end
    return m.orders
  end
  local last = day_of(m, ref)
  local first, v = last - d.window_days + 1, 0
  for _, e in ipairs(st.days) do
    if type(e) == "table" and type(e[1]) == "number" and e[1] >= first and e[1] <= last then
      if d.by == "spend" then v = v + (math.tointeger(e[2]) or 0) else v = v + (math.tointeger(e[3]) or 0) end
    end
  end
  if d.by == "spend" then return to_yuan(v) end
  return v
end

local function qualifying(d, v)
  local q = 0
  for i, l in ipairs(d.levels) do
    if v + 1e-9 >= l.min then q = i end
  end
  return q
end

local function current(d, st)
  return st.tier and d.index[st.tier] or 0
end

local function merge_vars(base, extra)
  local v = {}
  if base then for k, x in pairs(base) do v[k] = x end end
  for k, x in pairs(extra) do if v[k] == nil then v[k] = x end end
  return v
end

-- Move member m from level index `from` to `to` (0 = no tier): tag, attribute, state.
local function move(m, d, st, from, to, now)
  st.moves = st.moves + 1
  local base = "move" .. st.moves
  local fl, tl = d.levels[from], d.levels[to]
  local opts = function(suffix, step)
    return { key = base .. "/" .. suffix, campaign = d.name, step = step }
  end
  if fl then m:untag(fl.tag, opts("untag", fl.name)) end
  if tl then
    m:tag(tl.tag, opts("tag", tl.name))
    m:set(d.attr, tl.name)
    st.tier, st.since = tl.name, now
  else
    m:set(d.attr, nil)
    st.tier, st.since = nil, now
  end
end

local function do_send(m, template, opts, category)
  if category == "service" then
    opts.category = "service"
    return m:send(template, opts)
  end
  return caps.send(m, template, opts)
end

local function upgrade(m, d, st, from, to, now)
  move(m, d, st, from, to, now)
  local l = d.levels[to]
  local n = (math.tointeger(st.ups[l.name]) or 0) + 1
  st.ups[l.name] = n
  hearth.count("upgraded", { campaign = d.name, step = l.name })
  if d.reward_once and n > 1 then return end
  local key = "up/" .. l.name .. "/" .. n .. "/"
  local from_name = d.levels[from] and d.levels[from].name or ""
  local vars = merge_vars(l.vars, { tier = l.name, from = from_name })
  if l.points then
    m:add_points(l.points, "tier upgrade: " .. l.name, { key = key .. "points", campaign = d.name, step = l.name })
  end
  if l.tags then
    for _, t in ipairs(l.tags) do m:tag(t, { key = key .. "tag/" .. t, campaign = d.name, step = l.name }) end
  end
  if l.send then
    do_send(m, l.send, { key = key .. "send", campaign = d.name, step = l.name, vars = vars }, l.category)
  end
  if l.task then
    m:task(l.task, { key = key .. "task", campaign = d.name, step = l.name, vars = vars })
  end
end

local function downgrade(m, d, st, from, to, now, day)
  move(m, d, st, from, to, now)
  local fl = d.levels[from]
  hearth.count("downgraded", { campaign = d.name, step = fl.name })
  local spec = d.on_downgrade
  if not spec then return end
  local tl = d.levels[to]
  local vars = merge_vars(spec.vars, { tier = tl and tl.name or "", from = fl.name })
  local key = "down/" .. day .. "/" .. st.moves .. "/"
  if spec.send then
    do_send(m, spec.send, { key = key .. "send", campaign = d.name, step = "downgrade", vars = vars }, spec.category)
  end
  if spec.task then
    m:task(spec.task, { key = key .. "task", campaign = d.name, step = "downgrade", vars = vars })
  end
end

-- Re-evaluate after an event: upgrades only.
local function evaluate(m, d, st, ref)
  local cur = current(d, st)
  local q = qualifying(d, value_of(m, d, st, ref))
  if q > cur then
    upgrade(m, d, st, cur, q, ref)
    return true
  end
  return false
end

local function positive_amount(ev)
  local a = ev.data and ev.data.amount
  if type(a) == "number" and a > 0 and a == a and a < math.huge then return a end
  return nil
end

local function on_paid(d)
  return function(m, ev)
    local st = load_state(m, d)
    if d.window then
      prune(m, d, st, ev.time)
      local c = to_cents(positive_amount(ev) or 0)
      local day = day_of(m, ev.time)
      add_to_bucket(st, day, c)
      local oid = valid_oid(ev.data and ev.data.order_id)
      if oid ~= nil then remember_id(st, oid, day, c) end
    end
    if evaluate(m, d, st, ev.time) or d.window then save_state(m, d, st) end
  end
end

-- Take up to `c` cents off bucket e; returns what is left to take.
local function take_off(e, c)
  local take = math.min(e[2], c)
  e[2] = e[2] - take
  return c - take
end

local function on_refunded(d)
  return function(m, ev)
    if not (d.window and d.by == "spend") then return end
    local amount = positive_amount(ev)
    if not amount then return end
    amount = to_cents(amount)
    local st = load_state(m, d)
    prune(m, d, st, ev.time)
    local oid = valid_oid(ev.data and ev.data.order_id)
    if oid ~= nil then
      -- a remembered order: off its own day's bucket, at most what is left of that order
      for i = #st.ids, 1, -1 do
        local r = st.ids[i]
        if r[1] == oid and amount > 0 and r[3] > 0 then
          for _, e in ipairs(st.days) do
            if e[1] == r[2] then
              local part = math.min(r[3], amount)
              local left = take_off(e, part)
              r[3] = r[3] - (part - left)
              amount = amount - (part - left)
              break
            end
          end
        end
      end
    end
    -- the rest (or a refund without a remembered order): off the newest days first
    for i = #st.days, 1, -1 do
      if amount <= 0 then break end
      amount = take_off(st.days[i], amount)
    end
    save_state(m, d, st)
  end
end

local function on_joined(d)
  return function(m, ev)
    local st = load_state(m, d)
    if evaluate(m, d, st, ev.time) then save_state(m, d, st) end
  end
end

local function review(d)
  return function(slot)
    local ld = hearth.local_date(slot)
    local day = string.format("%04d-%02d-%02d", ld.year, ld.month, ld.day)
    for i, l in ipairs(d.levels) do
      for m in hearth.members { tag = l.tag, chunk = d.chunk } do
        local st = load_state(m, d)
        -- the swept tag is the truth about the member's level
        local changed = st.tier ~= l.name
        st.tier = l.name
        if prune(m, d, st, slot) then changed = true end
        local held = d.hold and type(st.since) == "number" and slot - st.since < d.hold
        local q = qualifying(d, value_of(m, d, st, slot))
        if q > i then
          upgrade(m, d, st, i, q, slot)
          changed = true
        elseif q < i and not held then
          local to = d.downgrade == "one" and i - 1 or q
          downgrade(m, d, st, i, to, slot, day)
          changed = true
        end
        -- write the member only when something changed: most reviews change nobody
        if changed then save_state(m, d, st) end
      end
    end
  end
end

--- Define a tier programme. Call at the top level of a campaign script.
function M.define(o)
  local d = options.checked("tiers.define", validate, o)
  if d.review then options.declare("tiers.define", "review", hearth.cron, d.review, review(d)) end
  options.declare("tiers.define", nil, hearth.on, "order.paid", on_paid(d))
  hearth.on("order.refunded", on_refunded(d))
  hearth.on("member.joined", on_joined(d))
  defs[d.name] = d
  order[#order + 1] = d.name
  return d.name
end

local function def_for(name, fn)
  if name == nil then
    if #order == 1 then return defs[order[1]] end
    error(fn .. ": name the tier definition (" .. #order .. " are defined)", 3)
  end
  local d = defs[name]
  if not d then error(fn .. ": no tiers named '" .. tostring(name) .. "'", 3) end
  return d
end

--- The member's current level name in definition `name` (nil: no tier).
function M.tier(m, name)
  local d = def_for(name, "tiers.tier")
  local st = m:get(state_key(d))
  local t = type(st) == "table" and st.tier or nil
  if t and d.index[t] then return t end
  return nil
end

--- The points multiplier of the member's current level (1 without a tier).
function M.multiplier(m, name)
  local d = def_for(name, "tiers.multiplier")
  local t = M.tier(m, d.name)
  return t and d.levels[d.index[t]].multiplier or 1
end

--- The member's qualifying value now (spend or orders, windowed when configured).
function M.value(m, name)
  local d = def_for(name, "tiers.value")
  local st = load_state(m, d)
  return value_of(m, d, st, hearth.now())
end

--- Grant n points multiplied by the member's tier multiplier (opts.tiers names the
--- definition when several exist; other opts go to m:add_points). A negative n (a spend) is
--- not multiplied. Returns the new balance and the points granted.
function M.add_points(m, n, reason, opts)
  if math.type(n) ~= "integer" then error("tiers.add_points: n must be an integer", 2) end
  local name = opts and opts.tiers
  local d = def_for(name, "tiers.add_points")
  local pts = n
  if n > 0 then pts = math.floor(n * M.multiplier(m, d.name) + 1e-9) end
  if pts == 0 then return m.points, 0 end
  local o = {}
  if opts then for k, v in pairs(opts) do if k ~= "tiers" then o[k] = v end end end
  return m:add_points(pts, reason, o), pts
end

--- Names of the levels of a definition, lowest first.
function M.levels(name)
  local d = def_for(name, "tiers.levels")
  local out = {}
  for i, l in ipairs(d.levels) do out[i] = l.name end
  return out
end

return M
