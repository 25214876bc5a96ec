-- zones_api.lua: probes of the member's own clock in the Lua API (zones_api_test.lua).
-- Each probe keeps what it saw in the attribute "seen".
hearth.on("probe", function(m, ev)
  local t = ev.data.t
  local d, hd = m:local_date(t), hearth.local_date(t, m)
  m:set("seen", {
    tz = m.tz,
    date = string.format("%04d-%02d-%02d %02d:%02d wday %d", d.year, d.month, d.day, d.hour, d.min, d.wday),
    same_as_hearth = d.day_number == hd.day_number and d.hour == hd.hour,
    engine_hour = hearth.local_date(t).hour,
    ten = m:local_time(d.year, d.month, d.day, 10, 0, 0),
    ten_by_handle = hearth.local_time(d.year, d.month, d.day, 10, 0, 0, m),
    now_day = m:local_date().day_number,
  })
end)

hearth.on("probe.zone", function(m, ev)
  local ok, err = pcall(hearth.local_date, ev.data.t, ev.data.zone)
  m:set("seen", ok and err.hour or tostring(err))
end)

hearth.on("probe.set", function(m, ev) m:set("tz", ev.data.tz) end)
