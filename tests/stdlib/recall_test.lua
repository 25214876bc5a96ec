-- Tests of stdlib/recall.lua (SPEC §5 recall), with recall_basic.lua: "winback" (the SPEC
-- example; on_sleeping also tags "sleeping") and "quiet" (checkin only, 7d, no churned
-- stage, no actions).
use("recall_basic.lua")

local T0 = 1793548800 -- 2026-11-02T00:00:00+08:00
local D = 86400
local function ts(t) return os.date("!%Y-%m-%dT%H:%M:%S+08:00", t + 8 * 3600) end

local function stage(t, id)
  t:event(id, "probe.recall")
  return t:member(id).attrs.probe
end
local function state(t, id) return t:member(id).attrs["_recall.winback"] end

test("sleeping exactly sleeping_after after joining, churned exactly churned_after after it", function(t)
  local J = T0 + 15 * 3600
  t:at(J)
  t:event("m-1", "member.joined", { staff = "guide-7" })
  t:at(J + 30 * D - 1)
  t:expect_no_action({ template = "miss_you" })
  t:eq(stage(t, "m-1").winback, "active", "one second before")
  t:at(J + 30 * D)
  local send = t:expect_action({ member = "m-1", template = "miss_you" }, 1)
  t:eq({ send.time, send.status, send.step }, { ts(J + 30 * D), "queued", "sleeping" }, "sleeping send")
  t:eq(send.id, "winback/m-1/" .. ts(J) .. "/sleeping/send", "key derived from the spell")
  t:eq(stage(t, "m-1").winback, "sleeping", "stage")
  t:expect_tag("m-1", "sleeping")
  t:at(J + 90 * D - 1)
  t:expect_no_action({ action = "task" })
  t:at(J + 90 * D)
  local task = t:expect_action({ member = "m-1", action = "task", text = "personal call" }, 1)
  t:eq({ task.time, task.staff, task.step }, { ts(J + 90 * D), "guide-7", "churned" }, "churned task")
  t:eq(stage(t, "m-1").winback, "churned", "stage")
  t:expect_no_tag("m-1", "sleeping")
end)

test("each stage fires once per inactivity spell", function(t)
  t:at(T0)
  t:event("m-1", "member.joined")
  t:advance("400d")
  t:expect_action({ template = "miss_you" }, 1)
  t:expect_action({ action = "task" }, 1)
end)

test("an active event restarts the clock; other events do not", function(t)
  t:at(T0)
  t:event("m-1", "member.joined")
  t:at(T0 + 20 * D)
  t:event("m-1", "order.paid", { amount = 10 })
  t:at(T0 + 25 * D)
  t:event("m-1", "group.joined")      -- not an active event
  t:event("m-1", "member.updated", { city = "Hangzhou" })
  t:at(T0 + 50 * D - 1)
  t:expect_no_action({ template = "miss_you" })
  t:at(T0 + 50 * D)
  t:expect_action({ template = "miss_you", time = ts(T0 + 50 * D) }, 1)
  t:event("m-1", "checkin", nil, { time = T0 + 60 * D })
  t:event("m-1", "message.replied", nil, { time = T0 + 70 * D })
  t:at(T0 + 100 * D - 1)
  t:expect_action({ template = "miss_you" }, 1)
  t:at(T0 + 100 * D)
  t:expect_action({ template = "miss_you" }, 2) -- a new spell, a new touch
  t:at(T0 + 160 * D)
  t:expect_action({ action = "task", time = ts(T0 + 160 * D) }, 1)
end)

test("an active event returns the member to active; within success_within it is recalled", function(t)
  t:at(T0)
  t:event("m-1", "member.joined")
  t:event("m-2", "member.joined")
  t:at(T0 + 30 * D)
  t:event("m-1", "order.paid", { amount = 10 }, { time = T0 + 44 * D }) -- exactly 14 days: recalled
  t:event("m-2", "order.paid", { amount = 10 }, { time = T0 + 44 * D + 1 }) -- one second late
  t:eq(stage(t, "m-1").winback, "active", "m-1 active")
  t:eq(stage(t, "m-2").winback, "active", "m-2 active")
  t:eq(state(t, "m-1").recalled, 1, "m-1 recalled")
  t:eq(state(t, "m-2").recalled, nil, "m-2 not recalled")
  t:expect_no_tag("m-1", "sleeping")
  t:expect_no_tag("m-2", "sleeping")
  t:expect_action({ member = "m-1", action = "untag", tag = "sleeping" }, 1)
end)

test("a churned member answering the churned touch is recalled", function(t)
  t:at(T0)
  t:event("m-1", "member.joined")
  t:at(T0 + 95 * D)
  t:event("m-1", "checkin")
  t:eq(state(t, "m-1").recalled, 1, "recalled within 14 days of the churned touch")
  t:eq(stage(t, "m-1").winback, "active", "stage")
end)

test("an active event at exactly the sleeping time comes after the stage", function(t)
  t:at(T0)
  t:event("m-1", "member.joined")
  t:event("m-1", "checkin", nil, { time = T0 + 30 * D })
  t:expect_action({ template = "miss_you", time = ts(T0 + 30 * D) }, 1)
  t:eq(state(t, "m-1").recalled, 1, "recalled at once")
  t:eq(stage(t, "m-1").winback, "active", "stage")
end)

