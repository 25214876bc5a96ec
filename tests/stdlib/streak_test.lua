-- Tests of stdlib/streak.lua (SPEC §5 streak), run with
-- `hearth test tests/stdlib/streak_test.lua --stdlib stdlib`.
use("streak_basic.lua")

local T0 = 1793548800 -- 2026-11-02T00:00:00+08:00 (Asia/Shanghai, the default zone)
local function day(n, hh, mm) return T0 + (n - 1) * 86400 + (hh or 10) * 3600 + (mm or 0) * 60 end

local function checkin(t, member, n, hh, mm)
  return t:event(member, "checkin", nil, { time = day(n, hh, mm) })
end

local function state(t, id) return t:member(id).attrs["_streak.daily"] end

test("the first check-in earns points and the first bonus", function(t)
  t:at(day(1, 9))
  checkin(t, "m-1", 1)
  t:expect_points("m-1", 25)
  local a = t:expect_action({ member = "m-1", action = "points", delta = 5, step = "checkin" }, 1)
  t:eq(a.id, "daily/m-1/2026-11-02/checkin", "check-in points key")
  local b = t:expect_action({ member = "m-1", action = "points", delta = 20, step = "first" }, 1)
  t:eq(b.id, "daily/m-1/first", "first bonus key")
  t:eq(state(t, "m-1").len, 1, "streak length")
end)

test("a second check-in on the same local date is ignored", function(t)
  t:at(day(1, 0))
  checkin(t, "m-1", 1, 0, 5)
  checkin(t, "m-1", 1, 12)
  checkin(t, "m-1", 1, 23, 59)
  t:expect_points("m-1", 25)
  t:expect_action({ member = "m-1", action = "points" }, 2)
  t:eq(state(t, "m-1").total, 1, "accepted check-ins")
end)

test("days are local dates, not UTC dates", function(t)
  -- 23:30 and 00:10 Shanghai time are the same UTC date (the 2nd), different local dates
  t:at(day(1, 23, 30))
  checkin(t, "m-1", 1, 23, 30)
  checkin(t, "m-1", 2, 0, 10)
  t:expect_points("m-1", 30)
  t:eq(state(t, "m-1").len, 2, "streak length")
  -- and 00:10 then 23:50 of the same local date are one day, although 16 h apart in UTC
  checkin(t, "m-1", 3, 0, 10)
  checkin(t, "m-1", 3, 23, 50)
  t:expect_points("m-1", 35 + 50) -- day 3 reaches the 3-day milestone
  t:eq(state(t, "m-1").total, 3, "accepted check-ins")
end)

test("yesterday's check-in continues the streak, anything older resets it to 1", function(t)
  t:at(day(1, 9))
  checkin(t, "m-1", 1)
  checkin(t, "m-1", 2, 23)
  t:eq(state(t, "m-1").len, 2, "after two consecutive days")
  checkin(t, "m-1", 4, 8) -- day 3 missed
  t:eq(state(t, "m-1").len, 1, "reset after a missed day")
  t:expect_points("m-1", 20 + 5 * 3)
  -- the first bonus is once ever, not once per streak
  t:expect_action({ member = "m-1", step = "first" }, 1)
  checkin(t, "m-1", 5)
  checkin(t, "m-1", 6)
  t:eq(state(t, "m-1").len, 3, "a new streak grows again")
  t:eq(state(t, "m-1").best, 3, "best streak")
end)

test("a check-in exactly at local midnight belongs to the new date", function(t)
  t:at(day(1, 23, 59))
  checkin(t, "m-1", 1, 23, 59)
  t:event("m-1", "checkin", nil, { time = day(2, 0, 0) })
  t:eq(state(t, "m-1").len, 2, "streak length")
  t:expect_action({ member = "m-1", action = "points", step = "checkin" }, 2)
end)

test("reaching a milestone earns its reward once per streak", function(t)
  t:at(day(1, 9))
  for n = 1, 3 do checkin(t, "m-1", n) end
  local send = t:expect_action({ member = "m-1", action = "send", template = "streak_3" }, 1)
  t:eq(send.status, "queued", "milestone send status")
  t:eq(send.id, "daily/m-1/2026-11-04/milestone3/send", "milestone send key")
  t:eq(send.vars.streak, 3, "vars.streak")
  t:expect_action({ member = "m-1", action = "points", delta = 50, step = "milestone3" }, 1)
  t:expect_points("m-1", 20 + 3 * 5 + 50)
  checkin(t, "m-1", 4)
  checkin(t, "m-1", 5)
  t:expect_action({ member = "m-1", action = "send", template = "streak_3" }, 1)
  local task = t:expect_action({ member = "m-1", action = "task", step = "milestone5" }, 1)
  t:eq(task.text, "call a 5-day streaker", "milestone task")
  t:expect_tag("m-1", "streaker")
  t:expect_points("m-1", 20 + 5 * 5 + 50 + 100)
  checkin(t, "m-1", 6)
  t:expect_action({ member = "m-1", step = "milestone3" }, 2) -- points + send, not again
end)

