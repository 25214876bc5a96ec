--[[ referral: invite rewards (邀请有礼, 裂变) with a daily limit, tiers and the K factor.

Owns, per definition `name`:
  - on the invitee: the private attribute "_referral.<name>" = { referrer, joined, status
    ("pending" | "valid" | "invalid"), reason (when invalid), qualified (time of a reward_on
    event seen while pending), reward_sent }.
  - on the referrer: the private attribute "_referral.<name>.referrer" = { invitees (valid
    invitations), rewarded (rewards granted), limited, days = { [day number] = rewards
    granted that local date } (recent days only) }.
  - event types "referral.invited", "referral.valid", "referral.invalid", "referral.reward",
    "referral.check" (delivered with hearth.emit; data.name says which definition).
  - funnel counters (campaign = name): "valid_invitees" and "entered" (valid invitations),
    "referrers" (distinct referrers with one or more valid invitees), "invalid",
    "converted" (invitees whose reward_on event came: rewarded or limited), "rewarded",
    "limited", "tier" (step "tier<N>"). So the campaign's conversion (converted /
    entered) is the share of valid invitees who did the reward_on event.

Example:
  local referral = require "referral"
  referral.define {
    name = "invite",                         -- campaign name of every action (required)
    reward_on = "order.paid",                -- the invitee's event that rewards the referrer
    reward = { points = 100, send = "invite_reward" },   -- to the referrer
    invitee_reward = { points = 20 },        -- to the invitee, when the invitation is valid
    tiers = { [3] = { send = "gift_3" } },   -- at the 3rd rewarded invitee, once
    max_per_day = 10,                        -- rewards per referrer per local date
  }
  -- referral.k_factor("invite") -> K, valid invitees, referrers

Options (defaults):
  name            required; [A-Za-z0-9_.-], 1-64 bytes; a name is defined once.
  reward_on       "order.paid"; any event type, "member.joined" rewards at the join.
  reward          {}: { points, send, task, tag, vars, category, staff } for the referrer.
  invitee_reward  nil: the same shape, for the invitee.
  tiers           {}: number of rewarded invitees (integer >= 1) -> reward (same shape).
  max_per_day     nil (no limit); integer >= 1.
  Sends go through require("caps").send: marketing unless category = "service". vars
  default { invitee = <invitee id> } (reward), { referrer = <referrer id> } (invitee
  reward), { invitees = N } (tiers).

Rules (SPEC §5 referral) and how they are kept:
  - Valid invitation: member.joined with data.referrer (a string) naming a member who joined
    earlier (the referrer's joined_at is strictly before the invitee's join time), the
    invitee joining for the first time (the engine's joined_at equals this event's time and
    no earlier invitation is recorded) and not the referrer.
    A handler only sees its own member, so the check is a round trip: the invitee's
    handler emits "referral.invited" to the referrer, whose handler checks its joined_at and
    answers "referral.valid" or "referral.invalid" (hearth.emit: same transaction, exactly
    once).
  - A referrer id that is not a member at all: hearth.emit drops the event (no member is
    created), so no answer ever comes. The invitee therefore also emits "referral.check"
    to itself after "referral.invited"; the check emits itself once more (hop 2), and a
    hop-2 check that finds the invitation still pending marks it invalid with reason
    "referrer_unknown". Emitted events due at the same time are delivered in the order
    they were emitted, so by then the referrer's answer (emitted while handling
    "referral.invited", before hop 2 was emitted) has come if there was one. Should an
    answer "referral.valid" still come after that (it cannot in this engine), it wins: the
    invitation becomes valid and the "invalid" counter is taken back.
  - The referrer is rewarded once per invitee, at the invitee's first reward_on event at or
    after the join (one that comes before the join does not count); with reward_on =
    "member.joined", at the join. The invitee remembers that it asked (reward_sent), so a
    second order never rewards again. A reward_on event that arrives while the invitation
    is still pending is remembered and the reward follows the validation.
  - max_per_day: rewards are counted per referrer per local date of the invitee's reward_on
    event, on the referrer's own clock (her `tz` attribute's zone, else the engine's).
    Beyond max_per_day on that date the reward is `limited`: NOTHING is granted
    (no points, no tag) and it does not count toward tiers; the reward's send and task are
    recorded with status "limited" (keys "reward/<invitee>/send|task", never delivered) and
    the "limited" counter goes up. A points-only reward leaves no action when limited: the
    engine can only record a points action by changing the balance.
  - Tiers: when the number of rewarded (not limited) invitees reaches N, tier N's reward is
    given (keys "tier<N>/<kind>"), once: the count only grows.
  - invitee_reward: given to the invitee at the join, as soon as the invitation is known to
    be valid (keys "invitee_reward/<kind>"), whatever reward_on is. Invalid invitations get
    nothing.
  - Reward keys: "reward/<invitee id>/<kind>" on the referrer.

