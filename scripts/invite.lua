-- Invite a friend (邀请有礼): a member who brings a new member (member.joined with
-- data.referrer) earns 100 points and the "invite_reward" message when the friend pays a
-- first order; the friend gets 20 points on joining. At most 10 rewards per referrer per
-- local day (more are recorded as "limited" and grant nothing); the 3rd rewarded friend
-- also earns the "gift_3" message. K factor: require("referral").k_factor("invite").
-- Sends go through caps (scripts/00_caps.lua). See docs/modules/referral.md.
local referral = require "referral"

referral.define {
  name = "invite", reward_on = "order.paid",
  reward = { points = 100, send = "invite_reward" },
  invitee_reward = { points = 20 },
  tiers = { [3] = { send = "gift_3" } },
  max_per_day = 10,
}
