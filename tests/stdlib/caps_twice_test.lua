-- caps: caps.set called twice: the last call wins, entirely.
use("caps_twice.lua", "caps_promo.lua")

test("the last caps.set wins and replaces the whole configuration", function(t)
  t:at("2026-11-02T23:00:00+08:00")
  t:eq(t:eval("return require('caps').config()"), { marketing = { max = 1, per = 172800 } }, "config")
  -- no quiet hours any more (the first call had 22:00-08:00); the cap is 1 per 2 days
  t:event("m-1", "promo", { key = "a" })
  t:expect_action { id = "promo/m-1/a", status = "queued" }
  t:event("m-1", "promo", { key = "b" })
  t:expect_action { id = "promo/m-1/b", status = "capped" }
  t:at("2026-11-04T23:00:00+08:00")
  t:event("m-1", "promo", { key = "c" })
  t:expect_action { id = "promo/m-1/c", status = "queued" }
end)
