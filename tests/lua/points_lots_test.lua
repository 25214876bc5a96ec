-- points_lots_test.lua: points lots and expiry (engine_points.c). Default zone
-- Asia/Shanghai; 2026-11-02 is a Monday.
use("points_lots.lua")
local audit = require "points_audit"

local T0 = 1793584800 -- 2026-11-02T10:00:00+08:00
local DAY = 86400

test("a grant expires after the rule's duration: a ledger entry of its own", function(t)
  t:at(T0)
  t:event("m-1", "grant", { n = 100 })
  t:eq(t:member("m-1").lots[1].expires, "2026-12-02T10:00:00+08:00", "the lot's expiry")
  t:at(T0 + 30 * DAY - 1)
  t:expect_points("m-1", 100)
  t:at(T0 + 30 * DAY)
  t:expect_points("m-1", 0)
  local m = t:member("m-1")
  local e = m.ledger[1]
  t:eq({ e.type, e.delta, e.balance, e.reason }, { "expire", -100, 0, "points expired" }, "expiry entry")
  t:eq(e.lots, { { 1, 100 } }, "the lot it ended")
  local a = t:expect_action({ member = "m-1", action = "points", type = "expire" }, 1)
  t:eq({ a.delta, a.campaign, a.step, a.time }, { -100, "points", "expire", "2026-12-02T10:00:00+08:00" }, "action")
  t:eq(#m.lots, 0, "no lot left")
  audit.check(t, { "m-1" })
end)

test("the notice goes out 7 days before, through the send path, once", function(t)
  t:at(T0)
  t:event("m-1", "grant", { n = 100 })
  t:event("m-1", "grant", { n = 20 }) -- the same moment: one lot each, one notice for both
  t:at(T0 + 23 * DAY - 1)
  t:expect_no_action({ template = "points_expiring" })
  t:at(T0 + 23 * DAY)
  local s = t:expect_action({ member = "m-1", template = "points_expiring" }, 1)
  t:eq({ s.status, s.category, s.vars.points, s.vars.expires, s.id, s.time },
    { "queued", "marketing", 120, "2026-12-02T10:00:00+08:00", "points/m-1/expiry_notice/2026-12-02",
      "2026-11-25T10:00:00+08:00" }, "notice")
  t:at(T0 + 31 * DAY)
  t:expect_action({ template = "points_expiring" }, 1)
  t:expect_points("m-1", 0)
end)

test("an unsubscribed member's notice is suppressed like any marketing send", function(t)
  t:at(T0)
  t:event("m-1", "grant", { n = 100 })
  t:event("m-1", "member.unsubscribed")
  t:at(T0 + 23 * DAY)
  t:eq(t:expect_action({ template = "points_expiring" }, 1).status, "suppressed", "restraint")
end)

test("a spend takes the soonest to expire first", function(t)
  t:at(T0)
  t:event("m-1", "grant", { n = 100 })                                     -- lot 1: Dec 2
  t:event("m-1", "grant", { n = 50 }, { time = T0 + 4 * DAY })             -- lot 2: Dec 6
  t:event("m-1", "grant", { n = 70, expire = "5d" }, { time = T0 + 5 * DAY }) -- lot 3: Nov 12
  t:event("m-1", "grant", { n = 10, expire = "never" }, { time = T0 + 5 * DAY }) -- never: lot 0
  t:event("m-1", "spend", { n = 120 }, { time = T0 + 6 * DAY })
  local m = t:member("m-1")
  t:eq({ m.ledger[1].type, m.ledger[1].lots }, { "spend", { { 3, 70 }, { 1, 50 } } }, "lots taken")
  t:eq(#m.lots, 3, "lots left")
  t:eq({ m.lots[1].n, m.lots[1].left, m.lots[3].n, type(m.lots[3].expires) ~= "string" }, { 1, 50, 0, true }, "left; lot 0: what never expires")
  t:at(T0 + 30 * DAY)
  t:expect_points("m-1", 60)
  t:eq(t:member("m-1").ledger[1].lots, { { 1, 50 } }, "what expired on Dec 2")
  t:at(T0 + 40 * DAY)
  t:expect_points("m-1", 10) -- the lot that never expires is left
  audit.check(t, { "m-1" })
end)

test("month_end is the end of the month in the member's own zone", function(t)
  -- 2026-11-30 20:00 in New York is 2026-12-01 09:00 in Shanghai
  t:at("2026-11-01T10:00:00+08:00")
  t:event("m-ny", "member.joined", { tz = "America/New_York" })
  t:event("m-sh", "member.joined")
  t:event("m-ny", "grant", { n = 40, campaign = "monthly" }, { time = "2026-11-30T20:00:00-05:00" })
  t:event("m-sh", "grant", { n = 40, campaign = "monthly" }, { time = "2026-11-30T20:00:00-05:00" })
  t:eq(t:member("m-ny").lots[1].expires, "2026-12-01T13:00:00+08:00", "New York: Dec 1 00:00 her time")
  t:eq(t:member("m-sh").lots[1].expires, "2027-01-01T00:00:00+08:00", "Shanghai: already December")
  t:at("2026-12-01T13:00:00+08:00")
  t:expect_points("m-ny", 0)
  t:expect_points("m-sh", 40)
  t:at("2027-01-01T00:00:00+08:00")
  t:expect_points("m-sh", 0)
  audit.check(t, { "m-ny", "m-sh" })
end)

test("year_end, and months clamped to the month's last day", function(t)
  t:at("2027-01-31T12:00:00+08:00")
  t:event("m-1", "grant", { n = 5, expire = "year_end" })
  t:event("m-1", "grant", { n = 7, expire = "1mo" })
  t:event("m-1", "grant", { n = 9, expire = "12mo" })
  local lots = t:member("m-1").lots
  t:eq({ lots[1].expires, lots[2].expires, lots[3].expires },
    { "2027-02-28T12:00:00+08:00", "2028-01-01T00:00:00+08:00", "2028-01-31T12:00:00+08:00" }, "expiries")
  t:at("2028-01-01T00:00:00+08:00")
  t:expect_points("m-1", 9)
  audit.check(t, { "m-1" })
end)

test("a grant that expires sooner than the armed one re-arms the member's timer", function(t)
  t:at(T0)
  t:event("m-1", "grant", { n = 100, expire = "never" })
  t:event("m-1", "grant", { n = 30, expire = "20d" })
  t:event("m-1", "grant", { n = 20, expire = "2d" })
  t:at(T0 + 2 * DAY)
  t:expect_points("m-1", 130)
  t:at(T0 + 20 * DAY)
  t:expect_points("m-1", 100)
  t:expect_action({ action = "points", type = "expire" }, 2)
  audit.check(t, { "m-1" })
end)

test("a balance short raises as before, and changes no lot", function(t)
  t:at(T0)
  t:event("m-1", "grant", { n = 10 })
  t:event("m-1", "spend", { n = 11 })
  t:expect_failures(1)
  t:eq(t:member("m-1").lots[1].left, 10, "lot untouched")
  audit.check(t, { "m-1" })
end)

test("the expire option is checked", function(t)
  t:at(T0)
  t:event("m-1", "grant", { n = 10, expire = "soon" })
  t:expect_failures(1)
  t:event("m-1", "grant", { n = 10, expire = "0mo" })
  t:expect_failures(2)
  t:expect_points("m-1", 0)
end)
