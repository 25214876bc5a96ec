-- Tiers with member day and birthday (会员等级, 会员日, 生日福利).
--
-- Tiers by spend in the last 365 days: silver from 1000 yuan (points x1.2), gold from 5000
-- (points x1.5). Reaching a tier sends its message and grants a bonus (once per tier per
-- member); gold also asks the staff owner for a welcome call. On the 1st of each month at
-- 03:00 a review moves members who no longer qualify down one level (notice "tier_down").
-- Every paid order earns 1 point per whole yuan times the tier multiplier; a refund takes
-- them back (never below a zero balance).
-- Member day: every Wednesday at 10:00 silver and gold members get the member-day offer.
-- Birthday: at 09:00 on the member's birthday (attribute "birthday", "MM-DD" or
-- "YYYY-MM-DD", e.g. from member.updated) a gift and points by tier; 29 February birthdays
-- are celebrated on 28 February in other years; a birthday set a day late is caught up the
-- next morning. Each member's birthday is a yearly timer armed when the attribute arrives
-- (member.updated/member.joined); a monthly backfill (1st, 04:00) arms the birthdays that
-- were set before this campaign was deployed.
-- Marketing sends go through caps (scripts/00_caps.lua).
-- See docs/modules/tiers.md and docs/modules/benefits.md.
local tiers = require "tiers"
local benefits = require "benefits"

tiers.define {
  name = "tiers",
  by = "spend", window = "365d",
  levels = {
    { name = "silver", min = 1000, multiplier = 1.2, send = "tier_up_silver", points = 100 },
    { name = "gold", min = 5000, multiplier = 1.5, send = "tier_up_gold", points = 500,
      task = "welcome call for a new gold member" },
  },
  review = "0 3 1 * *", downgrade = "one",
  on_downgrade = { send = "tier_down" },
}

-- Order points: declared after tiers.define, so an order that reaches a tier earns at the
-- new tier's multiplier.
hearth.on("order.paid", function(m, ev)
  local amount = ev.data.amount
  if type(amount) == "number" and amount >= 1 then
    tiers.add_points(m, math.floor(amount), "order points",
      { key = "order/" .. ev.id, campaign = "tiers", step = "order_points", tiers = "tiers" })
  end
end)

hearth.on("order.refunded", function(m, ev)
  local amount = ev.data.amount
  if type(amount) ~= "number" or amount < 1 then return end
  local back = math.min(math.floor(math.floor(amount) * tiers.multiplier(m, "tiers") + 1e-9), m.points)
  if back > 0 then
    m:add_points(-back, "refund", { key = "refund/" .. ev.id, campaign = "tiers", step = "order_points" })
  end
end)

benefits.define {
  name = "benefits",
  birthday = {
    at = "09:00",
    send = "birthday_gift", points = 200,
    by_tag = {
      { tag = "tier:gold", send = "birthday_gift_gold", points = 1000 },
      { tag = "tier:silver", points = 500 },
    },
    feb29 = "feb28",
    catch_up_days = 1,
    backfill = "0 4 1 * *",
  },
  member_day = {
    cron = "0 10 * * 3",
    send = "member_day",
    tag = { "tier:silver", "tier:gold" },
  },
}
