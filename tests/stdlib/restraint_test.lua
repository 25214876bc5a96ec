-- One restraint for every send: bare m:send, several windows, channel windows and quotas,
-- her own zone, friend deleted, and a reason on everything not queued.
use("restraint_rules.lua")

local function promo(t, m, key, data)
  data = data or {}
  data.key = key
  t:event(m, "promo", data)
end

test("a bare m:send at night is deferred to 09:00 and judged then", function(t)
  t:at("2026-11-02T23:30:00+08:00")
  promo(t, "m-1", "welcome")
  local a = t:actions { id = "restraint_rules/m-1/welcome" }[1]
  t:eq({ a.status, a.reason.rule, a.reason["until"] }, { "deferred", "quiet", "2026-11-03T09:00:00+08:00" },
       "deferred with its reason")
  t:at("2026-11-03T09:00:00+08:00")
  t:expect_action { id = "restraint_rules/m-1/welcome", status = "queued", time = "2026-11-03T09:00:00+08:00" }
end)

test("an unknown send option is an error naming it", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "typo")
  t:expect_failures(1)
  t:expect_no_action { template = "promo" }
  local err = t:member("m-1").failed[1].error
  t:eq(err:find("m:send: unknown option 'categroy'", 1, true) ~= nil, true, "the failure names the option: " .. err)
end)

test("several windows: one a local day, three a week", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  promo(t, "m-1", "a")
  promo(t, "m-1", "b")
  t:expect_action { id = "restraint_rules/m-1/a", status = "queued" }
  local b = t:actions { id = "restraint_rules/m-1/b" }[1]
  t:eq({ b.status, b.reason }, { "capped", { rule = "cap", max = 1, per = "day", sent = 1 } }, "second the same day")
  t:at("2026-11-03T10:00:00+08:00")
  promo(t, "m-1", "c")
  t:at("2026-11-04T10:00:00+08:00")
  promo(t, "m-1", "d")
  t:at("2026-11-05T10:00:00+08:00")
  promo(t, "m-1", "e")
  local e = t:actions { id = "restraint_rules/m-1/e" }[1]
  t:eq({ e.status, e.reason.per, e.reason.sent }, { "capped", "7d", 3 }, "fourth in seven days")
end)

test("a channel's own window counts only that channel", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  promo(t, "m-1", "s1", { channel = "sms" })
  t:at("2026-11-03T10:00:00+08:00")
  promo(t, "m-1", "s2", { channel = "sms" })
  promo(t, "m-2", "x", { channel = "app" })
  local s2 = t:actions { id = "restraint_rules/m-1/s2" }[1]
  t:eq({ s2.status, s2.reason.channel, s2.reason.max }, { "capped", "sms", 1 }, "sms once a week")
  t:expect_action { id = "restraint_rules/m-2/x", status = "queued" }
end)

test("WeCom quota: one mass message per staff member a local day, four a month", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "member.joined", { staff = "s-1" })
  promo(t, "m-1", "w1", { channel = "wecom", category = "marketing" })
  promo(t, "m-1", "w2", { channel = "wecom", staff = "s-2", category = "service" }) -- service: not judged
  t:expect_action { id = "restraint_rules/m-1/w1", status = "queued" }
  t:expect_action { id = "restraint_rules/m-1/w2", status = "queued" }
  local day = 3
  for i = 3, 6 do
    t:at(("2026-11-%02dT10:00:00+08:00"):format(day))
    promo(t, "m-1", "w" .. i, { channel = "wecom", staff = (i % 2 == 0) and "s-2" or "s-1" })
    day = day + 7 -- past the weekly cap of 3
  end
  t:expect_action { id = "restraint_rules/m-1/w5", status = "queued" }
  local w6 = t:actions { id = "restraint_rules/m-1/w6" }[1]
  t:eq({ w6.status, w6.reason.rule, w6.reason.quota, w6.reason.max, w6.reason.sent },
       { "limited", "quota", "per_month", 4, 4 }, "the fifth in November")
  t:at("2026-12-01T10:00:00+08:00")
  promo(t, "m-1", "d1", { channel = "wecom" })
  t:at("2026-12-01T12:00:00+08:00")
  t:event("m-1", "member.updated", { tz = "Asia/Shanghai" })
  t:expect_action { id = "restraint_rules/m-1/d1", status = "queued" }
end)

