-- tiers_spend.lua: helper for tiers_test.lua: lifetime spend tiers with a monthly review,
-- caps quiet hours, and an order-points handler using the tier multiplier.
local caps = require "caps"
local tiers = require "tiers"

caps.set { quiet = { from = "21:00", to = "09:00" } }

tiers.define {
  name = "vip",
  by = "spend",
  levels = {
    { name = "silver", min = 1000, multiplier = 1.2, send = "tier_silver", points = 100 },
    { name = "gold", min = 5000, multiplier = 1.5, send = "tier_gold", points = 500,
      task = "welcome a new gold member", tag = "vip_gift" },
  },
  review = "0 3 1 * *",
  on_downgrade = { send = "tier_down" },
}

-- declared after tiers.define, so it runs after the upgrade of the same order
hearth.on("order.paid", function(m, ev)
  local a = ev.data.amount
  if type(a) == "number" and a >= 1 then
    tiers.add_points(m, math.floor(a), "order points", { key = "order/" .. ev.id, tiers = "vip" })
  end
  m:set("mult", tiers.multiplier(m, "vip"))
end)

hearth.on("test.spend_points", function(m, ev)
  local bal, granted = tiers.add_points(m, ev.data.n, "spend", { key = "spend/" .. ev.id })
  m:set("granted", granted)
end)

-- make the tag and the state disagree, as a manual re-tag by an operator would
hearth.on("test.retag", function(m, ev)
  m:untag(ev.data.from)
  m:tag(ev.data.to)
end)

hearth.on("test.info", function(m, ev)
  m:set("info", { tier = tiers.tier(m) or "", mult = tiers.multiplier(m), value = tiers.value(m) })
end)
