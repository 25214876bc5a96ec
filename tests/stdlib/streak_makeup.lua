-- Test script for streak_test.lua: make-up cards (补签).
local streak = require "streak"

streak.define {
  name = "sign", event = "sign", points = 10,
  milestones = {
    [3] = { points = 30, card = 1 },
    [4] = { points = 40, send = "streak_4" },
  },
  makeup = { points = 2, max_cards = 2 },
}
