--[==[ channel: channel-code attribution (渠道活码). A member joining through a channel code
(member.joined with data.channel) is tagged with the source, welcomed with that channel's
welcome message (欢迎语), and counted per channel: members, conversions and spend.

Owns, per definition `name`:
  - the tag <tag_prefix><channel> (default "channel:poster"), one per member;
  - the private attribute "_channel.<name>" = { source, at (first join time), converted
    (absent until the first order after the join; then true when it counted a conversion,
    false when the member had ordered before), paid (net spend since the join), counted
    (whole yuan of it already counted) };
  - funnel counters (campaign = name; per channel as the variant = channel name, and for the
    whole campaign without a variant): "members" and "entered" (the same number: first
    joins attributed; "entered" lets the summary compute conversion = converted / entered),
    "converted" (first orders), "spend" (net spend in whole yuan).

Example:
  local channel = require "channel"
  channel.define {
    name = "channels",
    welcome = { poster = "welcome_poster", live = "welcome_live", default = "welcome" },
    tag_prefix = "channel:",
  }

Options (defaults):
  name          required; [A-Za-z0-9_.-], 1-64 bytes; the campaign of every action/counter.
  welcome       {} : channel name -> template; the key "default" is used for any channel
                without its own entry (and for members joining without a channel). A
                channel with no entry and no default gets no welcome.
  tag_prefix    "channel:" (unique across definitions)
  unknown       "direct": the source recorded for a join without a usable data.channel
                (missing, not a string, or not 1-64 bytes of [A-Za-z0-9_.:-]).
  category      "service": welcome sends answer the member's own action, so they pass caps,
                quiet hours and unsubscription like any service message. "marketing" sends
                them through require("caps").send instead.
  welcome_rejoin true: a member joining again (e.g. re-adding the WeCom friend) is welcomed
                again with the welcome of the channel scanned this time; false: first join only.
  vars          {} extra template variables for every welcome (the module adds `channel`).
  owner         {} : channel name -> who owns a member joining through that code; the key
                "default" serves channels without an entry. A value is a staff id (fixed)
                or { rule = "round_robin" | "least_loaded" | "fixed", staff = { ids } }.
                The engine chooses (m:assign_owner): round-robin turns one cursor per
                definition and channel ("<name>/<channel>") shared by every member;
                least-loaded picks the fewest members owned, ties to the first listed.
                A member who already has an owner (data.staff of her join, an earlier
                code) keeps it; joining again never moves her.

Choices where the SPEC is silent:
  - Attribution is decided by the member's first member.joined this definition sees: the
    source never changes on a re-join, and the tag, "members"/"entered" counts happen once.
  - A conversion is the member's first order.paid ever (m.orders = 1 when it arrives) after
    being attributed: it counts one "converted" for the source. A member whose first order
    came before the join is attributed but never counted as a conversion.
  - Spend: every order.paid of an attributed member adds its amount and every order.refunded
    subtracts it (not below what was counted for the member); the counter "spend" moves by
    the change of the member's floor(cumulative net spend), so cents add up to whole yuan
    without rounding drift. Orders of members without a source (no join seen) are not
    counted anywhere.
  - Welcome keys: "welcome" for the first join, "welcome/<event id>" for a re-join, so a
    retried event never welcomes twice. Step of the welcome sends: "welcome".
  - channel.source(m [, name]) returns a member's source (nil when not attributed).
]==]

local M = {}

local defs, order = {}, {}
local caps = require "caps"  -- at load time: caps registers its timer handler then

local options = require "options"

local CHANNEL_PAT = "^[%w_%.%-:]+$"

local KNOWN = { name = 1, welcome = 1, tag_prefix = 1, unknown = 1, category = 1,
  welcome_rejoin = 1, vars = 1, owner = 1 }
local OWNER_RULES = { "fixed", "round_robin", "least_loaded" }

-- One channel's owner rule: a staff id, or { rule, staff = id | { ids } }.
local function owner_rule(v, path)
  if type(v) == "string" then
    return { rule = "fixed", staff = options.string(v, path, "a staff id", 128) }
  end
  options.table(v, path, '"s-1" or { rule = "round_robin", staff = { "s-1", "s-2" } }')
  options.known(v, { rule = 1, staff = 1 }, path)
  local rule = options.enum(v.rule or "fixed", options.field(path, "rule"), OWNER_RULES)
  local staff = v.staff
  if type(staff) == "string" then staff = { staff } end
  local spath = options.field(path, "staff")
  if type(staff) ~= "table" or #staff < 1 or #staff > 64 then
    options.fail(spath, "a staff id or a list of 1-64 staff ids", v.staff)
  end
  local list = {}
  for i, id in ipairs(staff) do list[i] = options.string(id, options.index(spath, i), "a staff id", 128) end
  if rule == "fixed" and #list ~= 1 then options.fail(spath, 'one staff id (rule "fixed")', v.staff) end
  return { rule = rule, staff = list }
end

