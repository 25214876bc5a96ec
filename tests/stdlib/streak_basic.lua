-- Test script for streak_test.lua: small milestones so cases stay short.
local streak = require "streak"

streak.define {
  name = "daily", event = "checkin", points = 5, first_bonus = 20,
  milestones = {
    [3] = { points = 50, send = "streak_3" },
    [5] = { points = 100, task = "call a 5-day streaker", tag = "streaker" },
  },
}

-- read the module's view of a member from a handler, for the tests
hearth.on("probe.streak", function(m, ev)
  m:set("probe", streak.get(m, "daily"))
end)
