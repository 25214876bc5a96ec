-- broadcast_api.lua: broadcasts for broadcast_api_test.lua. Members join with data
-- {n = <number>, city = <string>, vip = <boolean>}.
hearth.on("member.joined", function(m, ev)
  m:set("n", ev.data.n)
  m:set("city", ev.data.city)
  if ev.data.vip then m:tag("vip") end
end)

-- vip members in sh whose n is even; fn raises for n == 4 (rolled back alone)
hearth.broadcast {
  name = "vip_sh",
  at = "2026-11-11T10:00:00+08:00",
  chunk = 2,
  audience = {
    tag = "vip",
    attrs = { city = "sh" },
    where = function(m) return m:get("n") % 2 == 0 end,
  },
  fn = function(m)
    m:set("got_vip_sh", true)
    m:send("coupon", { category = "service" })
    if m:get("n") == 4 then error("no coupon for four") end
    m:send("second", { category = "service" })
  end,
}

-- everybody; the predicate's change is undone, and it raises for n == 3 (not in the audience)
hearth.broadcast {
  name = "all",
  at = "2026-11-12T10:00:00+08:00",
  audience = {
    where = function(m)
      m:set("touched_by_where", true)
      if m:get("n") == 3 then error("predicate fails for three") end
      return true
    end,
  },
  fn = function(m) m:send("hello", { category = "service" }) end,
}

-- no `at`: runs only when started with `hearth broadcast start`
hearth.broadcast {
  name = "manual",
  fn = function(m) m:send("manual", { category = "service" }) end,
}