test("a milestone is earned again each time it is reached after a reset", function(t)
  t:at(day(1, 9))
  for n = 1, 3 do checkin(t, "m-1", n) end
  -- day 4 missed
  for n = 5, 7 do checkin(t, "m-1", n) end
  local sends = t:actions({ member = "m-1", template = "streak_3" })
  t:eq(#sends, 2, "two streak_3 sends")
  t:eq(sends[2].id, "daily/m-1/2026-11-08/milestone3/send", "second milestone key")
  t:expect_points("m-1", 20 + 6 * 5 + 2 * 50)
end)

test("a check-in dated before the latest check-in is ignored", function(t)
  t:at(day(3, 9))
  checkin(t, "m-1", 3)
  checkin(t, "m-1", 2) -- late event for an earlier date
  t:expect_points("m-1", 25)
  t:eq(state(t, "m-1").len, 1, "streak length")
  t:eq(state(t, "m-1").total, 1, "accepted check-ins")
  checkin(t, "m-1", 4) -- the streak goes on from day 3
  t:eq(state(t, "m-1").len, 2, "streak length after the next day")
end)

test("members are independent and a retried event is counted once", function(t)
  t:at(day(1, 9))
  t:eq(t:event("m-1", "checkin", nil, { id = "c-1" }), "applied")
  t:eq(t:event("m-1", "checkin", nil, { id = "c-1" }), "duplicate")
  checkin(t, "m-2", 1)
  checkin(t, "m-2", 2)
  t:expect_points("m-1", 25)
  t:expect_points("m-2", 30)
end)

test("streak.get reports the live streak", function(t)
  t:at(day(1, 9))
  checkin(t, "m-1", 1)
  checkin(t, "m-1", 2)
  t:event("m-1", "probe.streak")
  local p = t:member("m-1").attrs.probe
  t:eq({ p.length, p.last_date, p.best, p.total }, { 2, "2026-11-03", 2, 2 }, "on the day")
  t:at(day(4, 9)) -- day 3 missed: the streak is broken
  t:event("m-1", "probe.streak")
  t:eq(t:member("m-1").attrs.probe.length, 0, "after a missed day")
end)

test("define rejects bad options with a message naming the option", function(t)
  t:at(day(1, 9))
  local function err(opts)
    return t:eval("local ok, e = pcall(require('streak').define, " .. opts .. ") return e")
  end
  t:eq(err("{ name = 'x', points = -1 }"), "streak.define: option 'points' must be an integer >= 0, got -1", "points")
  t:eq(err("{ name = 'x', first_bonus = 1.5 }"), "streak.define: option 'first_bonus' must be an integer >= 0, got 1.5", "bonus")
  t:eq(err("{ points = 1 }"), "streak.define: option 'name' must be a name of 1-64 letters, digits, '_', '.' or '-', got nil", "name")
  t:eq(err("{ name = 'daily' }"), "streak.define: option 'name' must be a name no other definition uses (it is defined twice), got \"daily\"", "duplicate")
  t:eq(err("{ name = 'x', milestone = {} }"), "streak.define: option 'milestone' is unknown (known: event, first_bonus, makeup, milestones, name, points)", "typo")
  t:eq(err("{ name = 'x', milestones = { [0] = { points = 1 } } }"),
       "streak.define: option 'milestones' must be keyed by streak lengths (integers >= 1), got the key 0", "length")
  t:eq(err("{ name = 'x', milestones = { [7] = { card = 1 } } }"),
       "streak.define: option 'milestones[7].card' needs option 'makeup'", "card")
  t:eq(err("{ name = 'x', milestones = { [7] = { sned = 'a' } } }"),
       "streak.define: option 'milestones[7].sned' is unknown (known: card, category, points, send, staff, tag, task, vars)", "reward typo")
  t:eq(err("{ name = 'x', event = 'Check-In' }"),
       "streak.define: option 'event' must be an event type like \"order.paid\" ([a-z0-9_.]{1,64}), got \"Check-In\"", "event")
end)
