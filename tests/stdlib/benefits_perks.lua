-- benefits_perks.lua: helper for benefits_test.lua.
local caps = require "caps"
local benefits = require "benefits"

caps.set { quiet = { from = "21:00", to = "09:00" } }

benefits.define {
  name = "perks",
  birthday = {
    at = "09:00",
    send = "birthday_gift",
    points = 100,
    by_tag = { { tag = "tier:gold", send = "birthday_gold", points = 500 } },
  },
  member_day = {
    cron = "0 10 * * 3",
    send = "member_day",
    points = 5,
    tag = { "tier:silver", "tier:gold" },
    chunk = 2,
  },
}

benefits.define {
  name = "leap",
  birthday = {
    at = "08:00",
    attr = "bday",
    feb29 = "mar1",
    task = "call for the birthday",
    catch_up_days = 2,
    tag = "vip",
    when = function(m) return not m:has("no_gifts") end,
  },
}

hearth.on("test.tag", function(m, ev) m:tag(ev.data.tag) end)
hearth.on("test.untag", function(m, ev) m:untag(ev.data.tag) end)
-- set an attribute without a member.updated (as another script, or data from before the
-- campaign was deployed)
hearth.on("test.set", function(m, ev) m:set(ev.data.k, ev.data.v) end)
