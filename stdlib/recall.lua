--[[ recall: churn recall (流失召回, 沉睡唤醒): sleeping and churned stages on inactivity,
wake-up touches, recall measurement, and a staff alert when the member deletes the
brand's WeCom friend.

Owns, per definition `name`:
  - the private attribute "_recall.<name>" = { stage ("new" | "active" | "sleeping" | "churned"),
    base (time of the last active event, or of joining), touch (time of the latest recall
    touch of this inactivity spell), touch_stage, recalled (how many times the member was
    recalled) }. recall.stage(m, name) reads the stage.
  - timer types "recall.<name>.sleeping" and "recall.<name>.churned".
  - funnel counters (campaign = name): "tracked" (a member starts being tracked),
    "sleeping", "churned" (members entering the stage), "entered" (inactivity spells with
    a recall touch: counted at the spell's first touch), "reactivated" (a sleeping or
    churned member active again), "recalled" and "converted" (reactivated within
    success_within of the recall touch; "recalled" also per step "sleeping"/"churned": the
    stage whose touch it answered), "friend_deleted"; with the option new: "new" (members
    tracked from their joining) and "activated" (a new member's first active event while
    still new). So the campaign's conversion
    (converted / entered) is the recall rate.

Example:
  local recall = require "recall"
  recall.define {
    name = "winback",                       -- campaign name of every action (required)
    active = { "order.paid", "checkin", "message.replied" },
    sleeping_after = "30d", churned_after = "90d",
    on_sleeping = { send = "miss_you" },
    on_churned = { task = "personal call" },
    on_friend_deleted = { task = "friend deleted" },
    success_within = "14d",
  }

Options (defaults):
  name               required; [a-z0-9_], 1-40 bytes (it names the module's timer event
                     types, which must match [a-z0-9_.]); a name is defined once.
  active             { "order.paid", "checkin", "message.replied" }: event types that count
                     as activity.
  sleeping_after     "30d"; a duration (string or seconds) > 0.
  churned_after      "90d"; a duration > sleeping_after, or false (no churned stage).
  on_sleeping        nil; actions { send, task, tag, points, vars, category, staff }.
  on_churned         nil; the same.
  on_friend_deleted  nil; the same, at each friend.deleted event.
  success_within     "14d"; a duration >= 0.
  new                nil / false: no new stage (a joined member is active at once). true: a
                     member tracked from her joining is "new" until her first active
                     event. A duration > 0 ("7d"): the same, but she reads as "active" from
                     that long after joining on.
  Sends go through require("caps").send (marketing unless category = "service").

Rules (SPEC §5 recall):
  - The clock starts at joining (member.joined, for a member not tracked yet) or at the
    first active event, and restarts at each active event: the member becomes sleeping
    exactly sleeping_after after the last active event (or joining), and churned exactly
    churned_after after it. Timers are cancelled and set again at each active event, so
    each stage fires its actions once per inactivity spell. Action keys
    "<spell start, RFC 3339>/<stage>/<kind>", steps "sleeping" / "churned".
  - An active event returns a sleeping or churned member to active; when its time is
    within success_within (inclusive) of the recall touch, the member counts as recalled.
  - friend.deleted: on_friend_deleted's actions (e.g. a task for the member's staff owner,
    the "staff" attribute unless `staff` is given), keys "friend_deleted/<event time>/<kind>".

Choices where the SPEC is silent:
  - An active event dated before the latest one known is late: it changes nothing.
    An active event at exactly the moment a stage is due comes after it (timers due at or
    before an event's time fire first), so the member is sleeping for an instant and is
    then reactivated (and recalled).
  - A member.joined of a member already tracked is not activity (unless "member.joined" is
    listed in `active`). Members never seen by the module (no join, no active event since
    it was deployed) are not tracked.
  - The recall touch is the moment a stage with actions fires (sleeping, then churned: the
    latest one counts), whatever the send's status (queued, capped, deferred...). A stage
    without actions is no touch; with no touch at all, a return is "reactivated" only.
  - A `tag` in on_sleeping / on_churned marks the stage: it is removed when the member
    leaves that stage (churned, or active again).
  - friend.deleted does not change the stage; timers go on.
  - New stage: only a member tracked from member.joined is new (one first seen at another
    active event is active). Her first active event makes her active: "activated" when
    she was still new, nothing when the period had passed; never "reactivated". A new
    member without activity still becomes sleeping at sleeping_after. The stored stage
    stays "new" past the period; recall.stage reads it as "active" then.
]]

local M = {}

local defs = {}

local options = require "options"
local reward = require "reward"

local function check_actions(r, path)
  if r == nil then return nil end
  return reward.check(r, path)
