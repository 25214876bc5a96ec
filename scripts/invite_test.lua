-- The shipped invite campaign (invite.lua) with the shipped restraint (00_caps.lua).
use("00_caps.lua", "invite.lua")

local T0 = 1793548800 -- 2026-11-02T00:00:00+08:00
local function at(d, hh, mm) return T0 + (d - 1) * 86400 + (hh or 10) * 3600 + (mm or 0) * 60 end

test("the friend gets 20 points on joining, the referrer 100 and a message at the first order", function(t)
  t:at(at(1, 9))
  t:event("r", "member.joined")
  t:event("f", "member.joined", { referrer = "r" }, { time = at(1, 10) })
  t:expect_points("f", 20)
  t:expect_points("r", 0)
  t:event("f", "order.paid", { amount = 99, order_id = "o-1" }, { time = at(3, 11) })
  t:expect_points("r", 100)
  local send = t:expect_action({ member = "r", template = "invite_reward" }, 1)
  t:eq({ send.status, send.id }, { "queued", "invite/r/reward/f/send" }, "reward message")
  t:event("f", "order.paid", { amount = 99, order_id = "o-2" }, { time = at(4, 11) })
  t:expect_points("r", 100)
end)

test("self-invites and friends who were members already earn nothing", function(t)
  t:at(at(1, 9))
  t:event("r", "member.joined")
  t:event("r", "member.joined", { referrer = "r" }, { time = at(1, 10) })
  t:event("old", "member.joined", nil, { time = at(1, 10) })
  t:event("old", "member.joined", { referrer = "r" }, { time = at(2, 10) })
  t:event("old", "order.paid", { amount = 10 }, { time = at(2, 11) })
  t:expect_points("r", 0)
  t:expect_points("old", 0)
end)

test("10 rewards a day at most; the 3rd friend brings gift_3", function(t)
  t:at(at(1, 8))
  t:event("r", "member.joined")
  for n = 1, 12 do t:event("f" .. n, "member.joined", { referrer = "r" }, { time = at(1, 9, n) }) end
  for n = 1, 12 do t:event("f" .. n, "order.paid", { amount = 10 }, { time = at(2, 10, n) }) end
  t:expect_points("r", 1000)
  t:expect_action({ member = "r", status = "limited" }, 2)
  t:expect_action({ member = "r", template = "gift_3" }, 1)
  t:eq(t:eval("return require('referral').k_factor('invite')"), 12.0, "K")
end)
