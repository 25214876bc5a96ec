-- Test helper for referral_test.lua: for a member joining with data.pending_order, deliver
-- an "order.paid" right away as a timer, so it reaches the invitee while the invitation is
-- still being checked by the referrer (as when join and order come in one batch).
hearth.on("member.joined", function(m, ev)
  if ev.data.pending_order then m:after(0, "order.paid", { amount = 1 }) end
end)

-- add to a funnel counter directly, as the handlers of an earlier run of the daemon did
hearth.on("test.count", function(m, ev)
  hearth.count(ev.data.metric, { campaign = ev.data.campaign, n = ev.data.n })
end)
