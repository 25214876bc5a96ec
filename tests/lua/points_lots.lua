-- points_lots.lua: grants, spends and expiry rules for points_lots_test.lua. Every grant
-- of a campaign without a rule of its own lasts 30 days, with a notice 7 days before;
-- campaign "monthly" lasts to the end of the member's month; "forever" has no rule but
-- the global one, overridden per grant with data.expire.
hearth.points_rule { expire = "30d", notice = { before = "7d", send = "points_expiring" } }
hearth.points_rule { campaign = "monthly", expire = "month_end" }

hearth.on("grant", function(m, ev)
  local d = ev.data
  m:add_points(d.n, d.reason or "grant", { key = d.key, campaign = d.campaign, expire = d.expire })
end)

hearth.on("spend", function(m, ev)
  m:add_points(-ev.data.n, "spend", { key = ev.data.key })
end)
