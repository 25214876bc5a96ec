-- tiers_test.lua: lifetime spend tiers (tiers_spend.lua). Window and order-count tiers are
-- tested in tiers_window_test.lua and tiers_orders_test.lua.
use("tiers_spend.lua")

local T0 = "2026-11-02T10:00:00+08:00"

test("below the first threshold: no tier; reaching exactly min upgrades", function(t)
  t:at(T0)
  t:event("m-1", "member.joined")
  t:event("m-1", "order.paid", { amount = 999.5 })
  t:expect_no_tag("m-1", "tier:silver")
  t:expect_attr("m-1", "tier", nil)
  t:expect_no_action{ template = "tier_silver" }
  t:event("m-1", "order.paid", { amount = 0.5 })
  t:expect_tag("m-1", "tier:silver")
  t:expect_attr("m-1", "tier", "silver")
  local a = t:expect_action({ template = "tier_silver", campaign = "vip", step = "silver", status = "queued" }, 1)
  t:eq(a.vars.tier, "silver", "vars.tier")
  t:eq(a.vars.from, "", "vars.from")
  t:expect_action({ action = "points", delta = 100, reason = "tier upgrade: silver", campaign = "vip" }, 1)
end)

test("upgrade rewards come before the order's multiplied points", function(t)
  t:at(T0)
  t:event("m-1", "order.paid", { amount = 1000 })
  -- 100 upgrade bonus + 1000 x 1.2
  t:expect_points("m-1", 1300)
  t:expect_attr("m-1", "mult", 1.2)
  t:event("m-1", "order.paid", { amount = 7 })
  -- floor(7 x 1.2) = 8
  t:expect_points("m-1", 1308)
  t:expect_action({ template = "tier_silver" }, 1)
end)

test("no tier: multiplier 1", function(t)
  t:at(T0)
  t:event("m-1", "order.paid", { amount = 10 })
  t:expect_points("m-1", 10)
  t:expect_attr("m-1", "mult", 1)
end)

test("a jump over a level gives only the reached level's rewards", function(t)
  t:at(T0)
  t:event("m-1", "order.paid", { amount = 6000 })
  t:expect_tag("m-1", "tier:gold")
  t:expect_no_tag("m-1", "tier:silver")
  t:expect_no_action{ template = "tier_silver" }
  t:expect_no_action{ action = "points", reason = "tier upgrade: silver" }
  t:expect_action({ template = "tier_gold", status = "queued" }, 1)
  t:expect_action({ action = "task", text = "welcome a new gold member", step = "gold" }, 1)
  t:expect_tag("m-1", "vip_gift")
  -- 500 upgrade bonus + 6000 x 1.5
  t:expect_points("m-1", 9500)
end)

test("silver then gold: the silver tag is replaced", function(t)
  t:at(T0)
  t:event("m-1", "order.paid", { amount = 1200 })
  t:expect_tag("m-1", "tier:silver")
  t:event("m-1", "order.paid", { amount = 4000 })
  t:expect_tag("m-1", "tier:gold")
  t:expect_no_tag("m-1", "tier:silver")
  t:expect_attr("m-1", "tier", "gold")
  t:expect_action({ action = "untag", tag = "tier:silver", campaign = "vip" }, 1)
  local a = t:expect_action({ template = "tier_gold" }, 1)
  t:eq(a.vars.from, "silver", "from")
end)

test("a refund does not downgrade until the review; the review drops to the qualifying level", function(t)
  t:at(T0)
  t:event("m-1", "order.paid", { amount = 6000 })
  t:event("m-1", "order.refunded", { amount = 5500 })
  t:expect_tag("m-1", "tier:gold")
  t:at("2026-12-01T02:59:00+08:00")
  t:expect_tag("m-1", "tier:gold")
  t:at("2026-12-01T03:00:00+08:00")
  -- spend 500: below silver too, "qualifying" goes straight to no tier
  t:expect_no_tag("m-1", "tier:gold")
  t:expect_no_tag("m-1", "tier:silver")
  t:expect_attr("m-1", "tier", nil)
  -- the downgrade notice is marketing: deferred by caps' quiet hours to 09:00
  local a = t:expect_action({ template = "tier_down", step = "downgrade", status = "deferred" }, 1)
  t:eq(a.vars.from, "gold", "from")
  t:eq(a.vars.tier, "", "to")
  t:at("2026-12-01T09:00:00+08:00")
  t:expect_action({ template = "tier_down", status = "queued" }, 1)
end)

