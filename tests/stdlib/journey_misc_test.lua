-- journey: reenter = true, exit_on_goal = false, several actions per step, timing edges
-- (journey_misc.lua). 2026-11-02 is a Monday, zone +08:00.
use("journey_misc.lua")

local state = require("journey_helpers").state

test("after without at is exact; at with part days uses whole days; an at earlier than entry fires at entry", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "edge.start")
  t:expect_action { id = "edge/m-1/1/past", time = "2026-11-02T15:00:00+08:00", template = "e2" }
  t:expect_no_action { id = "edge/m-1/1/same_day" }
  t:at("2026-11-02T18:00:00+08:00")
  t:expect_action { id = "edge/m-1/1/same_day", time = "2026-11-02T18:00:00+08:00" }
  t:at("2026-11-05T00:00:00+08:00")
  t:expect_action { id = "edge/m-1/1/half", time = "2026-11-03T09:30:00+08:00" }
  t:expect_action { id = "edge/m-1/1/exact", time = "2026-11-04T03:00:00+08:00" }
  -- misc: plain after, steps listed out of order
  t:event("m-2", "promo.start")
  t:at("2026-11-08T00:00:00+08:00")
  t:expect_action { id = "misc/m-2/1/h1", time = "2026-11-05T01:00:00+08:00", n = 1 }
  t:expect_action { id = "misc/m-2/1/late", time = "2026-11-07T00:00:00+08:00", action = "task", staff = "s-9" }
end)

test("exit_on_goal = false: one conversion per run and the run goes on", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "promo.start")
  t:at("2026-11-02T18:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 10 })
  local st = state(t, "m-1", "misc")
  t:eq({ st.converted, st.active, st.converted_at }, { true, true, t:now() }, "converted, still running")
  t:at("2026-11-02T19:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 10 })
  t:eq(state(t, "m-1", "misc").converted_at, st.converted_at, "counted once")
  t:at("2026-11-10T00:00:00+08:00")
  t:expect_action { id = "misc/m-1/1/d1", status = "queued" }
  t:expect_action { id = "misc/m-1/1/late", status = "queued" }
end)

test("when is judged at the due time; a tag-only step skipped is recorded as a skipped webhook", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "promo.start")
  t:event("m-2", "promo.start")
  t:event("m-2", "member.updated", { vip = true })   -- vip before the due time
  t:at("2026-11-06T00:00:00+08:00")
  t:expect_action { id = "misc/m-1/1/vip", status = "skipped", action = "webhook" }
  t:expect_no_action { member = "m-1", action = "tag", tag = "x" }
  t:expect_action { id = "misc/m-2/1/vip/x", action = "tag", tag = "x", status = "queued" }
  t:expect_action { id = "misc/m-2/1/vip/y", action = "tag", tag = "y", status = "queued" }
  t:expect_tag("m-2", "x")
  t:expect_no_tag("m-1", "x")
end)

test("a step with several actions: send, tag and points under distinct keys", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "promo.start")
  t:at("2026-11-03T15:00:00+08:00")
  t:expect_action { id = "misc/m-1/1/d1", action = "send", template = "s2", step = "d1" }
  t:expect_action { id = "misc/m-1/1/d1/tag", action = "tag", tag = "promo_seen", step = "d1" }
  t:expect_action { id = "misc/m-1/1/d1/points", action = "points", delta = 10, reason = "misc/d1" }
  t:expect_action { id = "misc/m-1/1/svc", category = "service", status = "queued" }
  t:expect_points("m-1", 10)
  t:expect_tag("m-1", "promo_seen")
end)

test("reenter = true: a new run after the previous ended, numbered 2; an enter event during a run is ignored", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "promo.start")
  t:at("2026-11-02T15:30:00+08:00")
  t:event("m-1", "promo.start")     -- during run 1: ignored (no restart of the clock)
  t:at("2026-11-02T17:00:00+08:00")
  t:expect_action({ template = "s1" }, 1)
  t:expect_action { id = "misc/m-1/1/h1", time = "2026-11-02T16:00:00+08:00" }
  t:eq(state(t, "m-1", "misc").run, 1, "still run 1")
  t:event("m-1", "promo.stop")      -- ends run 1
  t:at("2026-11-05T00:00:00+08:00")
  t:expect_no_action { id = "misc/m-1/1/d1" }
  t:event("m-1", "promo.start")     -- run 2
  t:at("2026-11-05T01:00:00+08:00")
  t:expect_action { id = "misc/m-1/2/h1", time = "2026-11-05T01:00:00+08:00" }
  t:at("2026-11-10T00:00:00+08:00")  -- run 2 completes
  t:expect_action { id = "misc/m-1/2/late" }
  t:eq({ state(t, "m-1", "misc").ended, state(t, "m-1", "misc").active }, { "done", false }, "run 2 completed")
  t:event("m-1", "promo.start")     -- run 3 after a completed run
  t:at("2026-11-10T01:00:00+08:00")
  t:expect_action { id = "misc/m-1/3/h1" }
  t:eq(state(t, "m-1", "misc").run, 3, "run 3")
end)
