-- broadcast_api_test.lua: hearth.broadcast on the virtual clock — the audience's tag,
-- attrs and where; chunks; a failing fn or predicate for one member; ids; a broadcast
-- with no `at`; the order against an event at the same time.
use("broadcast_api.lua")

local function members(t, list)
  for _, p in ipairs(list) do
    t:event(p[1], "member.joined", { n = p[2], city = p[3], vip = p[4] })
  end
end

local PEOPLE = {
  { "m-1", 1, "sh", true }, { "m-2", 2, "sh", true }, { "m-3", 3, "sh", false },
  { "m-4", 4, "sh", true }, { "m-5", 5, "bj", true }, { "m-6", 6, "bj", true },
  { "m-7", 7, "sh", true }, { "m-8", 8, "sh", true }, { "m-9", 9, "sh", true },
}

test("tag, attrs and where pick the audience; chunks of 2 send to each once", function(t)
  t:at("2026-11-10T12:00:00+08:00")
  members(t, PEOPLE)
  t:at("2026-11-11T10:00:00+08:00")
  local got = {}
  for _, a in ipairs(t:actions({ template = "coupon" })) do got[#got + 1] = a.member end
  t:eq(got, { "m-2", "m-8" }, "vip, sh, even n; m-4's coupon rolled back with its failure")
  t:expect_action({ template = "second" }, 2)
  t:expect_failures(1)
  t:expect_attr("m-4", "got_vip_sh", nil)
  t:expect_attr("m-8", "got_vip_sh", true)
  local c = t:expect_action({ member = "m-2", template = "coupon" })
  t:eq({ c.id, c.time }, { "broadcast_api/m-2/broadcast:vip_sh/1", "2026-11-11T10:00:00+08:00" }, "id and time")
  t:eq(t:expect_action({ member = "m-2", template = "second" }).id, "broadcast_api/m-2/broadcast:vip_sh/2",
    "the second send of the member")
end)

test("a broadcast runs before an event at its time, and once", function(t)
  t:at("2026-11-10T12:00:00+08:00")
  members(t, { PEOPLE[2] })
  t:event("m-8", "member.joined", { n = 8, city = "sh", vip = true }, { time = "2026-11-11T10:00:00+08:00" })
  t:expect_action({ template = "coupon" }, 1)
  t:expect_no_action({ member = "m-8", template = "coupon" })
  t:at("2027-11-11T10:00:00+08:00")
  t:expect_action({ template = "coupon" }, 1)
end)

test("a predicate changes nothing, and one that raises leaves its member out", function(t)
  t:at("2026-11-10T12:00:00+08:00")
  members(t, { PEOPLE[1], PEOPLE[3], PEOPLE[5] })
  t:at("2026-11-12T10:00:00+08:00")
  local got = {}
  for _, a in ipairs(t:actions({ template = "hello" })) do got[#got + 1] = a.member end
  t:eq(got, { "m-1", "m-5" }, "m-3's predicate raised")
  t:expect_failures(1)
  t:expect_attr("m-1", "touched_by_where", nil)
end)

test("a broadcast with no `at` never runs by itself", function(t)
  t:at("2026-11-10T12:00:00+08:00")
  members(t, PEOPLE)
  t:at("2027-12-31T10:00:00+08:00")
  t:expect_no_action({ template = "manual" })
  t:expect_failures(2)
end)
