-- zones.lua: the standard modules on each member's own clock (zones_test.lua). Every send
-- is a service notice so that caps (quiet hours, limits) stay out of the picture: the
-- tests are about when things are due on her clock, not about restraint.
local journey = require "journey"
local streak = require "streak"
local benefits = require "benefits"

journey.define {
  name = "zj", enter = "member.joined",
  steps = {
    { name = "d1", after = "1d", at = "10:00", send = "d1", category = "service" },
    { name = "night", after = "1d", at = "01:30", send = "night", category = "service" },
    { name = "late", after = "1d", at = "02:30", send = "late", category = "service" },
  },
}

-- a later entry: the member's zone when she orders counts, not when she joined
journey.define {
  name = "zo", enter = "order.paid",
  steps = { { name = "thanks", after = "1d", at = "10:00", send = "thanks", category = "service" } },
}

streak.define { name = "sign", event = "checkin", points = 1 }

benefits.define {
  name = "zb",
  birthday = { at = "09:00", send = "bday", category = "service" },
  member_day = { cron = "0 10 * * 3", send = "md", category = "service" },
}

-- a zone set without a member.updated (another script's m:set)
hearth.on("test.set", function(m, ev) m:set(ev.data.k, ev.data.v) end)
