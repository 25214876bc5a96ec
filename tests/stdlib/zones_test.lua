-- zones_test.lua: journey `at`, streak days, birthdays and member day on each member's own
-- clock (her `tz` attribute), across the 2026 DST changes of New York (8 March, 1 November)
-- and London (29 March, 25 October); a member without tz lives on the engine's zone
-- (Asia/Shanghai, +08:00, no DST). Expected times are written in the engine's zone (that
-- is how actions show them), with the member's wall time beside them.
use("zones.lua")

local function join(t, id, tz)
  t:event(id, "member.joined", tz and { tz = tz } or nil)
end

local function due(t, id, step)
  local a = t:expect_action({ member = id, step = step }, 1)
  return a.time
end

test("journey at: the local date of entry plus the step's days, at her wall time", function(t)
  t:at("2026-11-10T12:00:00+08:00") -- 04:00Z: New York 9 Nov 23:00, London 10 Nov 04:00
  join(t, "m-sh", "Asia/Shanghai")
  join(t, "m-ny", "America/New_York")
  join(t, "m-ld", "Europe/London")
  join(t, "m-no")
  t:at("2026-11-20T00:00:00+08:00")
  t:eq(due(t, "m-sh", "d1"), "2026-11-11T10:00:00+08:00", "Shanghai: 11 Nov 10:00 +08")
  t:eq(due(t, "m-ny", "d1"), "2026-11-10T23:00:00+08:00", "New York: 10 Nov 10:00 EST")
  t:eq(due(t, "m-ld", "d1"), "2026-11-11T18:00:00+08:00", "London: 11 Nov 10:00 GMT")
  t:eq(due(t, "m-no", "d1"), "2026-11-11T10:00:00+08:00", "no tz: the engine's zone")
end)

test("journey at across New York's spring change (8 March: 02:00 EST -> 03:00 EDT)", function(t)
  t:at("2026-03-07T12:00:00-05:00")
  join(t, "m-ny", "America/New_York")
  t:at("2026-03-10T00:00:00+08:00")
  t:eq(due(t, "m-ny", "d1"), "2026-03-08T22:00:00+08:00", "10:00 EDT (-04:00), not EST")
  t:eq(due(t, "m-ny", "night"), "2026-03-08T14:30:00+08:00", "01:30 EST, before the change")
  t:eq(due(t, "m-ny", "late"), "2026-03-08T15:30:00+08:00", "02:30 does not exist: 03:30 EDT")
end)

test("journey at across New York's autumn change (1 November: 02:00 EDT -> 01:00 EST)", function(t)
  t:at("2026-10-31T12:00:00-04:00")
  join(t, "m-ny", "America/New_York")
  t:at("2026-11-03T00:00:00+08:00")
  t:eq(due(t, "m-ny", "d1"), "2026-11-01T23:00:00+08:00", "10:00 EST (-05:00), not EDT")
  t:eq(due(t, "m-ny", "night"), "2026-11-01T13:30:00+08:00", "01:30 twice: the first (EDT)")
  t:eq(due(t, "m-ny", "late"), "2026-11-01T15:30:00+08:00", "02:30 EST")
end)

test("journey at across London's changes (29 March and 25 October)", function(t)
  t:at("2026-03-28T12:00:00+00:00")
  join(t, "m-spring", "Europe/London")
  t:at("2026-10-24T12:00:00+01:00")
  join(t, "m-autumn", "Europe/London")
  t:at("2026-10-27T00:00:00+08:00")
  t:eq(due(t, "m-spring", "d1"), "2026-03-29T17:00:00+08:00", "10:00 BST")
  t:eq(due(t, "m-spring", "night"), "2026-03-29T09:30:00+08:00", "01:30 does not exist: 02:30 BST")
  t:eq(due(t, "m-spring", "late"), "2026-03-29T09:30:00+08:00", "02:30 BST")
  t:eq(due(t, "m-autumn", "d1"), "2026-10-25T18:00:00+08:00", "10:00 GMT")
  t:eq(due(t, "m-autumn", "night"), "2026-10-25T08:30:00+08:00", "01:30 twice: the first (BST)")
  t:eq(due(t, "m-autumn", "late"), "2026-10-25T10:30:00+08:00", "02:30 GMT")
end)

test("journey at: a zone given by member.updated moves the step of a later entry", function(t)
  t:at("2026-11-10T12:00:00+08:00")
  join(t, "m-1")
  join(t, "m-2")
  t:event("m-1", "member.updated", { tz = "America/New_York" })
  t:event("m-1", "order.paid", { amount = 10 })
  t:event("m-2", "order.paid", { amount = 10 })
  t:at("2026-11-20T00:00:00+08:00")
  t:eq(due(t, "m-1", "thanks"), "2026-11-10T23:00:00+08:00", "10 Nov 10:00 in New York")
  t:eq(due(t, "m-2", "thanks"), "2026-11-11T10:00:00+08:00", "11 Nov 10:00 in the engine's zone")
end)

