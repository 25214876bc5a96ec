-- Test script for streak_test.lua: milestone sends go through caps.
local caps = require "caps"
local streak = require "streak"

caps.set { marketing = { max = 1, per = "7d" }, quiet = { from = "21:00", to = "09:00" } }

streak.define {
  name = "daily", event = "checkin", points = 1,
  milestones = {
    [1] = { send = "hello" },
    [2] = { send = "streak_2" },
    [3] = { send = "streak_3_notice", category = "service" },
  },
}
