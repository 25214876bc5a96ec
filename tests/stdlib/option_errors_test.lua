-- Option errors of every standard module (stdlib/options.lua): one wording, "option
-- '<path>' must be <what>, got <value>" (or "... is unknown (known: ...)"), raised at the
-- line of the operator's call. caps_default.lua loads caps, as a campaign script would.
use("caps_default.lua")

-- The error of `call` (Lua source, possibly several lines) written from line 3 of a chunk
-- run in the campaign's Lua state. The chunk is named "t:eval", so an error raised at the
-- caller's level reads "t:eval:3: ...".
local function error_of(t, call)
  return t:eval("local ok, err = pcall(function()\n  -- the call starts on line 3\n" .. call
                .. "\nend)\nreturn ok and 'accepted' or tostring(err)")
end

local function expect(t, call, want)
  local got = error_of(t, call)
  if got ~= want then error(("%s\nexpected: %s\n     got: %s"):format(call, want, got), 2) end
end

local T0 = "2026-11-02T10:00:00+08:00"

test("journey: a step's duration, its wait branch, an unknown option; the define line", function(t)
  t:at(T0)
  expect(t, [[require("journey").define {
  name = "bad", enter = "member.joined",
  steps = {
    { name = "day0", send = "welcome" },
    { name = "day3", after = "3x", send = "tips" },
  },
}]], [[t:eval:3: journey.define: option 'steps[2].after' must be a duration like "3d" or "1d12h", got "3x"]])
  expect(t, [[require("journey").define { name = "bad", enter = "member.joined",
  steps = { { name = "w", wait = "order.paid", within = "2d", on_timeout = { at = "25:00", send = "x" } } } }]],
    [[t:eval:3: journey.define: option 'steps[1].on_timeout.at' must be a local time "HH:MM" (00:00-23:59), got "25:00"]])
  expect(t, [[require("journey").define { name = "bad", enter = "member.joined", exits = "friend.deleted",
  steps = { { name = "a", send = "x" } } }]],
    "t:eval:3: journey.define: option 'exits' is unknown (known: enter, exit, exit_on_goal, goal, goal_within, "
    .. "holdout, migrate, name, reenter, revenue, steps, variants, version, winner)")
end)

