-- Test script for referral_join_test.lua: the referrer is rewarded at the join.
local referral = require "referral"

referral.define {
  name = "join_reward", reward_on = "member.joined",
  reward = { points = 10, task = "thank the referrer", tag = "referrer" },
  tiers = { [2] = { points = 50 } },
}
