-- Restraint for every campaign in this folder (loads first: file names load in order).
-- At most 2 marketing messages per member in any 7 days, none between 21:00 and 09:00
-- local time (a message due then waits for 09:00 and is judged again). Service messages
-- (category = "service") pass both; unsubscribed members get no marketing at all.
-- See docs/modules/caps.md. caps.set may be called again by a later script: the last
-- call wins.
local caps = require "caps"

caps.set {
  marketing = { max = 2, per = "7d" },
  quiet = { from = "21:00", to = "09:00" },
}
