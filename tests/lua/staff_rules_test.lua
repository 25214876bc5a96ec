-- staff_rules_test: owners by rule (round-robin order, least-loaded ties, fixed, kept),
-- the fallback owner of tasks, due/done/overdue on the virtual clock, staff.left.
local function owner(t, id) return t:member(id).attrs.staff end

test("round-robin gives new friends to the list in turn; data.staff keeps her guide", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  for i = 1, 4 do t:event("m-" .. i, "member.joined", { channel = "rr" }) end
  t:event("m-5", "member.joined", { channel = "rr", staff = "s-x" })
  t:event("m-6", "member.joined", { channel = "rr" })
  t:eq({ owner(t, "m-1"), owner(t, "m-2"), owner(t, "m-3"), owner(t, "m-4"), owner(t, "m-5"), owner(t, "m-6") },
       { "s-a", "s-b", "s-c", "s-a", "s-x", "s-b" }, "owners in turn, data.staff kept, the turn not spent on her")
  local log = t:member("m-2").owners
  t:eq({ #log, log[1].to, log[1].rule, log[1].from }, { 1, "s-b", "round_robin", nil }, "the change is logged")
end)

test("round-robin: a retried event assigns nothing twice", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "member.joined", { channel = "rr" }, { id = "e-1" })
  t:event("m-1", "member.joined", { channel = "rr" }, { id = "e-1" })
  t:event("m-2", "member.joined", { channel = "rr" }, { id = "e-2" })
  t:eq({ owner(t, "m-1"), owner(t, "m-2") }, { "s-a", "s-b" }, "the duplicate took no turn")
  t:eq(t:staff()["s-a"].members, 1, "counted once")
end)

test("least-loaded: the fewest members first, ties to the first listed", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "member.joined", { staff = "s-a" })
  t:event("m-2", "member.joined", { staff = "s-a" })
  t:event("m-3", "member.joined", { staff = "s-c" })
  t:event("m-4", "member.joined", { channel = "ll" }) -- a 2, b 0, c 1 -> b
  t:event("m-5", "member.joined", { channel = "ll" }) -- a 2, b 1, c 1 -> b (tie, listed first)
  t:event("m-6", "member.joined", { channel = "ll" }) -- a 2, b 2, c 1 -> c
  t:event("m-7", "member.joined", { channel = "ll" }) -- a 2, b 2, c 2 -> a
  t:eq({ owner(t, "m-4"), owner(t, "m-5"), owner(t, "m-6"), owner(t, "m-7") }, { "s-b", "s-b", "s-c", "s-a" }, "owners")
  local s = t:staff()
  t:eq({ s["s-a"].members, s["s-b"].members, s["s-c"].members }, { 3, 2, 2 }, "members per staff")
end)

test("least-loaded counts members a script moved with m:set", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "member.joined", { staff = "s-b" })
  t:event("m-1", "reassign", { to = "s-a" })
  t:event("m-2", "member.joined", { channel = "ll" }) -- a 1, b 0, c 0 -> b
  t:eq(owner(t, "m-2"), "s-b", "s-b lost m-1 to s-a")
end)

test("fixed: the code's guide; joining again through another code keeps her", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "member.joined", { channel = "fixed" })
  t:event("m-1", "member.joined", { channel = "rr" })
  t:eq(owner(t, "m-1"), "s-f", "kept")
  t:event("m-2", "member.joined", { channel = "rr" })
  t:eq(owner(t, "m-2"), "s-a", "the rejoin took no turn")
end)

test("m:assign_owner checks its rule", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "assign", { rule = { rule = "random", staff = { "s-a" } } })
  t:expect_failures(1)
  t:event("m-2", "assign", { rule = "s-q" })
  t:eq(t:member("m-2").attrs.assigned, { "s-q", true }, "a staff id is a fixed rule")
end)

test("a task whose member has no owner goes to the fallback", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "member.joined", { channel = "nowhere" })
  t:event("m-1", "ask")
  t:expect_action({ action = "task", status = "queued", staff = "s-lead", due = "2026-11-04T10:00:00+08:00" }, 1)
end)

