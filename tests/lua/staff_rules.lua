-- staff_rules: channel codes that give owners by each rule, a fallback owner for tasks,
-- tasks with a due time; the fixture of staff_rules_test.lua.
local channel = require "channel"

channel.define {
  name = "codes",
  owner = {
    rr = { rule = "round_robin", staff = { "s-a", "s-b", "s-c" } },
    ll = { rule = "least_loaded", staff = { "s-a", "s-b", "s-c" } },
    fixed = "s-f",
  },
}

hearth.staff { fallback = "s-lead", task_due = "2d" }

-- ask: a task for her owner; data.due overrides the default due time
hearth.on("ask", function(m, ev)
  m:task(ev.data and ev.data.text or "call her", { key = ev.data and ev.data.key, due = ev.data and ev.data.due })
end)

-- reassign: a script moves her to another guide (the counts follow)
hearth.on("reassign", function(m, ev) m:set("staff", ev.data.to) end)

-- assign: m:assign_owner straight from a handler, with a bad rule when asked
hearth.on("assign", function(m, ev)
  local owner, assigned = m:assign_owner(ev.data.rule)
  m:set("assigned", { owner, assigned })
end)
