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
    Per split step: one counter per arm taken ("<arm>", "otherwise", "none"). With
    revenue: revenue_cents, for the campaign and the variant.

journey.define {
  name = "onboarding",           -- required, [a-z0-9_]{1,56}: campaign name of its actions
  enter = "member.joined",       -- required: the event that starts a run (entry time T = its time)
  exit = { "member.unsubscribed", "friend.deleted" }, -- optional, a type or a list
  goal = "order.paid",           -- optional, a type or a list
  exit_on_goal = true,           -- default true: the goal also ends the run
  reenter = false,               -- default false: at most one run per member, ever; true;
                                 -- or { cooldown = "30d", max_runs = 3 }
  goal_within = "14d",           -- optional: the goal window [T, T + 14d), beyond the run
  revenue = true,                -- optional: count the goal event's data.amount (or the
                                 -- data field named) per conversion, in cents
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
  split       an attribute name, or function(m, info) -> arm name: makes a split step
  arms        required with split: { name = steps, ... } (names [A-Za-z0-9_]{1,32}, not
              "none"/"otherwise"), each a step table or a list of them
  otherwise   the steps for a member whose value names no arm
              The member takes one arm (the attribute's value as text, or the function's
              result), else otherwise, else none; arms not taken record nothing. Arm steps
              are timed from the split's own start (the entry, or its wait branch's
              moment), and their after may not be shorter than the split's. Unnamed arm
              steps are "<split>.<arm>" / "<split>.<arm>.<i>". A split takes no actions.

Runs and ids
  Runs are numbered per member from 1; every action key is "<run>/<step>", so ids look
  like onboarding/m-42/1/day7. A step with several actions: the first of send, task,
  tag, points gets "<run>/<step>", the others "<run>/<step>/<kind>" (several tags:
  ".../tag/<tag>").

Rules
  * enter: starts run n+1 unless a run is active (the enter event is ignored) or
    reenter = false and the member ran the journey before, or (reenter = { ... }) less
    than cooldown passed since the previous run ended, or she had max_runs runs.
  * exit: an exit event during a run (dated at or after T) ends it at once ("exited");
    pending steps never fire (the timers are cancelled, and each timer carries its run
    number, checked when it fires).
  * goal: the first goal event dated at or after T during the run counts one conversion for
    the run, the campaign and the variant / hold-out; with exit_on_goal it ends the run.
    A goal after the run ended (completed, exited) counts nothing; with goal_within the
    window is [T, T + goal_within) instead, also after the run completed, until an exit.
    With revenue, the converting event's amount (in cents) is counted in revenue_cents.
  * a step whose member has an unless_tag, or whose when(m) is false, is recorded
    "skipped" (one action under "<run>/<step>": the send, else the task, else a webhook
    {journey, step, skipped = true}) and the run goes on.
  * hold-out members enter, are counted, run the same timeline (so their goal window
    is the same) and get no actions at all, not even skipped ones; their conversions
    are counted (variant "holdout"). They take split arms silently, not counted per arm.
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
                       holdout = 1, variants = 1, steps = 1, goal_within = 1, revenue = 1, winner = 1 }
local WINNER_KEYS = { min_entered = 1, confidence = 1 }
local CONFIDENCES = { [80] = true, [90] = true, [95] = true, [99] = true }
local REENTER_KEYS = { cooldown = 1, max_runs = 1 }
local STEP_KEYS = { name = 1, after = 1, at = 1, when = 1, unless_tag = 1, send = 1, category = 1,
                    channel = 1, vars = 1, task = 1, staff = 1, tag = 1, points = 1, reason = 1,
                    wait = 1, within = 1, on_event = 1, on_timeout = 1, split = 1, arms = 1, otherwise = 1 }
local WAIT_KEYS = { name = 1, after = 1, at = 1, wait = 1, within = 1, on_event = 1, on_timeout = 1 }
local SPLIT_KEYS = { name = 1, after = 1, at = 1, split = 1, arms = 1, otherwise = 1 }
-- names an arm may not take: the split's own counters for "no arm" and its fallback arm
local RESERVED_ARMS = { none = true, otherwise = true }

local build_steps

-- A branch (a wait's on_event / on_timeout, a split's arm): a single step table or a list
-- of them; nil is no step. Unnamed steps are called prefix (single) or prefix.<i> (list).
local function build_branch(def, b, path, prefix)
  if b == nil then return {} end
  if type(b) ~= "table" then options.fail(path, "a step table or a list of step tables", b) end
  if b[1] == nil and next(b) ~= nil then return build_steps(def, { b }, path, prefix, true) end
  return build_steps(def, b, path, prefix, false)
