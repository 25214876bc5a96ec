-- journey: SOP touchpoints (SPEC §5 journey). Clock zone Asia/Shanghai (+08:00);
-- 2026-11-02 is a Monday. No caps.set here (see journey_caps_test.lua for caps).
use("journey_sop.lua", "journey_ab.lua", "journey_misc.lua", "journey_wait.lua", "journey_helpers.lua")

local function state(t, member, name)
  return t:member(member).attrs["_journey." .. name]
end

-- First member id m-1, m-2, ... that journey `name` assigns to `want` ("holdout", "A", ...).
local function find(t, name, want, skip)
  return t:eval(([[
    local j = require "journey"
    local n = 0
    for i = 1, 5000 do
      local id = "m-" .. i
      if j.assign(%q, id) == %q then
        n = n + 1
        if n > %d then return id end
      end
    end ]]):format(name, want, skip or 0))
end

-- ---------------------------------------------------------------- timing

test("due at the local wall time on the date of entry plus the step's days (Mon 15:00 + 3d at 10:00 -> Thu 10:00)", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:at("2026-11-05T09:59:59+08:00")
  t:expect_no_action { member = "m-1" }
  t:at("2026-11-05T10:00:00+08:00")
  local a = t:expect_action({ id = "sop/m-1/1/day3" }, 1)
  t:eq({ a.time, a.status, a.template, a.step, a.campaign, a.action },
       { "2026-11-05T10:00:00+08:00", "queued", "welcome_tips", "day3", "sop", "send" }, "day3")
  t:at("2026-12-10T00:00:00+08:00")
  -- relative to entry, not to the previous step: day 7 is Mon 9th, not day 3 + 7
  t:expect_action { id = "sop/m-1/1/day7", time = "2026-11-09T10:00:00+08:00", template = "first_order_coupon", status = "queued" }
  t:expect_action { id = "sop/m-1/1/day15", time = "2026-11-17T10:00:00+08:00", template = "group_invite", status = "queued" }
  t:expect_action { id = "sop/m-1/1/day30", time = "2026-12-02T10:00:00+08:00", action = "task",
                    text = "call to introduce member day", status = "queued" }
  t:eq(#t:actions { member = "m-1" }, 4, "four touchpoints")
  local st = state(t, "m-1", "sop")
  t:eq({ st.run, st.active, st.ended }, { 1, false, "done" }, "run completed")
end)

test("the local date counts, not the UTC one (joined 00:30 local, 23:30 local)", function(t)
  t:at("2026-11-03T00:30:00+08:00")  -- Mon 16:30 UTC, Tue local
  t:event("m-1", "member.joined")
  t:at("2026-11-03T23:30:00+08:00")  -- Tue late evening
  t:event("m-2", "member.joined")
  t:at("2026-11-07T00:00:00+08:00")
  t:expect_action { id = "sop/m-1/1/day3", time = "2026-11-06T10:00:00+08:00" }
  t:expect_action { id = "sop/m-2/1/day3", time = "2026-11-06T10:00:00+08:00" }
end)

test("after without at is exact; at with part days uses whole days; an at earlier than entry fires at entry", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "edge.start")
  t:expect_action { id = "edge/m-1/1/past", time = "2026-11-02T15:00:00+08:00", template = "e2" }
  t:expect_no_action { id = "edge/m-1/1/same_day" }
  t:at("2026-11-02T18:00:00+08:00")
  t:expect_action { id = "edge/m-1/1/same_day", time = "2026-11-02T18:00:00+08:00" }
  t:at("2026-11-05T00:00:00+08:00")
  t:expect_action { id = "edge/m-1/1/half", time = "2026-11-03T09:30:00+08:00" }
  t:expect_action { id = "edge/m-1/1/exact", time = "2026-11-04T03:00:00+08:00" }
  -- misc: plain after, steps listed out of order
  t:event("m-2", "promo.start")
  t:at("2026-11-08T00:00:00+08:00")
  t:expect_action { id = "misc/m-2/1/h1", time = "2026-11-05T01:00:00+08:00", n = 1 }
  t:expect_action { id = "misc/m-2/1/late", time = "2026-11-07T00:00:00+08:00", action = "task", staff = "s-9" }
end)

-- ---------------------------------------------------------------- exit and goal

