-- Tests of recall's new stage (option new), with recall_new.lua: "fresh" (new = true) and
-- "trial" (new = "7d").
use("recall_new.lua")

local T0 = "2026-11-02T10:00:00+08:00"

local function stage(t, id)
  t:event(id, "probe.recall")
  return t:member(id).attrs.probe
end

test("new from joining until the first active event, which counts as activated (not reactivated)", function(t)
  t:at(T0)
  t:event("m-1", "member.joined")
  t:eq(stage(t, "m-1"), { fresh = "new", trial = "new" }, "just joined")
  t:advance("3d")
  t:eq(stage(t, "m-1"), { fresh = "new", trial = "new" }, "3 days, no activity")
  t:event("m-1", "checkin")
  t:eq(stage(t, "m-1"), { fresh = "active", trial = "active" }, "after the first check-in")
  t:eq({ t:counter("new", { campaign = "fresh" }), t:counter("activated", { campaign = "fresh" }),
         t:counter("reactivated", { campaign = "fresh" }), t:counter("tracked", { campaign = "fresh" }) },
       { 1, 1, 0, 1 }, "new, activated, reactivated, tracked")
  t:advance("1d")
  t:event("m-1", "checkin")
  t:eq(t:counter("activated", { campaign = "fresh" }), 1, "activated once")
end)

test("new = \"7d\": the stage reads active from 7 days after joining; a later first event is no activation", function(t)
  t:at(T0)
  t:event("m-1", "member.joined")
  t:at("2026-11-09T09:59:59+08:00")
  t:eq(stage(t, "m-1").trial, "new", "one second before 7 days")
  t:at("2026-11-09T10:00:00+08:00")
  t:eq(stage(t, "m-1"), { fresh = "new", trial = "active" }, "at 7 days")
  t:event("m-1", "checkin")
  t:eq({ t:counter("activated", { campaign = "trial" }), t:counter("activated", { campaign = "fresh" }) },
       { 0, 1 }, "activated: trial, fresh")
end)

test("a new member with no activity becomes sleeping at sleeping_after, as before; a member first seen active is never new", function(t)
  t:at(T0)
  t:event("m-1", "member.joined")
  t:event("m-2", "checkin")                 -- not seen joining: tracked as active
  t:eq(stage(t, "m-2"), { fresh = "active", trial = "active" }, "first seen active")
  t:at("2026-12-02T10:00:00+08:00")
  t:eq(stage(t, "m-1").fresh, "sleeping", "30 days without activity")
  t:expect_action { member = "m-1", template = "miss_you", step = "sleeping" }
  t:eq(t:counter("new", { campaign = "fresh" }), 1, "only m-1 was new")
  t:event("m-1", "checkin")                 -- woken: reactivated, not activated
  t:eq({ t:counter("activated", { campaign = "fresh" }), t:counter("reactivated", { campaign = "fresh" }) },
       { 0, 1 }, "activated, reactivated")
end)

test("option new: a bad value names the option", function(t)
  t:at(T0)
  t:eq(t:eval([[
    local ok, err = pcall(require("recall").define, { name = "bad", new = "soon" })
    return tostring(err) ]]),
    "recall.define: option 'new' must be true, false or a positive duration like \"7d\", got \"soon\"", "message")
end)
