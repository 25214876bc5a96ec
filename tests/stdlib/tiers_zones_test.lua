-- tiers_zones_test.lua: a windowed tier counts the member's own local dates (her tz), with
-- tiers_window.lua (spend, 365d). The engine's zone is Asia/Shanghai (+08:00).
use("tiers_window.lua")

test("an order's bucket is her local date, and so is the window's edge", function(t)
  t:at("2026-01-10T10:00:00+08:00")
  t:event("m-ny", "member.joined", { tz = "America/New_York" })
  t:event("m-no", "member.joined")
  -- 10 Jan 10:00 +08:00 is 9 Jan 21:00 in New York
  t:event("m-ny", "order.paid", { amount = 600 })
  t:event("m-no", "order.paid", { amount = 600 })
  local ny = t:eval("return hearth.local_date(hearth.time('2026-01-09T12:00:00-05:00'), 'America/New_York').day_number")
  local sh = t:eval("return hearth.local_date(hearth.time('2026-01-10T12:00:00+08:00')).day_number")
  t:eq(t:member("m-ny").attrs["_tiers.club"].days[1][1], ny, "New York: 9 January")
  t:eq(t:member("m-no").attrs["_tiers.club"].days[1][1], sh, "no tz: 10 January")
  -- 2027-01-09 14:00 +08:00 is 9 Jan 01:00 in New York: her 9 Jan 2026 order has left the
  -- window (its last date was 8 Jan 2027); on the engine's dates 10 Jan 2026 still counts
  t:at("2027-01-09T14:00:00+08:00")
  t:event("m-ny", "order.paid", { amount = 600 })
  t:event("m-no", "order.paid", { amount = 600 })
  t:expect_no_tag("m-ny", "tier:silver")
  t:expect_tag("m-no", "tier:silver")
end)
