-- Double 11 (双十一): a dated one-off broadcast. At 10:00 on 11 November 2026 every
-- member in Hangzhou (attribute city) who has paid at least one order gets the
-- "d11_coupon" message, once. The send is an ordinary marketing send: caps and quiet
-- hours (scripts/00_caps.lua) judge it like any other, so a member who had two
-- marketing messages in the last 7 days is `capped`. Unlike a cron entry it does not
-- come back a year later. `hearth broadcast count double11` shows the audience before
-- it runs; `hearth broadcast list` its progress. See docs/GUIDE.md, "A dated broadcast".
hearth.broadcast {
  name = "double11",
  at = "2026-11-11T10:00:00+08:00",
  audience = {
    attrs = { city = "Hangzhou" },
    where = function(m) return m.orders >= 1 end,
  },
  fn = function(m)
    m:send("d11_coupon", { step = "coupon", vars = { discount = 30 } })
  end,
}
