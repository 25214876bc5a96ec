-- Tests of stdlib/referral.lua (SPEC §5 referral), with referral_basic.lua:
-- reward_on order.paid, reward 100 points + "invite_reward", invitee 20 points,
-- tier 3 "gift_3" + 300 points, max_per_day 2.
use("referral_basic.lua", "referral_zpending.lua")

local T0 = 1793548800 -- 2026-11-02T00:00:00+08:00
local function at(d, hh, mm) return T0 + (d - 1) * 86400 + (hh or 10) * 3600 + (mm or 0) * 60 end

local function join(t, id, referrer, time, extra)
  local data = extra or {}
  data.referrer = referrer
  return t:event(id, "member.joined", data, { time = time })
end
local function order(t, id, time) return t:event(id, "order.paid", { amount = 50 }, { time = time }) end

test("a valid invitation rewards the referrer at the invitee's first order, once", function(t)
  t:at(at(1, 9))
  join(t, "r", nil, at(1, 9))
  join(t, "i", "r", at(1, 10))
  t:expect_points("i", 20) -- invitee reward at the join
  t:expect_action({ member = "i", action = "points", id = "invite/i/invitee_reward/points" }, 1)
  t:expect_points("r", 0)
  t:expect_no_action({ member = "r" })
  order(t, "i", at(2, 15))
  t:expect_points("r", 100)
  local send = t:expect_action({ member = "r", template = "invite_reward" }, 1)
  t:eq({ send.id, send.status, send.vars.invitee, send.step }, { "invite/r/reward/i/send", "queued", "i", "reward" }, "send")
  t:eq(send.time, "2026-11-03T15:00:00+08:00", "rewarded at the order")
  order(t, "i", at(3, 15))
  t:expect_points("r", 100)
  t:expect_action({ member = "r", template = "invite_reward" }, 1)
  t:expect_points("i", 20)
end)

test("the referrer must have joined earlier", function(t)
  t:at(at(1, 9))
  join(t, "i1", "nobody", at(1, 9))     -- never joined
  t:event("x", "checkin", nil, { time = at(1, 9) }) -- known member who never joined
  join(t, "i2", "x", at(1, 10))
  join(t, "i3", "late", at(1, 11))       -- "late" has not joined yet
  join(t, "late", nil, at(1, 12))
  join(t, "i4", "late", at(1, 11, 30))   -- a late event: joined before "late" did
  for _, i in ipairs { "i1", "i2", "i3", "i4" } do order(t, i, at(2)) end
  t:expect_no_action({ template = "invite_reward" })
  t:expect_no_action({ id = "invite/i1/invitee_reward/points" })
  t:expect_points("i2", 0)
  t:expect_points("late", 0)
  t:eq(t:member("i3").attrs["_referral.invite"].status, "invalid", "status")
  -- "late" was not a member when i3 joined: no answer, given up
  t:eq(t:member("i3").attrs["_referral.invite"].reason, "referrer_unknown", "reason")
  t:eq(t:member("i1").attrs["_referral.invite"].reason, "referrer_unknown", "reason")
  t:eq(t:member("i4").attrs["_referral.invite"].reason, "referrer_joined_later", "reason")
  t:eq(t:member("i2").attrs["_referral.invite"].reason, "referrer_not_joined", "reason")
end)

test("a member cannot invite themself", function(t)
  t:at(at(1, 9))
  join(t, "s", "s", at(1, 9))
  order(t, "s", at(1, 12))
  t:expect_points("s", 0)
  t:expect_no_action({ member = "s" })
  t:eq(t:member("s").attrs["_referral.invite"].reason, "self", "reason")
end)

test("only a first join can be an invitation", function(t)
  t:at(at(1, 9))
  join(t, "r", nil, at(1, 9))
  join(t, "i", nil, at(1, 10))
  join(t, "i", "r", at(2, 10)) -- joins again, now with a referrer
  order(t, "i", at(3))
  t:expect_points("i", 0)
  t:expect_no_action({ template = "invite_reward" })
end)

test("the same invitee is counted once", function(t)
  t:at(at(1, 9))
  join(t, "r", nil, at(1, 9))
  join(t, "i", "r", at(1, 10))
  join(t, "i", "r", at(1, 10)) -- the join delivered twice (no event id)
  join(t, "i", "r2", at(1, 11))
  order(t, "i", at(2))
  order(t, "i", at(3))
  t:expect_points("i", 20)
  t:expect_points("r", 100)
  t:eq(t:member("r").attrs["_referral.invite.referrer"].invitees, 1, "valid invitees")
  t:eq(t:eval("return require('referral').k_factor('invite')"), 1.0, "K")
end)