local function checkin(t, id, at)
  t:at(at)
  t:event(id, "checkin")
end

local function streak_of(t, id)
  return t:member(id).attrs["_streak.sign"]
end

test("streak days are her local dates: one pair of instants, two days in New York only", function(t)
  t:at("2026-11-10T12:00:00+08:00")
  join(t, "m-ny", "America/New_York")
  join(t, "m-ld", "Europe/London")
  join(t, "m-sh", "Asia/Shanghai")
  join(t, "m-no")
  -- 11 Nov 12:30 and 13:30 in Shanghai = 04:30Z and 05:30Z: New York 10 Nov 23:30 and 11 Nov
  -- 00:30; London 11 Nov 04:30 and 05:30
  for _, at in ipairs { "2026-11-11T12:30:00+08:00", "2026-11-11T13:30:00+08:00" } do
    for _, id in ipairs { "m-ny", "m-ld", "m-sh", "m-no" } do checkin(t, id, at) end
  end
  t:expect_action({ id = "sign/m-ny/2026-11-10/checkin" }, 1)
  t:expect_action({ id = "sign/m-ny/2026-11-11/checkin" }, 1)
  t:eq(streak_of(t, "m-ny").len, 2, "New York: two days in a row")
  for _, id in ipairs { "m-ld", "m-sh", "m-no" } do
    t:expect_action({ member = id, action = "points" }, 1)
    t:expect_action({ id = "sign/" .. id .. "/2026-11-11/checkin" }, 1)
    t:eq(streak_of(t, id).len, 1, id .. ": one day, the second check-in ignored")
  end
end)

test("streak across DST: New York's 23-hour 8 March and London's 25-hour 25 October", function(t)
  t:at("2026-03-07T12:00:00-05:00")
  t:event("m-ny", "member.updated", { tz = "America/New_York" })
  checkin(t, "m-ny", "2026-03-07T23:59:00-05:00")
  checkin(t, "m-ny", "2026-03-08T23:59:00-04:00")  -- still 8 March on her clock (EDT)
  checkin(t, "m-ny", "2026-03-09T00:01:00-04:00")
  t:expect_action({ id = "sign/m-ny/2026-03-07/checkin" }, 1)
  t:expect_action({ id = "sign/m-ny/2026-03-08/checkin" }, 1)
  t:expect_action({ id = "sign/m-ny/2026-03-09/checkin" }, 1)
  t:eq(streak_of(t, "m-ny").len, 3, "New York: 7, 8 and 9 March")
  t:at("2026-10-24T12:00:00+01:00")
  t:event("m-ld", "member.updated", { tz = "Europe/London" })
  checkin(t, "m-ld", "2026-10-25T00:30:00+01:00")  -- BST
  checkin(t, "m-ld", "2026-10-25T23:30:00+00:00")  -- GMT, the same long day: ignored
  checkin(t, "m-ld", "2026-10-26T00:10:00+00:00")
  t:expect_action({ id = "sign/m-ld/2026-10-25/checkin" }, 1)
  t:expect_action({ id = "sign/m-ld/2026-10-26/checkin" }, 1)
  t:expect_action({ member = "m-ld", action = "points" }, 2)
  t:eq(streak_of(t, "m-ld").len, 2, "London: 25 and 26 October")
end)

local function bday(t, id, tz, b)
  t:event(id, "member.updated", { tz = tz, birthday = b })
end

test("birthdays at 09:00 on her local birthday, DST days included", function(t)
  t:at("2026-03-01T12:00:00+08:00")
  bday(t, "m-ny", "America/New_York", "03-08")
  bday(t, "m-ld", "Europe/London", "03-29")
  bday(t, "m-sh", "Asia/Shanghai", "03-08")
  t:event("m-no", "member.updated", { birthday = "03-08" })
  t:at("2026-04-01T00:00:00+08:00")
  local function at(id) return t:expect_action({ member = id, template = "bday" }, 1).time end
  t:eq(at("m-ny"), "2026-03-08T21:00:00+08:00", "New York: 09:00 EDT on the day clocks go forward")
  t:eq(at("m-ld"), "2026-03-29T16:00:00+08:00", "London: 09:00 BST on the day clocks go forward")
  t:eq(at("m-sh"), "2026-03-08T09:00:00+08:00", "Shanghai")
  t:eq(at("m-no"), "2026-03-08T09:00:00+08:00", "no tz: the engine's zone")
end)

test("a zone given after the birthday was armed moves the birthday run", function(t)
  t:at("2026-11-01T12:00:00+08:00")
  t:event("m-1", "member.updated", { birthday = "11-05" })
  t:event("m-1", "member.updated", { tz = "America/New_York" })
  t:at("2026-11-05T21:59:00+08:00")
  t:expect_no_action { template = "bday" }
  t:at("2026-11-06T00:00:00+08:00")
  t:eq(t:expect_action({ template = "bday" }, 1).time, "2026-11-05T22:00:00+08:00", "09:00 EST")
  -- and back to the engine's clock for next year (the zone removed, then any update)
  t:event("m-1", "test.set", { k = "tz" })
  t:event("m-1", "member.updated", { note = "moved home" })
  t:at("2027-11-06T00:00:00+08:00")
  t:eq(t:expect_action({ id = "zb/m-1/birthday/2027/send" }, 1).time, "2027-11-05T09:00:00+08:00", "+08")
end)

