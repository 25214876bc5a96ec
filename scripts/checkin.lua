-- Daily check-in (签到打卡): 5 points a day, 20 more for a member's very first check-in,
-- milestones at 7 days (50 points, the "streak_7" message and one make-up card) and at
-- 30 days (300 points). Checking in twice the same local day counts once; missing a day
-- breaks the streak, unless the member spends a make-up card (补签卡) on yesterday with a
-- "checkin.makeup" event (cards are also granted by "checkin.card" events, data.n cards).
-- The milestone message goes through caps (scripts/00_caps.lua). See docs/modules/streak.md.
-- Check-in points last 12 months (to the same local time in the member's own zone); the
-- "points_expiring" message goes out 7 days before (a marketing send: caps and quiet hours
-- apply). Spending takes the points that expire soonest first. See docs/GUIDE.md, points.
local streak = require "streak"

hearth.points_rule { campaign = "checkin", expire = "12mo",
  notice = { before = "7d", send = "points_expiring" } }

streak.define {
  name = "checkin", event = "checkin", points = 5, first_bonus = 20,
  milestones = {
    [7] = { points = 50, send = "streak_7", card = 1 },
    [30] = { points = 300 },
  },
  makeup = { use = "checkin.makeup", grant = "checkin.card", max_cards = 3 },
}
