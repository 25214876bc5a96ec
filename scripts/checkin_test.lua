-- The shipped daily check-in (checkin.lua) with the shipped restraint (00_caps.lua).
-- Clock zone Asia/Shanghai (+08:00); 2026-11-02 is a Monday.
use("00_caps.lua", "checkin.lua")

local T0 = 1793548800 -- 2026-11-02T00:00:00+08:00
local function day(n, hh) return T0 + (n - 1) * 86400 + (hh or 10) * 3600 end
local function checkin(t, id, n, hh) return t:event(id, "checkin", nil, { time = day(n, hh) }) end
local function state(t, id) return t:member(id).attrs["_streak.checkin"] end

test("5 points a day, 20 more the first time, once a day", function(t)
  t:at(day(1, 8))
  checkin(t, "m-1", 1, 8)
  checkin(t, "m-1", 1, 20)
  t:expect_points("m-1", 25)
  checkin(t, "m-1", 2)
  t:expect_points("m-1", 30)
end)

test("7 days in a row: 50 points, the streak_7 message and a make-up card", function(t)
  t:at(day(1, 8))
  for n = 1, 7 do checkin(t, "m-1", n) end
  t:expect_points("m-1", 20 + 7 * 5 + 50)
  local send = t:expect_action({ member = "m-1", template = "streak_7" }, 1)
  t:eq({ send.status, send.time, send.id }, { "queued", "2026-11-08T10:00:00+08:00", "checkin/m-1/2026-11-08/milestone7/send" }, "send")
  t:eq(state(t, "m-1").cards, 1, "card")
end)

test("a milestone reached at night is messaged at 09:00, its points at once", function(t)
  t:at(day(1, 8))
  for n = 1, 6 do checkin(t, "m-1", n) end
  checkin(t, "m-1", 7, 22)
  t:expect_points("m-1", 20 + 7 * 5 + 50)
  t:eq(t:expect_action({ template = "streak_7" }).status, "deferred", "at 22:00")
  t:at(day(8, 9))
  local sends = t:actions({ template = "streak_7" })
  t:eq({ sends[#sends].status, sends[#sends].time }, { "queued", "2026-11-09T09:00:00+08:00" }, "at 09:00")
end)

test("30 days: 300 points; a missed day resets, and the 7-day milestone comes again", function(t)
  t:at(day(1, 8))
  for n = 1, 30 do checkin(t, "m-1", n) end
  t:expect_points("m-1", 20 + 30 * 5 + 50 + 300)
  t:expect_action({ member = "m-1", action = "points", delta = 300, step = "milestone30" }, 1)
  for n = 32, 38 do checkin(t, "m-1", n) end -- day 31 missed
  t:eq(state(t, "m-1").len, 7, "new streak")
  t:expect_action({ member = "m-1", action = "points", delta = 50, step = "milestone7" }, 2)
  t:expect_points("m-1", 20 + 37 * 5 + 2 * 50 + 300)
end)

test("a make-up card repairs yesterday", function(t)
  t:at(day(1, 8))
  t:event("m-1", "checkin.card", { n = 1 })
  checkin(t, "m-1", 1)
  checkin(t, "m-1", 2)
  checkin(t, "m-1", 4) -- day 3 missed: the streak restarts at 1
  t:eq(state(t, "m-1").len, 1, "reset")
  t:event("m-1", "checkin.makeup", { date = "2026-11-04" }, { time = day(4, 12) })
  t:eq({ state(t, "m-1").len, state(t, "m-1").cards }, { 4, 0 }, "joined up with the card")
  for n = 5, 7 do checkin(t, "m-1", n) end
  t:expect_action({ member = "m-1", template = "streak_7" }, 1) -- 7 days counting the repaired one
  t:expect_points("m-1", 20 + 6 * 5 + 50)
end)

test("cards are held up to 3", function(t)
  t:at(day(1, 8))
  t:event("m-1", "checkin.card", { n = 5 })
  t:expect_attr("m-1", "_streak.checkin", { len = 0, best = 0, total = 0, cards = 3 })
end)
