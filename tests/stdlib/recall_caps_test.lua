-- Tests of stdlib/recall.lua with caps (recall_caps.lua): quiet hours and the cap apply.
local T0 = 1793548800 -- 2026-11-02T00:00:00+08:00
local D = 86400

test("a stage due in quiet hours is sent at their end; the cap applies", function(t)
  t:at(T0 + 3 * 3600) -- 03:00
  t:event("m-1", "member.joined")
  t:at(T0 + 30 * D + 3 * 3600)
  local s = t:expect_action({ template = "miss_you" })
  t:eq(s.status, "deferred", "at 03:00")
  t:at(T0 + 30 * D + 9 * 3600)
  local sends = t:actions({ template = "miss_you" })
  t:eq({ sends[#sends].status, sends[#sends].time }, { "queued", "2026-12-02T09:00:00+08:00" }, "at 09:00")
  t:at(T0 + 31 * D + 9 * 3600)
  local last = t:actions({ template = "last_call" })
  t:eq({ last[1].status, last[#last].status }, { "deferred", "capped" }, "deferred at 03:00, capped at 09:00")
end)
