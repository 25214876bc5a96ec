-- Test script for referral_test.lua: the SPEC example with a lower daily limit.
local referral = require "referral"

referral.define {
  name = "invite", reward_on = "order.paid",
  reward = { points = 100, send = "invite_reward" },
  invitee_reward = { points = 20 },
  tiers = { [3] = { send = "gift_3", points = 300 } },
  max_per_day = 2,
}
