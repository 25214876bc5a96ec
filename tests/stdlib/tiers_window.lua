-- tiers_window.lua: helper for tiers_window_test.lua: spend in the last 365 days, a monthly
-- review that drops one level at a time.
local tiers = require "tiers"

tiers.define {
  name = "club",
  by = "spend",
  window = "365d",
  levels = {
    { name = "silver", min = 1000, send = "club_silver" },
    { name = "gold", min = 5000, send = "club_gold" },
  },
  review = "0 3 1 * *",
  downgrade = "one",
  on_downgrade = { send = "club_down", category = "service" },
  chunk = 2,
}

hearth.on("test.info", function(m, ev)
  m:set("value", tiers.value(m, "club"))
end)

-- set an attribute as it is (e.g. the window list kept by an earlier version of the module)
hearth.on("test.set", function(m, ev) m:set(ev.data.k, ev.data.v) end)
