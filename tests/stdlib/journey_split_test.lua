-- journey: split steps, goal_within, revenue, reenter = { cooldown, max_runs }
-- (journey_split.lua). 2026-11-02 is a Monday, zone +08:00.
use("journey_split.lua")

local H = require "journey_helpers"
local state = H.state

local T0 = "2026-11-02T10:00:00+08:00"

test("a split by attribute with three arms and a fallback: each member takes one arm, counted per arm", function(t)
  t:at(T0)
  for id, city in pairs({ ["m-1"] = "sh", ["m-2"] = "bj", ["m-3"] = "gz", ["m-4"] = "xa", ["m-5"] = "sh" }) do
    t:event(id, "member.updated", { city = city })
    t:event(id, "city.start")
  end
  t:event("m-6", "city.start") -- no city attribute: the fallback
  t:at("2026-11-10T00:00:00+08:00")
  -- arms are timed from the entry: after = "2d" is T0 + 2d, not the split's time + 2d
  t:expect_action { id = "city/m-1/1/sh_d2", time = "2026-11-04T10:00:00+08:00", template = "sh_tpl" }
  t:expect_action { id = "city/m-5/1/sh_d2", template = "sh_tpl" }
  t:expect_action { id = "city/m-2/1/bj_d2", template = "bj_tpl" }
  -- an arm step due before its split's time (1d, the split is at 1d) fires when the split is taken
  t:expect_action { id = "city/m-3/1/route.gz.1", time = "2026-11-03T10:00:00+08:00", template = "gz_tpl" }
  t:expect_action { id = "city/m-3/1/route.gz.2", time = "2026-11-05T10:00:00+08:00", action = "task" }
  t:expect_action { id = "city/m-4/1/other_d2", template = "other_tpl" }
  t:expect_action { id = "city/m-6/1/other_d2", template = "other_tpl" }
  t:expect_action({ template = "bye_tpl" }, 6)
  -- the arms not taken leave no rows at all
  t:expect_no_action { status = "skipped" }
  t:expect_action({ template = "sh_tpl" }, 2)
  t:expect_no_action { member = "m-1", template = "bj_tpl" }
  t:eq({ t:counter("sh", { campaign = "city", step = "route" }), t:counter("bj", { campaign = "city", step = "route" }),
         t:counter("gz", { campaign = "city", step = "route" }),
         t:counter("otherwise", { campaign = "city", step = "route" }),
         t:counter("none", { campaign = "city", step = "route" }) },
       { 2, 1, 1, 2, 0 }, "per arm")
  t:eq(t:counter("completed", { campaign = "city" }), 6, "every run completed")
end)

test("a split by function; no arm and no fallback: counted as none, the run goes on and completes", function(t)
  t:at(T0)
  t:event("m-1", "order.paid", { amount = 10 })
  t:event("m-1", "buyers.start")
  t:event("m-2", "buyers.start")
  t:expect_action { id = "buyers/m-1/1/thanks", template = "thanks_tpl" }
  t:expect_no_action { member = "m-2" }
  t:eq({ t:counter("buyer", { campaign = "buyers", step = "who" }), t:counter("none", { campaign = "buyers", step = "who" }) },
       { 1, 1 }, "buyer, none")
  t:eq({ state(t, "m-2", "buyers").active, state(t, "m-2", "buyers").ended }, { false, "done" }, "m-2 completed")
end)

test("goal_within: a goal after the last step but inside the window converts; after it, or after an exit, it does not", function(t)
  t:at(T0)
  t:event("m-1", "city.start")
  t:event("m-2", "city.start")
  t:event("m-3", "city.start")
  t:at("2026-11-12T10:00:00+08:00") -- day 10: every run completed on day 5
  t:eq(state(t, "m-1", "city").ended, "done", "completed before the goal")
  t:event("m-1", "order.paid", { amount = 128.5 })
  t:event("m-3", "city.stop")       -- an exit after the run completed closes the window
  t:event("m-3", "order.paid", { amount = 50 })
  t:at("2026-11-16T10:00:00+08:00") -- exactly entry + 14d: outside (the window is [T, T + 14d))
  t:event("m-2", "order.paid", { amount = 99 })
  t:eq({ state(t, "m-1", "city").converted, state(t, "m-2", "city").converted, state(t, "m-3", "city").converted },
       { true, false, false }, "converted")
  t:eq(t:counter("converted", { campaign = "city" }), 1, "one conversion")
  t:eq(t:counter("revenue_cents", { campaign = "city" }), 12850, "its revenue, in cents")
  t:eq(t:counter("exited", { campaign = "city" }), 0, "an exit after completion is no exit of a run")
end)

