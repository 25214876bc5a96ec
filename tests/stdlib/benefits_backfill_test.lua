-- benefits_backfill_test.lua: the opt-in backfill sweep of birthday timers and derived timer
-- types (benefits_backfill.lua).

test("backfill: a birthday set without member.updated is armed by the next sweep", function(t)
  t:at("2026-11-20T10:00:00+08:00")
  t:event("m-1", "test.set", { k = "birthday", v = "12-02" })
  t:event("m-2", "test.set", { k = "birthday", v = "1990-11-25" })
  t:event("m-3", "test.set", { k = "birthday", v = "someday" })
  t:event("m-4", "checkin")                                     -- no birthday at all
  t:expect_attr("m-1", "_benefits.Club-Gifts", nil)             -- nothing armed yet
  t:at("2026-12-01T02:59:00+08:00")
  t:expect_attr("m-1", "_benefits.Club-Gifts", nil)
  t:at("2026-12-01T03:00:00+08:00")
  t:eq(t:member("m-1").attrs["_benefits.Club-Gifts"].bd_at,
       t:eval("return hearth.time('2026-12-02T10:30:00+08:00')"), "armed for this year's birthday")
  t:expect_attr("m-4", "_benefits.Club-Gifts", nil)             -- nothing to arm: not written
  t:expect_attr("m-3", "_benefits.Club-Gifts", { bd = "someday" })  -- not a date: no timer
  t:at("2026-12-02T10:29:00+08:00")
  t:expect_points("m-1", 0)
  t:at("2026-12-02T10:30:00+08:00")
  local a = t:expect_action({ member = "m-1", action = "points", delta = 50 }, 1)
  t:eq(a.id, "Club-Gifts/m-1/birthday/2026/points", "id")
  -- m-2's birthday had passed this year when it was armed: next year
  t:expect_points("m-2", 0)
  t:at("2027-11-25T10:30:00+08:00")
  t:expect_action({ member = "m-2", action = "points", reason = "birthday 2027" }, 1)
  t:expect_action({ member = "m-1", action = "points" }, 1)
  t:at("2027-12-02T10:30:00+08:00")
  t:expect_action({ member = "m-1", action = "points" }, 2)
  t:expect_no_action{ member = "m-3" }
end)

test("backfill leaves members whose timer is armed alone", function(t)
  t:at("2026-11-20T10:00:00+08:00")
  t:event("m-1", "member.updated", { birthday = "12-05" })
  local st = t:member("m-1").attrs["_benefits.Club-Gifts"]
  t:at("2026-12-01T03:00:00+08:00")
  t:eq(t:member("m-1").attrs["_benefits.Club-Gifts"], st, "unchanged by the sweep")
  t:at("2026-12-05T10:30:00+08:00")
  t:expect_action({ member = "m-1", action = "points" }, 1)
end)

test("timer types: the definition name, or a derived one when it is not an event type", function(t)
  t:at("2026-11-20T10:00:00+08:00")
  t:eq(t:eval("return require('benefits').timer_type('perks')"), "benefits.perks.birthday", "plain")
  local tt = t:eval("return require('benefits').timer_type('Club-Gifts')")
  if not tt:match("^benefits%.club_gifts%.%x%x%x%x%x%x%x%x%.birthday$") then error("derived type: " .. tt) end
  t:eq(t:eval("return require('benefits').timer_type('Club_Gifts')") ~= tt, true, "distinct names, distinct types")
  local long = string.rep("a", 60)
  local lt = t:eval("return require('benefits').timer_type('" .. long .. "')")
  t:eq(#lt <= 64 and lt:match("^[a-z0-9_.]+$") ~= nil, true, "a 60-byte name fits: " .. lt)
end)
