-- staff_test.lua: the shipped staff wiring: channel codes give new friends an owner
-- (channel_welcome.lua), tasks are due two days after they are set (staff.lua), and the
-- onboarding day-30 call is counted overdue on the virtual clock until it is done.
use("00_caps.lua", "staff.lua", "channel_welcome.lua", "onboarding.lua")

-- The first member id m-1, m-2, ... in onboarding's variant A (not held out).
local function in_variant_a(t, from)
  return t:eval(([[
    local j = require "journey"
    for i = %d, 5000 do
      if j.assign("onboarding", "m-" .. i) == "A" then return "m-" .. i end
    end ]]):format(from or 1))
end

test("a guide's card rotates new friends over the guides; data.staff keeps her guide", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  for i = 1, 4 do t:event("g-" .. i, "member.joined", { channel = "guide_card" }) end
  t:event("g-5", "member.joined", { channel = "guide_card", staff = "staff-wang" })
  local owners = {}
  for i = 1, 5 do owners[i] = t:member("g-" .. i).attrs.staff end
  t:eq(owners, { "staff-li", "staff-wang", "staff-zhao", "staff-li", "staff-wang" }, "in turn, data.staff kept")
end)

test("other codes go to the guide with the fewest members", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("p-1", "member.joined", { channel = "poster", staff = "staff-li" })
  t:event("p-2", "member.joined", { channel = "poster" })
  t:event("p-3", "member.joined", { channel = "live" })
  t:event("p-4", "member.joined", { channel = "poster" })
  t:eq({ t:member("p-2").attrs.staff, t:member("p-3").attrs.staff, t:member("p-4").attrs.staff },
       { "staff-wang", "staff-zhao", "staff-li" }, "least-loaded, ties to the first listed")
end)

test("the day-30 call is due two days later, overdue then, and closed by task.done", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  local id = in_variant_a(t)
  t:event(id, "member.joined", { channel = "poster", staff = "staff-zhao" })
  t:at("2026-12-02T10:00:00+08:00")
  local task = t:expect_action({ id = "onboarding/" .. id .. "/1/day30", action = "task" }, 1)
  t:eq({ task.staff, task.due, task.status }, { "staff-zhao", "2026-12-04T10:00:00+08:00", "queued" }, "the call")
  t:at("2026-12-04T10:00:00+08:00")
  t:eq(t:staff()["staff-zhao"].overdue, 1, "overdue at its due time")
  t:event(id, "task.done", { task = task.id })
  t:eq({ t:staff()["staff-zhao"].overdue, t:staff()["staff-zhao"].done }, { 0, 1 }, "done")
end)
