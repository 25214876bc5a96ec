-- caps tests: caps.set called twice; the last call wins (entirely).
local caps = require "caps"
caps.set { marketing = { max = 5, per = "1d" }, quiet = { from = "22:00", to = "08:00" } }
caps.set { marketing = { max = 1, per = "2d" } }
