-- segment_defs_test.lua: segment.define / matches / where (segment_defs.lua): tags,
-- attribute values, lists and ranges (inclusive), inactivity, RFM / fan / lifecycle classes,
-- a function; a sweep through segment.where; option errors.
use("segment_defs.lua")

local T0 = "2026-11-02T10:00:00+08:00"

local function segments(t, id)
  t:event(id, "probe.segment")
  return t:member(id).attrs.segments
end

test("tags, an attribute value and a spend range with both ends inclusive", function(t)
  t:at(T0)
  for id, amount in pairs({ ["m-1"] = 500, ["m-2"] = 2000, ["m-3"] = 499.99, ["m-4"] = 2000.01, ["m-5"] = 800 }) do
    t:event(id, "member.joined")
    t:event(id, "member.updated", { city = "sh" })
    t:event(id, "order.paid", { amount = amount })
    t:event(id, "test.tag_me", { tag = "vip" })
  end
  t:event("m-5", "test.tag_me", { tag = "blocked" })
  t:eq(segments(t, "m-1"), { "sh_big" }, "500: the lower end")
  t:eq(segments(t, "m-2"), { "sh_big" }, "2000: the upper end")
  t:eq(segments(t, "m-3"), {}, "below")
  t:eq(segments(t, "m-4"), {}, "above")
  t:eq(segments(t, "m-5"), {}, "not_tags")
  t:event("m-6", "member.joined")
    t:event("m-6", "member.updated", { city = "bj" })
  t:event("m-6", "order.paid", { amount = 800 })
  t:event("m-6", "test.tag_me", { tag = "vip" })
  t:eq(segments(t, "m-6"), {}, "another city")
end)

test("a list of values with any_tags; a function with a lifecycle stage", function(t)
  t:at(T0)
  t:event("m-1", "member.joined")
    t:event("m-1", "member.updated", { city = "gz" })
  t:eq(segments(t, "m-1"), { "newcomer" }, "no a/b tag yet; no order: introduction, and a city")
  t:event("m-1", "test.tag_me", { tag = "b" })
  t:eq(segments(t, "m-1"), { "north_south", "newcomer" }, "with tag b")
  t:event("m-2", "member.joined")
  t:eq(segments(t, "m-2"), {}, "no city: the function says no")
end)

test("inactive: last activity at least 30 days ago; active_within with RFM and fan classes", function(t)
  t:at(T0)
  t:event("m-1", "member.joined")
  t:event("m-1", "order.paid", { amount = 60 })
  t:event("m-1", "order.paid", { amount = 60 })
  t:eq(segments(t, "m-1"), { "loyal" }, "two orders, 120: important_value and iron, active")
  t:at("2026-12-02T09:59:59+08:00")
  t:eq(t:eval([[return require("segment").matches("idle", { last_active_at = hearth.time("2026-11-02T10:00:00+08:00") })]]),
       false, "one second short of 30 days")
  t:at("2026-12-02T10:00:00+08:00")
  t:eq(t:eval([[return require("segment").matches("idle", { last_active_at = hearth.time("2026-11-02T10:00:00+08:00") })]]),
       true, "30 days")
  t:eq(t:eval([[return require("segment").matches("idle", { joined_at = hearth.time("2026-11-01T10:00:00+08:00") })]]),
       true, "no activity: joining counts")
  t:eq(t:eval([[return require("segment").matches("idle", {})]]), false, "no time known: not inactive")
  -- the probe is itself an event (it moves last_active_at): ask through a snapshot instead
  t:eq(t:eval([[local s = require "segment"
    return { s.matches("loyal", { orders = 2, spend = 120, last_order_at = hearth.now() - 86400,
                                  last_active_at = hearth.now() - 86400 }),
             s.matches("loyal", { orders = 2, spend = 120, last_order_at = hearth.now() - 8 * 86400,
                                  last_active_at = hearth.now() - 8 * 86400 }),
             s.matches("sh_big", { tags = { "vip" }, city = "sh", spend = 600 }),
             s.matches("sh_big", { tags = { "vip" }, attrs = { city = "sh" }, spend = 600 }) } ]]),
       { true, false, true, true }, "snapshots")
end)