end

local function has_actions(r) return r and (r.points or r.send or r.task or r.tag) and true or false end

local function check_duration(v, path, default, min)
  if v == nil then v = default end
  return options.duration(v, path, min)
end

local function count(def, metric, opts)
  opts = opts or {}
  opts.campaign = def.name
  hearth.count(metric, opts)
end

local function attr(def) return "_recall." .. def.name end

local function get_state(m, def)
  local s = m:get(attr(def))
  return type(s) == "table" and s or nil
end

local function fire(m, def, r, base, step, reason)
  local function opts(kind) return { key = base .. "/" .. kind, campaign = def.name, step = step } end
  if r.points then m:add_points(r.points, reason, opts("points")) end
  if r.send then
    local o = opts("send")
    o.vars = r.vars
    o.category = r.category
    def.caps.send(m, r.send, o)
  end
  if r.task then
    local o = opts("task")
    o.vars = r.vars
    o.staff = r.staff
    m:task(r.task, o)
  end
  if r.tag then m:tag(r.tag, opts("tag")) end
end

local function untag_stage(m, def, stage_actions, spell, why)
  if stage_actions and stage_actions.tag and m:has(stage_actions.tag) then
    m:untag(stage_actions.tag, { key = spell .. "/" .. why .. "/untag/" .. stage_actions.tag, campaign = def.name, step = why })
  end
end

-- (Re)start the clock at time t. One timer per stage stays pending: a later activity
-- does not set another, the pending one (due earlier) finds the spell moved when it
-- fires and is set again for the new time (see on_stage). So an active member costs a
-- timer per spell, not two per event.
local function arm_stage(m, s, field, timer, due)
  if s[field] and s[field] <= due then return end -- the pending one comes first
  m:cancel(timer) -- a timer due later than the new time (a clock moved back): replace it
  m:at(due, timer, { base = s.base })
  s[field] = due
end

local function arm(m, def, s, t)
  s.base = t
  arm_stage(m, s, "due_s", def.t_sleeping, t + def.sleeping_after)
  if def.churned_after then arm_stage(m, s, "due_c", def.t_churned, t + def.churned_after) end
end

-- Is the member in her new stage at time t: tracked from her joining, no active event
-- since, and (with new = <duration>) less than that since she joined?
local function is_new(def, s, t)
  if s.stage ~= "new" or not def.new_for then return false end
  return def.new_for == true or t < s.base + def.new_for
end

local function on_active(def, m, ev)
  local s = get_state(m, def)
  if not s then
    s = { stage = "active" }
    count(def, "tracked")
    if def.new_for and ev.type == "member.joined" then
      s.stage = "new"
      count(def, "new")
    end
  elseif ev.time < s.base then
    return -- late: older than the activity already known
  elseif s.stage == "new" then
    if is_new(def, s, ev.time) then count(def, "activated") end
    s.stage = "active"
  elseif s.stage ~= "active" then
    local spell = hearth.format_time(s.base)
    count(def, "reactivated")
    if s.touch and ev.time - s.touch <= def.success_within then
      count(def, "recalled")
      count(def, "converted")
      count(def, "recalled", { step = s.touch_stage })
      s.recalled = (s.recalled or 0) + 1
    end
    untag_stage(m, def, def.on_sleeping, spell, "active")
    untag_stage(m, def, def.on_churned, spell, "active")
    s.stage, s.touch, s.touch_stage = "active", nil, nil
  end
  arm(m, def, s, ev.time)
  m:set(attr(def), s)
end

local function on_join(def, m, ev)
  if get_state(m, def) then return end
  on_active(def, m, ev)
end

local function on_stage(def, stage, m, ev)
  local s = get_state(m, def)
  if not s or type(ev.data) ~= "table" then return end
  local field, timer = "due_s", def.t_sleeping
  local after = def.sleeping_after
  if stage == "churned" then field, timer, after = "due_c", def.t_churned, def.churned_after end
  if s[field] == ev.time then s[field] = nil end -- this is the pending one
  local due = s.base + after
  if due > ev.time then -- active since it was set: wait for the spell's own time
    if not s[field] then m:at(due, timer, { base = s.base }) s[field] = due end
    m:set(attr(def), s)
    return
  end
  if ev.data.base ~= s.base then m:set(attr(def), s) return end
  if s.stage == stage or s.stage == "churned" or s.stage == "gone" then m:set(attr(def), s) return end
  local spell = hearth.format_time(s.base)
  local actions = stage == "sleeping" and def.on_sleeping or def.on_churned
  if stage == "churned" then untag_stage(m, def, def.on_sleeping, spell, "churned") end
  s.stage = stage
  count(def, stage)
  if has_actions(actions) then
    if not s.touch then count(def, "entered") end -- the spell's first touch
    s.touch, s.touch_stage = ev.time, stage
    fire(m, def, actions, spell .. "/" .. stage, stage, def.name .. ": " .. stage)
  end
  m:set(attr(def), s)
