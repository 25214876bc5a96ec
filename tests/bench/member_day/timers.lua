-- member_day/timers.lua: the member day as benefits does it (run_member_day.sh): one
-- sweep per slot in the engine's zone, and a timer per slot for each member with her own zone.
local benefits = require "benefits"
benefits.define { name = "md", member_day = { cron = "0 10 * * 3", send = "md", category = "service" } }
