--[==[ benefits: member benefits (会员权益): a birthday gift (生日福利) on per-member yearly
timers and a member day (会员日, e.g. every Wednesday) on cron.

Owns, per definition `name`: the private attribute "_benefits.<name>" = { birthday = <year
last given>, member_day = "<YYYY-MM-DD last given>", bd = <birthday attribute value the
timer was armed for>, bd_at = <due time of the pending birthday timer>, tz = <her zone
when it was armed, nil: the engine's>, md_at = <due time of her pending member-day timer>,
md_tz = <the zone it was armed in> }; the timer type timer_type(name)
("benefits.<name>.birthday" when that is a valid event type, else a derived
"benefits.<name-ish>.<hash>.birthday"), one pending timer per member with a birthday,
data { year = <birthday year it serves> }; the timer type timer_type(name, "member_day"),
one pending timer per member with her own zone (a `tz` attribute); funnel counter
"granted" (campaign = name, step = "birthday" or "member_day"): members who received the
benefit.

Example:
  local benefits = require "benefits"
  benefits.define {
    name = "perks",
    birthday = {
      at = "09:00",                 -- local time of the member's birthday run
      send = "birthday_gift", points = 100,
      by_tag = { { tag = "tier:gold", send = "birthday_gift_gold", points = 500 } },
      feb29 = "feb28",
      backfill = "0 4 1 * *",       -- optional: monthly sweep arming birthdays set earlier
    },
    member_day = {
      cron = "0 10 * * 3",          -- every Wednesday 10:00
      send = "member_day_offer",
      tag = { "tier:silver", "tier:gold" },   -- optional: only members with one of these tags
    },
  }

Options (defaults). At least one of `birthday`, `member_day`:
  name          required; [A-Za-z0-9_.-], 1-64 bytes; the campaign of every action.
  birthday = {
    at          "09:00" (HH:MM, local): the time of day of the member's birthday run.
    attr        "birthday": member attribute "MM-DD" or "YYYY-MM-DD" (e.g. set through
                member.updated). Anything else (or an impossible date) is no birthday.
    send, points, task, vars, category   the benefit (at least one of send/points/task);
                sends are marketing through require("caps").send unless category = "service".
    tag         nil: only members with this tag (or one of a list of tags).
    by_tag      nil: list of { tag =, send =, points =, task =, vars = }: the first entry whose
                tag the member has replaces those fields of the benefit (tier-specific gifts).
    when        nil: function(m) -> false skips the member (not marked as served).
    feb29       "feb28": in a non-leap year a 29 February birthday is celebrated on 28
                February; "mar1": on 1 March.
    catch_up_days 0: the run is repeated on the N local days after the birthday for a member
                who has not had this year's gift (a birthday attribute set after the day's
                run, a member refused by tag or when() on the day).
    backfill    nil (off): a cron spec; its run sweeps the members (those with `tag`, when
                set) and arms the timer of any whose birthday attribute has no timer yet.
    chunk       500 (members per transaction in the backfill sweep) }
  member_day = {
    cron        required: five-field cron spec, e.g. "0 10 * * 3".
    send, points, task, vars, category, tag, by_tag, when, chunk   as for birthday. }

Birthday timers (no daily sweep: a sweep read every member every day):
  - member.joined and member.updated (the engine merges member.updated data into the
    attributes before handlers run) compare the birthday attribute with the value the timer
    was armed for; when it appeared, changed or went away, the pending timer is cancelled
    and, for a valid date, m:at(<next run>) armed. The next run is the configured time on
    the local celebrated date (or one of the catch_up_days dates after it) of the first
    year not given yet, at or after now (a birthday set at exactly the run's time is served
    at once).
  - When it fires: the gift is granted if the member's birthday (re-read) is celebrated on
    the run's local date or catch_up_days before it, that year was not given, the member
    has one of `tag` and when(m) is not false. Then the next run is armed: the next
    catch-up day (when the member was refused) or next year's birthday.
  - A birthday attribute set without a member.joined/member.updated this definition saw
    (before it was deployed, or by another script's m:set) has no timer until the member's
    next member.updated or member.joined, or until the next `backfill` run when that option
    is set.

Member day on her own clock: the cron slot is read in the engine's zone and its sweep
serves the members without a zone of their own. A member with a `tz` attribute has her own
timer at the spec's next slot on her clock (hearth.cron_next(spec, after, m)), armed by
member.joined / member.updated when her zone appears or changes (or by the sweep when it
finds her without one), re-armed by each run. Chosen over an hourly sweep picking members
whose local time reached the slot: that reads every member 168 times a week (measured
with tests/bench/run_member_day.sh: about 9x the CPU) and misses half-hour zones.

Choices where the SPEC is silent:
  - "Local date" is the date of the run on the member's own clock (m:local_date). Once per year per member: the year
    given is kept in the member's attribute, so a catch-up or a changed birthday never gives
    a second gift that year. The year is the year of the birthday being celebrated (a 31
    December birthday caught up on 1 January is last year's).
  - Member day: once per member per local date of the slot (keys "member_day/<YYYY-MM-DD>/...").
  - Birthday keys "birthday/<year>/send|points|task"; points reason "birthday <year>" and
    "member day <YYYY-MM-DD>".
  - Unsubscribed members still get points; their sends are suppressed by caps.
  - Sweeps (member day, backfill): all members (tag = nil) or the members of each tag, a
    chunk per transaction.
]==]

local M = {}

local defs = {}
local caps = require "caps"  -- at load time: caps registers its timer handler then

local options = require "options"
local field, index = options.field, options.index
local fnv1a = options.hash

--- Timer type of the `kind` timers ("birthday", default, or "member_day") of definition
--- `name`: "benefits.<name>.<kind>" when that is a valid event type ([a-z0-9_.]{1,64});
--- otherwise the name lower-cased with other bytes as '_', cut to 30 bytes, and an FNV-1a
--- hash of the exact name, so distinct names never share a type (define checks it).
local function timer_type(name, kind)
  kind = kind or "birthday"
  local t = "benefits." .. name .. "." .. kind
  if #t <= 64 and t:match("^[a-z0-9_.]+$") then return t end
  local safe = name:lower():gsub("[^a-z0-9_.]", "_"):sub(1, 30)
  return string.format("benefits.%s.%08x.%s", safe, fnv1a(name), kind)
end
M.timer_type = timer_type

local function check_benefit(b, path, need_one)
  if b.send ~= nil then options.string(b.send, field(path, "send"), "a template name") end
  if b.task ~= nil then options.string(b.task, field(path, "task"), "a non-empty text") end
  if b.points ~= nil then options.integer(b.points, field(path, "points"), 1) end
  if b.vars ~= nil then options.table(b.vars, field(path, "vars")) end
  if b.category ~= nil then options.enum(b.category, field(path, "category"), { "marketing", "service" }) end
  if need_one and not (b.send or b.points or b.task) then
    options.fail(path, "a benefit with at least one of send, points, task")
  end
end

local COMMON = { send = 1, points = 1, task = 1, vars = 1, category = 1, tag = 1, by_tag = 1,
  when = 1, chunk = 1 }
local BY_TAG_KNOWN = { tag = 1, send = 1, points = 1, task = 1, vars = 1 }

local function validate_by_tag(list, path)
  options.list(list, path, "a list of { tag =, ... }")
  local out = {}
  for i, e in ipairs(list) do
    local w = index(path, i)
    options.table(e, w, "{ tag =, ... }")
    options.known(e, BY_TAG_KNOWN, w)
    options.string(e.tag, field(w, "tag"), "a tag")
    check_benefit(e, w, false)
    out[i] = e
  end
  return out
end

local function validate_common(o, path, extra)
  options.table(o, path)
  local known = {}
  for n in pairs(COMMON) do known[n] = true end
  for n in pairs(extra) do known[n] = true end
  options.known(o, known, path)
  local b = { send = o.send, points = o.points, task = o.task, vars = o.vars, category = o.category }
  b.tags = o.tag ~= nil and options.tags(o.tag, field(path, "tag")) or nil
  b.by_tag = o.by_tag ~= nil and validate_by_tag(o.by_tag, field(path, "by_tag")) or {}
  check_benefit(b, path, #b.by_tag == 0)
  if o.when ~= nil then options.func(o.when, field(path, "when"), "a function(m)") end
  b.when = o.when
  b.chunk = options.integer(o.chunk or 500, field(path, "chunk"), 1, 100000)
  return b
end

local KNOWN = { name = 1, birthday = 1, member_day = 1 }
local BIRTHDAY_EXTRA = { at = 1, attr = 1, feb29 = 1, catch_up_days = 1, backfill = 1 }

--- The timer type of `kind` for definition d, refusing one another definition uses.
local function unique_timer(d, kind)
  local t = timer_type(d.name, kind)
  for _, other in pairs(defs) do
    if other[kind] and other[kind].timer == t then
      options.fail("name", "a name whose " .. kind .. " timer type '" .. t .. "' benefits '" .. other.name
                   .. "' does not use already", d.name)
    end
  end
  return t
end

local function validate_birthday(d, o)
  local b = validate_common(o, "birthday", BIRTHDAY_EXTRA)
  b.hour, b.min = options.hhmm(o.at or "09:00", "birthday.at")
  b.timer = unique_timer(d, "birthday")
  if o.backfill ~= nil then options.cron(o.backfill, "birthday.backfill") end
  b.backfill = o.backfill
  b.attr = options.string(o.attr or "birthday", "birthday.attr", "an attribute name", 128)
  b.feb29 = options.enum(o.feb29 or "feb28", "birthday.feb29", { "feb28", "mar1" })
  b.catch_up_days = options.integer(o.catch_up_days or 0, "birthday.catch_up_days", 0, 31)
  return b
end

local function validate(o)
  options.definition(o, KNOWN, defs)
  if o.birthday == nil and o.member_day == nil then
    options.reject("birthday", "or option 'member_day' must be set (a definition needs at least one)")
  end
  local d = { name = o.name }
  if o.birthday ~= nil then d.birthday = validate_birthday(d, o.birthday) end
  if o.member_day ~= nil then
    local b = validate_common(o.member_day, "member_day", { cron = 1 })
    b.cron = options.cron(o.member_day.cron, "member_day.cron", "0 10 * * 3")
    b.timer = unique_timer(d, "member_day")
    d.member_day = b
  end
  return d
end

-- ---- dates ----

local DAYS = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

local function is_leap(y) return (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0 end

--- Parse "MM-DD" or "YYYY-MM-DD" -> month, day (nil when not a possible date).
local function parse_birthday(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d = s:match("^(%d%d%d%d)-(%d%d?)-(%d%d?)$")
  if not y then mo, d = s:match("^(%d%d?)-(%d%d?)$") end
  mo, d = tonumber(mo), tonumber(d)
  if not mo or mo < 1 or mo > 12 or d < 1 or d > DAYS[mo] then return nil end
  if y and mo == 2 and d == 29 and not is_leap(tonumber(y)) then return nil end
  return mo, d
end
M.parse_birthday = parse_birthday

--- Does a birthday (month, day) fall on date (year, month, day)?
local function celebrated_on(bm, bd, y, mo, d, feb29)
  if bm == 2 and bd == 29 and not is_leap(y) then
    if feb29 == "mar1" then bm, bd = 3, 1 else bm, bd = 2, 28 end
  end
  return bm == mo and bd == d
end
M.celebrated_on = celebrated_on

-- ---- granting ----

local function state_key(d) return "_benefits." .. d.name end

local function load_state(m, d)
  local st = m:get(state_key(d))
  if type(st) ~= "table" then st = {} end
  return st
end

local function resolve(b, m)
  local r = { send = b.send, points = b.points, task = b.task, vars = b.vars }
  for _, e in ipairs(b.by_tag) do
    if m:has(e.tag) then
      for _, k in ipairs { "send", "points", "task", "vars" } do
        if e[k] ~= nil then r[k] = e[k] end
      end
      break
    end
  end
  return r
end

local function has_any(m, tags)
  if not tags then return true end
  for _, t in ipairs(tags) do if m:has(t) then return true end end
  return false
end

local function grant(m, d, b, step, key, reason, vars)
  local r = resolve(b, m)
  local v = {}
  if r.vars then for k, x in pairs(r.vars) do v[k] = x end end
  for k, x in pairs(vars) do if v[k] == nil then v[k] = x end end
  if r.points then
    m:add_points(r.points, reason, { key = key .. "points", campaign = d.name, step = step })
  end
  if r.send then
    local opts = { key = key .. "send", campaign = d.name, step = step, vars = v }
    if b.category == "service" then
      opts.category = "service"
      m:send(r.send, opts)
    else
      caps.send(m, r.send, opts)
    end
  end
  if r.task then
    m:task(r.task, { key = key .. "task", campaign = d.name, step = step, vars = v })
  end
  hearth.count("granted", { campaign = d.name, step = step })
end

--- The member's own zone when she has one (a `tz` attribute: m.tz is then its zone, or the
--- engine's when the name is not a zone), nil when she lives on the engine's clock.
local function own_zone(m)
  if m:get("tz") == nil then return nil end
  return m.tz
end

-- Iterate the members a benefit applies to: all, or those of each tag (fn may see a member
-- twice when it has several of the tags; the state guards against a second grant).
local function sweep(b, fn)
  if not b.tags then
    for m in hearth.members { chunk = b.chunk } do fn(m) end
    return
  end
  for _, t in ipairs(b.tags) do
    for m in hearth.members { tag = t, chunk = b.chunk } do fn(m) end
  end
end

-- ---- birthday timers ----
--
-- One pending timer per member and definition: "benefits.<name>.birthday" (see timer_type)
-- due at the next run of the member's birthday: the configured time on the celebrated date
-- (or on one of the catch_up_days dates after it) of the first year not given yet.


--- The celebrated (month, day) of birthday (bm, bd) in year y.
local function celebrated_date(bm, bd, y, feb29)
  if bm == 2 and bd == 29 and not is_leap(y) then
    if feb29 == "mar1" then return 3, 1 end
    return 2, 28
  end
  return bm, bd
end

--- The next run for birthday (bm, bd), on the member's own clock: the earliest time R (> after, or >= after when
--- inclusive) that is the configured time on the celebrated date of a year y not given yet
--- (given = the year last given) or on one of the catch_up_days dates after it. Returns R, y.
local function next_run(m, b, bm, bd, given, after, inclusive)
  local year = m:local_date(after).year
  for y = year - 1, year + 2 do
    if y ~= given then
      local cm, cd = celebrated_date(bm, bd, y, b.feb29)
      for k = 0, b.catch_up_days do
        local r = m:local_time(y, cm, cd + k, b.hour, b.min, 0)
        if r > after or (inclusive and r == after) then return r, y end
      end
    end
  end
  error("benefits: no next birthday run found") -- unreachable: year + 1 always has one
end

--- The birthday year that a run at time `slot` serves for (bm, bd): the celebrated date is
--- the slot's local date or one of the catch_up_days dates before it (newest first).
local function served_year(m, b, bm, bd, slot)
  local today = m:local_date(slot)
  for k = 0, b.catch_up_days do
    local dt = k == 0 and today or m:local_date(m:local_time(today.year, today.month, today.day - k, 12, 0, 0))
    if celebrated_on(bm, bd, dt.year, dt.month, dt.day, b.feb29) then return dt.year end
  end
  return nil
end

local function save_state(m, d, st)
  if next(st) == nil then st = nil end
  m:set(state_key(d), st)
end

--- (Re-)arm the member's birthday timer for the birthday attribute's current value, runs
--- after `after` (inclusive: a run exactly at `after` is armed too). Cancels the pending one.
local function arm(m, d, st, after, inclusive)
  local b = d.birthday
  local v = m:get(b.attr)
  if type(v) ~= "string" then v = nil end
  if st.bd_at ~= nil then m:cancel(b.timer) end
  st.bd, st.bd_at, st.tz = v, nil, nil
  local bm, bd = parse_birthday(v)
  if bm then
    local due, y = next_run(m, b, bm, bd, st.birthday, after, inclusive)
    m:at(due, b.timer, { year = y })
    st.bd_at, st.tz = due, own_zone(m)
  end
  save_state(m, d, st)
end

--- Is the member's birthday timer armed for her birthday attribute v and her zone as they
--- are now? (st.tz is the zone it was armed in; nil: the engine's.)
local function birthday_current(m, st, v)
  return v == st.bd and (v == nil or own_zone(m) == st.tz)
end

--- member.joined / member.updated: arm when the birthday attribute appeared or changed
--- since the timer was armed (a string that is not a date counts as no birthday), or the
--- member's zone changed.
local function birthday_changed(d)
  local b = d.birthday
  return function(m)
    local v = m:get(b.attr)
    if type(v) ~= "string" then v = nil end
    local st = load_state(m, d)
    if birthday_current(m, st, v) then return end
    arm(m, d, st, hearth.now(), true)
  end
end

--- The birthday timer fired (ev.time = the run's time): grant when the member's birthday is
--- celebrated on that date (or catch_up_days before it) and that year was not given; arm the
--- next run either way.
local function birthday_fired(d)
  local b = d.birthday
  return function(m, ev)
    local st = load_state(m, d)
    st.bd_at = nil -- this timer is spent
    local bm, bd = parse_birthday(m:get(b.attr))
    local year = bm and served_year(m, b, bm, bd, ev.time)
    if year and st.birthday ~= year and has_any(m, b.tags) and not (b.when and not b.when(m)) then
      st.birthday = year
      grant(m, d, b, "birthday", "birthday/" .. year .. "/", "birthday " .. year,
            { year = year, birthday = string.format("%02d-%02d", bm, bd) })
    end
    arm(m, d, st, ev.time, false)
  end
end

--- Opt-in catch-up sweep (option birthday.backfill): arm the members whose birthday
--- attribute was set without a member.updated/member.joined this module saw (e.g. before
--- the definition was deployed, or by another script's m:set).
local function birthday_backfill(d)
  local b = d.birthday
  return function(slot)
    sweep(b, function(m)
      local v = m:get(b.attr)
      if type(v) ~= "string" then v = nil end
      local st = load_state(m, d)
      if birthday_current(m, st, v) then return end
      arm(m, d, st, slot, true)
    end)
  end
end

-- ---- member day ----
--
-- Members on the engine's clock get it from the cron sweep. A member with her own zone
-- (a `tz` attribute) gets it from her own timer "benefits.<name>.member_day", due at the
-- cron spec's next slot read on her clock: armed when she joins or is updated with a zone
-- (or by the sweep, when her zone came some other way), and re-armed by each run. The
-- sweep keeps reading every member once per slot, as before; a member with her own zone
-- costs one timer per slot on top.

local function member_day_date(m, t)
  local ld = m:local_date(t)
  return string.format("%04d-%02d-%02d", ld.year, ld.month, ld.day)
end

local function member_day_grant(m, d, st, date)
  local b = d.member_day
  if st.member_day == date then return end
  if b.when and not b.when(m) then return end
  st.member_day = date
  m:set(state_key(d), st)
  grant(m, d, b, "member_day", "member_day/" .. date .. "/", "member day " .. date, { date = date })
end

--- (Re-)arm her member-day timer at the first slot after `after` on her clock (or drop it
--- when she is back on the engine's clock, or no longer has one of the tags).
local function member_day_arm(m, d, st, after)
  local b = d.member_day
  if st.md_at ~= nil then m:cancel(b.timer) end
  st.md_at, st.md_tz = nil, nil
  local z = own_zone(m)
  if z and has_any(m, b.tags) then
    local due = hearth.cron_next(b.cron, after, m)
    if due then
      m:at(due, b.timer)
      st.md_at, st.md_tz = due, z
    end
  end
  save_state(m, d, st)
end

--- member.joined / member.updated: her zone appeared, changed or went away.
local function member_day_zone_changed(d)
  return function(m)
    local st = load_state(m, d)
    local z = own_zone(m)
    if z == st.md_tz and (z == nil or st.md_at ~= nil) then return end
    member_day_arm(m, d, st, hearth.now() - 1) -- a slot at exactly now is hers too
  end
end

--- Her member-day timer fired (ev.time = the slot on her clock).
local function member_day_fired(d)
  local b = d.member_day
  return function(m, ev)
    local st = load_state(m, d)
    st.md_at = nil -- this timer is spent
    if own_zone(m) and has_any(m, b.tags) then member_day_grant(m, d, st, member_day_date(m, ev.time)) end
    member_day_arm(m, d, st, ev.time)
  end
end

local function member_day_run(d)
  local b = d.member_day
  return function(slot)
    local ld = hearth.local_date(slot)
    local date = string.format("%04d-%02d-%02d", ld.year, ld.month, ld.day)
    sweep(b, function(m)
      local st = load_state(m, d)
      local z = own_zone(m)
      if z then
        -- on her own clock: make sure her timer is armed for her zone (from this very
        -- slot on: a zone that reads it as her slot too is served now)
        if st.md_at == nil or st.md_tz ~= z then member_day_arm(m, d, st, slot - 1) end
        return
      end
      member_day_grant(m, d, st, date)
    end)
  end
end

--- Define birthday and/or member-day benefits. Call at the top level of a campaign script.
function M.define(o)
  local d = options.checked("benefits.define", validate, o)
  if d.birthday then
    options.declare("benefits.define", nil, hearth.on, d.birthday.timer, birthday_fired(d))
    hearth.on("member.joined", birthday_changed(d))
    hearth.on("member.updated", birthday_changed(d))
    if d.birthday.backfill then
      options.declare("benefits.define", "birthday.backfill", hearth.cron, d.birthday.backfill,
                      birthday_backfill(d))
    end
  end
  if d.member_day then
    options.declare("benefits.define", "member_day.cron", hearth.cron, d.member_day.cron, member_day_run(d))
    hearth.on(d.member_day.timer, member_day_fired(d))
    hearth.on("member.joined", member_day_zone_changed(d))
    hearth.on("member.updated", member_day_zone_changed(d))
  end
  defs[d.name] = d
  return d.name
end

return M
