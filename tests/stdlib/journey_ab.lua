-- journey tests: hold-out 20%, variants A/B with per-variant templates.
local journey = require "journey"

journey.define {
  name = "ab", enter = "member.joined", goal = "order.paid",
  exit = "friend.deleted",
  holdout = 20,
  variants = { A = 50, B = 50 },
  steps = {
    { name = "d1", after = "1d", send = { A = "tpl_a", B = "tpl_b" } },
    { name = "d2", after = "2d", send = "never", when = function() return false end },
    { name = "d3", after = "3d", task = "call", tag = "ab_done" },
  },
}