K factor (SPEC: valid invitees / distinct referrers with one or more):
  - Both numbers are kept exactly, durably and in the same transaction as the invitation,
    as funnel counters "valid_invitees" and "referrers" (campaign = name; `hearth stats`,
    GET /v1/campaigns), counted by the referrer's handler.
  - referral.k_factor(name) reads them with hearth.counter, so it is right at any time,
    also right after a restart: K, invitees, referrers (K = 0 when there are no referrers).
  - Earlier versions kept a copy on a bookkeeping member "_referral.<name>" through
    "referral.totals" events; neither is used any more (an existing record is left alone).
]]

local M = {}

local defs = {}

-- ---- option checks ----

local options = require "options"
local reward = require "reward"

local function check_reward(r, what) return reward.check(r, what) end

-- ---- helpers ----

local function count(def, metric, opts)
  opts = opts or {}
  opts.campaign = def.name
  hearth.count(metric, opts)
end

local function invitee_attr(def) return "_referral." .. def.name end
local function referrer_attr(def) return "_referral." .. def.name .. ".referrer" end

local function get_table(m, k)
  local v = m:get(k)
  return type(v) == "table" and v or nil
end

-- Give reward r with keys "<base>/<kind>".
local function give(m, def, r, base, step, vars, reason)
  local function opts(kind) return { key = base .. "/" .. kind, campaign = def.name, step = step } end
  if r.points then m:add_points(r.points, reason, opts("points")) end
  if r.send then
    local o = opts("send")
    o.vars = r.vars or vars
    o.category = r.category
    def.caps.send(m, r.send, o)
  end
  if r.task then
    local o = opts("task")
    o.vars = r.vars or vars
    o.staff = r.staff
    m:task(r.task, o)
  end
  if r.tag then m:tag(r.tag, opts("tag")) end
end

-- Record a limited reward: only what can be recorded without effect.
local function record_limited(m, def, r, base, vars, today)
  local function opts(kind)
    return { key = base .. "/" .. kind, campaign = def.name, step = "reward", status = "limited",
             reason = { rule = "max_per_day", max = def.max_per_day, rewarded = today } }
  end
  if r.send then
    local o = opts("send")
    o.vars = r.vars or vars
    o.category = r.category
    m:send(r.send, o)
  end
  if r.task then
    local o = opts("task")
    o.vars = r.vars or vars
    o.staff = r.staff
    m:task(r.task, o)
  end
end

local function emit_reward(def, m, st, time)
  st.reward_sent = true
  hearth.emit(st.referrer, "referral.reward", { name = def.name, invitee = m.id, time = time })
end

-- ---- invitee side ----

local function on_joined(def, m, ev)
  local data = type(ev.data) == "table" and ev.data or {}
  local ref = data.referrer
  if type(ref) ~= "string" or ref == "" or #ref > 128 then return end
  if get_table(m, invitee_attr(def)) then return end -- an invitation was recorded already
  local st = { referrer = ref, joined = ev.time }
  if ref == m.id then
    st.status, st.reason = "invalid", "self"
  elseif m.joined_at ~= ev.time then
    st.status, st.reason = "invalid", "not_first_join"
  else
    st.status = "pending"
    hearth.emit(ref, "referral.invited", { name = def.name, invitee = m.id, joined = ev.time })
    -- a referrer who is not a member never answers: see "referral.check"
    hearth.emit(m.id, "referral.check", { name = def.name, hop = 1 })
  end
  if st.status == "invalid" then count(def, "invalid") end
  m:set(invitee_attr(def), st)
