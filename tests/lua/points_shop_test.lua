-- points_shop_test.lua: redemption (m:redeem) and refunds (redemption.refunded),
-- engine_points.c. Default zone Asia/Shanghai.
use("points_shop.lua")
local audit = require "points_audit"

local T0 = "2026-11-02T10:00:00+08:00"
local function redeem(t, id, item, order, qty)
  t:event(id, "mall.redeem", { item = item, order = order, qty = qty })
  return t:member(id).attrs.last_redeem
end

test("a redemption spends the points, soonest to expire first, in one ledger entry", function(t)
  t:at(T0)
  t:event("m-1", "grant", { n = 80, expire = "never" })
  t:event("m-1", "grant", { n = 50 }) -- 30 days
  t:eq(redeem(t, "m-1", "coupon_10", "o-1"), { status = "queued", recorded = true }, "result")
  t:expect_points("m-1", 30)
  local m = t:member("m-1")
  t:eq({ m.ledger[1].type, m.ledger[1].delta, m.ledger[1].reason, m.ledger[1].lots },
    { "redeem", -100, "redeem coupon_10 x1", { { 2, 50 }, { 0, 50 } } }, "ledger (lot 0: the points that never expire)")
  local a = t:expect_action({ action = "redeem" }, 1)
  t:eq({ a.id, a.status, a.item, a.qty, a.cost, a.balance },
    { "points_shop/m-1/o-1", "queued", "coupon_10", 1, 100, 30 }, "action")
  audit.check(t, { "m-1" })
end)

test("the same key again changes nothing and returns the earlier result", function(t)
  t:at(T0)
  t:event("m-1", "grant", { n = 300 })
  redeem(t, "m-1", "mug", "o-1", 2)
  t:eq(redeem(t, "m-1", "mug", "o-1", 2), { status = "queued", recorded = false }, "again")
  t:expect_points("m-1", 240)
  t:expect_action({ action = "redeem" }, 1)
  t:eq(#t:member("m-1").ledger, 2, "ledger entries")
  t:event("m-2", "grant", { n = 10 })
  redeem(t, "m-2", "mug", "o-9")
  t:eq(redeem(t, "m-2", "mug", "o-9"), { status = "limited", recorded = false }, "a refusal is kept too")
end)

test("stock is shared across members", function(t)
  t:at(T0)
  for _, id in ipairs({ "m-1", "m-2", "m-3" }) do
    t:event(id, "grant", { n = 100 })
    redeem(t, id, "coupon_10", "o-" .. id)
  end
  local a = t:expect_action({ member = "m-3", action = "redeem" }, 1)
  t:eq({ a.status, a.reason }, { "limited", { rule = "stock", item = "coupon_10", stock = 2, left = 0, qty = 1 } }, "m-3")
  t:expect_points("m-3", 100)
  audit.check(t, { "m-1", "m-2", "m-3" })
end)

test("the per-member limit, the window and a short balance are limited with their numbers", function(t)
  t:at(T0)
  t:event("m-1", "grant", { n = 250 })
  redeem(t, "m-1", "coupon_10", "o-1")
  redeem(t, "m-1", "coupon_10", "o-2")
  t:eq(t:expect_action({ id = "points_shop/m-1/o-2" }).reason,
    { rule = "per_member", item = "coupon_10", limit = 1, redeemed = 1, qty = 1 }, "limit")
  redeem(t, "m-1", "mug", "o-3", 6)
  t:eq(t:expect_action({ id = "points_shop/m-1/o-3" }).reason,
    { rule = "balance", item = "mug", cost = 30, qty = 6, need = 180, balance = 150 }, "balance")
  t:event("m-2", "grant", { n = 100 }, { time = "2026-12-01T00:00:00+08:00" })
  redeem(t, "m-2", "coupon_10", "o-4")
  t:eq(t:expect_action({ id = "points_shop/m-2/o-4" }).reason,
    { rule = "window", item = "coupon_10", from = "2026-11-01T00:00:00+08:00", to = "2026-12-01T00:00:00+08:00",
      now = "2026-12-01T00:00:00+08:00" }, "window")
  t:expect_points("m-1", 150)
  t:expect_points("m-2", 100)
  audit.check(t, { "m-1", "m-2" })
end)

test("a refund returns the points and the stock, once", function(t)
  t:at(T0)
  t:event("m-1", "grant", { n = 100 })
  t:event("m-2", "grant", { n = 100 })
  t:event("m-3", "grant", { n = 100 })
  redeem(t, "m-1", "coupon_10", "o-1")
  redeem(t, "m-2", "coupon_10", "o-2")
  t:event("m-1", "redemption.refunded", { redemption = "points_shop/m-1/o-1" }, { time = "2026-11-05T10:00:00+08:00" })
  t:event("m-1", "redemption.refunded", { redemption = "points_shop/m-1/o-1" })
  t:event("m-2", "redemption.refunded", { redemption = "points_shop/m-1/o-1" }) -- not hers: nothing
  t:expect_points("m-1", 100)
  t:expect_points("m-2", 0)
  local m = t:member("m-1")
  t:eq({ m.ledger[1].type, m.ledger[1].delta, m.ledger[1].reason }, { "refund", 100, "refund coupon_10 x1" }, "entry")
  t:eq({ #m.lots, m.lots[1].expires }, { 1, "2026-12-02T10:00:00+08:00" }, "the refund lot keeps the spent expiry")
  local a = t:expect_action({ action = "points", type = "refund" }, 1)
  t:eq(a.redemption, "points_shop/m-1/o-1", "names the redemption")
  t:eq(redeem(t, "m-1", "coupon_10", "o-4"), { status = "queued", recorded = true }, "her stock and limit back")
  t:eq(redeem(t, "m-3", "coupon_10", "o-3"), { status = "limited", recorded = true }, "and taken again")
  t:at("2026-12-02T10:00:00+08:00")
  audit.check(t, { "m-1", "m-2", "m-3" })
end)

test("an unknown item is an error in the script", function(t)
  t:at(T0)
  t:event("m-1", "mall.redeem", { item = "yacht", order = "o-1" })
  t:expect_failures(1)
end)
