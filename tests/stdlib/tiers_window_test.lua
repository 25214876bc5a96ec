-- tiers_window_test.lua: rolling-window spend tiers (tiers_window.lua).

local function day(t, rfc)
  return t:eval("return hearth.local_date(hearth.time('" .. rfc .. "')).day_number")
end

test("an order exactly `window` old no longer counts; the window counts local dates", function(t)
  t:at("2026-01-10T10:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 600 })
  t:event("m-2", "order.paid", { amount = 600 })
  t:event("m-3", "order.paid", { amount = 600 }, { time = "2026-01-10T23:59:59+08:00" })
  -- 2027-01-10 10:00 is exactly 365 days later: 2026-01-10 has left the window
  t:at("2027-01-10T10:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 600 })
  t:expect_no_tag("m-1", "tier:silver")
  t:event("m-1", "test.info")
  t:expect_attr("m-1", "value", 600)
  -- the last local date on which it counts is 2027-01-09, whatever the time of day
  t:event("m-2", "order.paid", { amount = 600 }, { time = "2027-01-09T23:59:59+08:00" })
  t:expect_tag("m-2", "tier:silver")
  -- less than 365 x 24 hours old, but its local date has left the window
  t:event("m-3", "order.paid", { amount = 600 }, { time = "2027-01-10T00:00:00+08:00" })
  t:expect_no_tag("m-3", "tier:silver")
end)

test("one bucket per local date, pruned to the window", function(t)
  t:at("2026-01-10T10:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 100, order_id = "o-1" })
  t:event("m-1", "order.paid", { amount = 50.25 }, { time = "2026-01-10T23:59:00+08:00" })
  t:event("m-1", "order.paid", { amount = 30, order_id = "o-3" }, { time = "2026-01-11T00:01:00+08:00" })
  local d1, d2 = day(t, "2026-01-10T12:00:00+08:00"), day(t, "2026-01-11T12:00:00+08:00")
  local st = t:member("m-1").attrs["_tiers.club"]
  t:eq(st.days, { { d1, 15025, 2 }, { d2, 3000, 1 } }, "two local dates, amounts in cents")
  t:eq(st.ids, { { "o-1", d1, 10000 }, { "o-3", d2, 3000 } }, "order ids remembered")
  t:at("2027-01-10T10:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 200, order_id = "o-4" })
  st = t:member("m-1").attrs["_tiers.club"]
  local d3 = day(t, "2027-01-10T12:00:00+08:00")
  t:eq(st.days, { { d2, 3000, 1 }, { d3, 20000, 1 } }, "2026-01-10 pruned")
  t:eq(st.ids, { { "o-3", d2, 3000 }, { "o-4", d3, 20000 } }, "ids pruned too")
  t:event("m-1", "test.info")
  t:expect_attr("m-1", "value", 230)
end)

test("amounts are exact in cents; tiers.value is in yuan", function(t)
  t:at("2026-03-01T10:00:00+08:00")
  for _ = 1, 10 do t:event("m-1", "order.paid", { amount = 0.1 }) end
  t:event("m-1", "order.paid", { amount = 99.99 })
  t:event("m-1", "test.info")
  t:expect_attr("m-1", "value", 100.99)
  t:eq(t:member("m-1").attrs["_tiers.club"].days[1][2], 10099, "cents")
  t:event("m-1", "order.paid", { amount = 899.01 })
  t:event("m-1", "test.info")
  t:expect_attr("m-1", "value", 1000)
  t:expect_tag("m-1", "tier:silver")
end)

test("a busy member's state stays bounded: one bucket per date, 20 order ids", function(t)
  t:at("2026-03-01T10:00:00+08:00")
  for i = 1, 60 do t:event("m-1", "order.paid", { amount = 12, order_id = "o-" .. i }) end
  t:advance("1d")
  for i = 61, 90 do t:event("m-1", "order.paid", { amount = 12, order_id = "o-" .. i }) end
  local st = t:member("m-1").attrs["_tiers.club"]
  t:eq(#st.days, 2, "two buckets")
  t:eq(st.days[1][3] + st.days[2][3], 90, "90 orders counted")
  t:eq(#st.ids, 20, "the 20 latest order ids")
  t:eq(st.ids[1][1], "o-71", "oldest remembered")
  t:expect_tag("m-1", "tier:silver")
end)

test("a refund with a remembered order id comes off that order's date; else the newest dates", function(t)
  t:at("2026-03-01T10:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 800, order_id = "o-1" })
  t:at("2026-03-02T10:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 300, order_id = "o-2" })
  t:expect_tag("m-1", "tier:silver")
  t:event("m-1", "order.refunded", { amount = 200, order_id = "o-1" })
  t:event("m-1", "test.info")
  t:expect_attr("m-1", "value", 900)
  local st = t:member("m-1").attrs["_tiers.club"]
  t:eq(st.days[1][2], 60000, "o-1's date reduced")
  t:eq(st.days[2][2], 30000, "o-2's date untouched")
  t:eq(st.ids[1][3], 60000, "what is left of o-1")
  t:event("m-1", "order.refunded", { amount = 400 })
  st = t:member("m-1").attrs["_tiers.club"]
  t:eq(st.days[2][2], 0, "newest first")
  t:eq(st.days[1][2], 50000, "then the older one")
  t:eq(st.days[1][3] + st.days[2][3], 2, "refunds do not lower the order count")
  -- the refund does not downgrade at once
  t:expect_tag("m-1", "tier:silver")
  t:at("2026-04-01T03:00:00+08:00")
  t:expect_no_tag("m-1", "tier:silver")
  t:expect_action({ template = "club_down", category = "service", status = "queued" }, 1)
end)

test("a refund over what is left of its order, or of a forgotten order, goes to the newest dates", function(t)
  t:at("2026-03-01T10:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 100, order_id = "o-1" })
  t:event("m-2", "order.paid", { amount = 100, order_id = "old" })
  t:at("2026-03-02T10:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 500, order_id = "o-2" })
  t:event("m-1", "order.refunded", { amount = 150, order_id = "o-1" })
  local st = t:member("m-1").attrs["_tiers.club"]
  t:eq({ st.days[1][2], st.days[2][2] }, { 0, 45000 }, "100 off o-1's date, 50 off the newest")
  t:eq(st.ids[1][3], 0, "nothing left of o-1")
  -- 20 later orders: "old" is no longer remembered, its refund comes off the newest date
  for i = 1, 20 do t:event("m-2", "order.paid", { amount = 10, order_id = "n-" .. i }) end
  t:event("m-2", "order.refunded", { amount = 60, order_id = "old" })
  st = t:member("m-2").attrs["_tiers.club"]
  t:eq({ st.days[1][2], st.days[2][2] }, { 10000, 14000 }, "approximation: off the newest date")
  t:event("m-2", "test.info")
  t:expect_attr("m-2", "value", 240)
end)

test("the list kept by earlier versions is folded into buckets", function(t)
  t:at("2026-03-01T10:00:00+08:00")
  local t1 = t:eval("return hearth.time('2026-02-27T10:00:00+08:00')")
  local t2 = t:eval("return hearth.time('2026-02-27T20:00:00+08:00')")
  local t3 = t:eval("return hearth.time('2026-02-28T10:00:00+08:00')")
  t:event("m-1", "test.set", { k = "_tiers.club", v = { win = { { t1, 300, "o-1" }, { t2, 200 }, { t3, 400, "o-3" } } } })
  t:event("m-1", "order.paid", { amount = 100, order_id = "o-4" })
  t:expect_tag("m-1", "tier:silver")
  local st = t:member("m-1").attrs["_tiers.club"]
  t:eq(st.win, nil, "the old list is gone")
  t:eq(#st.days, 3, "three dates")
  t:eq(st.days[1][2], 50000, "2026-02-27: 300 + 200, in cents")
  t:eq(st.days[1][3], 2, "two orders")
  t:event("m-1", "order.refunded", { amount = 100, order_id = "o-3" })
  st = t:member("m-1").attrs["_tiers.club"]
  t:eq(st.days[2][2], 30000, "o-3's date")
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