end

-- An invitation still waiting for the referrer's answer (or given up as unanswered, which a
-- late answer can still settle).
local function awaiting(st)
  return st.status == "pending" or (st.status == "invalid" and st.reason == "referrer_unknown")
end

local function on_valid(def, m, ev)
  local st = get_table(m, invitee_attr(def))
  if not st or not awaiting(st) then return end
  if st.status == "invalid" then count(def, "invalid", { n = -1 }) end
  st.status, st.reason = "valid", nil
  if def.invitee_reward then
    give(m, def, def.invitee_reward, "invitee_reward", "invitee_reward", { referrer = st.referrer },
         def.name .. ": invited by " .. st.referrer)
  end
  if def.reward_on == "member.joined" then
    emit_reward(def, m, st, st.joined)
  elseif st.qualified then
    emit_reward(def, m, st, st.qualified)
  end
  m:set(invitee_attr(def), st)
end

local function on_invalid(def, m, ev)
  local st = get_table(m, invitee_attr(def))
  if not st or not awaiting(st) then return end
  -- the referrer counted it: take back the count of a "referrer_unknown" given up earlier
  if st.status == "invalid" then count(def, "invalid", { n = -1 }) end
  st.status, st.reason = "invalid", ev.data.reason
  m:set(invitee_attr(def), st)
end

-- "referral.check" on the invitee: hop 1 emits hop 2; hop 2 gives up on an invitation that
-- is still pending: its referrer is not a member (the emitted "referral.invited" was dropped).
local function on_check(def, m, ev)
  local st = get_table(m, invitee_attr(def))
  if not st or st.status ~= "pending" then return end
  if ev.data.hop == 1 then
    hearth.emit(m.id, "referral.check", { name = def.name, hop = 2 })
    return
  end
  st.status, st.reason = "invalid", "referrer_unknown"
  count(def, "invalid")
  m:set(invitee_attr(def), st)
end

local function on_reward_event(def, m, ev)
  local st = get_table(m, invitee_attr(def))
  if not st or st.reward_sent or ev.time < st.joined then return end
  if st.status == "valid" then
    emit_reward(def, m, st, ev.time)
    m:set(invitee_attr(def), st)
  elseif awaiting(st) and not st.qualified then
    st.qualified = ev.time
    m:set(invitee_attr(def), st)
  end
end

-- ---- referrer side ----

local function referrer_state(m, def)
  local s = get_table(m, referrer_attr(def)) or {}
  s.invitees = s.invitees or 0
  s.rewarded = s.rewarded or 0
  s.limited = s.limited or 0
  s.days = type(s.days) == "table" and s.days or {}
  return s
end

local function on_invited(def, m, ev)
  local data = ev.data
  local reason
  if m.joined_at == nil then
    reason = "referrer_not_joined"
  elseif m.joined_at >= data.joined then
    reason = "referrer_joined_later"
  end
  if reason then
    count(def, "invalid")
    hearth.emit(data.invitee, "referral.invalid", { name = def.name, reason = reason })
    return
  end
  local s = referrer_state(m, def)
  s.invitees = s.invitees + 1
  m:set(referrer_attr(def), s)
  local first = s.invitees == 1
  count(def, "valid_invitees")
  count(def, "entered")
  if first then count(def, "referrers") end
  hearth.emit(data.invitee, "referral.valid", { name = def.name, referrer = m.id })
end

