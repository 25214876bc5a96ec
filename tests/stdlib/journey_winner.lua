-- journey tests: an automatic winner between variants A and B, with a hold-out kept.
local journey = require "journey"

journey.define {
  name = "win", enter = "member.joined", goal = "order.paid",
  holdout = 10, variants = { A = 50, B = 50 },
  winner = { min_entered = 20, confidence = 95 },
  steps = { { name = "d1", after = "1d", send = { A = "tpl_a", B = "tpl_b" } } },
}