test("goal_within during the run: a goal counts once; a second order adds no revenue", function(t)
  t:at(T0)
  t:event("m-1", "city.start")
  t:advance("1h")
  t:event("m-1", "order.paid", { amount = 20 })
  t:event("m-1", "order.paid", { amount = 30 })
  t:eq(t:counter("revenue_cents", { campaign = "city" }), 2000, "the converting order only")
  t:eq(state(t, "m-1", "city").ended, "goal", "exit_on_goal ends the run")
  t:at("2026-11-10T00:00:00+08:00")
  t:expect_no_action { id = "city/m-1/1/bye" }
end)

test("revenue from another data field, summed per variant and for the hold-out", function(t)
  t:at(T0)
  local a, b, h = H.find(t, "ab", "A"), H.find(t, "ab", "B"), H.find(t, "ab", "holdout")
  local a2 = H.find(t, "ab", "A", 1)
  for _, id in ipairs({ a, b, h, a2 }) do t:event(id, "ab.start") end
  t:advance("1d")
  t:event(a, "order.paid", { amount = 1, total = 10.25 })
  t:event(a2, "order.paid", { amount = 1, total = 5 })
  t:event(b, "order.paid", { amount = 1 })          -- no "total": converted, no revenue
  t:event(h, "order.paid", { amount = 1, total = 7 })
  t:eq({ t:counter("revenue_cents", { campaign = "ab", variant = "A" }),
         t:counter("revenue_cents", { campaign = "ab", variant = "B" }),
         t:counter("revenue_cents", { campaign = "ab", variant = "holdout" }),
         t:counter("converted", { campaign = "ab", variant = "B" }) },
       { 1525, 0, 700, 1 }, "A, B, holdout, B converted")
  t:eq(t:counter("revenue_cents", { campaign = "ab", variant = "" }), 2225, "the journey's own row")
end)

test("reenter = { cooldown, max_runs }: no new run within 30 days of the last one's end, at most three", function(t)
  t:at(T0)
  t:event("m-1", "again.start")                      -- run 1, ends at once (one step at 0)
  t:expect_action { id = "again/m-1/1/s" }
  t:at("2026-11-20T10:00:00+08:00")
  t:event("m-1", "again.start")                      -- 18 days later: resting
  t:eq(state(t, "m-1", "again").run, 1, "still run 1")
  t:at("2026-12-02T09:59:59+08:00")
  t:event("m-1", "again.start")                      -- one second short of 30 days
  t:eq(state(t, "m-1", "again").run, 1, "still run 1")
  t:at("2026-12-02T10:00:00+08:00")
  t:event("m-1", "again.start")                      -- exactly 30 days: run 2
  t:expect_action { id = "again/m-1/2/s" }
  t:at("2027-01-05T10:00:00+08:00")
  t:event("m-1", "again.start")                      -- run 3
  t:expect_action { id = "again/m-1/3/s" }
  t:at("2027-03-01T10:00:00+08:00")
  t:event("m-1", "again.start")                      -- a fourth: over max_runs
  t:eq(state(t, "m-1", "again").run, 3, "three runs at most")
  t:expect_no_action { id = "again/m-1/4/s" }
  t:eq(t:counter("entered", { campaign = "again" }), 3, "entered three times")
end)

test("a split in a wait branch: arms are timed from the moment the branch was taken", function(t)
  t:at(T0)
  t:event("m-1", "member.updated", { tier = "gold" })
  t:event("m-1", "br.start")
  t:event("m-2", "br.start")
  t:at("2026-11-02T15:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 5 })
  t:event("m-2", "order.paid", { amount = 5 })
  t:at("2026-11-05T00:00:00+08:00")
  t:expect_action { id = "branchy/m-1/1/gold_thanks", time = "2026-11-03T15:00:00+08:00" }
  t:expect_action { id = "branchy/m-2/1/plain_thanks", time = "2026-11-03T15:00:00+08:00" }
  t:eq({ t:counter("gold", { campaign = "branchy", step = "by_tier" }),
         t:counter("otherwise", { campaign = "branchy", step = "by_tier" }) }, { 1, 1 }, "gold, otherwise")
end)

test("hold-out members take their arm silently: no action, not counted per arm, the run completes", function(t)
  t:at(T0)
  -- journey.assign gives nil for a treated member of a journey without variants
  local treated, held = H.find(t, "hsplit", nil), H.find(t, "hsplit", "holdout")
  for _, id in ipairs({ treated, held }) do
    t:event(id, "member.updated", { city = "sh" })
    t:event(id, "hs.start")
  end
  t:at("2026-11-04T00:00:00+08:00")
  t:expect_action { id = "hsplit/" .. treated .. "/1/sh_hi" }
  t:expect_no_action { member = held }
  t:eq(t:counter("sh", { campaign = "hsplit", step = "route" }), 1, "the treated member only")
  t:eq({ state(t, held, "hsplit").ended, state(t, treated, "hsplit").ended }, { "done", "done" }, "both completed")
end)
