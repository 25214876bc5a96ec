-- journey + caps: marketing steps go through caps.send; tasks and service sends do not.
-- caps: 2 marketing sends per 7 days, quiet 21:00-09:00. 2026-11-02 is a Monday.
use("caps_default.lua", "journey_capped.lua")

test("a step due in quiet hours is deferred to 09:00; tasks are not marketing; the cap applies per step", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined", { staff = "s-1" })
  t:at("2026-11-02T22:00:00+08:00")
  t:expect_action { id = "capj/m-1/1/night", status = "deferred", step = "night" }
  t:expect_action { id = "capj/m-1/1/night_task", status = "queued", action = "task",
                    time = "2026-11-02T22:00:00+08:00" }
  t:at("2026-11-05T00:00:00+08:00")
  t:expect_action { id = "capj/m-1/1/night", status = "queued", time = "2026-11-03T09:00:00+08:00" }
  t:expect_action { id = "capj/m-1/1/d1", status = "queued", time = "2026-11-03T12:00:00+08:00" }
  -- third marketing send within 7 days: capped, recorded for the step, never delivered
  t:expect_action { id = "capj/m-1/1/d2", status = "capped", step = "d2", template = "offer3" }
  t:expect_action { id = "capj/m-1/1/d2svc", status = "queued", category = "service" }
  t:eq(t:member("m-1").attrs["_journey.capj"].ended, "done", "run completed")
end)

test("an exit by friend.deleted during quiet hours: the deferred step cannot reach her", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:at("2026-11-02T23:00:00+08:00")
  t:event("m-1", "friend.deleted")
  t:at("2026-11-10T00:00:00+08:00")
  local recs = t:actions { id = "capj/m-1/1/night" }
  t:eq({ recs[1].status, recs[2].status, recs[2].time, recs[2].reason },
       { "deferred", "suppressed", "2026-11-03T09:00:00+08:00", { rule = "friend_deleted" } }, "night step")
  t:expect_no_action { id = "capj/m-1/1/d1" }
end)

test("the goal reached during quiet hours: the guard skips the deferred step at their end", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:at("2026-11-02T23:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 10 })
  t:at("2026-11-10T00:00:00+08:00")
  local recs = t:actions { id = "capj/m-1/1/night" }
  t:eq({ recs[1].status, recs[2].status, recs[2].time, recs[2].reason },
       { "deferred", "skipped", "2026-11-03T09:00:00+08:00", { rule = "guard", campaign = "capj" } },
       "night step")
end)

test("the goal during quiet hours: the deferred step is skipped too", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:at("2026-11-02T23:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 9 })
  t:at("2026-11-10T00:00:00+08:00")
  t:expect_action { id = "capj/m-1/1/night", status = "skipped", time = "2026-11-03T09:00:00+08:00" }
  t:expect_no_action { status = "queued", action = "send" }
end)

test("a member who unsubscribes during quiet hours ends suppressed, and later steps too", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:at("2026-11-02T23:00:00+08:00")
  t:event("m-1", "member.unsubscribed")      -- not an exit of this journey
  t:at("2026-11-10T00:00:00+08:00")
  t:expect_action { id = "capj/m-1/1/night", status = "suppressed", time = "2026-11-03T09:00:00+08:00" }
  t:expect_action { id = "capj/m-1/1/d1", status = "suppressed" }
  t:expect_action { id = "capj/m-1/1/d2", status = "suppressed" }
  t:expect_action { id = "capj/m-1/1/d2svc", status = "queued" }  -- service passes
end)
