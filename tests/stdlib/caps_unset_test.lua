-- caps: never set: no cap and no quiet hours, but unsubscribed members are still suppressed.
use("caps_promo.lua")

test("without caps.set every marketing send is queued, at any hour", function(t)
  t:at("2026-11-02T23:30:00+08:00")
  for i = 1, 6 do t:event("m-1", "promo", { key = "k" .. i }) end
  t:expect_action({ status = "queued", member = "m-1" }, 6)
  t:expect_no_action { status = "deferred" }
  t:expect_no_action { status = "capped" }
  t:eq(t:eval("return require('caps').config()"), {}, "config")
  t:expect_attr("m-1", "_caps.sent", nil)
end)

test("without caps.set unsubscribed members are still suppressed", function(t)
  t:at("2026-11-02T23:30:00+08:00")
  t:event("m-1", "member.unsubscribed")
  t:event("m-1", "promo", { key = "a" })
  t:expect_action { id = "promo/m-1/a", status = "suppressed" }
  t:event("m-1", "promo", { key = "s", category = "service" })
  t:expect_action { id = "promo/m-1/s", status = "queued" }
  t:event("m-1", "member.subscribed")
  t:event("m-1", "promo", { key = "b" })
  t:expect_action { id = "promo/m-1/b", status = "queued" }
end)