test("quiet hours are hers: 22:00 in Shanghai is 09:00 in New York", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-ny", "member.updated", { tz = "America/New_York" })
  t:event("m-sh", "member.updated", { tz = "Asia/Shanghai" })
  t:at("2026-11-02T22:00:00+08:00") -- 09:00 in New York (EST, UTC-5)
  promo(t, "m-ny", "n")
  promo(t, "m-sh", "s")
  t:expect_action { id = "restraint_rules/m-ny/n", status = "queued" }
  local s = t:actions { id = "restraint_rules/m-sh/s" }[1]
  t:eq({ s.status, s.reason.tz }, { "deferred", "Asia/Shanghai" }, "deferred in Shanghai")
  t:at("2026-11-03T10:00:00+08:00") -- 21:00 in New York: quiet for her
  promo(t, "m-ny", "n2")
  local n2 = t:actions { id = "restraint_rules/m-ny/n2" }[1]
  t:eq({ n2.status, n2.reason.tz, n2.reason["until"] },
       { "deferred", "America/New_York", "2026-11-03T09:00:00-05:00" }, "deferred to her 09:00")
end)

test("her quiet hours across a DST change: London on 25 October 2026", function(t)
  t:at("2026-10-24T12:00:00+08:00")
  t:event("m-ldn", "member.updated", { tz = "Europe/London" })
  -- 21:30 BST on the 24th (UTC+1) is 04:30 in Shanghai on the 25th
  t:at("2026-10-25T04:30:00+08:00")
  promo(t, "m-ldn", "before")
  local a = t:actions { id = "restraint_rules/m-ldn/before" }[1]
  -- her 09:00 on the 25th is GMT (UTC+0) after the change: 17:00 in Shanghai
  t:eq({ a.status, a.reason["until"] }, { "deferred", "2026-10-25T09:00:00+00:00" }, "deferred to her 09:00 GMT")
  t:at("2026-10-25T16:59:00+08:00") -- 08:59 GMT: still quiet
  t:expect_action { id = "restraint_rules/m-ldn/before", status = "deferred" }
  t:at("2026-10-25T17:00:00+08:00")
  t:expect_action { id = "restraint_rules/m-ldn/before", status = "queued", time = "2026-10-25T17:00:00+08:00" }
  -- 20:30 GMT (04:30 Shanghai on the 26th) is not quiet for her, and still her 25th: the
  -- one-a-day window counts her local day
  t:at("2026-10-26T04:30:00+08:00")
  promo(t, "m-ldn", "after", { channel = "sms" })
  local after = t:actions { id = "restraint_rules/m-ldn/after" }[1]
  t:eq({ after.status, after.reason.per }, { "capped", "day" }, "her day, not Shanghai's 26th")
end)

test("after friend.deleted no marketing reaches her, until she is added again", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "member.joined")
  t:event("m-1", "friend.deleted")
  promo(t, "m-1", "gone")
  local a = t:actions { id = "restraint_rules/m-1/gone" }[1]
  t:eq({ a.status, a.reason }, { "suppressed", { rule = "friend_deleted" } }, "after friend.deleted")
  promo(t, "m-1", "receipt", { category = "service" })
  t:expect_action { id = "restraint_rules/m-1/receipt", status = "queued" }
  t:at("2026-11-03T10:00:00+08:00")
  t:event("m-1", "member.joined")
  promo(t, "m-1", "back")
  t:expect_action { id = "restraint_rules/m-1/back", status = "queued" }
end)

test("a guard that raises: the failure is kept and the deferred send is skipped, not stranded", function(t)
  t:at("2026-11-02T23:00:00+08:00")
  t:event("m-g", "guarded")
  t:expect_action { id = "broken_guard/m-g/g", status = "deferred" }
  t:at("2026-11-03T09:00:00+08:00")
  t:expect_failures(1)
  local recs = t:actions { id = "broken_guard/m-g/g" }
  t:eq({ recs[#recs].status, recs[#recs].reason }, { "skipped", { rule = "guard_failed", campaign = "broken_guard" } },
       "judged again: skipped, with why")
  local err = t:member("m-g").failed[1].error
  t:eq(err:find("the guard's own bug", 1, true) ~= nil, true, "the guard's error is kept: " .. err)
end)

test("every action that is not queued carries a reason", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  for i = 1, 3 do promo(t, "m-1", "r" .. i) end
  t:event("m-2", "member.unsubscribed")
  promo(t, "m-2", "u")
  t:at("2026-11-02T23:00:00+08:00")
  promo(t, "m-3", "q")
  local n = 0
  for _, a in ipairs(t:actions {}) do
    if a.status ~= "queued" then
      n = n + 1
      t:eq(type(a.reason), "table", a.id .. " has a reason")
      t:eq(type(a.reason.rule), "string", a.id .. " names its rule")
    end
  end
  t:eq(n >= 4, true, "capped, suppressed and deferred actions were seen")
end)