test("an order before the join does not count; the first one after it does", function(t)
  t:at(at(1, 9))
  join(t, "r", nil, at(1, 9))
  order(t, "i", at(1, 10)) -- a guest order
  join(t, "i", "r", at(1, 11))
  t:expect_points("r", 0)
  order(t, "i", at(1, 12))
  t:expect_points("r", 100)
end)

test("an order that arrives while the invitation is being checked rewards after it", function(t)
  t:at(at(1, 9))
  join(t, "r", nil, at(1, 9))
  join(t, "i", "r", at(1, 10), { pending_order = true })
  t:eq(t:member("i").attrs["_referral.invite"].qualified, at(1, 10), "the order was seen while pending")
  t:expect_points("r", 100)
  t:expect_action({ member = "r", template = "invite_reward" }, 1)
  order(t, "i", at(2))
  t:expect_points("r", 100)
end)

test("beyond max_per_day rewards on a local date the reward is limited and grants nothing", function(t)
  t:at(at(1, 8))
  join(t, "r", nil, at(1, 8))
  for n = 1, 5 do join(t, "i" .. n, "r", at(1, 9, n)) end
  order(t, "i1", at(2, 0, 5))   -- 2026-11-03 00:05 local (still the 2nd in UTC)
  order(t, "i2", at(2, 12))
  order(t, "i3", at(2, 23, 55)) -- third on the 3rd: limited
  t:expect_points("r", 200)
  local lim = t:expect_action({ member = "r", status = "limited" }, 1)
  t:eq({ lim.id, lim.action, lim.template }, { "invite/r/reward/i3/send", "send", "invite_reward" }, "limited record")
  t:expect_no_action({ member = "r", action = "points", id = "invite/r/reward/i3/points" })
  -- limited rewards do not count toward tiers: i1, i2 rewarded, i3 limited, no gift yet
  t:expect_no_action({ template = "gift_3" })
  order(t, "i3", at(3, 1)) -- i3's reward is not retried by a later order
  t:expect_points("r", 200)
  order(t, "i4", at(3, 2)) -- the next local date: rewarded again, the 3rd rewarded invitee
  t:expect_action({ member = "r", template = "invite_reward", status = "queued" }, 3)
  local gift = t:expect_action({ member = "r", template = "gift_3" }, 1)
  t:eq({ gift.id, gift.step, gift.vars.invitees }, { "invite/r/tier3/send", "tier3", 3 }, "tier send")
  t:expect_points("r", 300 + 300)
  order(t, "i5", at(3, 9))
  t:expect_points("r", 700)
  t:expect_action({ member = "r", template = "gift_3" }, 1)
end)

test("the daily limit counts the local date of the invitee's order", function(t)
  t:at(at(1, 8))
  join(t, "r", nil, at(1, 8))
  for n = 1, 3 do join(t, "i" .. n, "r", at(1, 9, n)) end
  order(t, "i1", at(2, 23, 50))
  order(t, "i2", at(2, 23, 59))
  order(t, "i3", at(3, 0, 0)) -- 2026-11-04 00:00 local: a new date
  t:expect_no_action({ status = "limited" })
  t:expect_points("r", 300 + 300)
end)

test("a tier is earned once", function(t)
  t:at(at(1, 8))
  join(t, "r", nil, at(1, 8))
  for n = 1, 6 do
    join(t, "i" .. n, "r", at(1, 9, n))
    order(t, "i" .. n, at(n + 1)) -- one a day: never limited
  end
  t:expect_action({ template = "gift_3" }, 1)
  t:expect_action({ member = "r", action = "points", step = "tier3" }, 1)
  t:expect_points("r", 600 + 300)
end)

test("k_factor: valid invitees / distinct referrers with one or more", function(t)
  t:at(at(1, 8))
  t:eq(t:eval("return { require('referral').k_factor('invite') }"), { 0, 0, 0 }, "no invitation yet: K = 0")
  join(t, "r1", nil, at(1, 8))
  join(t, "r2", nil, at(1, 8))
  join(t, "r3", nil, at(1, 8)) -- invites nobody
  for n = 1, 3 do join(t, "a" .. n, "r1", at(1, 9)) end
  join(t, "b1", "r2", at(1, 9))
  join(t, "c1", "c1", at(1, 9))     -- self: not valid
  join(t, "c2", "ghost", at(1, 9))  -- unknown referrer: not valid
  t:eq(t:eval("return require('referral').k_factor('invite')"), 2.0, "K = 4 / 2")
  t:eq(t:eval("return { select(2, require('referral').k_factor('invite')) }"), { 4, 2 }, "invitees, referrers")
  -- the durable counters behind it; no bookkeeping member any more
  t:eq(t:counter("valid_invitees", { campaign = "invite" }), 4, "valid_invitees counter")
  t:eq(t:counter("referrers", { campaign = "invite" }), 2, "referrers counter")
  t:eq(t:counter("invalid", { campaign = "invite" }), 2, "invalid counter: self and ghost")
  t:eq(t:member("_referral.invite"), nil, "no bookkeeping member")
  t:eq(t:member("ghost"), nil, "no member for an unknown referrer")
  -- rewards do not change K
  order(t, "a1", at(2))
  t:eq(t:eval("return require('referral').k_factor('invite')"), 2.0, "K after an order")
  join(t, "d1", "r3", at(2))
  t:eq(t:eval("return require('referral').k_factor('invite')"), 5 / 3, "K = 5 / 3")
end)