test("tasks: due after task_due or opts.due, overdue on the virtual clock, closed by task.done", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "member.joined", { staff = "s-a" })
  t:event("m-1", "ask", { key = "late" })              -- due 11-04 10:00
  t:event("m-1", "ask", { key = "soon", due = "1h" })  -- due 11-02 11:00
  t:expect_action({ id = "staff_rules/m-1/soon", due = "2026-11-02T11:00:00+08:00" }, 1)
  t:eq(t:staff()["s-a"], { members = 1, open_tasks = 2, overdue = 0, done = 0, done_late = 0 }, "both open")
  t:at("2026-11-02T11:00:00+08:00")
  t:eq(t:staff()["s-a"].overdue, 1, "overdue at its due time")
  t:event("m-1", "task.done", { task = "staff_rules/m-1/soon" })
  t:event("m-1", "task.done", { task = "staff_rules/m-1/soon" }) -- again: nothing changes
  t:eq(t:staff()["s-a"], { members = 1, open_tasks = 1, overdue = 0, done = 1, done_late = 1 }, "done late")
  t:at("2026-11-04T09:59:59+08:00")
  t:eq(t:staff()["s-a"].overdue, 0, "a second before its due time")
  t:at("2026-11-04T10:00:00+08:00")
  t:eq(t:staff()["s-a"].overdue, 1, "the other, at its due time")
  local tasks = t:member("m-1").tasks
  t:eq(#tasks, 2, "both listed for the member")
end)

test("task.done for a task that is not hers is recorded as a failure", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "member.joined", { staff = "s-a" })
  t:event("m-1", "ask", { key = "k" })
  t:event("m-2", "task.done", { task = "staff_rules/m-1/k" })
  local f = t:member("m-2").failed
  t:eq(#f, 1, "one failure")
  t:eq(t:staff()["s-a"].open_tasks, 1, "still open")
end)

test("staff.left hands her members on round-robin, in id order; open tasks follow, each change logged", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  for i = 1, 3 do
    t:event("m-" .. i, "member.joined", { staff = "s-a" })
    t:event("m-" .. i, "ask", { key = "call" })
  end
  t:event("m-9", "member.joined", { staff = "s-c" })
  t:event("s-a", "staff.left", { staff = "s-a", rule = "round_robin", pool = { "s-b", "s-c" } }, { id = "left-1" })
  t:advance("1s")
  t:eq({ owner(t, "m-1"), owner(t, "m-2"), owner(t, "m-3"), owner(t, "m-9") }, { "s-b", "s-c", "s-b", "s-c" }, "owners")
  local s = t:staff()
  t:eq({ s["s-a"].members, s["s-a"].open_tasks, s["s-b"].open_tasks, s["s-c"].open_tasks }, { 0, 0, 2, 1 }, "tasks moved")
  local log = t:member("m-2").owners[1]
  t:eq({ log.from, log.to, log.rule, log.cause }, { "s-a", "s-c", "staff.left:round_robin", "left-1" }, "logged")
  t:eq(t:member("s-a").attrs.staff_left, { staff = "s-a", moved = 3, done = true }, "her record")
end)

test("staff.left to one guide moves every member, a window at a time", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  for i = 1, 1201 do t:event(string.format("m-%04d", i), "member.joined", { staff = i % 2 == 0 and "s-a" or "s-b" }) end
  t:event("s-a", "staff.left", { staff = "s-a", to = "s-c" })
  t:advance("1s")
  local s = t:staff()
  t:eq({ s["s-a"].members, s["s-c"].members, s["s-b"].members }, { 0, 600, 601 }, "all of hers moved, nobody else")
  t:eq(t:member("s-a").attrs.staff_left, { staff = "s-a", moved = 600, done = true }, "done")
end)

test("staff.left least-loaded: each member to the fewest owned at that moment, ties to the first listed", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  for i = 1, 3 do t:event("m-" .. i, "member.joined", { staff = "s-a" }) end
  t:event("m-9", "member.joined", { staff = "s-c" })
  t:event("s-a", "staff.left", { staff = "s-a", rule = "least_loaded", pool = { "s-b", "s-c" } })
  t:advance("1s")
  -- m-1: b 0 < c 1 -> b; m-2: b 1 = c 1 -> b (listed first); m-3: b 2 > c 1 -> c
  t:eq({ owner(t, "m-1"), owner(t, "m-2"), owner(t, "m-3") }, { "s-b", "s-b", "s-c" }, "owners")
end)
