-- reward: the option table shared by the modules that reward or touch a member
-- (streak milestones, referral rewards, recall stages):
--   { points = n, send = "template", task = "text", tag = "tag", staff = "owner",
--     vars = { ... }, category = "marketing" | "service" }
-- reward.check(r, what [, extra]) validates one such table for the option named `what`
-- and returns it; `extra` lists module-specific fields to allow (the module checks them).
-- Errors are plain messages (error level 0) naming the option and the field.
local M = {}

local common = { points = true, send = true, task = true, tag = true, vars = true,
                 category = true, staff = true }

local function fail(msg) error(msg, 0) end

function M.check(r, what, extra)
  if type(r) ~= "table" then fail(string.format("option '%s' must be a table", what)) end
  for k in pairs(r) do
    if not common[k] and not (extra and extra[k]) then
      fail(string.format("option '%s' has an unknown field '%s'", what, tostring(k)))
    end
  end
  if r.points ~= nil and (math.type(r.points) ~= "integer" or r.points <= 0) then
    fail(string.format("option '%s.points' must be an integer > 0", what))
  end
  for _, k in ipairs { "send", "task", "tag", "staff" } do
    if r[k] ~= nil and (type(r[k]) ~= "string" or r[k] == "") then
      fail(string.format("option '%s.%s' must be a non-empty string", what, k))
    end
  end
  if r.vars ~= nil and type(r.vars) ~= "table" then fail(string.format("option '%s.vars' must be a table", what)) end
  if r.category ~= nil and r.category ~= "marketing" and r.category ~= "service" then
    fail(string.format("option '%s.category' must be \"marketing\" or \"service\"", what))
  end
  return r
end

return M
