-- caps: quiet hours that do not wrap midnight (12:00-14:00), no marketing cap.
use("caps_daytime.lua", "caps_promo.lua")

test("quiet hours from 12:00 to 14:00: deferred to 14:00 the same day", function(t)
  t:at("2026-11-02T11:59:59+08:00")
  t:event("m-1", "promo", { key = "a" })
  t:expect_action { id = "promo/m-1/a", status = "queued" }
  t:at("2026-11-02T12:00:00+08:00")
  t:event("m-1", "promo", { key = "b" })
  t:at("2026-11-02T13:59:59+08:00")
  t:event("m-1", "promo", { key = "c" })
  t:expect_action { id = "promo/m-1/b", status = "deferred" }
  t:expect_action { id = "promo/m-1/c", status = "deferred" }
  t:expect_no_action { id = "promo/m-1/b", status = "queued" }
  t:at("2026-11-02T14:00:00+08:00")
  t:expect_action { id = "promo/m-1/b", status = "queued", time = "2026-11-02T14:00:00+08:00" }
  t:expect_action { id = "promo/m-1/c", status = "queued", time = "2026-11-02T14:00:00+08:00" }
  t:event("m-1", "promo", { key = "d" })
  t:expect_action({ id = "promo/m-1/d" }, 1)
  t:expect_action { id = "promo/m-1/d", status = "queued" }
  -- the night is not quiet here, and there is no cap: everything goes
  t:at("2026-11-02T23:00:00+08:00")
  for i = 1, 5 do t:event("m-1", "promo", { key = "n" .. i }) end
  t:expect_action({ status = "queued", time = "2026-11-02T23:00:00+08:00" }, 5)
  t:eq(t:eval("return require('caps').config()"), { quiet = { from = "12:00", to = "14:00" } }, "config")
end)
