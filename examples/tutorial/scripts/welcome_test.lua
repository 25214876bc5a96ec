-- welcome_test.lua: tests of welcome.lua, run with `hearth test examples/tutorial/scripts`.
test("a new member is welcomed and gets a coupon on day 3", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined", { channel = "poster" })
  t:expect_action{ template = "welcome", member = "m-1", channel = "log" }
  t:expect_points("m-1", 20)
  t:expect_tag("m-1", "new")
  t:advance("2d")
  t:expect_no_action{ template = "first_order_coupon" }
  t:advance("1d")
  local coupon = t:expect_action{ template = "first_order_coupon", member = "m-1" }
  t:eq(coupon.time, "2026-11-05T15:00:00+08:00", "coupon time")
end)

test("no coupon for a member who ordered", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-2", "member.joined")
  t:event("m-2", "order.paid", { amount = 59 }, { time = "2026-11-03T20:00:00+08:00" })
  t:advance("5d")
  t:expect_no_action{ template = "first_order_coupon" }
  t:expect_no_tag("m-2", "new")
end)

test("the same join twice is one welcome", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-3", "member.joined", nil, { id = "join-3" })
  t:eq(t:event("m-3", "member.joined", nil, { id = "join-3" }), "duplicate")
  t:expect_action({ template = "welcome" }, 1)
  t:expect_points("m-3", 20)
end)
