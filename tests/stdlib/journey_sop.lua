-- journey tests: the SPEC §5 SOP without hold-out or variants.
local journey = require "journey"

journey.define {
  name = "sop", enter = "member.joined",
  exit = { "member.unsubscribed", "friend.deleted" },
  goal = "order.paid",
  steps = {
    { name = "day3",  after = "3d",  at = "10:00", send = "welcome_tips" },
    { name = "day7",  after = "7d",  at = "10:00", send = "first_order_coupon",
      when = function(m) return m.orders == 0 end },
    { name = "day15", after = "15d", at = "10:00", send = "group_invite", unless_tag = "in_group" },
    { name = "day30", after = "30d", at = "10:00", task = "call to introduce member day" },
  },
}