end

local function on_friend_deleted(def, m, ev)
  count(def, "friend_deleted")
  -- no WeCom channel reaches her any more: no sleeping or churned touch until she is
  -- active again
  local s = get_state(m, def)
  if s and s.stage ~= "gone" then
    s.stage, s.touch, s.touch_stage = "gone", nil, nil
    m:set(attr(def), s)
  end
  fire(m, def, def.on_friend_deleted, "friend_deleted/" .. hearth.format_time(ev.time), "friend_deleted",
       def.name .. ": friend deleted")
end

local KNOWN = { name = true, active = true, sleeping_after = true, churned_after = true, on_sleeping = true,
                on_churned = true, on_friend_deleted = true, success_within = true, new = true }

local function check_name(v, path)
  return options.matching(v, path, "^[a-z0-9_]+$", 40, "a name of 1-40 bytes of [a-z0-9_] (it names timer event types)")
end

local function build(o)
  local name = options.definition(o, KNOWN, defs, check_name)
  local def = { name = name, t_sleeping = "recall." .. name .. ".sleeping", t_churned = "recall." .. name .. ".churned" }
  local active = o.active == nil and { "order.paid", "checkin", "message.replied" } or o.active
  active = options.event_types(active, "active")
  if #active == 0 then options.fail("active", "a non-empty list of event types", o.active) end
  def.active = {}
  local seen = {}
  for i, t in ipairs(active) do
    if t:match("^recall%.") then options.fail(options.index("active", i), "an event type outside the module's own recall.*", t) end
    if not seen[t] then seen[t] = true; def.active[#def.active + 1] = t end
  end
  def.sleeping_after = check_duration(o.sleeping_after, "sleeping_after", "30d", 1)
  if o.churned_after ~= false then
    def.churned_after = check_duration(o.churned_after, "churned_after", "90d", 0)
    if def.churned_after <= def.sleeping_after then
      options.fail("churned_after", "a duration longer than 'sleeping_after'", o.churned_after == nil and "90d" or o.churned_after)
    end
  end
  def.success_within = check_duration(o.success_within, "success_within", "14d", 0)
  -- new: nil / false (no new stage), true (new until the first active event), or a
  -- duration > 0 (new until the first active event, at most that long after joining)
  if o.new == true then
    def.new_for = true
  elseif o.new ~= nil and o.new ~= false then
    local ok, secs = pcall(options.duration, o.new, "new", 1)
    if not ok then options.fail("new", 'true, false or a positive duration like "7d"', o.new) end
    def.new_for = secs
  end
  def.on_sleeping = check_actions(o.on_sleeping, "on_sleeping")
  def.on_churned = check_actions(o.on_churned, "on_churned")
  def.on_friend_deleted = check_actions(o.on_friend_deleted, "on_friend_deleted")
  if o.on_churned ~= nil and not def.churned_after then options.reject("on_churned", "needs option 'churned_after'") end
  def.caps = require "caps"
  return def
end

function M.define(o)
  local def = options.checked("recall.define", build, o)
  options.declare("recall.define", nil, hearth.on, def.active[1], function(m, ev) on_active(def, m, ev) end)
  defs[def.name] = def
  local joined_active = false
  for i, t in ipairs(def.active) do
    if i > 1 then hearth.on(t, function(m, ev) on_active(def, m, ev) end) end
    if t == "member.joined" then joined_active = true end
  end
  if not joined_active then hearth.on("member.joined", function(m, ev) on_join(def, m, ev) end) end
  hearth.on(def.t_sleeping, function(m, ev) on_stage(def, "sleeping", m, ev) end)
  if def.churned_after then hearth.on(def.t_churned, function(m, ev) on_stage(def, "churned", m, ev) end) end
  if def.on_friend_deleted then
    hearth.on("friend.deleted", function(m, ev) on_friend_deleted(def, m, ev) end)
  end
  return def
end

-- recall.stage(m, name) -> "new" | "active" | "sleeping" | "churned", or nil when not
-- tracked ("new" only with the option new; a new stage past its period reads "active").
function M.stage(m, name)
  local def = defs[name]
  if not def then error("recall.stage: no recall named '" .. tostring(name) .. "'", 2) end
  local s = get_state(m, def)
  if not s then return nil end
  if s.stage == "new" and not is_new(def, s, hearth.now()) then return "active" end
  return s.stage
end

return M
