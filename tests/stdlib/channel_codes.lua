-- channel_codes.lua: helper for channel_test.lua: two attribution definitions (a service
-- welcome per channel code, and a marketing one without re-join welcomes) under caps.
local caps = require "caps"
local channel = require "channel"

caps.set { marketing = { max = 1, per = "7d" }, quiet = { from = "21:00", to = "09:00" } }

channel.define {
  name = "channels",
  welcome = { poster = "welcome_poster", live = "welcome_live", default = "welcome" },
  tag_prefix = "channel:",
  vars = { brand = "Hearth" },
}

channel.define {
  name = "ads",
  welcome = { ad = "welcome_ad" },
  tag_prefix = "src:",
  unknown = "organic",
  category = "marketing",
  welcome_rejoin = false,
}

hearth.on("test.source", function(m, ev)
  m:set("src", channel.source(m, "channels") or "none")
end)

hearth.on("test.promo", function(m, ev)
  caps.send(m, "promo", { key = "promo/" .. ev.id, campaign = "promo" })
end)
