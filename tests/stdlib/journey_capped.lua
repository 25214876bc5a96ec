-- journey tests: journey sends go through caps (use with caps_default.lua).
local journey = require "journey"

journey.define {
  name = "capj", enter = "member.joined", exit = "friend.deleted", goal = "order.paid",
  steps = {
    { name = "night", at = "22:00", send = "late_offer" },
    { name = "night_task", at = "22:00", task = "late call" },
    { name = "d1", after = "1d", at = "12:00", send = "offer2" },
    { name = "d2", after = "2d", at = "12:00", send = "offer3" },
    { name = "d2svc", after = "2d", at = "12:00", send = "receipt", category = "service" },
  },
}
