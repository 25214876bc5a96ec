-- caps tests: quiet hours that do not wrap midnight, and no marketing cap.
local caps = require "caps"
caps.set { quiet = { from = "12:00", to = "14:00" } }
