-- tiers_orders.lua: helper for tiers_orders_test.lua: tiers by the number of orders in the
-- last 90 days, a base level given on joining, a daily review with a 120-day hold, and
-- rewards on every upgrade.
local tiers = require "tiers"

tiers.define {
  name = "freq",
  by = "orders",
  window = "90d",
  levels = {
    { name = "member", min = 0 },
    { name = "regular", min = 3, points = 30, multiplier = 2 },
    { name = "loyal", min = 10, points = 100, tag = { "loyal_gift", "care" } },
  },
  review = "0 3 * * *",
  hold = "120d",
  reward_once = false,
  tag_prefix = "freq:",
  attr = "freq_tier",
}