test("a late active event changes nothing", function(t)
  t:at(T0)
  t:event("m-1", "member.joined")
  t:event("m-1", "order.paid", { amount = 10 }, { time = T0 + 10 * D })
  t:event("m-1", "order.paid", { amount = 10 }, { time = T0 + 5 * D }) -- arrives late
  t:at(T0 + 40 * D - 1)
  t:expect_no_action({ template = "miss_you" })
  t:at(T0 + 40 * D)
  t:expect_action({ template = "miss_you" }, 1)
end)

test("joining again does not restart the clock; an active event without joining does start it", function(t)
  t:at(T0)
  t:event("m-1", "member.joined")
  t:event("m-1", "member.joined", nil, { time = T0 + 10 * D })
  t:event("m-2", "message.replied", nil, { time = T0 + 5 * D }) -- never joined
  t:at(T0 + 30 * D)
  t:expect_action({ member = "m-1", template = "miss_you" }, 1)
  t:expect_no_action({ member = "m-2" })
  t:at(T0 + 35 * D)
  t:expect_action({ member = "m-2", template = "miss_you" }, 1)
end)

test("friend.deleted makes a task for the staff owner and ends the spell's touches", function(t)
  t:at(T0)
  t:event("m-1", "member.joined", { staff = "guide-3" })
  t:event("m-1", "friend.deleted", nil, { time = T0 + 3 * D })
  local task = t:expect_action({ member = "m-1", action = "task", text = "friend deleted" }, 1)
  t:eq({ task.staff, task.time, task.id }, { "guide-3", ts(T0 + 3 * D), "winback/m-1/friend_deleted/" .. ts(T0 + 3 * D) .. "/task" }, "task")
  t:eq(stage(t, "m-1").winback, "gone", "stage: no channel reaches her")
  t:at(T0 + 100 * D)
  t:expect_no_action({ member = "m-1", template = "miss_you" }) -- no sleeping touch
  t:expect_no_action({ member = "m-1", action = "task", text = "personal call" }) -- no churn task
  t:event("m-1", "member.joined") -- added again, and active: a new spell
  t:event("m-1", "message.replied")
  t:eq(stage(t, "m-1").winback, "active", "active again")
  t:at(T0 + 131 * D)
  t:expect_action({ member = "m-1", template = "miss_you" }, 1)
end)

test("definitions are independent; a stage without actions is no recall touch", function(t)
  t:at(T0)
  t:event("m-1", "member.joined")  -- starts both clocks
  t:event("m-1", "order.paid", { amount = 1 }, { time = T0 + 3 * D }) -- active for winback only
  t:at(T0 + 7 * D)
  t:eq(stage(t, "m-1"), { winback = "active", quiet = "sleeping" }, "stages at 7d")
  t:event("m-1", "checkin", nil, { time = T0 + 8 * D }) -- active for both
  t:eq(stage(t, "m-1"), { winback = "active", quiet = "active" }, "stages at 8d")
  t:eq(t:member("m-1").attrs["_recall.quiet"].recalled, nil, "quiet: no touch, no recall")
  t:at(T0 + 38 * D - 1)
  t:expect_no_action({ template = "miss_you" })    -- winback's clock restarted by the checkin
  t:at(T0 + 38 * D)
  t:expect_action({ template = "miss_you" }, 1)
  t:advance("200d")
  t:eq(stage(t, "m-1").quiet, "sleeping", "never churned without churned_after")
end)

test("define rejects bad options with a message naming the option", function(t)
  t:at(T0)
  local function err(opts)
    return t:eval("local ok, e = pcall(require('recall').define, " .. opts .. ") return e")
  end
  t:eq(err("{ name = 'x', sleeping_after = '30d', churned_after = '20d' }"),
       "recall.define: option 'churned_after' must be a duration longer than 'sleeping_after', got \"20d\"", "order")
  t:eq(err("{ name = 'x', sleeping_after = 'soon' }"),
       "recall.define: option 'sleeping_after' must be a positive duration like \"3d\" or \"1d12h\", got \"soon\"", "duration")
  t:eq(err("{ name = 'Win-Back' }"),
       "recall.define: option 'name' must be a name of 1-40 bytes of [a-z0-9_] (it names timer event types), got \"Win-Back\"", "name")
  t:eq(err("{ name = 'x', active = { 'order.paid', 'Bad Type' } }"),
       "recall.define: option 'active[2]' must be an event type like \"order.paid\" ([a-z0-9_.]{1,64}), got \"Bad Type\"", "active")
  t:eq(err("{ name = 'x', on_sleeping = { sned = 'x' } }"),
       "recall.define: option 'on_sleeping.sned' is unknown (known: category, points, send, staff, tag, task, vars)", "typo")
  t:eq(err("{ name = 'x', churned_after = false, on_churned = { task = 'x' } }"),
       "recall.define: option 'on_churned' needs option 'churned_after'", "churned")
  t:eq(err("{ name = 'winback' }"), "recall.define: option 'name' must be a name no other definition uses (it is defined twice), got \"winback\"", "duplicate")
end)
