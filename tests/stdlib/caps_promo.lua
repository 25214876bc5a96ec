-- caps tests: a "promo" event sends through caps.send with what its data says, and keeps
-- the returned status in the attribute last_status.
--   data: key, tpl (default "promo"), campaign (default "promo"; no_campaign = true: none),
--         category, step
local caps = require "caps"

hearth.on("promo", function(m, ev)
  local d = ev.data
  local campaign = d.campaign or "promo"
  if d.no_campaign then campaign = nil end
  local st = caps.send(m, d.tpl or "promo", { key = d.key, campaign = campaign, category = d.category,
                                              step = d.step, vars = d.vars })
  m:set("last_status", st)
end)
