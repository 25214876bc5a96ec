-- Staff (导购): tasks whose member has no owner go to the store lead instead of nobody,
-- and every task is due two days after it is set (overdue tasks are counted per staff
-- member in `hearth stats`, /metrics and GET /v1/staff). Owners are given by the channel
-- codes (scripts/channel_welcome.lua); a guide who leaves hands her members on with a
-- staff.left event. See docs/REFERENCE.md "Staff".
hearth.staff { fallback = "staff-lead", task_due = "2d" }