local function on_reward(def, m, ev)
  local data = ev.data
  local invitee = data.invitee
  local day = m:local_date(data.time).day_number -- the referrer's own days
  local s = referrer_state(m, def)
  -- per-date counts, keyed by the day number as a string (JSON object keys); keep a week
  local newest = day
  for k in pairs(s.days) do
    local n = tonumber(k)
    if n and n > newest then newest = n end
  end
  for k in pairs(s.days) do
    local n = tonumber(k)
    if not n or n < newest - 7 then s.days[k] = nil end
  end
  local dk = tostring(day)
  local today = s.days[dk] or 0
  local base = "reward/" .. invitee
  local vars = { invitee = invitee }
  count(def, "converted")
  if def.max_per_day and today >= def.max_per_day then
    s.limited = s.limited + 1
    m:set(referrer_attr(def), s)
    count(def, "limited")
    record_limited(m, def, def.reward, base, vars, today)
    return
  end
  s.days[dk] = today + 1
  s.rewarded = s.rewarded + 1
  m:set(referrer_attr(def), s)
  count(def, "rewarded")
  give(m, def, def.reward, base, "reward", vars, def.name .. ": invited " .. invitee)
  local tier = def.tiers[s.rewarded]
  if tier then
    local step = "tier" .. s.rewarded
    count(def, "tier", { step = step })
    give(m, def, tier, step, step, { invitees = s.rewarded },
         string.format("%s: %d invitees", def.name, s.rewarded))
  end
end

-- ---- API ----

local KNOWN = { name = true, reward_on = true, reward = true, invitee_reward = true, tiers = true,
                max_per_day = true }

local function build(o)
  local name = options.definition(o, KNOWN, defs)
  local def = { name = name }
  def.reward_on = options.event_type(o.reward_on == nil and "order.paid" or o.reward_on, "reward_on")
  if def.reward_on:match("^referral%.") then
    options.fail("reward_on", "an event type outside the module's own referral.*", def.reward_on)
  end
  def.reward = check_reward(o.reward == nil and {} or o.reward, "reward")
  if o.invitee_reward ~= nil then def.invitee_reward = check_reward(o.invitee_reward, "invitee_reward") end
  def.tiers = {}
  if o.tiers ~= nil then
    def.tiers = options.by_count(o.tiers, "tiers", "{ [invitees] = reward }", "numbers of invitees", check_reward)
  end
  if o.max_per_day ~= nil then def.max_per_day = options.integer(o.max_per_day, "max_per_day", 1) end
  def.caps = require "caps"
  return def
end

local function for_me(def, fn)
  return function(m, ev)
    if type(ev.data) == "table" and ev.data.name == def.name then fn(def, m, ev) end
  end
end

function M.define(o)
  local def = options.checked("referral.define", build, o)
  options.declare("referral.define", nil, hearth.on, "member.joined", function(m, ev) on_joined(def, m, ev) end)
  defs[def.name] = def
  if def.reward_on ~= "member.joined" then
    hearth.on(def.reward_on, function(m, ev) on_reward_event(def, m, ev) end)
  end
  hearth.on("referral.invited", for_me(def, on_invited))
  hearth.on("referral.valid", for_me(def, on_valid))
  hearth.on("referral.invalid", for_me(def, on_invalid))
  hearth.on("referral.reward", for_me(def, on_reward))
  hearth.on("referral.check", for_me(def, on_check))
  return def
end

-- referral.k_factor(name) -> K, valid invitees, distinct referrers, read from the durable
-- funnel counters (see "K factor" above); K = 0 when there are no referrers.
function M.k_factor(name)
  if not defs[name] then error("referral.k_factor: no referral named '" .. tostring(name) .. "'", 2) end
  local invitees = hearth.counter("valid_invitees", { campaign = name })
  local referrers = hearth.counter("referrers", { campaign = name })
  local k = referrers > 0 and invitees / referrers or 0
  return k, invitees, referrers
end

-- referral.status(m, name) -> the invitee's invitation state (a copy), inside a handler.
function M.status(m, name)
  local def = defs[name]
  if not def then error("referral.status: no referral named '" .. tostring(name) .. "'", 2) end
  return get_table(m, invitee_attr(def))
end

return M