end

local function build_wait(def, s, path, step)
  options.known(s, WAIT_KEYS, path)
  step.wait = options.event_type(s.wait, field(path, "wait"))
  if def.exit_set[s.wait] then
    options.fail(field(path, "wait"), "an event type that is not also an exit (the run would end first)", s.wait)
  end
  step.within = options.duration(s.within, field(path, "within"), 1)
  def.wait_types[s.wait] = true
  step.on_event = build_branch(def, s.on_event, field(path, "on_event"), step.name .. ".event")
  step.on_timeout = build_branch(def, s.on_timeout, field(path, "on_timeout"), step.name .. ".timeout")
  return step
end

-- An arm's steps are timed from the split's own start: no `after` shorter than the split's.
-- raw: the branch as written (a single step table or a list), steps: as built.
local function check_arm_timing(raw, steps, split, path)
  local single = type(raw) == "table" and raw[1] == nil
  for i, a in ipairs(steps) do
    if a.after < split.after then
      options.fail(field(single and path or index(path, i), "after"),
                   ("a duration not shorter than its split's after (%s): arm steps are timed from the same start")
                   :format(options.show(split.after_given)), a.after_given)
    end
  end
end

local function build_split(def, s, path, step)
  options.known(s, SPLIT_KEYS, path)
  local spath = field(path, "split")
  if type(s.split) == "function" then
    step.split_fn = s.split
  elseif type(s.split) == "string" then
    step.split_attr = options.string(s.split, spath, "an attribute name", 128)
  else
    options.fail(spath, "an attribute name or a function(m, info) -> arm name", s.split)
  end
  local apath = field(path, "arms")
  options.table(s.arms, apath, "of arms like { sh = { steps }, bj = { steps } }")
  if next(s.arms) == nil then options.fail(apath, "a table of arms like { sh = { steps }, bj = { steps } }", s.arms) end
  local names = {}
  for k in pairs(s.arms) do
    if type(k) ~= "string" or not k:match("^[A-Za-z0-9_]+$") or #k > 32 or RESERVED_ARMS[k] then
      options.reject(apath, 'must be keyed by arm names ([A-Za-z0-9_]{1,32}, not "none" or "otherwise"), got the key '
                     .. options.show(k))
    end
    names[#names + 1] = k
  end
  table.sort(names)
  step.arms = {}
  for _, k in ipairs(names) do
    local p = field(apath, k)
    step.arms[k] = build_branch(def, s.arms[k], p, step.name .. "." .. k)
    check_arm_timing(s.arms[k], step.arms[k], step, p)
  end
  if s.otherwise ~= nil then
    step.otherwise = build_branch(def, s.otherwise, field(path, "otherwise"), step.name .. ".otherwise")
    check_arm_timing(s.otherwise, step.otherwise, step, field(path, "otherwise"))
  end
  step.split = true
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
  step.after_given = s.after == nil and 0 or s.after -- as written, for messages
  if s.at ~= nil then step.at_h, step.at_m = options.hhmm(s.at, field(path, "at")) end
  if s.wait ~= nil then return build_wait(def, s, path, step) end
  if s.split ~= nil then return build_split(def, s, path, step) end
  options.known(s, STEP_KEYS, path)
  for _, k in ipairs({ "within", "on_event", "on_timeout" }) do
    if s[k] ~= nil then options.reject(field(path, k), 'belongs to a wait step (set wait = "event.type")') end
  end
  for _, k in ipairs({ "arms", "otherwise" }) do
    if s[k] ~= nil then options.reject(field(path, k), 'belongs to a split step (set split = "attribute" or a function)') end
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

-- winner: { min_entered = 100, confidence = 95 }: once every variant has min_entered
-- entrants and the best one's conversion beats each other's by an interval that excludes 0
-- at that confidence, new entrants (not the hold-out) get the best variant.
local function build_winner(def, w)
  options.table(w, "winner", "like { min_entered = 100, confidence = 95 }")
  options.known(w, WINNER_KEYS, "winner")
  if not def.variants or #def.variants < 2 then
    options.fail("winner", "used with two or more variants (there is nothing to choose from)", w)
  end
  local conf = w.confidence == nil and 95 or w.confidence
  if not CONFIDENCES[conf] then options.fail("winner.confidence", "80, 90, 95 or 99 (percent)", conf) end
  local min = w.min_entered == nil and 100 or options.integer(w.min_entered, "winner.min_entered", 1)
  def.winner = { min_entered = min, confidence = conf }
end

-- reenter: true / false (default), or a table { cooldown =, max_runs = } (re-entry allowed,
-- after a rest since the previous run ended, up to a number of runs in all).
local function build_reenter(def, r)
  def.reenter, def.cooldown, def.max_runs = r == true, 0, nil
  if type(r) ~= "table" then
    if r ~= nil and type(r) ~= "boolean" then
      options.fail("reenter", 'true, false or a table { cooldown = "30d", max_runs = 3 }', r)
    end
    return
  end
  options.known(r, REENTER_KEYS, "reenter")
  def.reenter = true
  if r.cooldown ~= nil then def.cooldown = options.duration(r.cooldown, "reenter.cooldown", 0) end
  if r.max_runs ~= nil then def.max_runs = options.integer(r.max_runs, "reenter.max_runs", 1) end
end

-- goal_within (a duration > 0: the goal window from the entry) and revenue (true: the goal
-- event's data.amount; a string: that data field) need a goal.
local function build_goal_options(def, spec)
  if spec.goal_within ~= nil then
    if #def.goals == 0 then options.reject("goal_within", "needs option 'goal'") end
    def.goal_within = options.duration(spec.goal_within, "goal_within", 1)
  end
  local r = spec.revenue
  if r == nil or r == false then return end
  if #def.goals == 0 then options.reject("revenue", "needs option 'goal'") end
  if r == true then
    def.revenue = "amount"
  else
    def.revenue = options.matching(r, "revenue", "^[A-Za-z0-9_]+$", 64,
                                   'true (data.amount) or the name of a data field like "amount"')
  end
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
  build_goal_options(def, spec)
  if spec.exit_on_goal ~= nil then options.boolean(spec.exit_on_goal, "exit_on_goal") end
  def.exit_on_goal = spec.exit_on_goal ~= false
  build_reenter(def, spec.reenter)
  local ho = spec.holdout
  if ho == nil then ho = 0 end
  def.holdout = options.number(ho, "holdout", 0, 100)
  def.holdout_bp = math.floor(ho * 100 + 0.5)
  if spec.variants ~= nil then build_variants(def, spec.variants) end
  if spec.winner ~= nil then build_winner(def, spec.winner) end
  if type(spec.steps) ~= "table" or #spec.steps == 0 then options.fail("steps", "a non-empty list of steps", spec.steps) end
  def.steps = build_steps(def, spec.steps, "steps", nil, false)
  return def
end

-- ---------------------------------------------------------------- runs

local function count(def, metric, variant, step, n)
  hearth.count(metric, { campaign = def.name, step = step, n = n })
  if variant and not step then hearth.count(metric, { campaign = def.name, variant = variant, n = n }) end
end

-- The decided variant of a journey with `winner`, deciding it now when the numbers allow:
-- every variant has min_entered entrants and the best converts better than each other one
-- with an interval (hearth.lift) above 0. The decision is a counter "winner" on the
-- variant, with each variant's decided_entered / decided_converted at that moment, so
-- `hearth stats` shows it and every later entry reads it back.
local function winner(def)
  local c = { campaign = def.name }
  for _, v in ipairs(def.variants) do
    c.variant = v.name
    if hearth.counter("winner", c) > 0 then return v.name end
  end
  local stats, best = {}, nil
  for _, v in ipairs(def.variants) do
    c.variant = v.name
    local n = hearth.counter("entered", c)
    if n < def.winner.min_entered then return nil end
    local s = { n = n, c = hearth.counter("converted", c) }
    stats[v.name] = s
    if not best or s.c * stats[best].n > stats[best].c * s.n then best = v.name end
  end
  for _, v in ipairs(def.variants) do
    if v.name ~= best then
      local b, o = stats[best], stats[v.name]
      local l = hearth.lift(b.c, b.n, o.c, o.n, def.winner.confidence)
      if not l or l.low <= 0 then return nil end
    end
  end
  for _, v in ipairs(def.variants) do
    local s = stats[v.name]
    hearth.count("decided_entered", { campaign = def.name, variant = v.name, n = s.n })
    hearth.count("decided_converted", { campaign = def.name, variant = v.name, n = s.c })
  end
  hearth.count("winner", { campaign = def.name, variant = best })
  hearth.log("info", ("journey %s: variant %s wins (%d entered, %d converted); new entrants get it")
             :format(def.name, best, stats[best].n, stats[best].c))
  return best
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

-- A split's timer carries its start (base), from which its arms are timed.
local function schedule(def, m, st, steps, base)
  for _, step in ipairs(steps) do
    local data = { run = st.run, step = step.name }
    if step.split then data.base = base end
    m:at(due_time(m, step, base), def.timer, data)
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

local function info_of(def, st)
  return { journey = def.name, run = st.run, variant = st.variant, entered_at = st.t }
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
    if not step.when(m, info_of(def, st)) then skip = { rule = "when" } end
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

-- The arm a split takes: its function's result, or the attribute's value as text (a string
-- as is, an integer or a boolean written out), when an arm has that name; else
-- "otherwise" when the split has one; else nil.
local function arm_of(def, m, st, step)
  local v
  if step.split_fn then v = step.split_fn(m, info_of(def, st)) else v = m:get(step.split_attr) end
  local name
  if type(v) == "string" then name = v
  elseif math.type(v) == "integer" or (type(v) == "number" and v == math.floor(v) and v == v and math.abs(v) < 2^53) then
    name = string.format("%d", v)
  elseif type(v) == "boolean" then name = tostring(v) end
  if name and step.arms[name] then return name end
  if step.otherwise then return "otherwise" end
  return nil
end

-- Take a split: count the arm (hold-outs are not counted: the counters are the members the
-- arm's steps reach) and schedule its steps from the split's start.
local function take_split(def, m, st, step, base)
  local arm = arm_of(def, m, st, step)
  if st.variant ~= "holdout" then hearth.count(arm or "none", { campaign = def.name, step = step.name }) end
  if not arm then return end
  schedule(def, m, st, arm == "otherwise" and step.otherwise or step.arms[arm], base)
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
    elseif step.split then
      take_split(def, m, st, step, d.base or st.t)
    else
      run_step(def, m, st, step)
    end
  end
  save_or_complete(def, m, st)
end

-- With goal_within, a run that completed keeps its goal window open until entry +
-- goal_within, unless an exit event closed it since.
local function window_open_after_run(def, st)
  return def.goal_within ~= nil and st.ended == "done" and not st.goal_closed
end

-- The goal event's revenue in cents (data[def.revenue], a finite number > 0), or nil.
local function revenue_cents(def, ev)
  local a = def.revenue and type(ev.data) == "table" and ev.data[def.revenue]
  if type(a) ~= "number" or a ~= a or a <= 0 or a == math.huge then return nil end
  return math.floor(a * 100 + 0.5)
end

local function convert(def, m, st, ev, active)
  st.converted = true
  st.converted_at = ev.time
  count(def, "converted", st.variant)
  local cents = revenue_cents(def, ev)
  if cents then
    st.revenue_cents = cents
    count(def, "revenue_cents", st.variant, nil, cents)
  end
  if active and def.exit_on_goal then
    end_run(def, m, st, "goal")
    return false
  end
  m:set(def.attr, st)
  return active
end

-- May an enter event at time t start the next run after st (the member's last run)?
local function may_reenter(def, st, t)
  if not st or not st.run then return true end
  if not def.reenter then return false end
  if def.max_runs and st.run >= def.max_runs then return false end
  if def.cooldown > 0 and t < (st.ended_at or st.t) + def.cooldown then return false end
  return true
end

local function on_event(def, m, ev)
  local st = m:get(def.attr)
  local active = st ~= nil and st.active == true
  if active and def.exit_set[ev.type] and ev.time >= st.t then
    end_run(def, m, st, "exit")
    return
  end
  if not active and st and def.exit_set[ev.type] and window_open_after_run(def, st) and ev.time >= st.t then
    st.goal_closed = true -- an exit after the last step still ends the goal window
    m:set(def.attr, st)
    return
  end
  if st and def.goal_set[ev.type] and ev.time >= st.t and not st.converted
     and (active or window_open_after_run(def, st))
     and (not def.goal_within or ev.time < st.t + def.goal_within) then
    active = convert(def, m, st, ev, active)
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
    if not may_reenter(def, st, ev.time) then return end
    local variant = assign(def, m.id)
    if def.winner and variant ~= "holdout" then variant = winner(def) or variant end
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
