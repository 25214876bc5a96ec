--[[ streak: daily check-in streaks (签到打卡) with first-time bonus, milestone rewards and
optional make-up cards (补签卡).

Owns, per definition `name`:
  - the private attribute "_streak.<name>" = { last, len, best, total, cards, prev_last,
    prev_len }: `last` the day number (local days since 1970-01-01) of the latest day of the
    streak, `len` the current streak length, `best` the longest streak, `total` accepted
    check-ins, `cards` make-up cards held, `prev_last`/`prev_len` the streak that the latest
    check-in broke (kept only while a make-up card can still repair it).
  - funnel counters (campaign = name): "members" (a member's first accepted check-in),
    "checkins" (accepted check-ins), "ignored" (same-day or late check-ins),
    "milestone" (step = "milestone<L>", each time a milestone length is reached),
    "makeups" (repaired days), "makeup_rejected", "cards" (cards granted or earned, n = count).

Example:
  local streak = require "streak"
  streak.define {
    name = "checkin",                -- campaign name of every action (required)
    event = "checkin",               -- the check-in event type
    points = 5,                      -- every accepted check-in
    first_bonus = 20,                -- the member's very first accepted check-in, once ever
    milestones = {
      [7]  = { points = 50, send = "streak_7", card = 1 },
      [30] = { points = 300 },
    },
    makeup = { points = 0 },         -- optional: make-up cards (see below)
  }

Options (defaults):
  name         required; [A-Za-z0-9_.-], 1-64 bytes; a name is defined once.
  event        "checkin"
  points       0; integer >= 0, earned by each accepted check-in.
  first_bonus  0; integer >= 0, earned once by the member's very first accepted check-in.
  milestones   {}; streak length (integer >= 1) -> reward { points, send, task, tag, card,
               vars, category, staff }. `send` goes through require("caps").send (marketing
               unless category = "service"); vars default { streak = <length> }; `card` (needs
               `makeup`) gives that many make-up cards.
  makeup       nil (no make-up cards). true or a table:
                 use       "<event>.makeup"  the event type that spends a card; data.date
                                             ("YYYY-MM-DD", optional) names the missed day.
                 grant     "<event>.card"    the event type that grants cards; data.n
                                             (integer >= 1, default 1) cards.
                 points    0                 points for a repaired day (key "<date>/makeup").
                 max_cards nil (no limit)    cards held at most; extra grants are dropped.

Rules (SPEC §5 streak):
  - Days are the local calendar dates of the event times on the member's own clock
    (m:local_date(t).day_number: her `tz` attribute's zone, else the engine's). A member
    whose zone changes keeps her streak days as they were counted.
  - A second check-in on the same local date is ignored (no points, nothing recorded); so is
    a check-in dated before the member's latest streak day (a late, out-of-order event).
  - A check-in on the day after the streak's last day continues it (length + 1); anything
    older resets it to 1.
  - Each accepted check-in earns `points` (key "<date>/checkin", step "checkin"); the very
    first one also earns `first_bonus` (key "first", step "first").
  - Reaching a milestone length earns its reward (keys "<date>/milestone<L>/<kind>", step
    "milestone<L>"), again each time the length is reached after a reset.

Make-up cards (SPEC is silent; this module's design):
  - Cards are kept per member. They are granted by the `grant` event or earned by a
    milestone's `card` option.
  - A card is used only explicitly, by the `use` event, and repairs exactly one missed day:
    YESTERDAY relative to the local date of the `use` event (data.date, when given, must be
    that date or the request is rejected). It is accepted when the member holds a card and
      (a) the streak's last day is the day before yesterday (the member has not checked in
          today yet): yesterday is filled in, the streak is one longer and today's check-in
          will continue it; or
      (b) the member checked in today and that check-in broke a streak whose last day was
          the day before yesterday: the old streak, yesterday and today join up
          (length = old length + 2).
    Anything else is rejected (no card spent): two or more missed days are never bridged,
    a day already checked in cannot be repaired, a first-ever check-in has nothing to repair.
  - A repaired day is not a check-in: it earns `makeup.points` (default 0), not `points` nor
    `first_bonus`, and does not count in "checkins". Milestone lengths newly reached by the
    longer streak earn their rewards (keyed by the date at which that length falls).
  - A repair is one use event; its effects are keyed by the repaired date, so a retried use
    event (same id) is a duplicate, and a second use for the same day is rejected.

streak.get(m, name) -> { length, last_date, best, total, cards } (inside a handler).
]]

local M = {}

local defs = {}

-- ---- dates: day numbers <-> civil dates (proleptic Gregorian) ----

local function days_from_civil(y, mo, d)
  y = (mo <= 2) and (y - 1) or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local mp = (mo + 9) % 12
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = (z >= 0 and z or z - 146096) // 146097
  local doe = z - era * 146097
  local yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
  local mp = (5 * doy + 2) // 153
  local d = doy - (153 * mp + 2) // 5 + 1
  local mo = mp < 10 and mp + 3 or mp - 9
  if mo <= 2 then y = y + 1 end
  return y, mo, d
end

local function date_string(day)
  local y, mo, d = civil_from_days(day)
  return string.format("%04d-%02d-%02d", y, mo, d)
end

-- "YYYY-MM-DD" -> day number, or nil
local function parse_date(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d = s:match("^(%d%d%d%d)-(%d%d)-(%d%d)$")
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo < 1 or mo > 12 or d < 1 or d > 31 then return nil end
  local n = days_from_civil(y, mo, d)
  local y2, mo2, d2 = civil_from_days(n)
  if y2 ~= y or mo2 ~= mo or d2 ~= d then return nil end -- e.g. 2026-02-30
  return n
end

M._date_string = date_string
M._parse_date = parse_date

-- ---- option checks ----

local options = require "options"
local reward = require "reward"

local function check_count(v, path, min)
  if v == nil then return 0 end
  return options.integer(v, path, min)
end

local function check_reward(r, path, makeup)
  reward.check(r, path, { card = true })
  if r.card ~= nil then
    options.integer(r.card, options.field(path, "card"), 1)
    if not makeup then options.reject(options.field(path, "card"), "needs option 'makeup'") end
  end
  return r
end

-- ---- state ----

local function attr_of(def) return "_streak." .. def.name end

local function load_state(m, def)
  local s = m:get(attr_of(def))
  if type(s) ~= "table" then s = {} end
  s.len = s.len or 0
  s.best = s.best or 0
  s.total = s.total or 0
  s.cards = s.cards or 0
  return s
end

local function save_state(m, def, s) m:set(attr_of(def), s) end

local function count(def, metric, opts)
  opts = opts or {}
  opts.campaign = def.name
  hearth.count(metric, opts)
end

-- Give the reward r; keys "<base>/<kind>". Returns the number of cards earned.
local function give(m, def, r, base, step, length)
  local opts = function(kind) return { key = base .. "/" .. kind, campaign = def.name, step = step } end
  if r.points then
    m:add_points(r.points, string.format("%s: %d-day streak", def.name, length), opts("points"))
  end
  if r.send then
    local o = opts("send")
    o.vars = r.vars or { streak = length }
    o.category = r.category
    def.caps.send(m, r.send, o)
  end
  if r.task then
    local o = opts("task")
    o.vars = r.vars or { streak = length }
    o.staff = r.staff
    m:task(r.task, o)
  end
  if r.tag then m:tag(r.tag, opts("tag")) end
  return r.card or 0
end

local function add_cards(def, s, n)
  if n <= 0 then return 0 end
  local before = s.cards
  s.cards = s.cards + n
  if def.makeup.max_cards and s.cards > def.makeup.max_cards then s.cards = def.makeup.max_cards end
  return s.cards - before
end

-- Milestone rewards for reaching `length` on day `day`.
local function milestone(m, def, s, length, day)
  local r = def.milestones[length]
  if not r then return end
  local step = "milestone" .. length
  count(def, "milestone", { step = step })
  local cards = give(m, def, r, date_string(day) .. "/" .. step, step, length)
  if cards > 0 then
    local got = add_cards(def, s, cards)
    if got > 0 then count(def, "cards", { n = got }) end
  end
end

-- ---- handlers ----

local function on_checkin(def, m, ev)
  local day = m:local_date(ev.time).day_number
  local s = load_state(m, def)
  if s.last and day <= s.last then
    count(def, "ignored")
    return
  end
  local first = s.total == 0
  if s.last and s.last == day - 1 then
    s.len = s.len + 1
    s.prev_last, s.prev_len = nil, nil
  else
    if s.last then s.prev_last, s.prev_len = s.last, s.len else s.prev_last, s.prev_len = nil, nil end
    s.len = 1
  end
  s.last = day
  s.total = s.total + 1
  if s.len > s.best then s.best = s.len end
  local date = date_string(day)
  if def.points > 0 then
    m:add_points(def.points, def.name .. ": daily check-in",
                 { key = date .. "/checkin", campaign = def.name, step = "checkin" })
  end
  if first then
    count(def, "members")
    if def.first_bonus > 0 then
      m:add_points(def.first_bonus, def.name .. ": first check-in bonus",
                   { key = "first", campaign = def.name, step = "first" })
    end
  end
  count(def, "checkins")
  milestone(m, def, s, s.len, day)
  save_state(m, def, s)
end

local function reject(def, m, why)
  count(def, "makeup_rejected")
  hearth.log("info", string.format("%s: make-up rejected for %s: %s", def.name, m.id, why))
end

local function on_makeup(def, m, ev)
  local today = m:local_date(ev.time).day_number
  local day = today - 1
  local data = type(ev.data) == "table" and ev.data or {}
  if data.date ~= nil then
    local d = parse_date(data.date)
    if not d then return reject(def, m, "data.date must be a date YYYY-MM-DD") end
    if d ~= day then return reject(def, m, "only yesterday (" .. date_string(day) .. ") can be repaired") end
  end
  local s = load_state(m, def)
  if s.cards < 1 then return reject(def, m, "no make-up card") end
  local old_len, new_len
  if s.last == day - 1 then
    -- (a) not checked in today yet: fill yesterday in
    old_len, new_len = s.len, s.len + 1
    s.last = day
  elseif s.last == today and s.len == 1 and s.prev_last == day - 1 then
    -- (b) today's check-in broke a streak that ended the day before yesterday
    old_len, new_len = s.prev_len, s.prev_len + 2
  else
    return reject(def, m, "yesterday does not join up a streak (already checked in, or more than one day missed)")
  end
  s.cards = s.cards - 1
  s.len = new_len
  s.prev_last, s.prev_len = nil, nil
  if s.len > s.best then s.best = s.len end
  count(def, "makeups")
  if def.makeup.points > 0 then
    m:add_points(def.makeup.points, def.name .. ": make-up day",
                 { key = date_string(day) .. "/makeup", campaign = def.name, step = "makeup" })
  end
  -- lengths newly reached: old_len+1 falls on yesterday; in case (b) old_len+2 on today
  for length = old_len + 1, new_len do
    milestone(m, def, s, length, day + (length - old_len - 1))
  end
  save_state(m, def, s)
end

local function on_grant(def, m, ev)
  local data = type(ev.data) == "table" and ev.data or {}
  local n = data.n == nil and 1 or data.n
  if math.type(n) ~= "integer" or n < 1 then
    if type(n) == "number" and n == math.floor(n) and n >= 1 then
      n = math.tointeger(n)
    else
      error(def.name .. ": " .. def.makeup.grant .. ": data.n must be an integer >= 1")
    end
  end
  local s = load_state(m, def)
  local got = add_cards(def, s, n)
  if got > 0 then count(def, "cards", { n = got }) end
  save_state(m, def, s)
end

-- ---- API ----

local KNOWN = { name = true, event = true, points = true, first_bonus = true, milestones = true, makeup = true }
local MAKEUP_KNOWN = { use = true, grant = true, points = true, max_cards = true }

local function build(o)
  local name = options.definition(o, KNOWN, defs)
  local def = { name = name }
  def.event = options.event_type(o.event == nil and "checkin" or o.event, "event")
  def.points = check_count(o.points, "points", 0)
  def.first_bonus = check_count(o.first_bonus, "first_bonus", 0)
  if o.makeup ~= nil and o.makeup ~= false then
    local mk = o.makeup == true and {} or o.makeup
    if type(mk) ~= "table" then options.fail("makeup", "true or a table", o.makeup) end
    options.known(mk, MAKEUP_KNOWN, "makeup")
    def.makeup = {
      use = options.event_type(mk.use == nil and def.event .. ".makeup" or mk.use, "makeup.use"),
      grant = options.event_type(mk.grant == nil and def.event .. ".card" or mk.grant, "makeup.grant"),
      points = check_count(mk.points, "makeup.points", 0),
      max_cards = mk.max_cards ~= nil and check_count(mk.max_cards, "makeup.max_cards", 1) or nil,
    }
    if def.makeup.use == def.event or def.makeup.use == def.makeup.grant then
      options.fail("makeup.use", "an event type other than 'event' and 'makeup.grant'", def.makeup.use)
    end
    if def.makeup.grant == def.event then
      options.fail("makeup.grant", "an event type other than 'event' and 'makeup.use'", def.makeup.grant)
    end
  end
  def.milestones = {}
  if o.milestones ~= nil then
    local makeup = def.makeup ~= nil
    def.milestones = options.by_count(o.milestones, "milestones", "{ [length] = reward }", "streak lengths",
                                      function(r, path) return check_reward(r, path, makeup) end)
  end
  def.caps = require "caps"
  return def
end

function M.define(o)
  local def = options.checked("streak.define", build, o)
  options.declare("streak.define", nil, hearth.on, def.event, function(m, ev) on_checkin(def, m, ev) end)
  defs[def.name] = def
  if def.makeup then
    hearth.on(def.makeup.use, function(m, ev) on_makeup(def, m, ev) end)
    hearth.on(def.makeup.grant, function(m, ev) on_grant(def, m, ev) end)
  end
  return def
end

-- streak.get(m, name) -> { length, last_date, best, total, cards }. The length is the
-- streak as it stands: a streak whose last day is before yesterday is broken (length 0).
function M.get(m, name)
  local def = defs[name]
  if not def then error("streak.get: no streak named '" .. tostring(name) .. "'", 2) end
  local s = load_state(m, def)
  local today = m:local_date().day_number
  local alive = s.last and s.last >= today - 1
  return { length = alive and s.len or 0, last_date = s.last and date_string(s.last) or nil,
           best = s.best, total = s.total, cards = s.cards }
end

return M
