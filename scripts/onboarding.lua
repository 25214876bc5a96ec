-- Onboarding SOP (会员入会 SOP): from joining, touchpoints on day 3, 7, 15 and 30 at
-- 10:00 local time. Ends when the member unsubscribes or deletes the brand's WeCom
-- friend; a first paid order is the goal (counted as a conversion, and it ends the run).
-- 10% of members are held out to measure the lift; the rest are split A/B for reporting.
-- Marketing sends go through caps (scripts/00_caps.lua); the day-30 call is a staff task.
-- See docs/modules/journey.md.
local journey = require "journey"

journey.define {
  name = "onboarding", enter = "member.joined",
  exit = { "member.unsubscribed", "friend.deleted" },
  goal = "order.paid", exit_on_goal = true, reenter = false,
  holdout = 10,                       -- percent kept out, for measuring lift
  variants = { A = 50, B = 50 },      -- optional A/B split of the steps' templates
  steps = {
    { name = "day3",  after = "3d",  at = "10:00", send = "welcome_tips" },
    { name = "day7",  after = "7d",  at = "10:00", send = "first_order_coupon",
      when = function(m) return m.orders == 0 end },
    { name = "day15", after = "15d", at = "10:00", send = "group_invite", unless_tag = "in_group" },
    { name = "day30", after = "30d", at = "10:00", task = "call to introduce member day" },
  },
}