local function validate(o)
  options.definition(o, KNOWN, defs)
  local d = { name = o.name }
  d.welcome = options.table(o.welcome or {}, "welcome", "channel = template")
  for k, v in pairs(d.welcome) do
    if type(k) ~= "string" then
      options.reject("welcome", "must be keyed by channel names, got the key " .. options.show(k))
    end
    options.string(v, options.field("welcome", k), "a template name", 128)
  end
  d.tag_prefix = o.tag_prefix or "channel:"
  if type(d.tag_prefix) ~= "string" or #d.tag_prefix > 60 then
    options.fail("tag_prefix", "a string of at most 60 bytes", o.tag_prefix)
  end
  for _, other in pairs(defs) do
    if other.tag_prefix == d.tag_prefix then
      options.fail("tag_prefix", "a prefix no other definition uses ('" .. other.name .. "' does)", d.tag_prefix)
    end
  end
  d.unknown = options.matching(o.unknown or "direct", "unknown", CHANNEL_PAT, 64,
                               "a channel name of 1-64 letters, digits, '_', '.', '-' or ':'")
  d.category = options.enum(o.category or "service", "category", { "service", "marketing" })
  if o.welcome_rejoin ~= nil then options.boolean(o.welcome_rejoin, "welcome_rejoin") end
  d.welcome_rejoin = o.welcome_rejoin ~= false
  if o.vars ~= nil then options.table(o.vars, "vars") end
  d.vars = o.vars or {}
  d.owner = {}
  for k, v in pairs(options.table(o.owner or {}, "owner", "channel = staff id or rule")) do
    if type(k) ~= "string" then
      options.reject("owner", "must be keyed by channel names, got the key " .. options.show(k))
    end
    d.owner[k] = owner_rule(v, options.field("owner", k))
  end
  return d
end

local function state_key(d) return "_channel." .. d.name end

local function load_state(m, d)
  local st = m:get(state_key(d))
  if type(st) ~= "table" then return nil end
  return st
end

local function source_of(d, ev)
  local c = ev.data and ev.data.channel
  if type(c) == "string" and #c > 0 and #c <= 64 and c:match(CHANNEL_PAT) then return c end
  return d.unknown
end

local function welcome(m, d, ch, key)
  local tpl = d.welcome[ch] or d.welcome.default
  if not tpl then return nil end
  local vars = {}
  for k, v in pairs(d.vars) do vars[k] = v end
  vars.channel = ch
  local opts = { key = key, campaign = d.name, step = "welcome", vars = vars }
  if d.category == "service" then
    opts.category = "service"
    return m:send(tpl, opts)
  end
  return caps.send(m, tpl, opts)
end

-- Give the member an owner by the rule of the code she scanned (kept if she has one).
local function assign_owner(m, d, ch)
  local r = d.owner[ch] or d.owner.default
  if not r then return end
  m:assign_owner { rule = r.rule, staff = r.staff, pool = d.name .. "/" .. ch }
end

local function count(d, metric, ch, n)
  hearth.count(metric, { campaign = d.name, variant = ch, n = n })
  hearth.count(metric, { campaign = d.name, n = n })
end

local function on_joined(d)
  return function(m, ev)
    local ch = source_of(d, ev)
    local st = load_state(m, d)
    if st then
      if d.welcome_rejoin then welcome(m, d, ch, "welcome/" .. ev.id) end
      return
    end
    assign_owner(m, d, ch)
    st = { source = ch, at = ev.time, paid = 0, counted = 0 }
    m:set(state_key(d), st)
    m:tag(d.tag_prefix .. ch, { key = "source", campaign = d.name, step = "source" })
    count(d, "members", ch)
    count(d, "entered", ch)
    welcome(m, d, ch, "welcome")
  end
end

local function amount_of(ev)
  local a = ev.data and ev.data.amount
  if type(a) == "number" and a > 0 and a == a and a < math.huge then return a end
  return 0
end

-- Move the member's net spend by delta and count the change in whole yuan.
local function add_spend(m, d, st, delta)
  local paid = (tonumber(st.paid) or 0) + delta
  if paid < 0 then paid = 0 end
  st.paid = paid
  local whole = math.floor(paid + 1e-9)
  local counted = math.tointeger(st.counted) or 0
  if whole ~= counted then
    count(d, "spend", st.source, whole - counted)
    st.counted = whole
  end
end

local function on_paid(d)
  return function(m, ev)
    local st = load_state(m, d)
    if not st then return end
    if st.converted == nil then
      -- true: this first order after attribution is the member's first order ever, counted;
      -- false: the member had ordered before joining, never counted
      st.converted = m.orders == 1
      if st.converted then count(d, "converted", st.source) end
    end
    add_spend(m, d, st, amount_of(ev))
    m:set(state_key(d), st)
  end
end

local function on_refunded(d)
  return function(m, ev)
    local st = load_state(m, d)
    if not st then return end
    local a = amount_of(ev)
    if a <= 0 then return end
    add_spend(m, d, st, -a)
    m:set(state_key(d), st)
  end
end

--- Define channel attribution. Call at the top level of a campaign script.
function M.define(o)
  local d = options.checked("channel.define", validate, o)
  options.declare("channel.define", nil, hearth.on, "member.joined", on_joined(d))
  hearth.on("order.paid", on_paid(d))
  hearth.on("order.refunded", on_refunded(d))
  defs[d.name] = d
  order[#order + 1] = d.name
  return d.name
end

--- The member's source channel in definition `name` (nil when not attributed).
function M.source(m, name)
  local d
  if name == nil then
    if #order ~= 1 then error("channel.source: name the definition (" .. #order .. " are defined)", 2) end
    d = defs[order[1]]
  else
    d = defs[name]
    if not d then error("channel.source: no channel definition named '" .. tostring(name) .. "'", 2) end
  end
  local st = load_state(m, d)
  return st and st.source or nil
end

return M