test("an invitation naming a referrer who never joined is invalid and creates no member", function(t)
  t:at(at(1, 9))
  join(t, "i", "nobody", at(1, 9))
  local st = t:member("i").attrs["_referral.invite"]
  t:eq({ st.status, st.reason }, { "invalid", "referrer_unknown" }, "given up at once")
  t:eq(t:member("nobody"), nil, "no member created for the referrer")
  t:expect_points("i", 0)                          -- no invitee reward
  order(t, "i", at(2))
  t:expect_no_action({ template = "invite_reward" })
  t:eq(t:member("nobody"), nil, "still no member")
  t:eq(t:counter("invalid", { campaign = "invite" }), 1, "counted invalid once")
  t:eq(t:counter("valid_invitees", { campaign = "invite" }), 0, "not a valid invitee")
  -- "nobody" joining later does not revive the invitation
  join(t, "nobody", nil, at(3))
  order(t, "i", at(4))
  t:expect_points("nobody", 0)
  t:eq(t:eval("return { require('referral').k_factor('invite') }"), { 0, 0, 0 }, "K")
end)

test("a referrer's answer arriving after the invitation was given up still settles it", function(t)
  t:at(at(1, 9))
  join(t, "i", "nobody", at(1, 9))
  order(t, "i", at(1, 10))                          -- remembered while unanswered
  t:eq(t:member("i").attrs["_referral.invite"].qualified, at(1, 10), "qualified kept")
  -- (cannot happen with this engine: emitted events are delivered in order)
  t:event("i", "referral.valid", { name = "invite", referrer = "nobody" })
  local st = t:member("i").attrs["_referral.invite"]
  t:eq(st.status, "valid", "valid now")
  t:eq(st.reason, nil, "no reason left")
  t:eq(st.reward_sent, true, "the remembered order rewards the referrer")
  t:expect_points("i", 20)
  t:eq(t:counter("invalid", { campaign = "invite" }), 0, "the invalid count taken back")
end)

test("k_factor reads the durable counters, not state kept in the process", function(t)
  t:at(at(1, 8))
  -- counters left by an earlier run (before a restart): nothing of it is in this Lua state
  t:event("x", "test.count", { metric = "valid_invitees", campaign = "invite", n = 7 })
  t:event("x", "test.count", { metric = "referrers", campaign = "invite", n = 2 })
  t:event("x", "test.count", { metric = "valid_invitees", campaign = "other", n = 100 })
  t:eq(t:eval("return { require('referral').k_factor('invite') }"), { 3.5, 7, 2 }, "K from the counters")
  join(t, "r", nil, at(1, 8))
  join(t, "i", "r", at(1, 9))
  t:eq(t:eval("return { require('referral').k_factor('invite') }"), { 8 / 3, 8, 3 }, "and what follows")
end)

test("define rejects bad options with a message naming the option", function(t)
  t:at(at(1, 8))
  local function err(opts)
    return t:eval("local ok, e = pcall(require('referral').define, " .. opts .. ") return e")
  end
  t:eq(err("{ name = 'x', max_per_day = 0 }"), "referral.define: option 'max_per_day' must be a positive integer, got 0", "max")
  t:eq(err("{ name = 'x', reward = { points = -5 } }"), "referral.define: option 'reward.points' must be a positive integer, got -5", "points")
  t:eq(err("{ name = 'x', tiers = { [0] = {} } }"),
       "referral.define: option 'tiers' must be keyed by numbers of invitees (integers >= 1), got the key 0", "tiers")
  t:eq(err("{ name = 'x', reward_on = 'Order Paid' }"),
       "referral.define: option 'reward_on' must be an event type like \"order.paid\" ([a-z0-9_.]{1,64}), got \"Order Paid\"", "reward_on")
  t:eq(err("{ name = 'invite' }"), "referral.define: option 'name' must be a name no other definition uses (it is defined twice), got \"invite\"", "duplicate")
  t:eq(err("{ name = 'x', invitee_reward = { send = 5 } }"),
       "referral.define: option 'invitee_reward.send' must be a non-empty string, got 5", "send")
  t:eq(err("{ name = 'x', max_daily = 3 }"), "referral.define: option 'max_daily' is unknown (known: invitee_reward, max_per_day, name, reward, reward_on, tiers)", "typo")
end)
