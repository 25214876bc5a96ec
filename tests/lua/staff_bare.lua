-- staff_bare: tasks with no hearth.staff declared (no fallback, default due); the
-- fixture of staff_bare_test.lua.
hearth.on("ask", function(m) m:task("call her") end)