test("journey: version and migrate options", function(t)
  t:at(T0)
  local steps = [[steps = { { name = "day5", after = "5d", send = "x" } } }]]
  expect(t, [[require("journey").define { name = "bad", enter = "member.joined", version = 2,
  ]] .. steps, [[t:eval:3: journey.define: option 'version' must be a version label of 1-64 bytes, got 2]])
  expect(t, [[require("journey").define { name = "bad", enter = "member.joined", migrate = { map = { day7 = "day5" } },
  ]] .. steps,
    [[t:eval:3: journey.define: option 'migrate.from' must be a version label or hash, or a list of them ("*": any other version), got nil]])
  expect(t, [[require("journey").define { name = "bad", enter = "member.joined", migrate = { from = "1", map = { day7 = "day6" } },
  ]] .. steps, [[t:eval:3: journey.define: option 'migrate.map.day7' must be a step name of this version, got "day6"]])
  expect(t, [[require("journey").define { name = "bad", enter = "member.joined",
  migrate = { from = "1", restart = true, map = { day7 = "day5" } },
  ]] .. steps, [[t:eval:3: journey.define: option 'migrate.restart' cannot go with migrate.map (a restarted run has no old steps)]])
  expect(t, [[require("journey").define { name = "bad", enter = "member.joined", migrate = { from = "1", retime = true },
  ]] .. steps, [[t:eval:3: journey.define: option 'migrate.retime' needs runs that move (a map or finish_old = false)]])
  expect(t, [[require("journey").define { name = "bad", enter = "member.joined", migrate = { from = "1", finsh_old = false },
  ]] .. steps, [[t:eval:3: journey.define: option 'migrate.finsh_old' is unknown (known: finish_old, from, map, restart, retime)]])
end)

test("caps.set: a duration, a wall time, an unknown part", function(t)
  t:at(T0)
  expect(t, [[require("caps").set { marketing = { max = 2, per = "7x" } }]],
    [[t:eval:3: caps.set: option 'marketing.per' must be a positive duration like "3d" or "1d12h", got "7x"]])
  expect(t, [[require("caps").set { quiet = { from = "21:00", to = "9" } }]],
    [[t:eval:3: caps.set: option 'quiet.to' must be a local time "HH:MM" (00:00-23:59), got "9"]])
  expect(t, [[require("caps").set { quite = {} }]],
    "t:eval:3: caps.set: option 'quite' is unknown (known: channels, marketing, quiet)")
  t:eq(t:eval("return require('caps').config().marketing.max"), 2, "the configuration is unchanged")
end)

test("streak: a milestone reward (reward.lua) and make-up options", function(t)
  t:at(T0)
  expect(t, [[require("streak").define { name = "s", milestones = { [7] = { points = 0 } } }]],
    "t:eval:3: streak.define: option 'milestones[7].points' must be a positive integer, got 0")
  expect(t, [[require("streak").define { name = "s", makeup = { max_cards = 0 } }]],
    "t:eval:3: streak.define: option 'makeup.max_cards' must be a positive integer, got 0")
  expect(t, [[require("streak").define { name = "s", makeup = { use = "checkin" } }]],
    [[t:eval:3: streak.define: option 'makeup.use' must be an event type other than 'event' and 'makeup.grant', got "checkin"]])
end)

test("referral: a tier's reward, an unknown option", function(t)
  t:at(T0)
  expect(t, [[require("referral").define { name = "r", tiers = { [3] = { send = 5 } } }]],
    "t:eval:3: referral.define: option 'tiers[3].send' must be a non-empty string, got 5")
  expect(t, [[require("referral").define { name = "r", reward = { tag = "vip", pionts = 5 } }]],
    "t:eval:3: referral.define: option 'reward.pionts' is unknown (known: category, points, send, staff, tag, task, vars)")
end)

test("recall: durations, a stage's actions", function(t)
  t:at(T0)
  expect(t, [[require("recall").define { name = "r", success_within = "soon" }]],
    [[t:eval:3: recall.define: option 'success_within' must be a duration like "3d" or "1d12h", got "soon"]])
  expect(t, [[require("recall").define { name = "r", sleeping_after = 0 }]],
    [[t:eval:3: recall.define: option 'sleeping_after' must be a positive duration like "3d" or "1d12h", got 0]])
  expect(t, [[require("recall").define { name = "r", on_churned = { staff = "" } }]],
    [[t:eval:3: recall.define: option 'on_churned.staff' must be a non-empty string, got ""]])
end)

test("tiers: a level's threshold and tags, a duration", function(t)
  t:at(T0)
  expect(t, [[require("tiers").define { name = "v", levels = {
  { name = "silver", min = 1000 },
  { name = "gold", min = 500 },
} }]], "t:eval:3: tiers.define: option 'levels[2].min' must be greater than the previous level's (1000), got 500")
  expect(t, [[require("tiers").define { name = "v", levels = { { name = "a", min = 1, tag = { "ok", "" } } } }]],
    [[t:eval:3: tiers.define: option 'levels[1].tag[2]' must be a tag of 1-128 bytes, got ""]])
  expect(t, [[require("tiers").define { name = "v", hold = "0s", levels = { { name = "a", min = 1 } } }]],
    [[t:eval:3: tiers.define: option 'hold' must be a positive duration like "3d" or "1d12h", got "0s"]])
end)

test("benefits: a wall time, a by_tag entry, an enum", function(t)
  t:at(T0)
  expect(t, [[require("benefits").define { name = "b", birthday = { send = "gift", at = "9am" } }]],
    [[t:eval:3: benefits.define: option 'birthday.at' must be a local time "HH:MM" (00:00-23:59), got "9am"]])
  expect(t, [[require("benefits").define { name = "b",
  member_day = { cron = "0 10 * * 3", send = "x", by_tag = { { tag = "vip", points = 0 } } } }]],
    "t:eval:3: benefits.define: option 'member_day.by_tag[1].points' must be a positive integer, got 0")
  expect(t, [[require("benefits").define { name = "b", birthday = { send = "gift", feb29 = "skip" } }]],
    [[t:eval:3: benefits.define: option 'birthday.feb29' must be "feb28" or "mar1", got "skip"]])
end)

test("channel: a welcome template, an enum, an unknown option", function(t)
  t:at(T0)
  expect(t, [[require("channel").define { name = "c", welcome = { poster = 3 } }]],
    "t:eval:3: channel.define: option 'welcome.poster' must be a template name of 1-128 bytes, got 3")
  expect(t, [[require("channel").define { name = "c", category = "loud" }]],
    [[t:eval:3: channel.define: option 'category' must be "service" or "marketing", got "loud"]])
  expect(t, [[require("channel").define { name = "c", greeting = "hi" }]],
    "t:eval:3: channel.define: option 'greeting' is unknown (known: category, name, owner, tag_prefix, unknown, "
    .. "vars, welcome, welcome_rejoin)")
end)

test("segment: thresholds and lifecycle options, at the line of the call in a handler", function(t)
  t:at(T0)
  expect(t, [[require("segment").rfm({ orders = 1, spend = 1 }, { recency_days = 30, frequency = 0, monetary = 1 })]],
    "t:eval:3: segment.rfm: option 'thresholds.frequency' must be a number > 0, got 0")
  expect(t, [[require("segment").lifecycle({ orders = 1 }, { by = "visits" })]],
    [[t:eval:3: segment.lifecycle: option 'by' must be "activity" or "order", got "visits"]])
  expect(t, [[require("segment").lifecycle({ orders = 1 }, { stable = 3 })]],
    "t:eval:3: segment.lifecycle: option 'stable' is unknown (known: by, churned_days, decline_days, now, "
    .. "stable_days, stable_orders)")
end)