test("segment.where in a sweep: the nightly cron tags the members of the segment", function(t)
  t:at(T0)
  t:event("m-1", "member.joined")
    t:event("m-1", "member.updated", { city = "sh" })
  t:event("m-1", "order.paid", { amount = 900 })
  t:event("m-1", "test.tag_me", { tag = "vip" })
  t:event("m-2", "member.joined")
    t:event("m-2", "member.updated", { city = "sh" })
  t:at("2026-11-03T04:00:00+08:00")
  t:expect_tag("m-1", "seg:sh_big")
  t:expect_no_tag("m-2", "seg:sh_big")
end)

test("segment.define validates every option, naming its path; unknown segment names are errors", function(t)
  t:at(T0)
  local got = t:eval([[
    local s = require "segment"
    local bad = {
      { name = "x", tagz = "a" },
      { name = "x", tags = 5 },
      { name = "x", attrs = { spend = { min = 5, max = 1 } } },
      { name = "x", attrs = { spend = { min = "5" } } },
      { name = "x", attrs = { spend = { least = 5 } } },
      { name = "x", attrs = { city = {} } },
      { name = "x", attrs = { city = { "sh", {} } } },
      { name = "x", rfm = { "important_value" } },
      { name = "x", rfm = { "vip" }, thresholds = { recency_days = 1, frequency = 1, monetary = 1 } },
      { name = "x", fan = { "iron" }, thresholds = { frequency = 0, monetary = 1 } },
      { name = "x", thresholds = { frequency = 1, monetary = 1 } },
      { name = "x", lifecycle = "stable" },
      { name = "x", inactive = "30x" },
      { name = "x", where = true },
      { name = "sh_big" },
    }
    local out = {}
    for i, spec in ipairs(bad) do
      local ok, err = pcall(s.define, spec)
      out[i] = ok and "accepted" or tostring(err)
    end
    out[#out + 1] = select(2, pcall(s.matches, "nope", {}))
    out[#out + 1] = select(2, pcall(s.where, "nope"))
    return out ]])
  t:eq(got, {
    "segment.define: option 'tagz' is unknown (known: active_within, any_tags, attrs, fan, inactive, lifecycle, name, not_tags, rfm, tags, thresholds, where)",
    "segment.define: option 'tags' must be a tag or a non-empty list of tags, got 5",
    "segment.define: option 'attrs.spend.max' must be at least 'min' (5), got 1",
    "segment.define: option 'attrs.spend.min' must be a number, got \"5\"",
    "segment.define: option 'attrs.spend.least' is unknown (known: max, min)",
    "segment.define: option 'attrs.city' must be a value, a list of values or a range { min =, max = }, got an empty table",
    "segment.define: option 'attrs.city[2]' must be a string, a number or a boolean, got an empty table",
    "segment.define: option 'rfm' needs option 'thresholds'",
    "segment.define: option 'rfm[1]' must be one of \"general_develop\", \"general_keep\", \"general_recall\", \"general_value\", \"important_develop\", \"important_keep\", \"important_recall\", \"important_value\", got \"vip\"",
    "segment.define: option 'thresholds.frequency' must be a number > 0, got 0",
    "segment.define: option 'thresholds' is used by 'rfm' or 'fan' only (neither is set)",
    "segment.define: option 'lifecycle' must be a non-empty list of names, got \"stable\"",
    "segment.define: option 'inactive' must be a positive duration like \"3d\" or \"1d12h\", got \"30x\"",
    "segment.define: option 'where' must be a function(m) -> boolean, got true",
    "segment.define: option 'name' must be a name no other definition uses (it is defined twice), got \"sh_big\"",
    "segment.matches: no segment named \"nope\"",
    "segment.where: no segment named \"nope\"",
  }, "messages")
end)
