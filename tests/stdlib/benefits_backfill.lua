-- benefits_backfill.lua: helper for benefits_backfill_test.lua: a definition whose name is
-- not an event type (its timer type is derived) with the opt-in monthly backfill sweep.
local benefits = require "benefits"

benefits.define {
  name = "Club-Gifts",
  birthday = { at = "10:30", points = 50, backfill = "0 3 1 * *" },
}

-- set an attribute without a member.updated (data from before the campaign was deployed)
hearth.on("test.set", function(m, ev) m:set(ev.data.k, ev.data.v) end)
