-- segment_test.lua: RFM, fan classes, lifecycle stages and the tagging helpers
-- (segment_track.lua for the handler cases; plain-table snapshots through t:eval for the rest).
use("segment_track.lua")

local NOW = "2026-11-30T12:00:00+08:00"

-- evaluate fn(snapshot, thresholds) in the campaign state with now = NOW
local function call(t, fn, snap, th)
  return t:eval(("local s = require('segment') local now = hearth.time('%s') " ..
    "local m = %s m.now = nil local th = %s th.now = now return s.%s(m, th)"):format(NOW, snap, th, fn))
end

local TH = "{ recency_days = 30, frequency = 3, monetary = 500 }"

local function days_ago(n, hour)
  return ("hearth.time('%s') - %d * 86400"):format(NOW, n) .. (hour and (" + " .. hour) or "")
end

test("rfm: the eight classes", function(t)
  t:at(NOW)
  local recent, old = days_ago(5), days_ago(60)
  local cases = {
    { "{ orders = 3, spend = 500, last_order_at = " .. recent .. " }", "important_value" },
    { "{ orders = 1, spend = 900, last_order_at = " .. recent .. " }", "important_develop" },
    { "{ orders = 5, spend = 800, last_order_at = " .. old .. " }", "important_keep" },
    { "{ orders = 2, spend = 600, last_order_at = " .. old .. " }", "important_recall" },
    { "{ orders = 4, spend = 499.99, last_order_at = " .. recent .. " }", "general_value" },
    { "{ orders = 1, spend = 50, last_order_at = " .. recent .. " }", "general_develop" },
    { "{ orders = 3, spend = 100, last_order_at = " .. old .. " }", "general_keep" },
    { "{ orders = 2, spend = 100, last_order_at = " .. old .. " }", "general_recall" },
    { "{ orders = 0, spend = 0 }", "general_recall" },
  }
  for _, c in ipairs(cases) do t:eq(call(t, "rfm", c[1], TH), c[2], c[1]) end
end)

test("rfm: recency in local calendar days, recency_days itself still recent", function(t)
  t:at(NOW)
  -- 2026-10-31 23:59 is 30 local days before 2026-11-30 even though under 30 x 24 h
  t:eq(call(t, "rfm", "{ orders = 3, spend = 500, last_order_at = hearth.time('2026-10-31T23:59:00+08:00') }", TH),
    "important_value", "30 days")
  t:eq(call(t, "rfm", "{ orders = 3, spend = 500, last_order_at = hearth.time('2026-10-30T23:59:00+08:00') }", TH),
    "important_keep", "31 days")
end)

test("rfm: without a tracked last order, last_active_at is the fallback", function(t)
  t:at(NOW)
  t:eq(call(t, "rfm", "{ orders = 3, spend = 500, last_active_at = " .. days_ago(2) .. " }", TH),
    "important_value", "fallback")
  t:eq(call(t, "rfm", "{ orders = 3, spend = 500, last_order_at = " .. days_ago(40) ..
    ", last_active_at = " .. days_ago(2) .. " }", TH), "important_keep", "tracked wins")
end)

test("track(): R comes from the last order, not from the last activity", function(t)
  t:at("2026-10-01T10:00:00+08:00")
  for _ = 1, 3 do t:event("m-1", "order.paid", { amount = 200 }) end
  t:at("2026-11-20T10:00:00+08:00")
  t:event("m-1", "checkin")                         -- active, but no order for 50 days
  t:event("m-1", "test.classify")
  t:expect_attr("m-1", "rfm", "important_keep")
  t:expect_attr("m-1", "rfm_flags", { r = false, f = true, m = true })
  t:expect_attr("m-1", "last_order", t:eval("return hearth.time('2026-10-01T10:00:00+08:00')"))
  t:eq(t:member("m-1").attrs["_segment.last_order"], t:member("m-1").attrs["_segment.first_order"], "first = last")
  t:event("m-1", "order.paid", { amount = 10 })
  t:event("m-1", "test.classify")
  t:expect_attr("m-1", "rfm", "important_value")
end)

