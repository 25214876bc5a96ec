-- journey tests: reenter, exit_on_goal = false, several actions per step, timing edges.
local journey = require "journey"

journey.define {
  name = "misc", enter = "promo.start", exit = "promo.stop", goal = "order.paid",
  exit_on_goal = false, reenter = true,
  steps = {
    { name = "late", after = "2d", task = "follow up", staff = "s-9" },  -- listed first
    { name = "h1", after = "1h", send = "s1", vars = { n = 1 } },
    { name = "d1", after = "1d", send = "s2", tag = "promo_seen", points = 10 },
    { name = "vip", after = "1d12h", tag = { "x", "y" }, when = function(m) return m:get("vip") == true end },
    { name = "svc", after = "1d", send = "receipt", category = "service" },
  },
}

journey.define {
  name = "edge", enter = "edge.start",
  steps = {
    { name = "same_day", at = "18:00", send = "e1" },
    { name = "past", at = "10:00", send = "e2" },
    { name = "half", after = "1d12h", at = "09:30", send = "e3" },
    { name = "exact", after = "1d12h", send = "e4" },
  },
}
