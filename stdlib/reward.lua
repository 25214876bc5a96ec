-- reward: the option table shared by the modules that reward or touch a member
-- (streak milestones, referral rewards, recall stages):
--   { points = n, send = "template", task = "text", tag = "tag", staff = "owner",
--     vars = { ... }, category = "marketing" | "service" }
-- reward.check(r, path [, extra]) validates one such table for the option at `path`
-- ("milestones[7]") and returns it; `extra` lists module-specific fields to allow (the
-- module checks them). Errors are the messages of options.lua (error level 0).
local options = require "options"

local M = {}

local COMMON = { points = true, send = true, task = true, tag = true, vars = true,
                 category = true, staff = true }

function M.check(r, path, extra)
  options.table(r, path)
  local allowed = COMMON
  if extra then
    allowed = {}
    for k in pairs(COMMON) do allowed[k] = true end
    for k in pairs(extra) do allowed[k] = true end
  end
  options.known(r, allowed, path)
  if r.points ~= nil then options.integer(r.points, options.field(path, "points"), 1) end
  for _, k in ipairs { "send", "task", "tag", "staff" } do
    if r[k] ~= nil then options.string(r[k], options.field(path, k)) end
  end
  if r.vars ~= nil then options.table(r.vars, options.field(path, "vars")) end
  if r.category ~= nil then options.enum(r.category, options.field(path, "category"), { "marketing", "service" }) end
  return r
end

return M
