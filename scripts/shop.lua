-- Points mall (积分商城): a 20-yuan coupon for 100 points, 200 in stock for everyone,
-- at most 2 per member, redeemable until the end of 2026. A "mall.redeem" event (data:
-- item, order, qty) redeems; the order id is the key, so a retried event redeems once.
-- A redemption that goes through gets a service message; one that cannot is recorded
-- `limited` with the rule and its numbers (stock, per_member, window, balance). A
-- "redemption.refunded" event (data.redemption: the redeem action's id, such as
-- "shop/m-0012/mo-1") gives the points and the coupon back, once (the engine does it).
hearth.item { name = "coupon_20", cost = 100, stock = 200, per_member = 2,
  from = "2026-11-01T00:00:00+08:00", to = "2027-01-01T00:00:00+08:00" }

hearth.on("mall.redeem", function(m, ev)
  local d = ev.data
  local status = m:redeem(d.item or "coupon_20", { key = d.order, qty = d.qty })
  if status == "queued" then
    m:send("mall_redeemed", { category = "service", key = d.order .. "/send", vars = { item = d.item or "coupon_20" } })
  end
end)
