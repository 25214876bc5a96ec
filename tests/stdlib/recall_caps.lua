-- Test script for recall_caps_test.lua: recall sends go through caps.
local caps = require "caps"
local recall = require "recall"

caps.set { marketing = { max = 1, per = "7d" }, quiet = { from = "21:00", to = "09:00" } }

recall.define {
  name = "winback", sleeping_after = "30d", churned_after = "31d",
  on_sleeping = { send = "miss_you" }, on_churned = { send = "last_call" },
}
