-- journey_helpers: what the journey_*_test.lua files share (a test helper: `require
-- "journey_helpers"` from a test; the scripts loader never loads *_helpers.lua as a
-- campaign script).
--   state(t, member, name) -> the member's "_journey.<name>" attribute (the run's state)
--   find(t, name, want [, skip]) -> the first member id m-1, m-2, ... (after `skip` such
--     ids) that journey `name` assigns to `want` ("holdout", "A", ...), or nil
local M = {}

function M.state(t, member, name)
  return t:member(member).attrs["_journey." .. name]
end

function M.find(t, name, want, skip)
  return t:eval(([[
    local j = require "journey"
    local n = 0
    for i = 1, 5000 do
      local id = "m-" .. i
      if j.assign(%q, id) == %q then
        n = n + 1
        if n > %d then return id end
      end
    end ]]):format(name, want, skip or 0))
end

return M
