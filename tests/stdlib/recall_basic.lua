-- Test script for recall_test.lua: the SPEC example, with a stage tag, and a second
-- definition without churned stage nor actions (its timers must not disturb the first).
local recall = require "recall"

recall.define {
  name = "winback", active = { "order.paid", "checkin", "message.replied" },
  sleeping_after = "30d", churned_after = "90d",
  on_sleeping = { send = "miss_you", tag = "sleeping" },
  on_churned = { task = "personal call" },
  on_friend_deleted = { task = "friend deleted" },
  success_within = "14d",
}

recall.define {
  name = "quiet", active = { "checkin" }, sleeping_after = "7d", churned_after = false,
}

hearth.on("probe.recall", function(m, ev)
  m:set("probe", { winback = recall.stage(m, "winback") or "none", quiet = recall.stage(m, "quiet") or "none" })
end)
