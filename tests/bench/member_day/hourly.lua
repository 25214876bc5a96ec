-- member_day/hourly.lua: the alternative measured against benefits (run_member_day.sh): an
-- hourly sweep of every member that serves those whose local time has reached Wednesday
-- 10:00. (It would also miss zones with a half-hour offset unless it ran every 15 minutes.)
hearth.cron("0 * * * *", function(slot)
  for m in hearth.members { chunk = 500 } do
    local ld = m:local_date(slot)
    if ld.wday == 4 and ld.hour == 10 then
      local date = string.format("%04d-%02d-%02d", ld.year, ld.month, ld.day)
      if m:get("_md") ~= date then
        m:set("_md", date)
        m:send("md", { key = "md/" .. date, category = "service" })
      end
    end
  end
end)
