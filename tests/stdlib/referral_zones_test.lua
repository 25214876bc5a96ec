-- referral_zones_test.lua: max_per_day counts the referrer's own local dates (her tz), with
-- referral_basic.lua (max_per_day 2). The engine's zone is Asia/Shanghai (+08:00); the
-- referrer lives in New York (EST, -05:00, in November).
use("referral_basic.lua")

local function order(t, id, time) t:event(id, "order.paid", { amount = 50 }, { time = time }) end

test("the daily limit follows the referrer's dates, not the engine's", function(t)
  t:at("2026-11-02T08:00:00+08:00")
  t:event("r", "member.joined", { tz = "America/New_York" })
  t:at("2026-11-02T09:00:00+08:00")
  for n = 1, 5 do t:event("i" .. n, "member.joined", { referrer = "r" }) end
  t:at("2026-11-04T12:00:00+08:00")
  order(t, "i1", "2026-11-03T10:00:00+08:00") -- 2 Nov 21:00 in New York
  order(t, "i2", "2026-11-03T12:00:00+08:00") -- 2 Nov 23:00
  order(t, "i3", "2026-11-03T13:30:00+08:00") -- 3 Nov 00:30: her next day, not limited
  t:expect_no_action { status = "limited" }
  order(t, "i4", "2026-11-03T20:00:00+08:00") -- 3 Nov 07:00
  order(t, "i5", "2026-11-04T09:00:00+08:00") -- 3 Nov 20:00: her third that day
  local lim = t:expect_action({ member = "r", status = "limited" }, 1)
  t:eq(lim.id, "invite/r/reward/i5/send", "the fifth, a new day in Shanghai, is limited in New York")
end)
