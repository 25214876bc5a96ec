-- journey tests: a wait step with on_event / on_timeout branches.
local journey = require "journey"

journey.define {
  name = "wj", enter = "member.joined", exit = "friend.deleted",
  steps = {
    { name = "coupon", send = "coupon" },
    { name = "wait_pay", after = "1d", wait = "order.paid", within = "3d",
      on_event = {
        { name = "thanks", after = "1h", send = "thanks" },
        { name = "review", after = "2d", at = "10:00", task = "ask for a review" },
      },
      on_timeout = { send = "last_chance" } },
  },
}
