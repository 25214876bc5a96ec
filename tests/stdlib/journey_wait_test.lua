-- journey: wait steps with on_event / on_timeout (journey_wait.lua). 2026-11-02 is a
-- Monday, zone +08:00.
use("journey_wait.lua")

local state = require("journey_helpers").state

test("wait: the event first takes on_event, relative to the event; an event before the wait is ignored", function(t)
  t:at("2026-11-02T15:00:00+08:00")           -- Mon
  t:event("m-1", "member.joined")
  t:expect_action { id = "wj/m-1/1/coupon", time = "2026-11-02T15:00:00+08:00" }
  t:at("2026-11-02T20:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 5 })  -- before the wait starts (Tue 15:00)
  t:at("2026-11-04T10:00:00+08:00")
  -- arriving late, during the wait, but dated before the wait started: ignored
  t:event("m-1", "order.paid", { amount = 5 }, { time = "2026-11-03T14:00:00+08:00" })
  t:at("2026-11-04T12:00:00+08:00")           -- Wed
  t:expect_no_action { step = "thanks" }
  t:event("m-1", "order.paid", { amount = 5 })
  t:at("2026-11-20T00:00:00+08:00")
  t:expect_action { id = "wj/m-1/1/thanks", time = "2026-11-04T13:00:00+08:00", template = "thanks" }
  t:expect_action { id = "wj/m-1/1/review", time = "2026-11-06T10:00:00+08:00", action = "task" }
  t:expect_no_action { template = "last_chance" }
  t:eq(state(t, "m-1", "wj").ended, "done", "run completed after the branch")
end)

test("wait: no event within the time takes on_timeout (default step name)", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:at("2026-11-06T14:59:59+08:00")
  t:expect_no_action { template = "last_chance" }
  t:eq(state(t, "m-1", "wj").active, true, "waiting")
  t:at("2026-11-20T00:00:00+08:00")
  t:expect_action { id = "wj/m-1/1/wait_pay.timeout", time = "2026-11-06T15:00:00+08:00", template = "last_chance" }
  t:event("m-1", "order.paid", { amount = 5 })
  t:expect_no_action { template = "thanks" }
  t:eq(state(t, "m-1", "wj").ended, "done", "run completed")
end)

test("wait: an event exactly at the deadline loses to the timeout", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:event("m-2", "member.joined")
  t:at("2026-11-06T15:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 5 })
  t:at("2026-11-20T00:00:00+08:00")
  t:expect_action { id = "wj/m-1/1/wait_pay.timeout" }
  t:expect_no_action { id = "wj/m-1/1/thanks" }
end)

test("wait: an exit during the wait ends the run, no branch is taken", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:at("2026-11-04T00:00:00+08:00")
  t:event("m-1", "friend.deleted")
  t:event("m-1", "order.paid", { amount = 5 })
  t:at("2026-11-20T00:00:00+08:00")
  t:expect_action({ member = "m-1" }, 1)
  t:eq(state(t, "m-1", "wj").ended, "exit", "exited")
end)
