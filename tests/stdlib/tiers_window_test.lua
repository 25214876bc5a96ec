-- tiers_window_test.lua: rolling-window spend tiers (tiers_window.lua).

test("an order exactly `window` old no longer counts", function(t)
  t:at("2026-01-10T10:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 600 })
  t:event("m-2", "order.paid", { amount = 600 })
  -- 2027-01-10 10:00 is exactly 365 days later
  t:at("2027-01-10T10:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 600 })
  t:expect_no_tag("m-1", "tier:silver")
  t:event("m-1", "test.info")
  t:expect_attr("m-1", "value", 600)
  -- one second earlier the first order is still inside
  t:event("m-2", "order.paid", { amount = 600 }, { time = "2027-01-10T09:59:59+08:00" })
  t:expect_tag("m-2", "tier:silver")
end)

test("window entries are pruned from the member's state", function(t)
  t:at("2026-01-10T10:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 100, order_id = "o-1" })
  t:at("2027-03-01T10:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 200, order_id = "o-2" })
  local st = t:member("m-1").attrs["_tiers.club"]
  t:eq(#st.win, 1, "one entry left")
  t:eq(st.win[1][3], "o-2", "the recent order")
end)

test("a refund with an order id reduces that order; without one, the newest orders", function(t)
  t:at("2026-03-01T10:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 800, order_id = "o-1" })
  t:event("m-1", "order.paid", { amount = 300, order_id = "o-2" })
  t:expect_tag("m-1", "tier:silver")
  t:event("m-1", "order.refunded", { amount = 200, order_id = "o-1" })
  t:event("m-1", "test.info")
  t:expect_attr("m-1", "value", 900)
  local st = t:member("m-1").attrs["_tiers.club"]
  t:eq(st.win[1][2], 600, "o-1 reduced")
  t:eq(st.win[2][2], 300, "o-2 untouched")
  t:event("m-1", "order.refunded", { amount = 400 })
  st = t:member("m-1").attrs["_tiers.club"]
  t:eq(st.win[2][2], 0, "newest first")
  t:eq(st.win[1][2], 500, "then the older one")
  -- the refund does not downgrade at once
  t:expect_tag("m-1", "tier:silver")
  t:at("2026-04-01T03:00:00+08:00")
  t:expect_no_tag("m-1", "tier:silver")
  t:expect_action({ template = "club_down", category = "service", status = "queued" }, 1)
end)

test("downgrade = one: gold drops one level per review as orders leave the window", function(t)
  t:at("2026-01-15T10:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 6000 })
  t:expect_tag("m-1", "tier:gold")
  t:at("2027-01-01T03:00:00+08:00")
  t:expect_tag("m-1", "tier:gold")                 -- still inside the window
  t:at("2027-02-01T03:00:00+08:00")
  t:expect_tag("m-1", "tier:silver")               -- value 0, but one level at a time
  t:expect_no_tag("m-1", "tier:gold")
  local a = t:expect_action({ template = "club_down" }, 1)
  t:eq(a.vars.from, "gold", "from")
  t:eq(a.vars.tier, "silver", "to")
  t:at("2027-03-01T03:00:00+08:00")
  t:expect_no_tag("m-1", "tier:silver")
  t:expect_attr("m-1", "tier", nil)
  t:expect_action({ template = "club_down" }, 2)
end)

test("the review keeps a member whose window still qualifies", function(t)
  t:at("2026-06-15T10:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 1000 })
  t:at("2027-06-01T03:00:00+08:00")
  t:expect_tag("m-1", "tier:silver")
  t:at("2027-07-01T03:00:00+08:00")
  t:expect_no_tag("m-1", "tier:silver")
end)

test("the review sweeps every tagged member, a chunk at a time", function(t)
  t:at("2026-01-15T10:00:00+08:00")
  for i = 1, 5 do t:event("m-" .. i, "order.paid", { amount = 1000 + i }) end
  t:event("m-6", "order.paid", { amount = 1000 }, { time = "2026-06-15T10:00:00+08:00" })
  t:at("2027-02-01T03:00:00+08:00")
  for i = 1, 5 do t:expect_no_tag("m-" .. i, "tier:silver") end
  t:expect_tag("m-6", "tier:silver")
  t:expect_action({ template = "club_down" }, 5)
end)
