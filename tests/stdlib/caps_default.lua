-- caps tests: the standard restraint (the SPEC example).
local caps = require "caps"
caps.set { marketing = { max = 2, per = "7d" }, quiet = { from = "21:00", to = "09:00" } }