test("an exit event ends the run at once: pending steps never fire", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:event("m-2", "member.joined")
  t:at("2026-11-06T12:00:00+08:00")
  t:expect_action { id = "sop/m-1/1/day3", status = "queued" }
  t:event("m-1", "friend.deleted")
  t:event("m-2", "member.unsubscribed")
  t:at("2026-12-31T00:00:00+08:00")
  t:expect_action({ member = "m-1" }, 1)
  t:expect_action({ member = "m-2" }, 1)
  local st = state(t, "m-1", "sop")
  t:eq({ st.active, st.ended, st.run }, { false, "exit", 1 }, "m-1 state")
  t:eq(state(t, "m-2", "sop").ended, "exit", "m-2 ended by unsubscribing")
  -- an exit event outside a run changes nothing
  t:event("m-3", "friend.deleted")
  t:eq(state(t, "m-3", "sop"), nil, "no run for m-3")
end)

test("the first goal event counts one conversion and ends the run (exit_on_goal default)", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:at("2026-11-06T12:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 50 })
  local st = state(t, "m-1", "sop")
  t:eq({ st.converted, st.converted_at, st.active, st.ended },
       { true, t:now(), false, "goal" }, "converted and ended")
  t:event("m-1", "order.paid", { amount = 50 })
  t:eq(state(t, "m-1", "sop").converted_at, st.converted_at, "the second order changes nothing")
  t:at("2026-12-31T00:00:00+08:00")
  t:expect_action({ member = "m-1" }, 1)
  t:expect_no_action { id = "sop/m-1/1/day7" }
end)

test("a goal before entry does not count; a goal after the run completed does not count", function(t)
  t:at("2026-11-01T12:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 10 })
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:eq(state(t, "m-1", "sop").converted, false, "not converted by the earlier order")
  t:at("2026-12-31T00:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 10 })
  t:eq(state(t, "m-1", "sop").converted, false, "not converted after the run ended")
end)

test("exit_on_goal = false: one conversion per run and the run goes on", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "promo.start")
  t:at("2026-11-02T18:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 10 })
  local st = state(t, "m-1", "misc")
  t:eq({ st.converted, st.active, st.converted_at }, { true, true, t:now() }, "converted, still running")
  t:at("2026-11-02T19:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 10 })
  t:eq(state(t, "m-1", "misc").converted_at, st.converted_at, "counted once")
  t:at("2026-11-10T00:00:00+08:00")
  t:expect_action { id = "misc/m-1/1/d1", status = "queued" }
  t:expect_action { id = "misc/m-1/1/late", status = "queued" }
end)

-- ---------------------------------------------------------------- skipping

test("when(m) false: the step is recorded skipped and the run goes on", function(t)
  t:at("2026-11-01T12:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 10 })   -- ordered before joining: orders = 1
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:at("2026-12-31T00:00:00+08:00")
  local a = t:expect_action({ id = "sop/m-1/1/day7" }, 1)
  t:eq({ a.status, a.template, a.time }, { "skipped", "first_order_coupon", "2026-11-09T10:00:00+08:00" }, "day7")
  t:expect_action { id = "sop/m-1/1/day15", status = "queued" }
  t:expect_action { id = "sop/m-1/1/day30", status = "queued" }
end)

test("unless_tag: the member with the tag skips the step and the run goes on", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:event("m-2", "member.joined")
  t:event("m-1", "test.tag", { tag = "in_group" })
  t:at("2026-12-31T00:00:00+08:00")
  t:expect_action { id = "sop/m-1/1/day15", status = "skipped", template = "group_invite" }
  t:expect_action { id = "sop/m-2/1/day15", status = "queued" }
  t:expect_action { id = "sop/m-1/1/day30", status = "queued" }
  t:expect_no_action { id = "sop/m-1/1/day15", status = "queued" }
end)

test("when is judged at the due time; a tag-only step skipped is recorded as a skipped webhook", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "promo.start")
  t:event("m-2", "promo.start")
  t:event("m-2", "member.updated", { vip = true })   -- vip before the due time
  t:at("2026-11-06T00:00:00+08:00")
  t:expect_action { id = "misc/m-1/1/vip", status = "skipped", action = "webhook" }
  t:expect_no_action { member = "m-1", action = "tag", tag = "x" }
  t:expect_action { id = "misc/m-2/1/vip/x", action = "tag", tag = "x", status = "queued" }
  t:expect_action { id = "misc/m-2/1/vip/y", action = "tag", tag = "y", status = "queued" }
  t:expect_tag("m-2", "x")
  t:expect_no_tag("m-1", "x")
end)

test("a step with several actions: send, tag and points under distinct keys", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "promo.start")
  t:at("2026-11-03T15:00:00+08:00")
  t:expect_action { id = "misc/m-1/1/d1", action = "send", template = "s2", step = "d1" }
  t:expect_action { id = "misc/m-1/1/d1/tag", action = "tag", tag = "promo_seen", step = "d1" }
  t:expect_action { id = "misc/m-1/1/d1/points", action = "points", delta = 10, reason = "misc/d1" }
  t:expect_action { id = "misc/m-1/1/svc", category = "service", status = "queued" }
  t:expect_points("m-1", 10)
  t:expect_tag("m-1", "promo_seen")
end)

-- ---------------------------------------------------------------- runs

test("reenter = false: a member runs the journey at most once", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:at("2026-11-06T12:00:00+08:00")
  t:event("m-1", "friend.deleted")
  t:event("m-1", "member.joined")
  t:at("2027-01-10T12:00:00+08:00")
  t:event("m-1", "member.joined")   -- also after a completed-length pause
  t:at("2027-03-01T00:00:00+08:00")
  t:expect_action({ member = "m-1" }, 1)
  t:eq(state(t, "m-1", "sop").run, 1, "one run only")
end)

test("reenter = true: a new run after the previous ended, numbered 2; an enter event during a run is ignored", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "promo.start")
  t:at("2026-11-02T15:30:00+08:00")
  t:event("m-1", "promo.start")     -- during run 1: ignored (no restart of the clock)
  t:at("2026-11-02T17:00:00+08:00")
  t:expect_action({ template = "s1" }, 1)
  t:expect_action { id = "misc/m-1/1/h1", time = "2026-11-02T16:00:00+08:00" }
  t:eq(state(t, "m-1", "misc").run, 1, "still run 1")
  t:event("m-1", "promo.stop")      -- ends run 1
  t:at("2026-11-05T00:00:00+08:00")
  t:expect_no_action { id = "misc/m-1/1/d1" }
  t:event("m-1", "promo.start")     -- run 2
  t:at("2026-11-05T01:00:00+08:00")
  t:expect_action { id = "misc/m-1/2/h1", time = "2026-11-05T01:00:00+08:00" }
  t:at("2026-11-10T00:00:00+08:00")  -- run 2 completes
  t:expect_action { id = "misc/m-1/2/late" }
  t:eq({ state(t, "m-1", "misc").ended, state(t, "m-1", "misc").active }, { "done", false }, "run 2 completed")
  t:event("m-1", "promo.start")     -- run 3 after a completed run
  t:at("2026-11-10T01:00:00+08:00")
  t:expect_action { id = "misc/m-1/3/h1" }
  t:eq(state(t, "m-1", "misc").run, 3, "run 3")
end)

-- ---------------------------------------------------------------- hold-out and variants

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
  t:eq(t:eval("return require('journey').assign('sop', 'm-1')"), nil, "no hold-out, no variants")
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

-- ---------------------------------------------------------------- wait steps

test("wait: the event first takes on_event, relative to the event; an event before the wait is ignored", function(t)
  t:at("2026-11-02T15:00:00+08:00")           -- Mon
  t:event("m-1", "member.joined")
  t:expect_action { id = "wj/m-1/1/coupon", time = "2026-11-02T15:00:00+08:00" }
  t:at("2026-11-02T20:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 5 })  -- before the wait starts (Tue 15:00)
  t:at("2026-11-04T12:00:00+08:00")           -- Wed
  t:expect_no_action { step = "thanks" }
  t:event("m-1", "order.paid", { amount = 5 })
  t:at("2026-11-20T00:00:00+08:00")
  t:expect_action { id = "wj/m-1/1/thanks", time = "2026-11-04T13:00:00+08:00", template = "thanks" }
  t:expect_action { id = "wj/m-1/1/review", time = "2026-11-06T10:00:00+08:00", action = "task" }
  t:expect_no_action { template = "last_chance" }
  t:eq(state(t, "m-1", "wj").ended, "done", "run completed after the branch")
end)

test("wait: no event within the time takes on_timeout (default step name)", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:at("2026-11-05T14:59:59+08:00")
  t:expect_no_action { template = "last_chance" }
  t:eq(state(t, "m-1", "wj").active, true, "waiting")
  t:at("2026-11-20T00:00:00+08:00")
  t:expect_action { id = "wj/m-1/1/wait_pay.timeout", time = "2026-11-05T15:00:00+08:00", template = "last_chance" }
  t:event("m-1", "order.paid", { amount = 5 })
  t:expect_no_action { template = "thanks" }
  t:eq(state(t, "m-1", "wj").ended, "done", "run completed")
end)

test("wait: an event exactly at the deadline loses to the timeout; an exit during the wait ends it", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:event("m-2", "member.joined")
  t:at("2026-11-05T15:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 5 })
  t:at("2026-11-04T00:00:00+08:00" > "" and "2026-11-05T15:00:00+08:00")
  t:at("2026-11-20T00:00:00+08:00")
  t:expect_action { id = "wj/m-1/1/wait_pay.timeout" }
  t:expect_no_action { id = "wj/m-1/1/thanks" }
end)

test("wait: an exit during the wait ends the run, no branch is taken", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "member.joined")
  t:at("2026-11-04T00:00:00+08:00")
  t:event("m-1", "friend.deleted")
  t:event("m-1", "order.paid", { amount = 5 })
  t:at("2026-11-20T00:00:00+08:00")
  t:expect_action({ member = "m-1" }, 1)
  t:eq(state(t, "m-1", "wj").ended, "exit", "exited")
end)

-- ---------------------------------------------------------------- validation

test("journey.define validates every option with clear errors", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  local got = t:eval([[
    local j = require "journey"
    local function s(extra)
      local spec = { name = "v", enter = "member.joined", steps = { { name = "a", send = "x" } } }
      for k, v in pairs(extra) do spec[k] = v end
      return spec
    end
    local bad = {
      "x",
      s { name = "Bad Name" },
      s { name = "sop" },
      s { enter = "Member Joined" },
      s { enter = nil, exit = "x" },
      s { exit = { "ok", 5 } },
      s { goal = "member.joined", exit = "member.joined" },
      s { exit = "member.joined" },
      s { exit_on_goal = "yes" },
      s { reenter = 1 },
      s { holdout = 150 },
      s { variants = { A = 0 } },
      s { variants = { holdout = 1 } },
      s { steps = {} },
      s { steps = { { send = "x" } } },
      s { steps = { { name = "a", send = "x" }, { name = "a", send = "y" } } },
      s { steps = { { name = "a", after = "3x", send = "x" } } },
      s { steps = { { name = "a", at = "24:00", send = "x" } } },
      s { steps = { { name = "a", at = "10", send = "x" } } },
      s { steps = { { name = "a", when = true, send = "x" } } },
      s { steps = { { name = "a" } } },
      s { steps = { { name = "a", send = { A = "x" } } } },
      s { variants = { A = 1, B = 1 }, steps = { { name = "a", send = { A = "x" } } } },
      s { variants = { A = 1 }, steps = { { name = "a", send = { A = "x", C = "y" } } } },
      s { steps = { { name = "a", send = "x", unles_tag = "t" } } },
      s { steps = { { name = "a", points = -5 } } },
      s { steps = { { name = "a", send = "x", category = "promo" } } },
      s { steps = { { name = "a", wait = "order.paid" } } },
      s { steps = { { name = "a", wait = "order.paid", within = "0s" } } },
      s { steps = { { name = "a", wait = "order.paid", within = "1d", send = "x" } } },
      s { steps = { { name = "a", send = "x", within = "1d" } } },
      s { steps = { { name = "a", wait = "order.paid", within = "1d", on_event = { { name = "b" } } } } },
      s { exit = "friend.deleted", steps = { { name = "a", wait = "friend.deleted", within = "1d" } } },
      s { steps = { { name = "a", send = "x", unless_tag = {} } } },
    }
    local out = {}
    for i, spec in ipairs(bad) do
      local ok, err = pcall(j.define, spec)
      out[i] = ok and "accepted" or tostring(err)
    end
    return out ]])
  local want = {
    "expected a table", "name is required", "already defined", "enter is required", "enter is required",
    "exit[2] must be an event type", "goal 'member.joined' is also an exit event", "enter 'member.joined' is also an exit event",
    "exit_on_goal must be true or false", "reenter must be true or false", "holdout must be a percent",
    "variants.A must be a positive integer", "must match [A-Za-z0-9_]{1,32} and not be \"holdout\"",
    "steps must be a non-empty list", "steps[1]: name is required", "step name 'a' is used twice",
    "steps[1] (a): after must be a duration", "at must be a local time", "at must be a local time",
    "when must be a function", "needs an action (send, task, tag or points) or a wait",
    "send per variant needs variants", "send has no template for variant 'B'", "'C', which is not a variant",
    "unknown option 'unles_tag'", "points must be a positive integer", "category must be",
    "within is required with wait", "within must be a positive duration", "unknown option 'send'",
    "within belongs to a wait step", "on_event[1] (b): a step needs an action",
    "wait event 'friend.deleted' is also an exit event", "unless_tag must be a string or a non-empty list",
  }
  for i, w in ipairs(want) do
    if type(got[i]) ~= "string" or not got[i]:find(w, 1, true) then
      error(("case %d: expected an error containing %q, got %s"):format(i, w, tostring(got[i])))
    end
  end
  t:eq(#got, #want, "every bad spec rejected")
end)