test("track(): an order with an older time does not move the last order back", function(t)
  t:at("2026-11-20T10:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 10 })
  t:event("m-1", "order.paid", { amount = 10 }, { time = "2026-11-01T10:00:00+08:00" })
  local a = t:member("m-1").attrs
  t:eq(a["_segment.last_order"] - a["_segment.first_order"], 19 * 86400, "first and last")
end)

test("track() twice registers one handler; a call from a handler is harmless", function(t)
  t:at(NOW)
  t:eq(t:eval("require('segment').track() return 'ok'"), "ok", "no second registration")
end)

test("fan classes, thresholds inclusive", function(t)
  t:at(NOW)
  local cases = {
    { "{ orders = 3, spend = 500 }", "iron" },
    { "{ orders = 3, spend = 499 }", "true_love" },
    { "{ orders = 2, spend = 500 }", "strength" },
    { "{ orders = 2, spend = 499 }", "ordinary" },
    { "{ orders = 0, spend = 0 }", "potential" },
    { "{ orders = 1, spend = 0 }", "ordinary" },     -- bought, then refunded everything
  }
  for _, c in ipairs(cases) do t:eq(call(t, "fan_class", c[1], TH), c[2], c[1]) end
end)

test("fan class of a member handle: registered, never bought", function(t)
  t:at(NOW)
  t:event("m-1", "member.joined")
  t:event("m-1", "test.classify")
  t:expect_attr("m-1", "fan", "potential")
  t:expect_attr("m-1", "lifecycle", "introduction")
  t:expect_attr("m-1", "last_order", "none")
end)

test("lifecycle: the five stages and their boundaries", function(t)
  t:at(NOW)
  local function lc(snap, opts)
    return t:eval(("local s = require('segment') local o = %s o.now = hearth.time('%s') return s.lifecycle(%s, o)")
      :format(opts or "{}", NOW, snap))
  end
  local j200, j30 = days_ago(200), days_ago(30)
  t:eq(lc("{ orders = 0, joined_at = " .. j30 .. ", last_active_at = " .. days_ago(1) .. " }"), "introduction", "no order")
  t:eq(lc("{ orders = 2, joined_at = " .. j200 .. ", last_active_at = " .. days_ago(1) .. " }"), "growth", "few orders")
  t:eq(lc("{ orders = 5, joined_at = " .. days_ago(89) .. ", last_active_at = " .. days_ago(1) .. " }"), "growth", "young")
  t:eq(lc("{ orders = 3, joined_at = " .. days_ago(90) .. ", last_active_at = " .. days_ago(1) .. " }"), "stable", "90 days")
  t:eq(lc("{ orders = 3, last_active_at = " .. days_ago(1) .. " }"), "stable", "unknown join: long-standing")
  t:eq(lc("{ orders = 9, joined_at = " .. j200 .. ", last_active_at = " .. days_ago(59) .. " }"), "stable", "59 inactive")
  t:eq(lc("{ orders = 9, joined_at = " .. j200 .. ", last_active_at = " .. days_ago(60) .. " }"), "decline", "60 inactive")
  t:eq(lc("{ orders = 0, joined_at = " .. j200 .. ", last_active_at = " .. days_ago(179) .. " }"), "decline", "179")
  t:eq(lc("{ orders = 9, joined_at = " .. j200 .. ", last_active_at = " .. days_ago(180) .. " }"), "churned", "180")
  t:eq(lc("{ orders = 0, joined_at = " .. days_ago(70) .. " }"), "decline", "no activity: since joining")
  -- options
  t:eq(lc("{ orders = 2, joined_at = " .. j200 .. ", last_active_at = " .. days_ago(1) .. " }", "{ stable_orders = 2 }"),
    "stable", "stable_orders")
  t:eq(lc("{ orders = 9, joined_at = " .. j200 .. ", last_active_at = " .. days_ago(1) ..
    ", last_order_at = " .. days_ago(70) .. " }", "{ by = 'order' }"), "decline", "by order")
  t:eq(lc("{ orders = 9, joined_at = " .. j200 .. ", last_active_at = " .. days_ago(1) ..
    ", last_order_at = " .. days_ago(70) .. " }"), "stable", "by activity")
  t:eq(lc("{ orders = 9, joined_at = " .. j200 .. ", last_active_at = " .. days_ago(30) .. " }",
    "{ decline_days = 20, churned_days = 30 }"), "churned", "churned_days")
end)

test("tag_rfm keeps exactly one rfm tag and replaces the previous one", function(t)
  t:at("2026-11-01T10:00:00+08:00")
  t:event("m-1", "order.paid", { amount = 600 })
  t:event("m-1", "test.tag")
  t:expect_tag("m-1", "rfm:important_develop")
  t:expect_attr("m-1", "tag_result", { class = "important_develop", changed = true })
  t:expect_tag("m-1", "fan:strength")
  t:expect_tag("m-1", "stage:growth")
  t:event("m-1", "test.tag")
  t:expect_attr("m-1", "tag_result", { class = "important_develop", changed = false })
  t:expect_action({ action = "tag", tag = "rfm:important_develop" }, 1)
  t:at("2026-12-15T10:00:00+08:00")
  t:event("m-1", "test.tag")
  t:expect_tag("m-1", "rfm:important_recall")
  t:expect_no_tag("m-1", "rfm:important_develop")
  t:expect_attr("m-1", "tag_result", { class = "important_recall", changed = true })
  local u = t:expect_action({ action = "untag", tag = "rfm:important_develop", campaign = "seg" }, 1)
  t:eq(u.id:match("/untag/rfm:important_develop$") ~= nil, true, "keyed untag")
  local n = 0
  for _, tag in ipairs(t:member("m-1").tags) do if tag:sub(1, 4) == "rfm:" then n = n + 1 end end
  t:eq(n, 1, "one rfm tag")
end)

test("bad thresholds and options are named", function(t)
  t:at(NOW)
  local function err(code)
    return t:eval("local s = require('segment') local ok, e = pcall(function() return " .. code .. " end) return tostring(e)")
  end
  local cases = {
    { "s.rfm({ orders = 1, spend = 1 }, { frequency = 3, monetary = 500 })",
      "segment.rfm: option 'thresholds.recency_days' must be a number >= 0, got nil" },
    { "s.rfm({ orders = 1, spend = 1 }, { recency_days = 30, frequency = 0, monetary = 500 })",
      "segment.rfm: option 'thresholds.frequency' must be a number > 0, got 0" },
    { "s.fan_class({ orders = 1, spend = 1 }, { frequency = 3 })",
      "segment.fan_class: option 'thresholds.monetary' must be a number >= 0, got nil" },
    { "s.rfm({ orders = 1 }, nil)",
      "segment.rfm: option 'thresholds' must be a table { recency_days =, frequency =, monetary = }, got nil" },
    { "s.lifecycle({ orders = 1 }, { churned_days = 10, decline_days = 20 })",
      "segment.lifecycle: option 'decline_days' must be at most 'churned_days' (10), got 20" },
    { "s.lifecycle({ orders = 1 }, { by = 'visits' })",
      "segment.lifecycle: option 'by' must be \"activity\" or \"order\", got \"visits\"" },
    { "s.lifecycle({ orders = 1 }, { stable = 3 })",
      "segment.lifecycle: option 'stable' is unknown (known: by, churned_days, decline_days, now, stable_days, stable_orders)" },
    { "s.rfm(42, {})",
      "segment.rfm: expects a member handle or a table {orders=, spend=, ...}" },
  }
  for _, c in ipairs(cases) do
    local e = err(c[1])
    if e ~= c[2] then error(("%s: expected the error %q, got %s"):format(c[1], c[2], e)) end
  end
end)
