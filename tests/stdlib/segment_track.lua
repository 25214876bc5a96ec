-- segment_track.lua: helper for segment_test.lua: tracks last orders and classifies members
-- on request.
local segment = require "segment"
segment.track()
segment.track()   -- a second call does nothing

local TH = { recency_days = 30, frequency = 3, monetary = 500 }

hearth.on("test.classify", function(m, ev)
  local class, r, f, mm = segment.rfm(m, TH)
  m:set("rfm", class)
  m:set("rfm_flags", { r = r, f = f, m = mm })
  m:set("fan", segment.fan_class(m, TH))
  m:set("lifecycle", segment.lifecycle(m, ev.data.lifecycle))
  m:set("last_order", segment.last_order_at(m) or "none")
end)

hearth.on("test.tag", function(m, ev)
  local class, changed = segment.tag_rfm(m, TH, { key = "rfm/" .. ev.id, campaign = "seg" })
  m:set("tag_result", { class = class, changed = changed })
  segment.tag_fan(m, TH)
  segment.tag_lifecycle(m, nil, { prefix = "stage:" })
end)
