--[[ journey: SOP touchpoints (SPEC §5 "journey").

What it owns
  * journey.define{...}: one journey (call at the top level of a campaign script; it
    registers its handlers with hearth.on right away). Several journeys may be defined,
    by one script or several; names are unique.
  * Per member and journey the attribute "_journey.<name>" (the run: number, entry time,
    variant, pending steps and their due times, waits, conversion, version) and the timer type "journey.<name>".
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
  version = "2",                 -- optional label of this version
  migrate = { from = "1", map = { day7 = "day5" } }, -- optional: how runs of older versions
                                 -- move here (restart = true, finish_old = false, retime = true)
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

Versions (docs/modules/journey.md "Versions and migration")
  * A definition's version is the first 12 hex digits of the SHA-256 of its canonical text
    (sorted keys, functions by hearth.fn_digest: stripped bytecode and plain upvalues,
    migrate left out):
    its own, so that changing another script moves no run. It is kept in the database
    (hearth.keep_version) with that text. A run records version, label and sched (each
    pending step's due time and start) and follows its own version after a reload: the
    older definition is rebuilt from its kept text, its functions found among the loaded
    ones by digest (missing ones return nil, with a warning). Keeping each run's whole
    remaining schedule in its state was the alternative; it cannot hold functions, and
    every member would carry a copy of the definition.
  * migrate (declared by the new version) moves runs of the versions in `from`: a map or
    finish_old = false moves them (steps renamed, due times kept or retime, new steps
    still ahead added, a step with nowhere to go dropped with a warning and counted);
    restart ends the run and starts the next one now. The engine gives each such run a
    timer due at once when the set loads ({migrate = hash}); an event of the run that comes
    first migrates it too. Without migrate, runs finish on their own version.
  * plan_run answers hearth reload --plan with the same decisions, in words.

Other functions
  journey.assign(name, member_id) -> "holdout", a variant name, or nil
  journey.state(m, name) -> { run, active, variant, entered_at, converted, version, label } or nil
  journey.version(name) -> hash, label of the loaded version
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
                       holdout = 1, variants = 1, steps = 1, goal_within = 1, revenue = 1, winner = 1,
                       version = 1, migrate = 1 }
local MIGRATE_KEYS = { from = 1, map = 1, restart = 1, finish_old = 1, retime = 1 }
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

-- migrate = { from = "1" | { "1", "<hash>" }, map = { day7 = "day5" }, restart = false,
-- finish_old = true, retime = false }: how runs in flight on the versions named in `from`
-- (a label or a definition hash; "*" is any other version) move to this one. The mode:
-- restart = true starts them over here; a map (or finish_old = false) moves them here,
-- their pending steps renamed by the map (a name not in it keeps its name); otherwise they
-- finish on their own version (the default, as without migrate).
local function build_migrate(def, mg)
  options.table(mg, "migrate", 'like { from = "1", map = { day7 = "day5" } }')
  options.known(mg, MIGRATE_KEYS, "migrate")
  local from = {}
  if type(mg.from) == "string" then
    from[options.string(mg.from, "migrate.from", "a version label or hash", 64)] = true
  elseif type(mg.from) == "table" and #mg.from > 0 then
    for i, v in ipairs(mg.from) do from[options.string(v, index("migrate.from", i), "a version label or hash", 64)] = true end
  else
    options.fail("migrate.from", 'a version label or hash, or a list of them ("*": any other version)', mg.from)
  end
  for _, k in ipairs({ "restart", "finish_old", "retime" }) do
    if mg[k] ~= nil then options.boolean(mg[k], field("migrate", k)) end
  end
  local m = { from = from, map = {}, retime = mg.retime == true }
  if mg.map ~= nil then
    options.table(mg.map, "migrate.map", 'of old step names to new ones, like { day7 = "day5" }')
    for old, new in pairs(mg.map) do
      local p = field("migrate.map", old)
      options.matching(old, "migrate.map", "^[A-Za-z0-9_.%-]+$", 64, "keyed by step names")
      options.string(new, p, "a step name of this version")
      if not def.steps_by_name[new] then options.fail(p, "a step name of this version", new) end
      m.map[old] = new
    end
  end
  if mg.restart == true then
    if mg.map ~= nil then options.reject("migrate.restart", "cannot go with migrate.map (a restarted run has no old steps)") end
    if mg.finish_old == true then options.reject("migrate.restart", "cannot go with finish_old = true") end
    m.mode = "restart"
  elseif mg.map ~= nil or mg.finish_old == false then
    if mg.finish_old == true then options.reject("migrate.finish_old", "cannot be true with a map (mapped runs move)") end
    m.mode = "move"
  else
    m.mode = "old"
  end
  if m.retime and m.mode ~= "move" then options.reject("migrate.retime", "needs runs that move (a map or finish_old = false)") end
  def.migrate = m
end

local function check_name(v, path)
  return options.matching(v, path, "^[a-z0-9_]+$", 56, "a journey name of 1-56 bytes of [a-z0-9_]")
end

-- registry: the defined journeys (names are unique in it); an older version is rebuilt
-- against a table of its own.
local function build(spec, registry)
  local name = options.definition(spec, JOURNEY_KEYS, registry or defs, check_name)
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
  if spec.version ~= nil then def.label = options.string(spec.version, "version", "a version label", 64) end
  if spec.migrate ~= nil then build_migrate(def, spec.migrate) end
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
-- st.sched keeps each pending step's due time and start: what a migration moves and
-- `hearth reload --plan` reports.
local function schedule(def, m, st, steps, base)
  for _, step in ipairs(steps) do
    local data = { run = st.run, step = step.name }
    if step.split then data.base = base end
    local due = due_time(m, step, base)
    m:at(due, def.timer, data)
    st.pending = st.pending + 1
    if st.sched then st.sched[step.name] = { due, base } end
  end
end

local function end_run(def, m, st, reason)
  st.active = false
  st.ended = reason
  st.ended_at = hearth.now()
  st.pending = nil
  st.waits = nil
  st.sched = nil
  if reason == "exit" or reason == "goal" or reason == "migrated" then
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

-- ---------------------------------------------------------------- versions

-- Functions met in the definitions of this load, by the digest of their code: an older
-- version's `when` or split function is found here when its code is still loaded.
local fns_by_digest = {}

-- The definition as text: a Lua table constructor with sorted keys, functions written
-- F"<digest of their code>"; its digest is the journey's version. `migrate` is left out:
-- it says how older runs move, not what this version does.
local function serial(v, out, depth)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" then
    out[#out + 1] = string.format("%q", v)
  elseif t == "function" then
    local d = hearth.fn_digest(v)
    fns_by_digest[d] = v
    out[#out + 1] = 'F"' .. d .. '"'
  elseif t == "table" then
    if depth > 32 then error("the definition nests too deep (or is cyclic)", 0) end
    out[#out + 1] = "{"
    local n = #v
    for i = 1, n do
      serial(v[i], out, depth + 1)
      out[#out + 1] = ","
    end
    local keys = {}
    for k in pairs(v) do
      if not (math.type(k) == "integer" and k >= 1 and k <= n) and not (depth == 0 and k == "migrate") then
        keys[#keys + 1] = k
      end
    end
    table.sort(keys, function(a, b)
      local ta, tb = type(a), type(b)
      if ta ~= tb then return ta < tb end
      if ta == "number" or ta == "string" then return a < b end
      return tostring(a) < tostring(b)
    end)
    for _, k in ipairs(keys) do
      out[#out + 1] = "["
      serial(k, out, depth + 1)
      out[#out + 1] = "]="
      serial(v[k], out, depth + 1)
      out[#out + 1] = ","
    end
    out[#out + 1] = "}"
  else
    error(("a %s cannot be part of a journey definition"):format(t), 0)
  end
end

local function definition_text(spec)
  local out = {}
  serial(spec, out, 0)
  return table.concat(out)
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t or {}) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

local function show_version(hash, label)
  if label then return ("%s (%s)"):format(label, hash) end
  return hash
end

-- An older version of def, rebuilt from its kept text (hearth.kept_version); nil (said
-- once in the log) when it was never kept or cannot be rebuilt. Its functions are the
-- loaded ones with the same code; one whose code is gone returns nil (a `when` skips its
-- step, a split takes `otherwise` or no arm), with a warning.
local function old_def(def, hash)
  local c = def.old_versions[hash]
  if c ~= nil then return c or nil end
  local od, why = false, "it was never recorded in this database"
  local body = hearth.kept_version("journey", def.name, hash)
  if body then
    local function F(d)
      return fns_by_digest[d] or function()
        hearth.log("warn", ("journey %s: version %s uses a function whose code is no longer loaded; it returns nil")
                   :format(def.name, hash))
        return nil
      end
    end
    local chunk, err = load("return " .. body, "=journey " .. def.name .. " " .. hash, "t", { F = F })
    local ok, spec = chunk ~= nil, err
    if ok then ok, spec = pcall(chunk) end
    if ok then ok, od = pcall(build, spec, {}) end
    if not ok then od, why = false, tostring(spec or od) end
  end
  if not od then
    hearth.log("warn", ("journey %s: runs of version %s follow the loaded version %s: %s")
               :format(def.name, hash, show_version(def.hash, def.label), why))
  end
  def.old_versions[hash] = od
  return od or nil
end

-- Does the loaded version's migrate move (or restart) this run now?
local function needs_migration(def, st)
  local mg = def.migrate
  if not (st.version and st.version ~= def.hash and mg and mg.mode ~= "old") then return false end
  return mg.from["*"] or mg.from[st.version] or (st.label ~= nil and mg.from[st.label]) or false
end

-- The definition a run follows: its own version, else (not kept) the loaded one.
local function run_def(def, st)
  if not st.version or st.version == def.hash then return def end
  return old_def(def, st.version) or def
end

local function start_run(def, m, prev, t, variant)
  local new = { run = (prev and prev.run or 0) + 1, active = true, t = t, variant = variant,
                converted = false, pending = 0, waits = {}, stopped = prev and prev.stopped or nil,
                version = def.hash, label = def.label, sched = {} }
  count(def, "entered", variant)
  schedule(def, m, new, def.steps, t)
  m:set(def.attr, new)
end

local function dropped(def, name, from)
  hearth.log("warn", ("journey %s: step '%s' of version %s has no step in version %s; dropped")
             :format(def.name, name, from, show_version(def.hash, def.label)))
  hearth.count("dropped", { campaign = def.name, step = name })
end

-- The steps this version adds to a moving run: top-level, unknown to the old version,
-- not a target of the map.
local function added_steps(def, old)
  local targets, out = {}, {}
  for _, new in pairs(def.migrate.map) do targets[new] = true end
  for _, step in ipairs(def.steps) do
    if old and not old.steps_by_name[step.name] and not targets[step.name] then out[#out + 1] = step end
  end
  return out
end

-- Move a run to this version: its pending steps and waits renamed by the map (a step or
-- wait with no counterpart here is dropped with a warning), due when they were due
-- (retime: when the new step says, counted from the same start, not before now), plus the
-- added steps still ahead; or (restart) end it and start run n + 1 here, now.
local function migrate_run(def, m, st, now)
  local mg, from = def.migrate, st.version
  if mg.mode == "restart" then
    end_run(def, m, st, "migrated")
    count(def, "migrated", st.variant)
    start_run(def, m, st, now, st.variant)
    return
  end
  local old = old_def(def, from)
  local sched, waits = {}, {}
  for _, name in ipairs(sorted_keys(st.sched)) do
    local e, target = st.sched[name], mg.map[name] or name
    local step = def.steps_by_name[target]
    if step and not sched[target] then
      local due = e[1]
      if mg.retime then due = math.max(due_time(m, step, e[2] or st.t), now) end
      sched[target] = { due, e[2] or st.t }
    else
      dropped(def, name, from)
    end
  end
  for _, name in ipairs(sorted_keys(st.waits)) do
    local w, target = st.waits[name], mg.map[name] or name
    local step = def.steps_by_name[target]
    if step and step.wait and not waits[target] then
      waits[target] = { event = step.wait, from = w.from, deadline = w.deadline }
    else
      dropped(def, name, from)
    end
  end
  for _, step in ipairs(added_steps(def, old)) do
    local due = due_time(m, step, st.t)
    if due > now and not sched[step.name] then sched[step.name] = { due, st.t } end
  end
  m:cancel(def.timer)
  st.pending = 0
  for _, name in ipairs(sorted_keys(sched)) do
    local data = { run = st.run, step = name }
    if def.steps_by_name[name].split then data.base = sched[name][2] end
    m:at(sched[name][1], def.timer, data)
    st.pending = st.pending + 1
  end
  for _, name in ipairs(sorted_keys(waits)) do
    m:at(waits[name].deadline, def.timer, { run = st.run, step = name, timeout = true })
    st.pending = st.pending + 1
  end
  st.sched, st.waits = sched, waits
  st.migrated_from, st.version, st.label = from, def.hash, def.label
  count(def, "migrated", st.variant)
  save_or_complete(def, m, st)
end

-- The step a run is at: its earliest pending step (a wait: "<name> (waiting)").
local function next_step(st)
  local best, due
  local function consider(name, t)
    if not due or t < due or (t == due and name < best) then best, due = name, t end
  end
  for name, e in pairs(st.sched or {}) do consider(name, e[1]) end
  for name, w in pairs(st.waits or {}) do consider(name .. " (waiting)", w.deadline) end
  return best or (st.sched and "(none)" or "(not recorded)")
end

-- What loading this version does to one run in flight (hearth reload --plan): the same
-- decisions as needs_migration / run_def / migrate_run, in words.
local function plan_run(def, st)
  local out = { version = st.version or "(none)", label = st.label, step = next_step(st) }
  if st.version == def.hash then
    out.action = "continues on this version"
    return out
  end
  local function missing(d)
    local gone = {}
    for _, name in ipairs(sorted_keys(st.sched)) do
      if not d.steps_by_name[(d.migrate and d.migrate.map[name]) or name] then gone[#gone + 1] = name end
    end
    for _, name in ipairs(sorted_keys(st.waits)) do
      local step = d.steps_by_name[(d.migrate and d.migrate.map[name]) or name]
      if not (step and step.wait) then gone[#gone + 1] = name end
    end
    return gone
  end
  if needs_migration(def, st) then
    if def.migrate.mode == "restart" then
      out.action = ("restarts: ends run %d, run %d starts now on this version"):format(st.run, st.run + 1)
      return out
    end
    local parts = {}
    for _, name in ipairs(sorted_keys(st.sched)) do
      local target = def.migrate.map[name] or name
      if def.steps_by_name[target] then
        parts[#parts + 1] = ("%s -> %s %s"):format(name, target, def.migrate.retime and "re-timed by the new step" or "at its time")
      end
    end
    local gone = missing(def)
    local old = old_def(def, st.version)
    local added = {}
    for _, step in ipairs(added_steps(def, old)) do added[#added + 1] = step.name end
    out.action = "moves to this version" .. (#parts > 0 and (": " .. table.concat(parts, ", ")) or "")
    if #added > 0 then out.action = out.action .. "; adds " .. table.concat(added, ", ") .. " if still ahead" end
    if #gone > 0 then
      out.action = out.action .. "; WARNING: dropped (no step here): " .. table.concat(gone, ", ")
      out.warning = true
    end
    return out
  end
  local old = st.version and old_def(def, st.version)
  if old then
    out.action = "finishes on its version " .. show_version(st.version, st.label)
    return out
  end
  local gone = missing({ steps_by_name = def.steps_by_name })
  out.action = "follows this version (its own version is not kept)"
  if #gone > 0 then
    out.action = out.action .. "; WARNING: dropped (no step here): " .. table.concat(gone, ", ")
    out.warning = true
  end
  return out
end

-- ---------------------------------------------------------------- timers and events

local function on_timer(def, m, ev)
  local d = ev.data or {}
  local st = m:get(def.attr)
  if not st or not st.active then return end -- an ended run
  if needs_migration(def, st) then
    migrate_run(def, m, st, ev.time) -- its timers are set again; this one is done
    return
  end
  if d.migrate or st.run ~= d.run then return end
  local rdef = run_def(def, st)
  local step = rdef.steps_by_name[d.step]
  if d.timeout then
    if not (step and st.waits and st.waits[d.step]) then return end -- taken by the event
    take_branch(def, m, st, step, "on_timeout", ev.time)
  else
    st.pending = st.pending - 1
    if st.sched then st.sched[d.step] = nil end
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
  if st and st.active and needs_migration(def, st) then
    migrate_run(def, m, st, ev.time)
    st = m:get(def.attr)
  end
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
      local rdef = run_def(def, st)
      for _, n in ipairs(names) do
        local step = rdef.steps_by_name[n]
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
    start_run(def, m, st, ev.time, variant)
  end
end

-- ---------------------------------------------------------------- public

function journey.define(spec)
  local def = options.checked("journey.define", build, spec)
  local body = options.checked("journey.define", definition_text, spec)
  def.hash = hearth.digest(body):sub(1, 12)
  def.old_versions = {}
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
  hearth.keep_version { kind = "journey", name = def.name, hash = def.hash, label = def.label, body = body,
                        attr = def.attr, timer = def.timer, migrates = def.migrate ~= nil and def.migrate.mode ~= "old",
                        plan = function(st) return plan_run(def, st) end }
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
           converted = st.converted == true, version = st.version, label = st.label }
end

-- journey.version(name) -> hash, label: the loaded version of a journey.
function journey.version(name)
  local def = defs[name]
  if not def then error(("journey.version: no journey named '%s'"):format(tostring(name)), 2) end
  return def.hash, def.label
end

return journey
