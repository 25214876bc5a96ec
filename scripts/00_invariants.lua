-- Invariants for every campaign in this folder: rules checked on what came out, apart
-- from the restraint in 00_caps.lua that decides what is sent (docs/GUIDE.md, "Before you
-- ship"). A violation is printed by `hearth dry-run` (exit status 1), fails the running
-- `hearth test` case, and in the daemon is counted in /metrics and logged; it never
-- changes or blocks an action.
--
-- No send of any category between 21:00 and 09:00 in the member's zone: a marketing
-- message labelled category = "service" passes restraint's quiet hours, not this. The
-- welcome of channel_welcome.lua is a service message answering a member who has just
-- added the brand, at whatever hour she does: its service sends are excepted.
hearth.invariant {
  name = "no_night_sends",
  no_quiet = { from = "21:00", to = "09:00", except = { "channel_welcome" } },
}
-- No send to a member whose friend was deleted, no marketing to an unsubscribed member.
hearth.invariant { name = "reachable", reachable = true }
