-- Tests of stdlib/streak.lua with caps (streak_caps.lua): milestone sends are marketing
-- sends through require("caps").send: capped, deferred in quiet hours; service ones pass.
local T0 = 1793548800 -- 2026-11-02T00:00:00+08:00

test("milestone sends go through caps", function(t)
  t:at(T0 + 10 * 3600)
  t:event("m-1", "checkin")                                      -- length 1: "hello" queued
  t:event("m-1", "checkin", nil, { time = T0 + 86400 + 10 * 3600 }) -- length 2: capped (1 per 7d)
  t:event("m-1", "checkin", nil, { time = T0 + 2 * 86400 + 10 * 3600 }) -- length 3: service
  t:eq(t:expect_action({ template = "hello" }).status, "queued", "first send")
  t:eq(t:expect_action({ template = "streak_2" }).status, "capped", "second send in 7 days")
  t:eq(t:expect_action({ template = "streak_3_notice" }).status, "queued", "service send")
  t:expect_points("m-1", 3)
end)

test("a milestone reached in quiet hours is sent at their end", function(t)
  t:at(T0 + 22 * 3600)
  t:event("m-1", "checkin") -- 22:00: quiet
  local first = t:expect_action({ template = "hello" })
  t:eq(first.status, "deferred", "deferred at night")
  t:expect_points("m-1", 1) -- the points are not deferred
  t:advance("11h")          -- 09:00
  local sends = t:actions({ template = "hello" })
  t:eq(sends[#sends].status, "queued", "judged at 09:00")
  t:eq(sends[#sends].time, "2026-11-03T09:00:00+08:00", "time of the send")
end)
