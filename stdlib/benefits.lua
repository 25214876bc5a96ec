--[==[ benefits: member benefits (会员权益): a birthday gift (生日福利) on per-member yearly
timers and a member day (会员日, e.g. every Wednesday) on cron.

Owns, per definition `name`: the private attribute "_benefits.<name>" = { birthday = <year
last given>, member_day = "<YYYY-MM-DD last given>", bd = <birthday attribute value the
timer was armed for>, bd_at = <due time of the pending birthday timer> }; the timer type
timer_type(name) ("benefits.<name>.birthday" when that is a valid event type, else a
derived "benefits.<name-ish>.<hash>.birthday"), one pending timer per member with a
birthday, data { year = <birthday year it serves> }; funnel counter "granted" (campaign =
name, step = "birthday" or "member_day"): members who received the benefit.

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

Choices where the SPEC is silent:
  - "Local date" is the engine's zone date of the run. Once per year per member: the year
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

local NAME_PAT = "^[%w_%.%-]+$"

local function fnv1a(s)
  local h = 2166136261
  for i = 1, #s do
    h = h ~ s:byte(i)
    h = (h * 16777619) & 0xffffffff
  end
  return h
end

--- Timer type of the birthday timers of definition `name`: "benefits.<name>.birthday" when
--- that is a valid event type ([a-z0-9_.]{1,64}); otherwise the name lower-cased with other
--- bytes as '_', cut to 30 bytes, and an FNV-1a hash of the exact name, so distinct names
--- never share a type (define checks it).
local function timer_type(name)
  local t = "benefits." .. name .. ".birthday"
  if #t <= 64 and t:match("^[a-z0-9_.]+$") then return t end
  local safe = name:lower():gsub("[^a-z0-9_.]", "_"):sub(1, 30)
  return string.format("benefits.%s.%08x.birthday", safe, fnv1a(name))
end
M.timer_type = timer_type

local function check_tags(v, what)
  if v == nil then return nil end
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" or #v == 0 then error(what .. " must be a tag or a non-empty list of tags", 0) end
  for _, t in ipairs(v) do
    if type(t) ~= "string" or #t == 0 or #t > 128 then error(what .. " must hold tags of 1-128 bytes", 0) end
  end
  return v
end

local function check_benefit(b, what, need_one)
  if b.send ~= nil and (type(b.send) ~= "string" or #b.send == 0) then
    error(what .. ".send must be a template name", 0)
  end
  if b.task ~= nil and (type(b.task) ~= "string" or #b.task == 0) then error(what .. ".task must be a text", 0) end
  if b.points ~= nil and (math.type(b.points) ~= "integer" or b.points <= 0) then
    error(what .. ".points must be a positive integer", 0)
  end
  if b.vars ~= nil and type(b.vars) ~= "table" then error(what .. ".vars must be a table", 0) end
  if b.category ~= nil and b.category ~= "marketing" and b.category ~= "service" then
    error(what .. ".category must be \"marketing\" or \"service\"", 0)
  end
  if need_one and not (b.send or b.points or b.task) then
    error(what .. " needs at least one of send, points, task", 0)
  end
end

local COMMON = { send = 1, points = 1, task = 1, vars = 1, category = 1, tag = 1, by_tag = 1,
  when = 1, chunk = 1 }

local function validate_common(o, what, extra)
  if type(o) ~= "table" then error("option '" .. what .. "' must be a table", 0) end
  for k in pairs(o) do
    if not COMMON[k] and not extra[k] then error("option '" .. what .. "': unknown field '" .. tostring(k) .. "'", 0) end
  end
  local b = { send = o.send, points = o.points, task = o.task, vars = o.vars, category = o.category }
  b.tags = check_tags(o.tag, what .. ".tag")
  b.by_tag = {}
  if o.by_tag ~= nil then
    if type(o.by_tag) ~= "table" then error(what .. ".by_tag must be a list of { tag =, ... }", 0) end
    for i, e in ipairs(o.by_tag) do
      local w = what .. ".by_tag[" .. i .. "]"
      if type(e) ~= "table" or type(e.tag) ~= "string" or #e.tag == 0 then error(w .. " needs a tag", 0) end
      for k in pairs(e) do
        if k ~= "tag" and k ~= "send" and k ~= "points" and k ~= "task" and k ~= "vars" then
          error(w .. ": unknown field '" .. tostring(k) .. "'", 0)
        end
      end
      check_benefit(e, w, false)
      b.by_tag[i] = e
    end
  end
  check_benefit(b, what, #b.by_tag == 0)
  if o.when ~= nil and type(o.when) ~= "function" then error(what .. ".when must be a function(m)", 0) end
  b.when = o.when
  b.chunk = o.chunk or 500
  if math.type(b.chunk) ~= "integer" or b.chunk < 1 or b.chunk > 100000 then
    error(what .. ".chunk must be an integer in 1-100000", 0)
  end
  return b
end

local function validate(o)
  if type(o) ~= "table" then error("expects a table of options", 0) end
  for k in pairs(o) do
    if k ~= "name" and k ~= "birthday" and k ~= "member_day" then
      error("unknown option '" .. tostring(k) .. "'", 0)
    end
  end
  if type(o.name) ~= "string" or #o.name == 0 or #o.name > 64 or not o.name:match(NAME_PAT) then
    error("option 'name' must be a string of 1-64 letters, digits, '_', '.' or '-'", 0)
  end
  if defs[o.name] then error("option 'name': benefits '" .. o.name .. "' is defined twice", 0) end
  if o.birthday == nil and o.member_day == nil then error("needs option 'birthday' or 'member_day'", 0) end
  local d = { name = o.name }
  if o.birthday ~= nil then
    local b = validate_common(o.birthday, "birthday", { at = 1, attr = 1, feb29 = 1, catch_up_days = 1,
      backfill = 1 })
    local at = o.birthday.at or "09:00"
    local h, mi = tostring(at):match("^(%d%d?):(%d%d)$")
    h, mi = tonumber(h), tonumber(mi)
    if type(at) ~= "string" or not h or h > 23 or mi > 59 then
      error("option 'birthday.at' must be a local time \"HH:MM\"", 0)
    end
    b.hour, b.min = h, mi
    b.timer = timer_type(o.name)
    for _, other in pairs(defs) do
      if other.birthday and other.birthday.timer == b.timer then
        error("option 'name': its birthday timer type '" .. b.timer .. "' is already used by benefits '" .. other.name .. "'", 0)
      end
    end
    if o.birthday.backfill ~= nil and type(o.birthday.backfill) ~= "string" then
      error("option 'birthday.backfill' must be a cron spec such as \"0 3 1 * *\"", 0)
    end
    b.backfill = o.birthday.backfill
    b.attr = o.birthday.attr or "birthday"
    if type(b.attr) ~= "string" or #b.attr == 0 or #b.attr > 128 then
      error("option 'birthday.attr' must be an attribute name", 0)
    end
    b.feb29 = o.birthday.feb29 or "feb28"
    if b.feb29 ~= "feb28" and b.feb29 ~= "mar1" then
      error("option 'birthday.feb29' must be \"feb28\" or \"mar1\"", 0)
    end
    b.catch_up_days = o.birthday.catch_up_days or 0
    if math.type(b.catch_up_days) ~= "integer" or b.catch_up_days < 0 or b.catch_up_days > 31 then
      error("option 'birthday.catch_up_days' must be an integer in 0-31", 0)
    end
    d.birthday = b
  end
  if o.member_day ~= nil then
    local b = validate_common(o.member_day, "member_day", { cron = 1 })
    if type(o.member_day.cron) ~= "string" then
      error("option 'member_day.cron' must be a cron spec such as \"0 10 * * 3\"", 0)
    end
    b.cron = o.member_day.cron
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

--- The next run for birthday (bm, bd): the earliest time R (> after, or >= after when
--- inclusive) that is the configured time on the celebrated date of a year y not given yet
--- (given = the year last given) or on one of the catch_up_days dates after it. Returns R, y.
local function next_run(b, bm, bd, given, after, inclusive)
  local year = hearth.local_date(after).year
  for y = year - 1, year + 2 do
    if y ~= given then
      local cm, cd = celebrated_date(bm, bd, y, b.feb29)
      for k = 0, b.catch_up_days do
        local r = hearth.local_time(y, cm, cd + k, b.hour, b.min, 0)
        if r > after or (inclusive and r == after) then return r, y end
      end
    end
  end
  error("benefits: no next birthday run found") -- unreachable: year + 1 always has one
end

--- The birthday year that a run at time `slot` serves for (bm, bd): the celebrated date is
--- the slot's local date or one of the catch_up_days dates before it (newest first).
local function served_year(b, bm, bd, slot)
  local today = hearth.local_date(slot)
  for k = 0, b.catch_up_days do
    local dt = k == 0 and today or hearth.local_date(hearth.local_time(today.year, today.month, today.day - k, 12, 0, 0))
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
  st.bd, st.bd_at = v, nil
  local bm, bd = parse_birthday(v)
  if bm then
    local due, y = next_run(b, bm, bd, st.birthday, after, inclusive)
    m:at(due, b.timer, { year = y })
    st.bd_at = due
  end
  save_state(m, d, st)
end

--- member.joined / member.updated: arm when the birthday attribute appeared or changed
--- since the timer was armed (a string that is not a date counts as no birthday).
local function birthday_changed(d)
  local b = d.birthday
  return function(m)
    local v = m:get(b.attr)
    if type(v) ~= "string" then v = nil end
    local st = load_state(m, d)
    if v == st.bd then return end
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
    local year = bm and served_year(b, bm, bd, ev.time)
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
      if v == st.bd then return end
      arm(m, d, st, slot, true)
    end)
  end
end

local function member_day_run(d)
  local b = d.member_day
  return function(slot)
    local ld = hearth.local_date(slot)
    local date = string.format("%04d-%02d-%02d", ld.year, ld.month, ld.day)
    sweep(b, function(m)
      local st = load_state(m, d)
      if st.member_day == date then return end
      if b.when and not b.when(m) then return end
      st.member_day = date
      m:set(state_key(d), st)
      grant(m, d, b, "member_day", "member_day/" .. date .. "/", "member day " .. date, { date = date })
    end)
  end
end

local function define_error(mod, what, err)
  err = tostring(err)
  if err:find("while the scripts load", 1, true) then
    return mod .. ".define: call it at the top level of a script, while the scripts load"
  end
  return mod .. ".define: " .. what .. ": " .. (err:match("%((cron .*)%)$") or err)
end

--- Define birthday and/or member-day benefits. Call at the top level of a campaign script.
function M.define(o)
  local ok, d = pcall(validate, o)
  if not ok then error("benefits.define: " .. tostring(d), 2) end
  if d.birthday then
    local okh, err = pcall(hearth.on, d.birthday.timer, birthday_fired(d))
    if not okh then error(define_error("benefits", "hearth.on", err), 2) end
    hearth.on("member.joined", birthday_changed(d))
    hearth.on("member.updated", birthday_changed(d))
    if d.birthday.backfill then
      local okc, errc = pcall(hearth.cron, d.birthday.backfill, birthday_backfill(d))
      if not okc then error(define_error("benefits", "option 'birthday.backfill'", errc), 2) end
    end
  end
  if d.member_day then
    local okc, err = pcall(hearth.cron, d.member_day.cron, member_day_run(d))
    if not okc then error(define_error("benefits", "option 'member_day.cron'", err), 2) end
  end
  defs[d.name] = d
  return d.name
end

return M