local function md(t, id)
  local out = {}
  for _, a in ipairs(t:actions { member = id, template = "md" }) do out[#out + 1] = a.time end
  return out
end

test("member day: Wednesday 10:00 on her clock, once per her local Wednesday", function(t)
  t:at("2026-11-02T12:00:00+08:00")                 -- Monday
  join(t, "m-sh", "Asia/Shanghai")
  join(t, "m-ny", "America/New_York")
  join(t, "m-ld", "Europe/London")
  join(t, "m-no")
  t:at("2026-11-05T12:00:00+08:00")
  t:eq(md(t, "m-no"), { "2026-11-04T10:00:00+08:00" }, "no tz: the cron sweep")
  t:eq(md(t, "m-sh"), { "2026-11-04T10:00:00+08:00" }, "Shanghai: her own timer, not the sweep too")
  t:eq(md(t, "m-ny"), { "2026-11-04T23:00:00+08:00" }, "New York: 10:00 EST")
  t:eq(md(t, "m-ld"), { "2026-11-04T18:00:00+08:00" }, "London: 10:00 GMT")
  t:expect_action({ id = "zb/m-ny/member_day/2026-11-04/send" }, 1)
  t:at("2026-11-12T12:00:00+08:00")
  t:eq(#md(t, "m-ny"), 2, "the next Wednesday too")
end)

test("member day across DST: New York 4 and 11 March, London 25 March and 1 April", function(t)
  t:at("2026-03-02T12:00:00+08:00")
  join(t, "m-ny", "America/New_York")
  join(t, "m-ld", "Europe/London")
  t:at("2026-04-02T00:00:00+08:00")
  local ny, ld = md(t, "m-ny"), md(t, "m-ld")
  t:eq(ny[1], "2026-03-04T23:00:00+08:00", "10:00 EST")
  t:eq(ny[2], "2026-03-11T22:00:00+08:00", "10:00 EDT")
  t:eq(ld[4], "2026-03-25T18:00:00+08:00", "10:00 GMT")
  t:eq(ld[5], "2026-04-01T17:00:00+08:00", "10:00 BST")
  t:eq(#ld, 5, "one each Wednesday of March and 1 April")
end)

test("member day: a zone set without member.updated is taken up by the next sweep", function(t)
  t:at("2026-11-02T12:00:00+08:00")
  join(t, "m-1")
  t:event("m-1", "test.set", { k = "tz", v = "America/New_York" })
  t:at("2026-11-05T12:00:00+08:00")
  -- the sweep (Wed 10:00 +08 = Tue 21:00 in New York) arms her Wednesday 10:00 EST
  t:eq(md(t, "m-1"), { "2026-11-04T23:00:00+08:00" }, "her Wednesday, not the sweep's")
end)

test("member day: a member back on the engine's clock gets it from the sweep again", function(t)
  t:at("2026-11-02T12:00:00+08:00")
  join(t, "m-1", "America/New_York")
  t:at("2026-11-05T12:00:00+08:00")
  t:event("m-1", "test.set", { k = "tz" })            -- her zone removed by a script
  t:at("2026-11-12T12:00:00+08:00")
  t:eq(md(t, "m-1"), { "2026-11-04T23:00:00+08:00", "2026-11-11T10:00:00+08:00" }, "then the sweep")
end)

test("member day: a zone set by a script that reads the slot as hers is served at the slot", function(t)
  t:at("2026-11-02T12:00:00+08:00")
  join(t, "m-1")
  t:event("m-1", "test.set", { k = "tz", v = "Asia/Singapore" }) -- +08:00 too
  t:at("2026-11-05T12:00:00+08:00")
  t:eq(md(t, "m-1"), { "2026-11-04T10:00:00+08:00" }, "this Wednesday, not next week's")
end)

test("segment days on her clock: a handle's zone, a snapshot's tz", function(t)
  t:at("2026-11-11T13:30:00+08:00")
  -- last order 11 Nov 12:30 +08:00 = 10 Nov 23:30 in New York: one day ago on her clock
  local rfm = [[
    local segment = require "segment"
    local th = { recency_days = 0, frequency = 1, monetary = 1, now = hearth.time("2026-11-11T13:30:00+08:00") }
    local snap = { orders = 1, spend = 10, last_order_at = hearth.time("2026-11-11T12:30:00+08:00"), tz = %s }
    local _, r = segment.rfm(snap, th)
    return r
  ]]
  t:eq(t:eval(rfm:format("nil")), true, "engine's zone: the same day, recent")
  t:eq(t:eval(rfm:format('"America/New_York"')), false, "New York: yesterday, not recent with 0 days")
end)
