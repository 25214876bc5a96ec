-- zones_api_test.lua: m.tz, m:local_date, m:local_time and the zone argument of
-- hearth.local_date / hearth.local_time / hearth.cron_next. The engine's zone is
-- Asia/Shanghai (+08:00). 1773064800 = 2026-03-09T14:00:00Z (New York 10:00 EDT).
use("zones_api.lua")

local T = 1773064800

test("a member's zone comes from member.joined or member.updated data.tz", function(t)
  t:at("2026-03-09T22:00:00+08:00")
  t:event("m-1", "member.joined", { tz = "America/New_York" })
  t:event("m-1", "probe", { t = T })
  t:eq(t:member("m-1").attrs.tz, "America/New_York", "member.joined keeps tz")
  local s = t:member("m-1").attrs.seen
  t:eq(s.tz, "America/New_York", "m.tz")
  t:eq(s.date, "2026-03-09 10:00 wday 2", "m:local_date: Monday 10:00 EDT")
  t:eq(s.same_as_hearth, true, "hearth.local_date(t, m) is m:local_date(t)")
  t:eq(s.engine_hour, 22, "hearth.local_date(t) stays in the engine's zone")
  t:eq(s.ten, T, "m:local_time: 10:00 on her date")
  t:eq(s.ten_by_handle, T, "hearth.local_time(..., m)")
  t:event("m-1", "member.updated", { tz = "Europe/London" })
  t:event("m-1", "probe", { t = T })
  s = t:member("m-1").attrs.seen
  t:eq(s.tz, "Europe/London", "member.updated replaces it")
  t:eq(s.date, "2026-03-09 14:00 wday 2", "London: 14:00 GMT")
end)

test("a member without tz, or with a name that is no zone, lives on the engine's zone", function(t)
  t:at("2026-03-09T22:00:00+08:00")
  t:event("m-1", "member.joined")
  t:event("m-1", "probe", { t = T })
  t:eq(t:member("m-1").attrs.seen.tz, "Asia/Shanghai", "no tz")
  t:eq(t:member("m-1").attrs.seen.date, "2026-03-09 22:00 wday 2", "+08:00")
  t:event("m-2", "probe.set", { tz = "Mars/Olympus_Mons" })   -- a script sets a bad name
  t:event("m-2", "probe", { t = T })
  t:event("m-2", "probe", { t = T })
  t:eq(t:member("m-2").attrs.seen.tz, "Asia/Shanghai", "a bad name: the engine's zone")
end)

test("hearth.local_date(t, zone): a zone name; a name that is no zone raises", function(t)
  t:at("2026-03-09T22:00:00+08:00")
  t:event("m-1", "probe.zone", { t = T, zone = "America/New_York" })
  t:eq(t:member("m-1").attrs.seen, 10, "10:00 in New York")
  t:event("m-1", "probe.zone", { t = T, zone = "Nowhere/Atlantis" })
  local msg = t:member("m-1").attrs.seen
  t:eq(type(msg) == "string" and msg:find("'Nowhere/Atlantis' is not a time zone", 1, true) ~= nil, true, msg)
  t:event("m-1", "probe.zone", { t = T, zone = 42 })
  msg = t:member("m-1").attrs.seen
  t:eq(msg:find("a zone name or a member handle expected", 1, true) ~= nil, true, msg)
end)

test("hearth.local_time and hearth.cron_next with a zone, across New York's spring change", function(t)
  t:at("2026-03-01T12:00:00+08:00")
  t:eq(t:eval [[return hearth.local_time(2026, 3, 8, 2, 30, 0, "America/New_York")]],
       t:eval [[return hearth.time("2026-03-08T03:30:00-04:00")]], "02:30 does not exist: 03:30 EDT")
  t:eq(t:eval [[return hearth.cron_next("0 10 * * 3", hearth.time("2026-03-05T00:00:00Z"), "America/New_York")]],
       t:eval [[return hearth.time("2026-03-11T10:00:00-04:00")]], "next Wednesday 10:00 EDT")
  t:eq(t:eval [[return hearth.cron_next("0 10 * * 3", hearth.time("2026-03-05T00:00:00Z"))]],
       t:eval [[return hearth.time("2026-03-11T10:00:00+08:00")]], "in the engine's zone")
  t:eq(t:eval [[return hearth.cron_next("0 0 30 2 *", 0)]], nil, "never: nil")
end)
