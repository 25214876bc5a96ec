-- journey_versions: a labelled journey for journey_versions_test.lua.
local journey = require "journey"

journey.define {
  name = "jv", enter = "member.joined", version = "3",
  steps = {
    { name = "day1", after = "1d", send = "hello", category = "service" },
    { name = "wait_pay", after = "2d", wait = "order.paid", within = "3d",
      on_timeout = { name = "nudge", send = "nudge", category = "service" } },
    { name = "day9", after = "9d", task = "call", when = function(m) return m.orders == 0 end },
  },
}
