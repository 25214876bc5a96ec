-- Test script for recall_new_test.lua: the new stage, until the first active event
-- ("fresh") or at most 7 days after joining ("trial").
local recall = require "recall"

recall.define {
  name = "fresh", active = { "checkin" }, sleeping_after = "30d", churned_after = false,
  on_sleeping = { send = "miss_you" }, new = true,
}

recall.define {
  name = "trial", active = { "checkin" }, sleeping_after = "30d", churned_after = false, new = "7d",
}

hearth.on("probe.recall", function(m, ev)
  m:set("probe", { fresh = recall.stage(m, "fresh") or "none", trial = recall.stage(m, "trial") or "none" })
end)
