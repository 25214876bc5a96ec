-- A deliberately broken campaign, for `hearth dry-run` with the invariants of
-- scripts/00_invariants.lua (docs/GUIDE.md, "Before you ship"):
--   mkdir /tmp/broken && cp scripts/*.lua examples/broken/late_promo.lua /tmp/broken/
--   hearth dry-run --events examples/events/month.ndjson --scripts /tmp/broken
-- It answers a check-in with a promotion at 23:00 that evening, her time, and labels the
-- promotion category = "service", so restraint (scripts/00_caps.lua) lets it through:
-- service messages pass quiet hours and caps. The invariant no_night_sends catches it:
-- the dry-run names the rule, the member and the action on stderr and exits 1.
hearth.on("checkin", function(m, ev)
  local d = m:local_date(ev.time)
  m:at(m:local_time(d.year, d.month, d.day, 23, 0), "late_promo.evening")
end)

hearth.on("late_promo.evening", function(m)
  m:send("double_points_tonight", { category = "service" }) -- wrong: this is marketing
end)
