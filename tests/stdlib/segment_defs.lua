-- segment_defs.lua: helper for segment_defs_test.lua: named segments, a probe writing
-- which ones a member is in, and a nightly sweep tagging one segment through segment.where.
local segment = require "segment"
segment.track()

segment.define {
  name = "sh_big", tags = "vip", not_tags = "blocked",
  attrs = { city = "sh", spend = { min = 500, max = 2000 } },
}
segment.define { name = "idle", inactive = "30d" }
segment.define { name = "north_south", attrs = { city = { "bj", "gz" } }, any_tags = { "a", "b" } }
segment.define {
  name = "loyal", rfm = { "important_value" }, fan = { "iron" }, active_within = "7d",
  thresholds = { recency_days = 30, frequency = 2, monetary = 100 },
}
segment.define { name = "newcomer", lifecycle = { "introduction" }, where = function(m) return m:get("city") ~= nil end }

local NAMES = { "sh_big", "idle", "north_south", "loyal", "newcomer" }

hearth.on("test.tag_me", function(m, ev) m:tag(ev.data.tag) end)

hearth.on("probe.segment", function(m, ev)
  local out = {}
  for _, n in ipairs(NAMES) do
    if segment.matches(n, m) then out[#out + 1] = n end
  end
  m:set("segments", out)
end)

local in_sh_big = segment.where("sh_big")
hearth.cron("0 4 * * *", function()
  for m in hearth.members {} do
    if in_sh_big(m) then m:tag("seg:sh_big", { campaign = "segments" }) end
  end
end)
