-- The shipped Double 11 broadcast (double11.lua) with the shipped restraint (00_caps.lua).
use("00_caps.lua", "double11.lua")

local AT = "2026-11-11T10:00:00+08:00"

-- A member in Hangzhou with one paid order, as of `time`.
local function buyer(t, id, time)
  t:event(id, "member.updated", { city = "Hangzhou" }, { time = time })
  t:event(id, "order.paid", { amount = 99 }, { time = time })
end

test("fires once at its time, to members in Hangzhou with an order", function(t)
  t:at("2026-11-05T12:00:00+08:00")
  buyer(t, "m-1")
  t:event("m-2", "member.updated", { city = "Hangzhou" }) -- no order
  t:event("m-3", "member.updated", { city = "Ningbo" })
  t:event("m-3", "order.paid", { amount = 99 })
  t:at("2026-11-11T09:59:59+08:00")
  t:expect_no_action({ template = "d11_coupon" })
  t:at(AT)
  local s = t:expect_action({ template = "d11_coupon" }, 1)
  t:eq({ s.member, s.status, s.time, s.id }, { "m-1", "queued", AT, "double11/m-1/broadcast:double11/1" },
    "the coupon")
  t:at("2027-11-11T10:00:00+08:00")
  t:expect_action({ template = "d11_coupon" }, 1) -- not again a year later
end)

test("an ordinary marketing send: caps and quiet hours apply", function(t)
  t:at("2026-11-05T12:00:00+08:00")
  buyer(t, "m-1")
  buyer(t, "m-2")
  t:event("m-2", "member.updated", { tz = "America/New_York" }) -- 21:00 there
  t:at(AT)
  t:eq(t:expect_action({ member = "m-1", template = "d11_coupon" }).status, "queued", "m-1")
  t:eq(t:expect_action({ member = "m-2", template = "d11_coupon" }).status, "deferred", "m-2 at night")
end)

test("a member who joins after it ran gets nothing", function(t)
  t:at("2026-11-05T12:00:00+08:00")
  buyer(t, "m-1")
  t:at(AT)
  buyer(t, "m-2", AT) -- an event at its time comes after it
  t:at("2026-11-12T10:00:00+08:00")
  t:expect_action({ template = "d11_coupon" }, 1)
  t:expect_no_action({ member = "m-2", template = "d11_coupon" })
end)
