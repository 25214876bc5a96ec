-- invariants_test.lua: each built-in invariant (max_marketing per local day and week, in
-- her zone; no_quiet for every category; reachable; points_budget per engine day) and the
-- custom ones; violations change no action, only queued actions are judged, and a handler
-- rolled back takes its counts with it.

local function rules(t)
  local out = {}
  for _, v in ipairs(t:violations()) do out[#out + 1] = v.rule end
  return out
end

test("max_marketing per local day: the second marketing send of her day", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "promo")
  t:event("m-1", "notice") -- service: not counted
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "promo")
  t:expect_violations(1)
  local v = t:violations()[1]
  t:eq({ v.rule, v.member }, { "one_a_day", "m-1" })
  t:eq(v.action, "invariants/m-1/@3/1", "the action named")
  -- a violation changes nothing: both sends are queued
  t:expect_action({ template = "promo", status = "queued" }, 2)
  t:at("2026-11-03T10:00:00+08:00")
  t:event("m-1", "promo")
  t:expect_violations(1)
end)

test("max_marketing counts her local day, not the engine's", function(t)
  t:at("2026-11-01T10:00:00+08:00")
  t:event("m-1", "member.updated", { tz = "America/New_York" })
  t:at("2026-11-02T22:00:00+08:00") -- 09:00 on 2 November in New York
  t:event("m-1", "promo")
  t:at("2026-11-03T08:00:00+08:00") -- 19:00 on 2 November in New York
  t:event("m-1", "promo")
  t:expect_violations(1)
  t:eq(t:violations()[1].rule, "one_a_day")
end)

test("max_marketing per local week: from Monday", function(t)
  for day = 2, 5 do -- Monday 2 November to Thursday
    t:at(string.format("2026-11-%02dT10:00:00+08:00", day))
    t:event("m-1", "promo")
  end
  t:expect_violations(1)
  t:eq(rules(t), { "three_a_week" })
  t:at("2026-11-09T10:00:00+08:00") -- the next Monday
  t:event("m-1", "promo")
  t:expect_violations(1)
end)

test("no_quiet: any send in her quiet hours, service ones too", function(t)
  t:at("2026-11-02T09:00:00+08:00")
  t:event("m-1", "notice")
  t:expect_violations(0)
  t:at("2026-11-02T23:00:00+08:00")
  t:event("m-1", "notice")
  t:expect_violations(1)
  local v = t:violations()[1]
  t:eq(v.rule, "no_night")
  t:eq(v.message, "service send at 23:00 local time (Asia/Shanghai), inside 21:00-09:00")
end)

test("only queued actions are judged", function(t)
  t:at("2026-11-02T23:00:00+08:00")
  t:event("m-1", "skipped_promo")
  t:event("m-1", "skipped_promo")
  t:expect_violations(0)
end)

test("reachable: anything to a deleted friend; service to the unsubscribed is fine", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "member.unsubscribed")
  t:event("m-1", "notice") -- service to an unsubscribed member: fine
  t:event("m-1", "promo") -- marketing: restraint suppresses it, so nothing queued to judge
  t:expect_action({ template = "promo", status = "suppressed" }, 1)
  t:expect_violations(0)
  t:event("m-2", "friend.deleted")
  t:event("m-2", "notice") -- restraint lets service through; nothing reaches her
  t:expect_violations(1)
  local v = t:violations()[1]
  t:eq({ v.rule, v.member, v.message }, { "reachable", "m-2", "send to a member whose friend was deleted" })
end)

test("points_budget: grants of the campaign per engine day", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "grant", { n = 60 })
  t:event("m-2", "grant", { n = 40 })
  t:event("m-2", "grant", { n = -30 }) -- a spend is no grant
  t:expect_violations(0)
  t:event("m-3", "grant", { n = 1 })
  t:expect_violations(1)
  local v = t:violations()[1]
  t:eq({ v.rule, v.member }, { "grant_budget", "m-3" })
  t:eq(v.message, "campaign 'invariants' granted 101 points on 2026-11-02 (Asia/Shanghai); at most 100 a day")
  t:at("2026-11-03T00:00:00+08:00")
  t:event("m-1", "grant", { n = 100 })
  t:expect_violations(1)
end)

test("a custom check gets the action and a copy of the member", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "promo", { template = "vip_offer" })
  t:expect_violations(1)
  local v = t:violations()[1]
  t:eq({ v.rule, v.member, v.message }, { "vip_only", "m-1", "vip_offer to m-1, who is not vip" })
  t:event("m-2", "make_vip")
  t:event("m-2", "promo", { template = "vip_offer" })
  t:expect_violations(1)
  t:expect_tag("m-2", "vip")
end)

test("a custom check that raises is a violation", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "promo", { template = "boom" })
  t:expect_violations(1)
  local v = t:violations()[1]
  t:eq(v.rule, "raises")
  assert(v.message:find("cannot judge invariants/m%-1/@1/1", 1), v.message)
end)

test("a handler rolled back takes its sends out of the counts", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "promo_then_fail")
  t:expect_failures(1)
  t:event("m-1", "promo")
  t:expect_violations(0)
end)

test("sends of a cron sweep are judged, custom checks between its chunks", function(t)
  t:at("2026-11-02T08:00:00+08:00")
  for i = 1, 5 do t:event("m-" .. i, "mark") end
  t:event("m-3", "make_vip")
  t:at("2026-11-02T10:00:00+08:00")
  t:expect_action({ template = "vip_offer", status = "queued" }, 5)
  t:expect_violations(4)
  local members = {}
  for _, v in ipairs(t:violations()) do
    t:eq(v.rule, "vip_only")
    members[#members + 1] = v.member
  end
  t:eq(members, { "m-1", "m-2", "m-4", "m-5" })
end)

test("a custom check sees the member as she was when the action was recorded", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "level_send_then_raise")
  t:expect_violations(0)
  t:expect_attr("m-1", "level", 2)
end)
