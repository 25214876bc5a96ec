-- invariants.lua: every built-in invariant rule and two custom ones, with no restraint at
-- all (hearth.restraint is never called), so each rule sees what a careless script does.
hearth.invariant { name = "one_a_day", max_marketing = { max = 1, per = "local_day" } }
hearth.invariant { name = "three_a_week", max_marketing = { max = 3, per = "local_week" } }
hearth.invariant { name = "no_night", no_quiet = { from = "21:00", to = "09:00" } }
hearth.invariant { name = "reachable", reachable = true }
hearth.invariant { name = "grant_budget", points_budget = { campaign = "invariants", max = 100, per = "day" } }

local function has_tag(member, tag)
  for _, t in ipairs(member.tags) do
    if t == tag then return true end
  end
  return false
end

-- custom: a vip offer goes to vip members only
hearth.invariant {
  name = "vip_only",
  check = function(action, member)
    if action.template ~= "vip_offer" then return true end
    if has_tag(member, "vip") then return true end
    member.tags = {} -- a copy: changing it changes nothing
    return false, "vip_offer to " .. member.id .. ", who is not vip"
  end,
}
-- custom: a check that raises is a violation too
hearth.invariant {
  name = "raises",
  check = function(action, member)
    if action.template == "boom" then error("cannot judge " .. action.id) end
    return true
  end,
}

hearth.on("promo", function(m, ev) m:send(ev.data.template or "promo") end)
hearth.on("notice", function(m, ev) m:send("notice", { category = "service" }) end)
hearth.on("skipped_promo", function(m, ev) m:send("promo", { status = "skipped" }) end)
hearth.on("grant", function(m, ev) m:add_points(ev.data.n, "grant") end)
hearth.on("make_vip", function(m, ev) m:tag("vip") end)
hearth.on("promo_then_fail", function(m, ev)
  m:send("promo")
  error("the handler fails after its send")
end)
-- a sweep at 10:00 sends every member tagged "swept" a vip offer, vip or not (chunks of 2)
hearth.cron("0 10 * * *", function(slot)
  for m in hearth.members { tag = "swept", chunk = 2 } do m:send("vip_offer") end
end)
hearth.on("mark", function(m, ev) m:tag("swept") end)
-- a custom check sees her attributes as they were when the action was recorded
hearth.invariant {
  name = "level_then",
  check = function(action, member)
    if action.template ~= "level_check" then return true end
    return member.attrs.level == 1, "level was " .. tostring(member.attrs.level)
  end,
}
hearth.on("level_send_then_raise", function(m, ev)
  m:set("level", 1)
  m:send("level_check", { category = "service" })
  m:set("level", 2) -- before the batch commits and the check runs
end)
