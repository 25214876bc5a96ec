--[[ journey: SOP touchpoints (SPEC §5 "journey").

What it owns
  * journey.define{...}: one journey (call at the top level of a campaign script; it
    registers its handlers with hearth.on right away). Several journeys may be defined,
    by one script or several; names are unique.
  * Per member and journey the attribute "_journey.<name>" (the run: number, entry time,
    variant, pending steps, waits, conversion) and the timer type "journey.<name>".
  * Counters (hearth.count, campaign = the journey's name): entered, converted, exited,
    completed, each for the campaign and for the member's variant ("A", "B", ...) or
    "holdout"; per wait step: wait_event, wait_timeout. Actions are counted per step by
    status by the engine (sent, skipped, capped, suppressed, deferred, task, tag, points).

journey.define {
  name = "onboarding",           -- required, [a-z0-9_]{1,56}: campaign name of its actions
  enter = "member.joined",       -- required: the event that starts a run (entry time T = its time)
  exit = { "member.unsubscribed", "friend.deleted" }, -- optional, a type or a list
  goal = "order.paid",           -- optional, a type or a list
  exit_on_goal = true,           -- default true: the goal also ends the run
  reenter = false,               -- default false: at most one run per member, ever
  holdout = 10,                  -- default 0: percent (0-100, up to 2 decimals) kept out
  variants = { A = 50, B = 50 }, -- optional: positive integer weights, names [A-Za-z0-9_]+
  steps = { ... },               -- required, non-empty
}

Steps (each due relative to the entry, never to the previous step):
  name        required, [A-Za-z0-9_.-]{1,64}, unique in the journey (branches included)
  after       duration, default 0: due at T + after
  at          "HH:MM": due at that local wall time on the local date of T plus the whole
              days of `after` (joined Mon 15:00, after "3d" at "10:00" -> Thu 10:00). A due
              time before T (after < 1d and `at` earlier than T's time) is T. "Local" is
              the member's own zone (m.tz: her `tz` attribute, else the engine's --tz), read
              when the step is scheduled: a wall time in a DST gap moves forward, one in an
              overlap takes the first occurrence.
  when        function(m, info) -> truthy; evaluated at the due time
  unless_tag  a tag or a list of tags: the member having any of them skips the step
  send        a template, or per variant { A = "tpl_a", B = "tpl_b" } (one per variant)
  category    "marketing" (default: goes through caps.send) or "service"
  channel, vars   passed to send/task
  task        text of a staff task (never marketing: no caps); staff = "id" (default:
              the member's "staff" attribute)
  tag         a tag or a list of tags to add
  points      positive integer; reason (default "<journey>/<step>")
  At least one of send / task / tag / points, or a wait:
  wait        event type to wait for, starting at the step's due time
  within      duration > 0, required with wait: the event must come before due + within
  on_event    the steps to run when the event comes first
  on_timeout  the steps to run when `within` passes first
              Each is a single step table or a list of them; their after/at are relative
              to the moment the branch is taken (the event's time, or due + within).
              Unnamed branch steps are called "<wait>.event" / "<wait>.timeout" (a single
              step) or "<wait>.event.<i>" / "<wait>.timeout.<i>" (in a list). Branch steps
              may be waits again. A wait step takes no when/unless_tag/actions.

Runs and ids
  Runs are numbered per member from 1; every action key is "<run>/<step>", so ids look
  like onboarding/m-42/1/day7. A step with several actions: the first of send, task,
  tag, points gets "<run>/<step>", the others "<run>/<step>/<kind>" (several tags:
  ".../tag/<tag>").

Rules
  * enter: starts run n+1 unless a run is active (the enter event is ignored) or
    reenter = false and the member ran the journey before.
  * exit: an exit event during a run (dated at or after T) ends it at once ("exited");
    pending steps never fire (the timers are cancelled, and each timer carries its run
    number, checked when it fires).
  * goal: the first goal event dated at or after T during the run counts one conversion for
    the run, the campaign and the variant / hold-out; with exit_on_goal it ends the run.
    A goal after the run ended (completed, exited) counts nothing.
  * a step whose member has an unless_tag, or whose when(m) is false, is recorded
    "skipped" (one action under "<run>/<step>": the send, else the task, else a webhook
    {journey, step, skipped = true}) and the run goes on.
  * hold-out members enter, are counted, run the same timeline (so their goal window
    is the same) and get no actions at all, not even skipped ones; their conversions
    are counted (variant "holdout").
  * a run completes after its last step (and the branch of its last wait) ("completed");
    then, with reenter = true, the next enter event starts a new run.
  * Assignment: FNV-1a 32-bit of "<name>/<member id>": h % 10000 < holdout*100 is the
    hold-out; otherwise the variant is picked by (h // 10000) % (sum of weights) over
    the variant names in sorted order. Same on every run and machine.

Choices where the SPEC is silent
  * On one event: exit first, then goal, then waits, then enter (an enter event that is
    also the goal does not convert the run it starts). enter, goal and wait types must
    not be exit types.
  * Exit and goal events dated before T (arriving late) do not apply to the run.
  * A send deferred by quiet hours and judged after the run was ended by an exit or its
    goal is recorded "skipped" (caps.guard): the step never reaches the member.
  * A wait event exactly at due + within loses to the timeout.
  * Steps already due when the run starts (an old enter event imported late) fire at
    once, in order.
  * If when() raises, the step's timer event fails (recorded with its traceback) and the
    run stays open until an exit or goal event ends it.

Other functions
  journey.assign(name, member_id) -> "holdout", a variant name, or nil
  journey.state(m, name) -> { run, active, variant, entered_at, converted } or nil
  journey.hash(s) -> FNV-1a 32-bit of s
]]

local caps = require "caps"
local options = require "options"

local journey = {}
local defs = {}

-- ---------------------------------------------------------------- assignment

local fnv1a = options.hash
journey.hash = fnv1a

local function assign(def, member_id)
  local h = fnv1a(def.name .. "/" .. member_id)
  if def.holdout_bp > 0 and h % 10000 < def.holdout_bp then return "holdout" end
  if not def.variants then return nil end
  local r = (h // 10000) % def.variant_total
  for _, v in ipairs(def.variants) do
    if r < v.weight then return v.name end
    r = r - v.weight
  end
  return def.variants[#def.variants].name
end

-- ---------------------------------------------------------------- validation

local field, index = options.field, options.index

local JOURNEY_KEYS = { name = 1, enter = 1, exit = 1, goal = 1, exit_on_goal = 1, reenter = 1,
                       holdout = 1, variants = 1, steps = 1 }
local STEP_KEYS = { name = 1, after = 1, at = 1, when = 1, unless_tag = 1, send = 1, category = 1,
                    channel = 1, vars = 1, task = 1, staff = 1, tag = 1, points = 1, reason = 1,
                    wait = 1, within = 1, on_event = 1, on_timeout = 1 }
local WAIT_KEYS = { name = 1, after = 1, at = 1, wait = 1, within = 1, on_event = 1, on_timeout = 1 }

local build_steps

local function build_wait(def, s, path, step)
  options.known(s, WAIT_KEYS, path)
  step.wait = options.event_type(s.wait, field(path, "wait"))
  if def.exit_set[s.wait] then
    options.fail(field(path, "wait"), "an event type that is not also an exit (the run would end first)", s.wait)
  end
  step.within = options.duration(s.within, field(path, "within"), 1)
  def.wait_types[s.wait] = true
  for _, which in ipairs({ "on_event", "on_timeout" }) do
    local b = s[which]
    local short = which == "on_event" and "event" or "timeout"
    local bpath = field(path, which)
    if b == nil then
      step[which] = {}
    elseif type(b) ~= "table" then
      options.fail(bpath, "a step table or a list of step tables", b)
    elseif b[1] == nil and next(b) ~= nil then
      step[which] = build_steps(def, { b }, bpath, step.name .. "." .. short, true)
    else
      step[which] = build_steps(def, b, bpath, step.name .. "." .. short, false)
    end
  end
  return step
end

local function build_send(def, send, path)
  if type(send) == "string" then return options.string(send, path, "a template name", 128) end
  if type(send) ~= "table" then
    options.fail(path, 'a template name or a table { A = "tpl_a", B = "tpl_b" }', send)
  end
  if not def.variants then
    options.fail(path, "a template name (templates per variant need variants = {...} in the journey)", send)
  end
  options.known(send, def.variant_set, path)
  for _, v in ipairs(def.variants) do
    options.string(send[v.name], field(path, v.name), "a template name", 128)
  end
  return send
end

local function build_step(def, s, path, default_name)
  options.table(s, path)
  local name = s.name
  if name == nil then name = default_name end
  options.matching(name, field(path, "name"), "^[A-Za-z0-9_.%-]+$", 64, "a step name of 1-64 bytes of [A-Za-z0-9_.-]")
  if def.steps_by_name[name] then options.fail(field(path, "name"), "a step name not used before in the journey", name) end
  local step = { name = name }
  def.steps_by_name[name] = step
  step.after = s.after == nil and 0 or options.duration(s.after, field(path, "after"), 0)
  if s.at ~= nil then step.at_h, step.at_m = options.hhmm(s.at, field(path, "at")) end
  if s.wait ~= nil then return build_wait(def, s, path, step) end
  options.known(s, STEP_KEYS, path)
  for _, k in ipairs({ "within", "on_event", "on_timeout" }) do
    if s[k] ~= nil then options.reject(field(path, k), 'belongs to a wait step (set wait = "event.type")') end
  end
  if s.when ~= nil then options.func(s.when, field(path, "when"), "a function(m, info)") end
  step.when = s.when
  step.unless_tags = s.unless_tag ~= nil and options.tags(s.unless_tag, field(path, "unless_tag")) or {}
  if s.send ~= nil then step.send = build_send(def, s.send, field(path, "send")) end
  if s.category ~= nil then options.enum(s.category, field(path, "category"), { "marketing", "service" }) end
  step.category = s.category
  if s.channel ~= nil then options.string(s.channel, field(path, "channel"), "a channel name") end
  step.channel = s.channel
  if s.vars ~= nil then options.table(s.vars, field(path, "vars")) end
  step.vars = s.vars
  if s.task ~= nil then options.string(s.task, field(path, "task"), "a non-empty text") end
  step.task = s.task
  if s.staff ~= nil then options.string(s.staff, field(path, "staff"), "a staff id") end
  step.staff = s.staff
  if s.tag ~= nil then step.tags = options.tags(s.tag, field(path, "tag")) end
  -- points: an integer, or a number or string that converts to one (as earlier versions took)
  if s.points ~= nil then step.points = options.integer(math.tointeger(s.points) or s.points, field(path, "points"), 1) end
  if s.reason ~= nil then options.string(s.reason, field(path, "reason"), "a non-empty text") end
  step.reason = s.reason
  if not (step.send or step.task or step.tags or step.points) then
    options.fail(path, "a step with an action (send, task, tag or points) or a wait")
  end
  step.kinds = {}
  for _, k in ipairs({ "send", "task", "tag", "points" }) do
    if (k == "tag" and step.tags) or (k ~= "tag" and step[k]) then step.kinds[#step.kinds + 1] = k end
  end
  return step
end

function build_steps(def, list, path, default_prefix, single)
  options.list(list, path, "a list of steps")
  local out = {}
  for i, s in ipairs(list) do
    local dn = default_prefix and (single and default_prefix or (default_prefix .. "." .. i)) or nil
    out[#out + 1] = build_step(def, s, single and path or index(path, i), dn)
  end
  return out
end

local function build_variants(def, variants)
  options.table(variants, "variants", "of weights like { A = 50, B = 50 }")
  if next(variants) == nil then options.fail("variants", "a table of weights like { A = 50, B = 50 }", variants) end
  def.variants, def.variant_set, def.variant_total = {}, {}, 0
  for k, w in pairs(variants) do
    if type(k) ~= "string" or not k:match("^[A-Za-z0-9_]+$") or #k > 32 or k == "holdout" then
      options.reject("variants", 'must be keyed by variant names ([A-Za-z0-9_]{1,32}, not "holdout"), got the key '
                     .. options.show(k))
    end
    -- a weight: an integer, or a number or string that converts to one (as earlier versions took)
    local wi = options.integer(math.tointeger(w) or w, field("variants", k), 1)
    def.variants[#def.variants + 1] = { name = k, weight = wi }
    def.variant_set[k] = true
    def.variant_total = def.variant_total + wi
  end
  table.sort(def.variants, function(a, b) return a.name < b.name end)
end

local function check_name(v, path)
  return options.matching(v, path, "^[a-z0-9_]+$", 56, "a journey name of 1-56 bytes of [a-z0-9_]")
end

local function build(spec)
  local name = options.definition(spec, JOURNEY_KEYS, defs, check_name)
  local def = { name = name, attr = "_journey." .. name, timer = "journey." .. name,
                steps_by_name = {}, wait_types = {} }
  def.enter = options.event_type(spec.enter, "enter")
  def.exits = spec.exit == nil and {} or options.event_types(spec.exit, "exit")
  def.goals = spec.goal == nil and {} or options.event_types(spec.goal, "goal")
  def.exit_set, def.goal_set = {}, {}
  for _, t in ipairs(def.exits) do def.exit_set[t] = true end
  for i, t in ipairs(def.goals) do
    if def.exit_set[t] then
      options.fail(type(spec.goal) == "string" and "goal" or index("goal", i), "an event type that is not also an exit", t)
    end
    def.goal_set[t] = true
  end
  if def.exit_set[def.enter] then options.fail("enter", "an event type that is not also an exit", def.enter) end
  if spec.exit_on_goal ~= nil then options.boolean(spec.exit_on_goal, "exit_on_goal") end
  def.exit_on_goal = spec.exit_on_goal ~= false
  if spec.reenter ~= nil then options.boolean(spec.reenter, "reenter") end
  def.reenter = spec.reenter == true
  local ho = spec.holdout
  if ho == nil then ho = 0 end
  def.holdout = options.number(ho, "holdout", 0, 100)
  def.holdout_bp = math.floor(ho * 100 + 0.5)
  if spec.variants ~= nil then build_variants(def, spec.variants) end
  if type(spec.steps) ~= "table" or #spec.steps == 0 then options.fail("steps", "a non-empty list of steps", spec.steps) end
  def.steps = build_steps(def, spec.steps, "steps", nil, false)
  return def
end

-- ---------------------------------------------------------------- runs

local function count(def, metric, variant, step)
  hearth.count(metric, { campaign = def.name, step = step })
  if variant and not step then hearth.count(metric, { campaign = def.name, variant = variant }) end
end

-- Due time of a step taken at base (the entry time, or the moment its branch was taken);
-- `at` is a wall time on the member's own clock.
local function due_time(m, step, base)
  if not step.at_h then return base + step.after end
  local d = m:local_date(base)
  local t = m:local_time(d.year, d.month, d.day + step.after // 86400, step.at_h, step.at_m, 0)
  if t < base then t = base end
  return t
end

local function schedule(def, m, st, steps, base)
  for _, step in ipairs(steps) do
    m:at(due_time(m, step, base), def.timer, { run = st.run, step = step.name })
    st.pending = st.pending + 1
  end
end

local function end_run(def, m, st, reason)
  st.active = false
  st.ended = reason
  st.ended_at = hearth.now()
  st.pending = nil
  st.waits = nil
  if reason == "exit" or reason == "goal" then
    local stopped = st.stopped or {}
    stopped[#stopped + 1] = st.run
    while #stopped > 5 do table.remove(stopped, 1) end
    st.stopped = stopped
  end
  m:set(def.attr, st)
  m:cancel(def.timer)
  if reason == "exit" then count(def, "exited", st.variant)
  elseif reason == "done" then count(def, "completed", st.variant) end
end

local function save_or_complete(def, m, st)
  if st.pending <= 0 and next(st.waits or {}) == nil then
    end_run(def, m, st, "done")
  else
    m:set(def.attr, st)
  end
end

local function template_for(step, variant)
  if type(step.send) == "table" then return step.send[variant] end
  return step.send
end

local function run_step(def, m, st, step)
  if st.variant == "holdout" then return end
  local key = st.run .. "/" .. step.name
  local skip = nil -- why the step is skipped: the reason recorded with it
  for _, tg in ipairs(step.unless_tags) do
    if m:has(tg) then skip = { rule = "unless_tag", tag = tg } break end
  end
  if not skip and step.when then
    local info = { journey = def.name, run = st.run, variant = st.variant, entered_at = st.t }
    if not step.when(m, info) then skip = { rule = "when" } end
  end
  if skip then
    local o = { key = key, campaign = def.name, step = step.name, status = "skipped", channel = step.channel,
                reason = skip }
    if step.send then
      o.category, o.vars = step.category, step.vars
      m:send(template_for(step, st.variant), o)
    elseif step.task then
      o.vars, o.staff = step.vars, step.staff
      m:task(step.task, o)
    else
      m:webhook({ journey = def.name, step = step.name, skipped = true }, o)
    end
    return
  end
  local function k(kind)
    return kind == step.kinds[1] and key or (key .. "/" .. kind)
  end
  if step.send then
    caps.send(m, template_for(step, st.variant), { key = k("send"), campaign = def.name, step = step.name,
      channel = step.channel, vars = step.vars, category = step.category })
  end
  if step.task then
    m:task(step.task, { key = k("task"), campaign = def.name, step = step.name, channel = step.channel,
      vars = step.vars, staff = step.staff })
  end
  if step.tags then
    for _, tg in ipairs(step.tags) do
      m:tag(tg, { key = #step.tags > 1 and (k("tag") .. "/" .. tg) or k("tag"), campaign = def.name, step = step.name })
    end
  end
  if step.points then
    m:add_points(step.points, step.reason or (def.name .. "/" .. step.name),
      { key = k("points"), campaign = def.name, step = step.name })
  end
end

local function start_wait(def, m, st, step, now)
  st.waits = st.waits or {}
  st.waits[step.name] = { event = step.wait, from = now, deadline = now + step.within }
  m:at(now + step.within, def.timer, { run = st.run, step = step.name, timeout = true })
  st.pending = st.pending + 1
end

local function take_branch(def, m, st, step, which, base)
  st.waits[step.name] = nil
  st.pending = st.pending - 1
  hearth.count(which == "on_event" and "wait_event" or "wait_timeout", { campaign = def.name, step = step.name })
  schedule(def, m, st, step[which], base)
end

local function on_timer(def, m, ev)
  local d = ev.data or {}
  local st = m:get(def.attr)
  if not st or not st.active or st.run ~= d.run then return end -- an ended run
  local step = def.steps_by_name[d.step]
  if d.timeout then
    if not (step and st.waits and st.waits[d.step]) then return end -- taken by the event
    take_branch(def, m, st, step, "on_timeout", ev.time)
  else
    st.pending = st.pending - 1
    if not step then
      hearth.log("warn", ("journey %s: step '%s' is no longer defined; dropped"):format(def.name, tostring(d.step)))
    elseif step.wait then
      start_wait(def, m, st, step, ev.time)
    else
      run_step(def, m, st, step)
    end
  end
  save_or_complete(def, m, st)
end

local function on_event(def, m, ev)
  local st = m:get(def.attr)
  local active = st ~= nil and st.active == true
  if active and def.exit_set[ev.type] and ev.time >= st.t then
    end_run(def, m, st, "exit")
    return
  end
  if active and def.goal_set[ev.type] and ev.time >= st.t and not st.converted then
    st.converted = true
    st.converted_at = ev.time
    count(def, "converted", st.variant)
    if def.exit_on_goal then
      end_run(def, m, st, "goal")
      active = false
    else
      m:set(def.attr, st)
    end
  end
  if active and st.waits and next(st.waits) ~= nil then
    local names = {}
    for n, w in pairs(st.waits) do
      if w.event == ev.type and ev.time >= w.from and ev.time < w.deadline then names[#names + 1] = n end
    end
    if #names > 0 then
      table.sort(names)
      for _, n in ipairs(names) do
        local step = def.steps_by_name[n]
        if step then
          take_branch(def, m, st, step, "on_event", ev.time)
        else
          st.waits[n] = nil
          st.pending = st.pending - 1
        end
      end
      save_or_complete(def, m, st)
      st = m:get(def.attr)
    end
  end
  if ev.type == def.enter then
    if st and st.active then return end -- an enter event during a run is ignored
    if st and st.run and not def.reenter then return end
    local variant = assign(def, m.id)
    local new = { run = (st and st.run or 0) + 1, active = true, t = ev.time, variant = variant,
                  converted = false, pending = 0, waits = {}, stopped = st and st.stopped or nil }
    count(def, "entered", variant)
    schedule(def, m, new, def.steps, ev.time)
    m:set(def.attr, new)
  end
end

-- ---------------------------------------------------------------- public

function journey.define(spec)
  local def = options.checked("journey.define", build, spec)
  local types, seen = {}, {}
  local function add(t)
    if not seen[t] then seen[t] = true types[#types + 1] = t end
  end
  add(def.enter)
  for _, t in ipairs(def.exits) do add(t) end
  for _, t in ipairs(def.goals) do add(t) end
  local waits = {}
  for t in pairs(def.wait_types) do waits[#waits + 1] = t end
  table.sort(waits)
  for _, t in ipairs(waits) do add(t) end
  options.declare("journey.define", nil, function()
    for _, t in ipairs(types) do
      hearth.on(t, function(m, ev) on_event(def, m, ev) end)
    end
    hearth.on(def.timer, function(m, ev) on_timer(def, m, ev) end)
  end)
  defs[def.name] = def
  -- a deferred send judged after the run was stopped (exit or goal) never goes out
  caps.guard(def.name, function(m, o)
    local run = math.tointeger(tonumber(type(o.key) == "string" and o.key:match("^(%d+)/") or nil))
    if not run then return true end
    local st = m:get(def.attr)
    for _, r in ipairs(st and st.stopped or {}) do
      if r == run then return false end
    end
    return true
  end)
  return def.name
end

function journey.assign(name, member_id)
  local def = defs[name]
  if not def then error(("journey.assign: no journey named '%s'"):format(tostring(name)), 2) end
  if type(member_id) ~= "string" or member_id == "" then error("journey.assign: member_id must be a string", 2) end
  return assign(def, member_id)
end

function journey.state(m, name)
  local def = defs[name]
  if not def then error(("journey.state: no journey named '%s'"):format(tostring(name)), 2) end
  local st = m:get(def.attr)
  if not st then return nil end
  return { run = st.run, active = st.active == true, variant = st.variant, entered_at = st.t,
           converted = st.converted == true }
end

return journey
