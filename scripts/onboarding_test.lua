-- The shipped onboarding SOP (onboarding.lua) with the shipped restraint (00_caps.lua).
-- Clock zone Asia/Shanghai (+08:00); 2026-11-02 is a Monday.
-- From tests/stdlib: journey_tagging.lua adds a "test.tag" event that tags the member,
-- caps_promo.lua a "promo" event that sends a marketing message through caps.
use("00_caps.lua", "onboarding.lua", "../tests/stdlib/journey_tagging.lua", "../tests/stdlib/caps_promo.lua")

local function state(t, member)
  return t:member(member).attrs["_journey.onboarding"]
end

-- The n-th member id m-1, m-2, ... assigned to `want` ("holdout", "A" or "B").
local function find(t, want, n)
  return t:eval(([[
    local j, n = require "journey", 0
    for i = 1, 5000 do
      local id = "m-" .. i
      if j.assign("onboarding", id) == %q then
        n = n + 1
        if n == %d then return id end
      end
    end ]]):format(want, n or 1))
end

test("a new member gets day 3, 7 and 15 at 10:00 and the day-30 call task", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  local id = find(t, "A")
  t:event(id, "member.joined", { channel = "poster", staff = "guide-7" })
  t:at("2026-12-31T00:00:00+08:00")
  local base = "onboarding/" .. id .. "/1/"
  t:expect_action { id = base .. "day3", template = "welcome_tips", time = "2026-11-05T10:00:00+08:00", status = "queued" }
  t:expect_action { id = base .. "day7", template = "first_order_coupon", time = "2026-11-09T10:00:00+08:00", status = "queued" }
  t:expect_action { id = base .. "day15", template = "group_invite", time = "2026-11-17T10:00:00+08:00", status = "queued" }
  t:expect_action { id = base .. "day30", action = "task", text = "call to introduce member day", staff = "guide-7",
                    time = "2026-12-02T10:00:00+08:00", status = "queued" }
  t:expect_action({ member = id }, 4)
  t:eq(state(t, id).ended, "done", "run completed")
end)

test("variant B members get the same SOP (the A/B split is for reporting)", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  local id = find(t, "B")
  t:event(id, "member.joined")
  t:at("2026-11-06T00:00:00+08:00")
  t:expect_action { id = "onboarding/" .. id .. "/1/day3", template = "welcome_tips" }
  t:eq(state(t, id).variant, "B", "variant")
end)

test("a first paid order is the goal: a conversion, and the SOP stops", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  local id = find(t, "A")
  t:event(id, "member.joined")
  t:at("2026-11-07T12:00:00+08:00")
  t:event(id, "order.paid", { amount = 88, order_id = "o-1" })
  t:at("2026-12-31T00:00:00+08:00")
  t:expect_action({ member = id }, 1) -- day3 only
  local st = state(t, id)
  t:eq({ st.converted, st.ended }, { true, "goal" }, "converted")
end)

test("unsubscribing or deleting the friend ends the SOP", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  local a, b = find(t, "A"), find(t, "B")
  t:event(a, "member.joined")
  t:event(b, "member.joined")
  t:at("2026-11-06T12:00:00+08:00")
  t:event(a, "member.unsubscribed")
  t:event(b, "friend.deleted")
  t:at("2026-12-31T00:00:00+08:00")
  t:expect_action({ member = a }, 1)
  t:expect_action({ member = b }, 1)
  t:eq({ state(t, a).ended, state(t, b).ended }, { "exit", "exit" }, "both exited")
end)

test("day 7 is skipped for members who ordered before joining; day 15 for members in the group", function(t)
  t:at("2026-11-01T12:00:00+08:00")
  local a, b = find(t, "A"), find(t, "A", 2)
  t:event(a, "order.paid", { amount = 10 })
  t:at("2026-11-02T15:00:00+08:00")
  t:event(a, "member.joined", { staff = "guide-1" })
  t:event(b, "member.joined", { staff = "guide-1" })
  t:at("2026-11-12T00:00:00+08:00")
  t:event(b, "test.tag", { tag = "in_group" })
  t:at("2026-12-31T00:00:00+08:00")
  t:expect_action { id = "onboarding/" .. a .. "/1/day7", status = "skipped" }
  t:expect_action { id = "onboarding/" .. a .. "/1/day15", status = "queued" }
  t:expect_action { id = "onboarding/" .. b .. "/1/day7", status = "queued" }
  t:expect_action { id = "onboarding/" .. b .. "/1/day15", status = "skipped" }
  t:expect_action { id = "onboarding/" .. b .. "/1/day30", status = "queued" }
end)

test("hold-out members (about 10%) are counted but get nothing", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  local n = t:eval([[
    local j, n = require "journey", 0
    for i = 1, 2000 do if j.assign("onboarding", "m-" .. i) == "holdout" then n = n + 1 end end
    return n ]])
  if n < 140 or n > 260 then error("hold-out share off: " .. n .. "/2000") end
  local h = find(t, "holdout")
  t:event(h, "member.joined")
  t:at("2026-11-20T00:00:00+08:00")
  t:event(h, "order.paid", { amount = 20 })
  t:at("2026-12-31T00:00:00+08:00")
  t:expect_no_action { member = h }
  local st = state(t, h)
  t:eq({ st.variant, st.converted }, { "holdout", true }, "hold-out converted without touchpoints")
end)

test("joining again never restarts the SOP", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  local id = find(t, "A")
  t:event(id, "member.joined")
  t:at("2026-11-04T12:00:00+08:00")
  t:event(id, "friend.deleted")
  t:event(id, "member.joined")
  t:at("2026-12-31T00:00:00+08:00")
  t:expect_no_action { member = id }
  t:eq(state(t, id).run, 1, "one run")
end)

test("the shipped caps hold: after 2 other marketing sends in 7 days, day 3 is capped", function(t)
  t:eq(t:eval("return require('caps').config()"),
       { marketing = { max = 2, per = 604800 }, quiet = { from = "21:00", to = "09:00" } }, "shipped caps")
  t:at("2026-11-02T15:00:00+08:00")
  local id = find(t, "A")
  t:event(id, "member.joined")
  t:at("2026-11-03T10:00:00+08:00")
  t:event(id, "promo", { key = "p1" })
  t:at("2026-11-04T10:00:00+08:00")
  t:event(id, "promo", { key = "p2" })
  t:at("2026-11-10T00:00:00+08:00")
  t:expect_action { id = "onboarding/" .. id .. "/1/day3", status = "capped", step = "day3" }
  -- day 7 (Mon 9th 10:00): p1 (Tue 3rd) and p2 (Wed 4th) are still in the 7 days before
  t:expect_action { id = "onboarding/" .. id .. "/1/day7", status = "capped" }
  t:at("2026-11-18T00:00:00+08:00")
  t:expect_action { id = "onboarding/" .. id .. "/1/day15", status = "queued" }
end)
