-- journey: stable hold-out / variant assignment, per-variant templates, conversions per
-- variant and for the hold-out (journey_ab.lua). 2026-11-02 is a Monday, zone +08:00.
use("journey_ab.lua")

local helpers = require "journey_helpers"
local state, find = helpers.state, helpers.find

test("assignment is a stable FNV-1a hash of (journey, member)", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:eq(t:eval("return require('journey').hash('a')"), 0xe40c292c, "FNV-1a 32 of 'a'")
  t:eq(t:eval("return require('journey').hash('')"), 0x811c9dc5, "FNV-1a 32 of ''")
  t:eq(t:eval("return require('journey').hash('foobar')"), 0xbf9cf968, "FNV-1a 32 of 'foobar'")
  -- the same rule, computed here independently
  local function fnv(s)
    local h = 2166136261
    for i = 1, #s do h = ((h ~ s:byte(i)) * 16777619) & 0xffffffff end
    return h
  end
  local counts = { holdout = 0, A = 0, B = 0 }
  local got = t:eval([[
    local j, out = require "journey", {}
    for i = 1, 2000 do out[i] = j.assign("ab", "m-" .. i) end
    return out ]])
  for i = 1, 2000 do
    local h = fnv("ab/m-" .. i)
    local want = h % 10000 < 2000 and "holdout" or ((h // 10000) % 100 < 50 and "A" or "B")
    if got[i] ~= want then error(("m-%d: assigned %s, the rule says %s"):format(i, tostring(got[i]), want)) end
    counts[want] = counts[want] + 1
  end
  if counts.holdout < 320 or counts.holdout > 480 then error("hold-out share off: " .. counts.holdout .. "/2000") end
  if math.abs(counts.A - counts.B) > 200 then error(("A/B split off: %d / %d"):format(counts.A, counts.B)) end
  -- and entering records that assignment
  local id = find(t, "ab", "B")
  t:event(id, "member.joined")
  t:eq(state(t, id, "ab").variant, "B", "variant kept in the run")
end)

test("per-variant templates; hold-out members are counted but get no actions, not even skipped", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  local a, b, h = find(t, "ab", "A"), find(t, "ab", "B"), find(t, "ab", "holdout")
  for _, id in ipairs({ a, b, h }) do t:event(id, "member.joined") end
  t:at("2026-11-10T00:00:00+08:00")
  t:expect_action { id = "ab/" .. a .. "/1/d1", template = "tpl_a", status = "queued" }
  t:expect_action { id = "ab/" .. b .. "/1/d1", template = "tpl_b", status = "queued" }
  t:expect_action { id = "ab/" .. a .. "/1/d2", status = "skipped", template = "never" }
  t:expect_action { id = "ab/" .. a .. "/1/d3", action = "task", text = "call" }
  t:expect_action { id = "ab/" .. a .. "/1/d3/tag", action = "tag", tag = "ab_done" }
  t:expect_no_action { member = h }
  t:expect_no_tag(h, "ab_done")
  local st = state(t, h, "ab")
  t:eq({ st.variant, st.run, st.ended }, { "holdout", 1, "done" }, "hold-out ran the timeline")
end)

test("goal conversions are counted per variant and for the hold-out", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  local a, b, h = find(t, "ab", "A"), find(t, "ab", "B"), find(t, "ab", "holdout")
  local h2 = find(t, "ab", "holdout", 1)
  for _, id in ipairs({ a, b, h, h2 }) do t:event(id, "member.joined") end
  t:at("2026-11-03T12:00:00+08:00")
  t:event(a, "order.paid", { amount = 1 })
  t:event(h, "order.paid", { amount = 1 })
  t:at("2026-11-10T00:00:00+08:00")
  local sa, sb, sh, sh2 = state(t, a, "ab"), state(t, b, "ab"), state(t, h, "ab"), state(t, h2, "ab")
  t:eq({ sa.variant, sa.converted, sa.ended }, { "A", true, "goal" }, "A converted")
  t:eq({ sb.variant, sb.converted, sb.ended }, { "B", false, "done" }, "B not converted")
  t:eq({ sh.variant, sh.converted, sh.ended }, { "holdout", true, "goal" }, "hold-out converted")
  t:eq({ sh2.variant, sh2.converted }, { "holdout", false }, "other hold-out not converted")
  t:expect_no_action { member = h }
  t:expect_no_action { id = "ab/" .. a .. "/1/d3" }  -- A's run ended at the goal
end)
