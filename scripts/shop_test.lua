-- The shipped points mall (shop.lua) with the shipped check-in (checkin.lua) and restraint.
use("00_caps.lua", "checkin.lua", "shop.lua")

local T0 = 1793548800 -- 2026-11-02T00:00:00+08:00
local function day(n, hh) return T0 + (n - 1) * 86400 + (hh or 10) * 3600 end

local function checkins(t, id, days) for n = 1, days do t:event(id, "checkin", nil, { time = day(n) }) end end

test("check-in points buy a coupon, once per order id, with a service message", function(t)
  t:at(day(1, 8))
  checkins(t, "m-1", 16) -- 20 + 16 x 5 + 50 = 150 points
  t:event("m-1", "mall.redeem", { item = "coupon_20", order = "mo-1" }, { time = day(16, 12) })
  t:event("m-1", "mall.redeem", { item = "coupon_20", order = "mo-1" }, { time = day(16, 13) })
  t:expect_points("m-1", 50)
  local a = t:expect_action({ action = "redeem" }, 1)
  t:eq({ a.id, a.status, a.cost, a.balance }, { "shop/m-1/mo-1", "queued", 100, 50 }, "redeem")
  t:eq(t:expect_action({ template = "mall_redeemed" }, 1).status, "queued", "service message")
end)

test("short of points: limited, no message; a refund gives the points back once", function(t)
  t:at(day(1, 8))
  checkins(t, "m-1", 3)
  t:event("m-1", "mall.redeem", { order = "mo-1" }, { time = day(3, 12) })
  t:eq(t:expect_action({ action = "redeem" }).reason,
    { rule = "balance", item = "coupon_20", cost = 100, qty = 1, need = 100, balance = 35 }, "reason")
  t:expect_no_action({ template = "mall_redeemed" })
  checkins(t, "m-1", 16)
  t:event("m-1", "mall.redeem", { order = "mo-2" }, { time = day(16, 12) })
  t:expect_points("m-1", 50)
  t:event("m-1", "redemption.refunded", { redemption = "shop/m-1/mo-2" }, { time = day(17, 12) })
  t:event("m-1", "redemption.refunded", { redemption = "shop/m-1/mo-2" }, { time = day(17, 13) })
  t:expect_points("m-1", 150)
end)

test("check-in points expire 12 months later, with a notice 7 days before", function(t)
  t:at("2026-11-20T08:00:00+08:00")
  t:event("m-1", "checkin", nil, { time = "2026-11-20T23:00:00+08:00" })
  t:event("m-1", "checkin", nil, { time = "2026-11-21T10:00:00+08:00" })
  t:expect_points("m-1", 30)
  t:at("2027-11-13T23:00:00+08:00")
  local s = t:actions({ template = "points_expiring" }) -- due at 23:00: deferred, then released
  t:eq({ #s, s[1].status, s[1].vars.points, s[1].vars.expires }, { 1, "deferred", 25, "2027-11-20T23:00:00+08:00" },
    "the first lot's notice")
  t:at("2027-11-14T10:00:00+08:00")
  s = t:actions({ template = "points_expiring" })
  t:eq({ #s, s[2].status, s[2].time, s[3].status, s[3].vars.points },
    { 3, "queued", "2027-11-14T09:00:00+08:00", "queued", 5 }, "released at 09:00; the second lot's at 10:00")
  t:at("2027-11-20T23:00:00+08:00")
  t:expect_points("m-1", 5)
  t:at("2027-11-21T10:00:00+08:00")
  t:expect_points("m-1", 0)
end)
