-- Tests of stdlib/streak.lua make-up cards (补签), with streak_makeup.lua:
-- points 10, milestones [3] = 30 points + 1 card, [4] = 40 points + "streak_4";
-- makeup = { points = 2, max_cards = 2 }, events "sign.makeup" and "sign.card".
local T0 = 1793548800 -- 2026-11-02T00:00:00+08:00
local function day(n, hh) return T0 + (n - 1) * 86400 + (hh or 10) * 3600 end
local function sign(t, id, n, hh) return t:event(id, "sign", nil, { time = day(n, hh) }) end
local function makeup(t, id, n, date) return t:event(id, "sign.makeup", date and { date = date } or nil, { time = day(n, 20) }) end
local function grant(t, id, n, k) return t:event(id, "sign.card", k and { n = k } or nil, { time = day(n, 8) }) end
local function state(t, id) return t:member(id).attrs["_streak.sign"] end

test("a card repairs yesterday before today's check-in, and the streak goes on", function(t)
  t:at(day(1, 8))
  grant(t, "m-1", 1)
  sign(t, "m-1", 1)
  sign(t, "m-1", 2)
  -- day 3 missed; on day 4 the member repairs it first
  makeup(t, "m-1", 4, "2026-11-04")
  t:eq(state(t, "m-1").len, 3, "repaired streak")
  -- the card was spent, and the 3-day milestone reached by the repair gave one back
  t:eq(state(t, "m-1").cards, 1, "cards")
  local p = t:expect_action({ member = "m-1", action = "points", step = "makeup" }, 1)
  t:eq({ p.delta, p.id }, { 2, "sign/m-1/2026-11-04/makeup" }, "make-up points")
  -- length 3 falls on the repaired day: the milestone is earned, keyed by that date
  t:expect_action({ member = "m-1", action = "points", step = "milestone3", id = "sign/m-1/2026-11-04/milestone3/points" }, 1)
  sign(t, "m-1", 4, 21)
  t:eq(state(t, "m-1").len, 4, "today's check-in continues it")
  t:expect_action({ member = "m-1", action = "send", template = "streak_4" }, 1)
  t:expect_points("m-1", 3 * 10 + 2 + 30 + 40)
end)

test("a card repairs yesterday after today's check-in broke the streak", function(t)
  t:at(day(1, 8))
  grant(t, "m-1", 1)
  sign(t, "m-1", 1)
  sign(t, "m-1", 2)
  sign(t, "m-1", 4) -- day 3 missed: reset to 1
  t:eq(state(t, "m-1").len, 1, "reset")
  makeup(t, "m-1", 4) -- data.date is optional: yesterday
  t:eq(state(t, "m-1").len, 4, "old streak + yesterday + today")
  -- lengths 3 (on day 3) and 4 (on day 4) are reached by the repair
  t:expect_action({ member = "m-1", step = "milestone3", action = "points" }, 1)
  t:expect_action({ member = "m-1", step = "milestone4", template = "streak_4", id = "sign/m-1/2026-11-05/milestone4/send" }, 1)
  sign(t, "m-1", 5)
  t:eq(state(t, "m-1").len, 5, "and goes on")
end)

test("two missed days are never bridged", function(t)
  t:at(day(1, 8))
  grant(t, "m-1", 1, 2)
  sign(t, "m-1", 1)
  sign(t, "m-1", 2)
  -- days 3 and 4 missed
  makeup(t, "m-1", 5) -- repairs day 4? the day before it (3) is missed too: rejected
  t:eq(state(t, "m-1").cards, 2, "no card spent")
  sign(t, "m-1", 5)
  makeup(t, "m-1", 5)
  t:eq(state(t, "m-1").len, 1, "still reset")
  t:eq(state(t, "m-1").cards, 2, "no card spent after the check-in either")
  t:expect_no_action({ member = "m-1", step = "makeup" })
end)

test("only yesterday can be repaired, with a card, once", function(t)
  t:at(day(1, 8))
  sign(t, "m-1", 1)
  sign(t, "m-1", 2)
  makeup(t, "m-1", 4) -- day 3 missed but no card
  t:eq(state(t, "m-1").len, 2, "no card: nothing repaired")
  grant(t, "m-1", 4)
  makeup(t, "m-1", 4, "2026-11-03") -- not yesterday
  makeup(t, "m-1", 4, "2026-11-31") -- not a date
  t:eq(state(t, "m-1").cards, 1, "card kept")
  makeup(t, "m-1", 4, "2026-11-04")
  -- spent one, earned one back with the 3-day milestone
  t:eq({ state(t, "m-1").cards, state(t, "m-1").len }, { 1, 3 }, "repaired")
  makeup(t, "m-1", 4, "2026-11-04") -- the same day again: already filled
  t:eq(state(t, "m-1").cards, 1, "second use rejected")
  t:expect_action({ member = "m-1", step = "makeup" }, 1)
end)

test("a day that was checked in cannot be repaired, nor a first check-in", function(t)
  t:at(day(1, 8))
  grant(t, "m-1", 1)
  sign(t, "m-1", 1)
  makeup(t, "m-1", 1) -- yesterday: before the first check-in
  sign(t, "m-1", 2)
  makeup(t, "m-1", 2) -- yesterday was checked in
  t:eq({ state(t, "m-1").cards, state(t, "m-1").len }, { 1, 2 }, "nothing to repair")
  grant(t, "m-2", 1)
  sign(t, "m-2", 3)
  makeup(t, "m-2", 3)
  t:eq({ state(t, "m-2").cards, state(t, "m-2").len }, { 1, 1 }, "first-ever check-in")
end)

test("cards are earned by milestones and held up to max_cards", function(t)
  t:at(day(1, 8))
  for n = 1, 3 do sign(t, "m-1", n) end
  t:eq(state(t, "m-1").cards, 1, "card from the 3-day milestone")
  grant(t, "m-1", 3, 5)
  t:eq(state(t, "m-1").cards, 2, "capped at max_cards")
  sign(t, "m-1", 5) -- day 4 missed
  makeup(t, "m-1", 5)
  t:eq({ state(t, "m-1").cards, state(t, "m-1").len }, { 1, 5 }, "repaired with an earned card")
end)

test("a bad grant fails the event and grants nothing", function(t)
  t:at(day(1, 8))
  t:eq(t:event("m-1", "sign.card", { n = 0 }), "failed")
  t:eq(t:event("m-1", "sign.card", { n = "2" }), "failed")
  t:expect_failures(2)
  t:eq(t:member("m-1").attrs["_streak.sign"], nil, "no state")
end)
