-- The shipped win-back campaign (winback.lua) with the shipped restraint (00_caps.lua).
use("00_caps.lua", "winback.lua")

local T0 = 1793548800 -- 2026-11-02T00:00:00+08:00
local D = 86400

test("30 days without activity: miss_you; 90 days: a call task for the staff owner", function(t)
  t:at(T0 + 11 * 3600)
  t:event("m-1", "member.joined", { staff = "guide-1" })
  t:event("m-1", "order.paid", { amount = 30 }, { time = T0 + 5 * D + 11 * 3600 })
  t:at(T0 + 35 * D + 11 * 3600 - 1)
  t:expect_no_action({ template = "miss_you" })
  t:at(T0 + 35 * D + 11 * 3600)
  local s = t:expect_action({ member = "m-1", template = "miss_you" }, 1)
  t:eq({ s.status, s.time }, { "queued", "2026-12-07T11:00:00+08:00" }, "miss_you")
  t:at(T0 + 95 * D + 11 * 3600)
  local task = t:expect_action({ member = "m-1", action = "task", text = "personal call" }, 1)
  t:eq({ task.staff, task.time }, { "guide-1", "2027-02-05T11:00:00+08:00" }, "call task")
end)

test("a message due at night waits for 09:00", function(t)
  t:at(T0 + 23 * 3600)
  t:event("m-1", "checkin")
  t:at(T0 + 30 * D + 23 * 3600)
  t:eq(t:expect_action({ template = "miss_you" }).status, "deferred", "at 23:00")
  t:at(T0 + 31 * D + 9 * 3600)
  local sends = t:actions({ template = "miss_you" })
  t:eq(sends[#sends].status, "queued", "at 09:00")
end)

test("a member who comes back within 14 days is recalled and starts a new spell", function(t)
  t:at(T0 + 10 * 3600)
  t:event("m-1", "member.joined")
  t:event("m-2", "member.joined")
  t:at(T0 + 40 * D + 12 * 3600)
  t:event("m-1", "message.replied") -- 10 days after miss_you: recalled
  local s1 = t:member("m-1").attrs["_recall.winback"]
  t:eq({ s1.stage, s1.base, s1.recalled }, { "active", T0 + 40 * D + 12 * 3600, 1 }, "m-1 recalled")
  t:at(T0 + 45 * D)
  t:event("m-2", "message.replied") -- 15 days after miss_you: active again, not recalled
  local s2 = t:member("m-2").attrs["_recall.winback"]
  t:eq({ s2.stage, s2.base, s2.recalled }, { "active", T0 + 45 * D, nil }, "m-2 active, not recalled")
  t:at(T0 + 70 * D + 12 * 3600)
  local sends = t:actions({ member = "m-1", template = "miss_you" })
  t:eq(#sends, 2, "a second spell, a second touch")
  t:eq({ sends[2].time, sends[2].status }, { "2027-01-11T12:00:00+08:00", "queued" }, "30 days after the reply")
end)

test("deleting the WeCom friend alerts the staff owner", function(t)
  t:at(T0 + 10 * 3600)
  t:event("m-1", "member.joined", { staff = "guide-2" })
  t:event("m-1", "friend.deleted", nil, { time = T0 + 2 * D + 22 * 3600 })
  local task = t:expect_action({ member = "m-1", action = "task", text = "friend deleted" }, 1)
  t:eq({ task.staff, task.status, task.time }, { "guide-2", "queued", "2026-11-04T22:00:00+08:00" }, "task at once, even at night")
end)
