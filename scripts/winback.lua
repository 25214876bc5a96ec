-- Win-back (流失召回): a member with no order, check-in or reply for 30 days is sleeping
-- and gets the "miss_you" message; after 90 days churned, and their staff owner gets a
-- task to call. Deleting the brand's WeCom friend alerts the staff owner at once. A
-- member active again within 14 days of the touch counts as recalled ("recalled" in
-- `hearth stats`). The message goes through caps (scripts/00_caps.lua).
-- See docs/modules/recall.md.
local recall = require "recall"

recall.define {
  name = "winback",
  active = { "order.paid", "checkin", "message.replied" },
  sleeping_after = "30d", churned_after = "90d",
  on_sleeping = { send = "miss_you" },
  on_churned = { task = "personal call" },
  on_friend_deleted = { task = "friend deleted" },
  success_within = "14d",
}
