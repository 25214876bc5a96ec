-- journey: SOP touchpoints (SPEC §5 journey): timing, exit, goal, skipping, reenter = false,
-- validation, on the SPEC's SOP (journey_sop.lua). Clock zone Asia/Shanghai (+08:00);
-- 2026-11-02 is a Monday. Other journey_*_test.lua files: variants and hold-out (ab),
-- reenter / several actions / timing edges (misc), wait steps (wait), caps (caps).
use("journey_sop.lua", "journey_tagging.lua")

local state = require("journey_helpers").state

test("due at the local wall time on the date of entry plus the step's days (Mon 15:00 + 3d at 10:00 -> Thu 10:00)", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined", { staff = "s-1" })
  t:at("2026-11-05T09:59:59+08:00")
  t:expect_no_action { member = "m-1" }
  t:at("2026-11-05T10:00:00+08:00")
  local a = t:expect_action({ id = "sop/m-1/1/day3" }, 1)
  t:eq({ a.time, a.status, a.template, a.step, a.campaign, a.action },
       { "2026-11-05T10:00:00+08:00", "queued", "welcome_tips", "day3", "sop", "send" }, "day3")
  t:at("2026-12-10T00:00:00+08:00")
  -- relative to entry, not to the previous step: day 7 is Mon 9th, not day 3 + 7
  t:expect_action { id = "sop/m-1/1/day7", time = "2026-11-09T10:00:00+08:00", template = "first_order_coupon", status = "queued" }
  t:expect_action { id = "sop/m-1/1/day15", time = "2026-11-17T10:00:00+08:00", template = "group_invite", status = "queued" }
  t:expect_action { id = "sop/m-1/1/day30", time = "2026-12-02T10:00:00+08:00", action = "task",
                    text = "call to introduce member day", status = "queued" }
  t:eq(#t:actions { member = "m-1" }, 4, "four touchpoints")
  local st = state(t, "m-1", "sop")
  t:eq({ st.run, st.active, st.ended }, { 1, false, "done" }, "run completed")
end)

test("the local date counts, not the UTC one (joined 00:30 local, 23:30 local)", function(t)
  t:at("2026-11-03T00:30:00+08:00")  -- Mon 16:30 UTC, Tue local
  t:event("m-1", "member.joined")
  t:at("2026-11-03T23:30:00+08:00")  -- Tue late evening
  t:event("m-2", "member.joined")
  t:at("2026-11-07T00:00:00+08:00")
  t:expect_action { id = "sop/m-1/1/day3", time = "2026-11-06T10:00:00+08:00" }
  t:expect_action { id = "sop/m-2/1/day3", time = "2026-11-06T10:00:00+08:00" }
end)

test("an exit event ends the run at once: pending steps never fire", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:event("m-2", "member.joined")
  t:at("2026-11-06T12:00:00+08:00")
  t:expect_action { id = "sop/m-1/1/day3", status = "queued" }
  -- arriving late but dated before the entry: not an exit of this run
  t:event("m-1", "friend.deleted", nil, { time = "2026-11-02T14:00:00+08:00" })
  t:eq(state(t, "m-1", "sop").active, true, "still running")
  t:event("m-1", "friend.deleted")
  t:event("m-2", "member.unsubscribed")
  t:at("2026-12-31T00:00:00+08:00")
  t:expect_action({ member = "m-1" }, 1)
  t:expect_action({ member = "m-2" }, 1)
  local st = state(t, "m-1", "sop")
  t:eq({ st.active, st.ended, st.run }, { false, "exit", 1 }, "m-1 state")
  t:eq(state(t, "m-2", "sop").ended, "exit", "m-2 ended by unsubscribing")
  -- an exit event outside a run changes nothing
  t:event("m-3", "friend.deleted")
  t:eq(state(t, "m-3", "sop"), nil, "no run for m-3")
end)

test("the first goal event counts one conversion and ends the run (exit_on_goal default)", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:at("2026-11-06T12:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 50 })
  local st = state(t, "m-1", "sop")
  t:eq({ st.converted, st.converted_at, st.active, st.ended },
       { true, t:now(), false, "goal" }, "converted and ended")
  t:event("m-1", "order.paid", { amount = 50 })
  t:eq(state(t, "m-1", "sop").converted_at, st.converted_at, "the second order changes nothing")
  t:at("2026-12-31T00:00:00+08:00")
  t:expect_action({ member = "m-1" }, 1)
  t:expect_no_action { id = "sop/m-1/1/day7" }
end)

test("a goal before entry does not count; a goal after the run completed does not count", function(t)
  t:at("2026-11-01T12:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 10 })
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:eq(state(t, "m-1", "sop").converted, false, "not converted by the earlier order")
  -- an order arriving late but dated before the entry does not count either
  t:at("2026-11-03T12:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 10 }, { time = "2026-11-02T14:00:00+08:00" })
  t:eq(state(t, "m-1", "sop").converted, false, "not converted by an order dated before entry")
  t:eq(state(t, "m-1", "sop").active, true, "still running")
  t:at("2026-12-31T00:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 10 })
  t:eq(state(t, "m-1", "sop").converted, false, "not converted after the run ended")
end)

test("when(m) false: the step is recorded skipped and the run goes on", function(t)
  t:at("2026-11-01T12:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 10 })   -- ordered before joining: orders = 1
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined", { staff = "s-1" })
  t:at("2026-12-31T00:00:00+08:00")
  local a = t:expect_action({ id = "sop/m-1/1/day7" }, 1)
  t:eq({ a.status, a.template, a.time }, { "skipped", "first_order_coupon", "2026-11-09T10:00:00+08:00" }, "day7")
  t:expect_action { id = "sop/m-1/1/day15", status = "queued" }
  t:expect_action { id = "sop/m-1/1/day30", status = "queued" }
end)

test("unless_tag: the member with the tag skips the step and the run goes on", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined", { staff = "s-1" })
  t:event("m-2", "member.joined")
  t:event("m-1", "test.tag", { tag = "in_group" })
  t:at("2026-12-31T00:00:00+08:00")
  t:expect_action { id = "sop/m-1/1/day15", status = "skipped", template = "group_invite" }
  t:expect_action { id = "sop/m-2/1/day15", status = "queued" }
  t:expect_action { id = "sop/m-1/1/day30", status = "queued" }
  t:expect_no_action { id = "sop/m-1/1/day15", status = "queued" }
end)

test("reenter = false: a member runs the journey at most once", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:at("2026-11-06T12:00:00+08:00")
  t:event("m-1", "friend.deleted")
  t:event("m-1", "member.joined")
  t:at("2027-01-10T12:00:00+08:00")
  t:event("m-1", "member.joined")   -- also after a completed-length pause
  t:at("2027-03-01T00:00:00+08:00")
  t:expect_action({ member = "m-1" }, 1)
  t:eq(state(t, "m-1", "sop").run, 1, "one run only")
end)

test("without hold-out and variants nobody is held out and runs have no variant", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:eq(t:eval([[
    local j, n = require "journey", 0
    for i = 1, 500 do if j.assign("sop", "m-" .. i) ~= nil then n = n + 1 end end
    return n ]]), 0, "members assigned to something")
  t:event("m-1", "member.joined")
  t:eq(state(t, "m-1", "sop").variant, nil, "variant")
  t:eq(state(t, "m-1", "sop").t, t:now(), "entry time")
end)

test("journey.define validates every option, naming its path, what it must be and what it got", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  local got = t:eval([[
    local j = require "journey"
    local function s(extra)
      local spec = { name = "v", enter = "member.joined", steps = { { name = "a", send = "x" } } }
      for k, v in pairs(extra) do spec[k] = v end
      return spec
    end
    local bad = {
      "x",
      s { name = "Bad Name" },
      s { name = "sop" },
      s { enter = "Member Joined" },
      s { enter = false },
      s { exit = { "ok", 5 } },
      s { goal = "member.joined", exit = "member.joined" },
      s { exit = "member.joined" },
      s { exit_on_goal = "yes" },
      s { reenter = 1 },
      s { holdout = 150 },
      s { variants = { A = 0 } },
      s { variants = { holdout = 1 } },
      s { steps = {} },
      s { steps = { { send = "x" } } },
      s { steps = { { name = "a", send = "x" }, { name = "a", send = "y" } } },
      s { steps = { { name = "a", after = "3x", send = "x" } } },
      s { steps = { { name = "a", at = "24:00", send = "x" } } },
      s { steps = { { name = "a", at = "10", send = "x" } } },
      s { steps = { { name = "a", when = true, send = "x" } } },
      s { steps = { { name = "a" } } },
      s { steps = { { name = "a", send = { A = "x" } } } },
      s { variants = { A = 1, B = 1 }, steps = { { name = "a", send = { A = "x" } } } },
      s { variants = { A = 1 }, steps = { { name = "a", send = { A = "x", C = "y" } } } },
      s { steps = { { name = "a", send = "x", unles_tag = "t" } } },
      s { steps = { { name = "a", points = -5 } } },
      s { steps = { { name = "a", send = "x", category = "promo" } } },
      s { steps = { { name = "a", wait = "order.paid" } } },
      s { steps = { { name = "a", wait = "order.paid", within = "0s" } } },
      s { steps = { { name = "a", wait = "order.paid", within = "1d", send = "x" } } },
      s { steps = { { name = "a", send = "x", within = "1d" } } },
      s { steps = { { name = "a", wait = "order.paid", within = "1d", on_event = { { name = "b" } } } } },
      s { exit = "friend.deleted", steps = { { name = "a", wait = "friend.deleted", within = "1d" } } },
      s { steps = { { name = "a", send = "x", unless_tag = {} } } },
      s { reenter = { cooldown = "3x" } },
      s { reenter = { max_runs = 0 } },
      s { reenter = { max = 3 } },
      s { goal_within = "14d" },
      s { goal = "order.paid", goal_within = "0s" },
      s { goal = "order.paid", revenue = 5 },
      s { revenue = true },
      s { steps = { { name = "a", split = 5, arms = { x = { send = "y" } } } } },
      s { steps = { { name = "a", split = "city" } } },
      s { steps = { { name = "a", split = "city", arms = { none = { send = "x" } } } } },
      s { steps = { { name = "a", split = "city", arms = { x = { send = "y" } }, send = "z" } } },
      s { steps = { { name = "a", send = "x", arms = {} } } },
      s { steps = { { name = "a", after = "2d", split = "city", arms = { x = { { after = "2d", send = "y" }, { after = "1d", send = "z" } } } } } },
      s { steps = { { name = "a", split = "city", arms = { x = { send = "y" } }, otherwise = { name = "a", send = "z" } } } },
    }
    local out = {}
    for i, spec in ipairs(bad) do
      local ok, err = pcall(j.define, spec)
      out[i] = ok and "accepted" or tostring(err)
    end
    return out ]])
  local want = {
    "expects a table of options, got \"x\"",
    "option 'name' must be a journey name of 1-56 bytes of [a-z0-9_], got \"Bad Name\"",
    "option 'name' must be a name no other definition uses (it is defined twice), got \"sop\"",
    "option 'enter' must be an event type like \"order.paid\" ([a-z0-9_.]{1,64}), got \"Member Joined\"",
    "option 'enter' must be an event type like \"order.paid\" ([a-z0-9_.]{1,64}), got false",
    "option 'exit[2]' must be an event type like \"order.paid\" ([a-z0-9_.]{1,64}), got 5",
    "option 'goal' must be an event type that is not also an exit, got \"member.joined\"",
    "option 'enter' must be an event type that is not also an exit, got \"member.joined\"",
    "option 'exit_on_goal' must be true or false, got \"yes\"",
    "option 'reenter' must be true, false or a table { cooldown = \"30d\", max_runs = 3 }, got 1",
    "option 'holdout' must be a number in 0-100, got 150",
    "option 'variants.A' must be a positive integer, got 0",
    "option 'variants' must be keyed by variant names ([A-Za-z0-9_]{1,32}, not \"holdout\"), got the key \"holdout\"",
    "option 'steps' must be a non-empty list of steps, got an empty table",
    "option 'steps[1].name' must be a step name of 1-64 bytes of [A-Za-z0-9_.-], got nil",
    "option 'steps[2].name' must be a step name not used before in the journey, got \"a\"",
    "option 'steps[1].after' must be a duration like \"3d\" or \"1d12h\", got \"3x\"",
    "option 'steps[1].at' must be a local time \"HH:MM\" (00:00-23:59), got \"24:00\"",
    "option 'steps[1].at' must be a local time \"HH:MM\" (00:00-23:59), got \"10\"",
    "option 'steps[1].when' must be a function(m, info), got true",
    "option 'steps[1]' must be a step with an action (send, task, tag or points) or a wait",
    "option 'steps[1].send' must be a template name (templates per variant need variants = {...} in the journey), got a table",
    "option 'steps[1].send.B' must be a template name of 1-128 bytes, got nil",
    "option 'steps[1].send.C' is unknown (known: A)",
    "option 'steps[1].unles_tag' is unknown (known: after, arms, at, category, channel, name, on_event, on_timeout, otherwise, points, reason, send, split, staff, tag, task, unless_tag, vars, wait, when, within)",
    "option 'steps[1].points' must be a positive integer, got -5",
    "option 'steps[1].category' must be \"marketing\" or \"service\", got \"promo\"",
    "option 'steps[1].within' must be a positive duration like \"3d\" or \"1d12h\", got nil",
    "option 'steps[1].within' must be a positive duration like \"3d\" or \"1d12h\", got \"0s\"",
    "option 'steps[1].send' is unknown (known: after, at, name, on_event, on_timeout, wait, within)",
    "option 'steps[1].within' belongs to a wait step (set wait = \"event.type\")",
    "option 'steps[1].on_event[1]' must be a step with an action (send, task, tag or points) or a wait",
    "option 'steps[1].wait' must be an event type that is not also an exit (the run would end first), got \"friend.deleted\"",
    "option 'steps[1].unless_tag' must be a tag or a non-empty list of tags, got an empty table",
    "option 'reenter.cooldown' must be a duration like \"3d\" or \"1d12h\", got \"3x\"",
    "option 'reenter.max_runs' must be a positive integer, got 0",
    "option 'reenter.max' is unknown (known: cooldown, max_runs)",
    "option 'goal_within' needs option 'goal'",
    "option 'goal_within' must be a positive duration like \"3d\" or \"1d12h\", got \"0s\"",
    "option 'revenue' must be true (data.amount) or the name of a data field like \"amount\", got 5",
    "option 'revenue' needs option 'goal'",
    "option 'steps[1].split' must be an attribute name or a function(m, info) -> arm name, got 5",
    "option 'steps[1].arms' must be a table of arms like { sh = { steps }, bj = { steps } }, got nil",
    "option 'steps[1].arms' must be keyed by arm names ([A-Za-z0-9_]{1,32}, not \"none\" or \"otherwise\"), got the key \"none\"",
    "option 'steps[1].send' is unknown (known: after, arms, at, name, otherwise, split)",
    "option 'steps[1].arms' belongs to a split step (set split = \"attribute\" or a function)",
    "option 'steps[1].arms.x[2].after' must be a duration not shorter than its split's after (\"2d\"): arm steps are timed from the same start, got \"1d\"",
    "option 'steps[1].otherwise.name' must be a step name not used before in the journey, got \"a\"",
  }
  for i, w in ipairs(want) do
    if got[i] ~= "journey.define: " .. w then
      error(("case %d: expected the error %q, got %s"):format(i, "journey.define: " .. w, tostring(got[i])))
    end
  end
  t:eq(#got, #want, "every bad spec rejected")
end)
