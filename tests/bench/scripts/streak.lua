-- streak.lua: handlers for the import benchmark (tests/bench/run_import.sh). Streak-like
-- work through the core API only, so the figures measure the engine, not a stdlib module:
-- every event reads and writes member state, and each accepted check-in produces one action.

-- checkin: one per local day counts; consecutive days extend the streak, a gap resets it.
hearth.on("checkin", function(m, ev)
  local day = hearth.local_date(ev.time).day_number
  local last = m:get("last_checkin_day")
  -- A second check-in on the same day is ignored (and so is a late, out-of-order one).
  if last and day <= last then return end
  local streak = 1
  if last == day - 1 then streak = (m:get("streak") or 0) + 1 end
  m:set("streak", streak)
  m:set("last_checkin_day", day)
  m:add_points(5, "checkin")
  m:send("checkin_ok", { vars = { streak = streak } })
end)

-- member.joined: tag and welcome bonus.
hearth.on("member.joined", function(m, ev)
  m:tag("new")
  m:add_points(20, "welcome")
end)

-- order.paid: one point per whole currency unit, remember when the last order was.
hearth.on("order.paid", function(m, ev)
  m:add_points(math.floor(ev.data.amount), "order")
  m:set("last_order", ev.time)
end)
