-- points_shop.lua: points mall items for points_shop_test.lua. A coupon with a stock of 2,
-- one per member, redeemable in November 2026 (Shanghai time); a mug without limits.
-- Points of this campaign last 30 days; a refund's lot keeps the expiry of the points spent.
hearth.points_rule { campaign = "points_shop", expire = "30d" }
hearth.item { name = "coupon_10", cost = 100, stock = 2, per_member = 1,
  from = "2026-11-01T00:00:00+08:00", to = "2026-12-01T00:00:00+08:00" }
hearth.item { name = "mug", cost = 30 }

hearth.on("grant", function(m, ev)
  m:add_points(ev.data.n, "grant", { expire = ev.data.expire })
end)

hearth.on("mall.redeem", function(m, ev)
  local status, recorded = m:redeem(ev.data.item, { key = ev.data.order, qty = ev.data.qty })
  m:set("last_redeem", { status = status, recorded = recorded })
end)
