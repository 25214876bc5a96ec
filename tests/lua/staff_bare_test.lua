-- staff_bare_test: a task nobody owns is recorded skipped {rule = "no_owner"}, never
-- given to nobody; the default due time is one day.
test("a task without an owner and without a fallback is skipped with reason no_owner", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "ask")
  local a = t:expect_action({ action = "task" }, 1)
  t:eq({ a.status, a.reason, a.staff }, { "skipped", { rule = "no_owner" }, nil }, "skipped, no owner")
  t:eq(next(t:staff()), nil, "no staff row: nobody has a job")
end)

test("the default due time is one day after the task is set", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "member.joined", { staff = "s-a" })
  t:event("m-1", "ask")
  t:expect_action({ action = "task", status = "queued", staff = "s-a", due = "2026-11-03T10:00:00+08:00" }, 1)
  t:at("2026-11-03T10:00:00+08:00")
  t:eq(t:staff()["s-a"].overdue, 1, "overdue after a day")
end)
