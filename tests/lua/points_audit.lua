-- points_audit.lua: the audit both points tests share (required, not a campaign): for
-- each member, the ledger's deltas sum to her balance, and so do her lots' remainders.
local audit = {}

function audit.check(t, ids)
  for _, id in ipairs(ids) do
    local m = t:member(id)
    local ledger, lots = 0, 0
    for _, e in ipairs(m.ledger) do ledger = ledger + e.delta end
    for _, l in ipairs(m.lots) do lots = lots + l.left end
    t:eq({ ledger, lots }, { m.points, m.points }, id .. ": ledger sum and lots left against the balance")
  end
end

return audit
