-- restraint tests: bare m:send is judged like any module's send (use with restraint_test.lua).
local caps = require "caps"

caps.set {
  marketing = { { max = 1, per = "day" }, { max = 3, per = "7d" } },
  channels = { sms = { max = 1, per = "7d" } },
  quiet = { from = "21:00", to = "09:00" },
}

hearth.channel("wecom", { type = "log", quota = "wecom" })
hearth.channel("sms", { type = "log" })
hearth.channel("app", { type = "log" })

-- "promo" sends one message: data.tpl, data.channel, data.key, data.staff, data.category
hearth.on("promo", function(m, ev)
  local d = ev.data
  m:send(d.tpl or "promo", { key = d.key, channel = d.channel or "app", staff = d.staff,
                             category = d.category })
end)

hearth.on("typo", function(m, ev) m:send("promo", { categroy = "service" }) end)

-- a guard that raises: its deferred send is skipped, not left waiting
hearth.guard("broken_guard", function(m, send) error("the guard's own bug") end)
hearth.on("guarded", function(m, ev) m:send("late", { key = "g", campaign = "broken_guard" }) end)
