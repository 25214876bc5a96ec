-- journey: winner = { min_entered, confidence } sends new entrants the variant that
-- converts better once every variant has enough entrants and the interval of the
-- difference (hearth.lift, Newcombe's) excludes 0; the hold-out stays a hold-out; the
-- decision and its numbers are counters (journey_winner.lua).
use("journey_winner.lua")

local helpers = require "journey_helpers"
local state, find = helpers.state, helpers.find

-- The first `n` members the hash assigns to `want`, as ids.
local function members(t, want, n)
  local out = {}
  for k = 0, n - 1 do out[#out + 1] = find(t, "win", want, k) end
  return out
end

test("hearth.lift: the difference of two conversions and its interval", function(t)
  t:at("2026-11-02T15:00:00+08:00")
  local l = t:eval("return hearth.lift(56, 70, 48, 80)")
  t:eq(string.format("%.4f %.4f %.4f", l.diff, l.low, l.high), "0.2000 0.0524 0.3339", "Newcombe's example")
  t:eq(l.significant, true, "interval above 0")
  t:eq(t:eval("return hearth.lift(0, 0, 1, 2)"), nil, "an empty group has no lift")
  local ok, err = pcall(t.eval, t, "return hearth.lift(1, 2, 1, 2, 97)")
  t:eq(ok, false, "an unsupported confidence is an error")
  if not tostring(err):find("confidence must be 80, 90, 95 or 99", 1, true) then error("message: " .. tostring(err)) end
end)

test("before the numbers allow it each entrant keeps her variant; after, new entrants get the winner", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  local a, b = members(t, "A", 20), members(t, "B", 20)
  -- every A member converts, no B member does
  for i = 1, 20 do
    t:event(a[i], "member.joined")
    t:event(a[i], "order.paid", { amount = 10 })
    t:event(b[i], "member.joined")
  end
  t:eq(t:counter("winner", { campaign = "win", variant = "A" }), 0,
       "no decision while entering (B reached 20 with the last entry)")
  t:eq(state(t, b[20], "win").variant, "B", "a B member who entered before the decision keeps B")
  -- the next entrant assigned to B by the hash: the decision is taken and she gets A
  local late_b = find(t, "win", "B", 20)
  t:event(late_b, "member.joined")
  t:eq(state(t, late_b, "win").variant, "A", "a new entrant gets the winner")
  t:eq(t:counter("winner", { campaign = "win", variant = "A" }), 1, "the decision is recorded on A")
  t:eq(t:counter("winner", { campaign = "win", variant = "B" }), 0, "and not on B")
  t:eq(t:counter("decided_entered", { campaign = "win", variant = "A" }), 20, "A's entrants at the decision")
  t:eq(t:counter("decided_converted", { campaign = "win", variant = "A" }), 20, "A's conversions at the decision")
  t:eq(t:counter("decided_converted", { campaign = "win", variant = "B" }), 0, "B's conversions at the decision")
  -- later entrants too, while the hold-out stays out
  local later_b = find(t, "win", "B", 21)
  t:event(later_b, "member.joined")
  t:eq(state(t, later_b, "win").variant, "A", "every later entrant gets the winner")
  local h = find(t, "win", "holdout", 0)
  t:event(h, "member.joined")
  t:eq(state(t, h, "win").variant, "holdout", "the hold-out is still kept out")
  t:advance("2d")
  t:expect_action { id = "win/" .. later_b .. "/1/d1", template = "tpl_a", status = "queued" }
  t:expect_action { id = "win/" .. b[1] .. "/1/d1", template = "tpl_b", status = "queued" }
end)

test("no winner while the difference is within the interval", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  local a, b = members(t, "A", 25), members(t, "B", 25)
  for i = 1, 25 do
    t:event(a[i], "member.joined")
    t:event(b[i], "member.joined")
    if i % 2 == 0 then t:event(a[i], "order.paid", { amount = 10 }) end -- A 12/25
    if i % 3 == 0 then t:event(b[i], "order.paid", { amount = 10 }) end -- B 8/25
  end
  local late_b = find(t, "win", "B", 25)
  t:event(late_b, "member.joined")
  t:eq(state(t, late_b, "win").variant, "B", "48% against 32% of 25 each is not yet a winner")
  t:eq(t:counter("winner", { campaign = "win", variant = "A" }), 0, "no decision recorded")
end)

test("winner option errors", function(t)
  local function err_of(src)
    local ok, e = pcall(t.eval, t, src)
    if ok then error("no error for: " .. src) end
    return tostring(e)
  end
  local base = [[require("journey").define { name = "w%d", enter = "x", variants = %s, winner = %s,
                  steps = { { name = "s", after = "1d", send = "t" } } }]]
  local e = err_of(base:format(1, "{ A = 1 }", "{}"))
  if not e:find("two or more variants", 1, true) then error(e) end
  e = err_of(base:format(2, "{ A = 1, B = 1 }", "{ confidence = 97 }"))
  if not e:find("80, 90, 95 or 99", 1, true) then error(e) end
  e = err_of(base:format(3, "{ A = 1, B = 1 }", "{ min = 3 }"))
  if not e:find("min", 1, true) then error(e) end
  e = err_of(base:format(4, "{ A = 1, B = 1 }", "{ min_entered = 0 }"))
  if not e:find("min_entered", 1, true) then error(e) end
end)