test("the review drops gold to silver when silver still qualifies; exactly min keeps it", function(t)
  t:at(T0)
  t:event("m-1", "order.paid", { amount = 6000 })
  t:event("m-1", "order.refunded", { amount = 5000 })   -- 1000 left: exactly silver
  t:event("m-2", "order.paid", { amount = 5000 })       -- exactly gold
  t:at("2026-12-01T03:00:00+08:00")
  t:expect_tag("m-1", "tier:silver")
  t:expect_no_tag("m-1", "tier:gold")
  t:expect_tag("m-2", "tier:gold")
  t:expect_action({ template = "tier_down", member = "m-1" }, 1)
  t:expect_no_action{ template = "tier_down", member = "m-2" }
  -- moving down into silver is not an upgrade: no silver rewards
  t:expect_no_action{ template = "tier_silver" }
end)

test("a downgraded member upgrading again gets no second reward (reward_once)", function(t)
  t:at(T0)
  t:event("m-1", "order.paid", { amount = 5000 })
  t:event("m-1", "order.refunded", { amount = 4500 })
  t:at("2026-12-01T03:00:00+08:00")
  t:expect_no_tag("m-1", "tier:gold")
  t:at("2026-12-02T10:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 4600 })
  t:expect_tag("m-1", "tier:gold")
  t:expect_attr("m-1", "tier", "gold")
  t:expect_action({ template = "tier_gold" }, 1)
  t:expect_action({ action = "points", reason = "tier upgrade: gold" }, 1)
end)

test("an upgrade at night is deferred by caps to the end of quiet hours", function(t)
  t:at("2026-11-02T22:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 1000 })
  t:expect_tag("m-1", "tier:silver")
  t:expect_action({ template = "tier_silver", status = "deferred" }, 1)
  t:at("2026-11-03T09:00:00+08:00")
  local a = t:expect_action({ template = "tier_silver", status = "queued" }, 1)
  t:eq(a.time, "2026-11-03T09:00:00+08:00", "released at 09:00")
end)

test("the review trusts the swept tag and moves a member up when they qualify higher", function(t)
  t:at(T0)
  t:event("m-1", "order.paid", { amount = 6000 })
  t:event("m-1", "test.retag", { from = "tier:gold", to = "tier:silver" })
  t:at("2026-12-01T03:00:00+08:00")
  t:expect_tag("m-1", "tier:gold")
  t:expect_no_tag("m-1", "tier:silver")
  t:expect_no_action{ template = "tier_down" }
  t:expect_action({ template = "tier_gold" }, 1)      -- reward_once: not again
end)

test("members without a tier are not touched by the review", function(t)
  t:at(T0)
  t:event("m-1", "order.paid", { amount = 10 })
  t:at("2026-12-01T03:00:00+08:00")
  t:expect_no_action{ campaign = "vip" }
  t:expect_attr("m-1", "_tiers.vip", nil)
end)

test("add_points never multiplies a spend; a grant rounding to 0 grants nothing", function(t)
  t:at(T0)
  t:event("m-1", "order.paid", { amount = 1000 })      -- 1300 points, silver
  t:event("m-1", "test.spend_points", { n = -300 })
  t:expect_points("m-1", 1000)
  t:expect_attr("m-1", "granted", -300)
  t:event("m-2", "test.spend_points", { n = 0 })
  t:expect_attr("m-2", "granted", 0)
  t:expect_points("m-2", 0)
end)

test("tiers.tier, tiers.multiplier and tiers.value for other scripts", function(t)
  t:at(T0)
  t:event("m-1", "test.info")
  t:expect_attr("m-1", "info", { tier = "", mult = 1, value = 0.0 })
  t:event("m-1", "order.paid", { amount = 5200 })
  t:event("m-1", "test.info")
  t:expect_attr("m-1", "info", { tier = "gold", mult = 1.5, value = 5200.0 })
end)

test("define validates its options: the path, what it must be, what it got", function(t)
  t:at(T0)
  local function err(code)
    return t:eval("local ok, e = pcall(require('tiers').define, " .. code .. ") return tostring(e)")
  end
  local cases = {
    { "{ levels = { { name = 'a', min = 1 } } }",
      "option 'name' must be a name of 1-64 letters, digits, '_', '.' or '-', got nil" },
    { "{ name = 'vip', levels = { { name = 'a', min = 1 } } }",
      "option 'name' must be a name no other definition uses (it is defined twice), got \"vip\"" },
    { "{ name = 'x', by = 'visits', levels = { { name = 'a', min = 1 } } }",
      "option 'by' must be \"spend\" or \"orders\", got \"visits\"" },
    { "{ name = 'x', tag_prefix = 'q:', attr = 'q', levels = {} }",
      "option 'levels' must be a list of 1-20 levels { name =, min = }, got an empty table" },
    { "{ name = 'x', tag_prefix = 'q:', attr = 'q', levels = { { name = 'a', min = 5 }, { name = 'b', min = 5 } } }",
      "option 'levels[2].min' must be greater than the previous level's (5), got 5" },
    { "{ name = 'x', tag_prefix = 'q:', attr = 'q', levels = { { name = 'a', min = 1, multiplier = 0 } } }",
      "option 'levels[1].multiplier' must be a number in (0, 100], got 0" },
    { "{ name = 'x', levels = { { name = 'a', min = 1 } } }",
      "option 'tag_prefix' must be a prefix no other tiers use (tiers 'vip' does), got \"tier:\"" },
    { "{ name = 'x', tag_prefix = 'q:', attr = 'q', window = 'soon', levels = { { name = 'a', min = 1 } } }",
      "option 'window' must be a positive duration like \"3d\" or \"1d12h\", got \"soon\"" },
    { "{ name = 'x', tag_prefix = 'q:', attr = 'q', window = '36h', levels = { { name = 'a', min = 1 } } }",
      "option 'window' must be a whole number of days like \"365d\" (the window counts local dates), got \"36h\"" },
    { "{ name = 'x', tag_prefix = 'q:', attr = 'q', downgrade = 'two', levels = { { name = 'a', min = 1 } } }",
      "option 'downgrade' must be \"qualifying\" or \"one\", got \"two\"" },
    { "{ name = 'x', tag_prefix = 'q:', attr = 'q', levels = { { name = 'a', min = 1, points = 1.5 } } }",
      "option 'levels[1].points' must be a positive integer, got 1.5" },
    { "{ name = 'x', tag_prefix = 'q:', levels = { { name = 'a', min = 1 } } }",
      "option 'attr' must be an attribute no other tiers use (tiers 'vip' does), got \"tier\"" },
    { "{ name = 'x', tag_prefix = 'q:', attr = 'q', levels = { { name = 'a', min = 1 } } }",
      "call it at the top level of a script, while the scripts load" },
    { "{ name = 'x', tag_prefix = 'q:', attr = 'q', colour = 'red', levels = { { name = 'a', min = 1 } } }",
      "option 'colour' is unknown (known: attr, by, chunk, downgrade, hold, levels, name, on_downgrade, review, reward_once, tag_prefix, window)" },
  }
  for _, c in ipairs(cases) do
    local e = err(c[1])
    if e ~= "tiers.define: " .. c[2] then
      error(("define %s: expected the error %q, got %s"):format(c[1], "tiers.define: " .. c[2], e))
    end
  end
end)
