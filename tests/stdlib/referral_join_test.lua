-- Tests of stdlib/referral.lua with reward_on = "member.joined" (referral_join.lua):
-- reward 10 points + task + tag, tier 2: 50 points, no daily limit, no invitee reward.
local T0 = 1793548800 -- 2026-11-02T00:00:00+08:00

test("a referrer who joined the same second is not earlier", function(t)
  t:at(T0 + 9 * 3600)
  t:event("r", "member.joined")
  t:event("i", "member.joined", { referrer = "r" })
  t:expect_points("r", 0)
  t:expect_no_action({ member = "r" })
end)

test("with reward_on = member.joined the referrer is rewarded at the join", function(t)
  t:at(T0 + 9 * 3600)
  t:event("r", "member.joined")
  t:advance("1m")
  t:event("i1", "member.joined", { referrer = "r" })
  t:expect_points("r", 10)
  local task = t:expect_action({ member = "r", action = "task" }, 1)
  t:eq({ task.id, task.text, task.vars.invitee }, { "join_reward/r/reward/i1/task", "thank the referrer", "i1" }, "task")
  t:expect_tag("r", "referrer")
  t:expect_points("i1", 0) -- no invitee reward configured
  t:event("i1", "member.joined", { referrer = "r" }) -- again: nothing
  t:expect_points("r", 10)
  t:event("i2", "member.joined", { referrer = "r" })
  t:event("r", "member.joined", { referrer = "i2" }) -- a re-join of the referrer is no invitation
  t:expect_points("r", 10 + 10 + 50) -- tier 2
  for n = 3, 15 do t:event("i" .. n, "member.joined", { referrer = "r" }) end
  t:expect_points("r", 15 * 10 + 50) -- no daily limit
  t:expect_action({ member = "r", step = "tier2" }, 1)
end)
