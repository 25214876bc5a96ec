-- welcome.lua: the tutorial's first campaign. New members are tagged, get a welcome
-- bonus and message, and a coupon on day 3 unless they have ordered by then.
hearth.on("member.joined", function(m, ev)
  m:tag("new")
  m:add_points(20, "welcome bonus", { key = "welcome/points" })
  m:send("welcome", { key = "welcome", vars = { channel = ev.data.channel or "direct" } })
  m:after("3d", "welcome.day3")
end)

hearth.on("welcome.day3", function(m, ev)
  if m.orders == 0 then
    m:send("first_order_coupon", { key = "day3", step = "day3" })
  end
end)

hearth.on("order.paid", function(m, ev)
  m:untag("new")
end)
