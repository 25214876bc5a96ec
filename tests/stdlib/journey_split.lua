-- journey tests: a multi-way split (by attribute and by function), a goal window as a
-- duration, revenue per conversion, re-entry with a cool-down and a maximum of runs.
-- tasks need an owner: the members here join without a staff attribute
hearth.staff { fallback = "s-lead" }

local journey = require "journey"

-- three cities and a fallback; the arms are timed from the entry, like every step
journey.define {
  name = "city", enter = "city.start", exit = "city.stop", goal = "order.paid",
  goal_within = "14d", revenue = true,
  steps = {
    { name = "hello", send = "hi" },
    { name = "route", after = "1d", split = "city",
      arms = {
        sh = { { name = "sh_d2", after = "2d", send = "sh_tpl" } },
        bj = { name = "bj_d2", after = "2d", send = "bj_tpl" },
        gz = { { after = "1d", send = "gz_tpl" }, { after = "3d", task = "call the gz member" } },
      },
      otherwise = { name = "other_d2", after = "2d", send = "other_tpl" } },
    { name = "bye", after = "5d", send = "bye_tpl" },
  },
}

-- a split by function, without a fallback: members it names no arm for take none
journey.define {
  name = "buyers", enter = "buyers.start",
  steps = {
    { name = "who", split = function(m, info)
        assert(info.journey == "buyers" and info.run == 1)
        if m.orders > 0 then return "buyer" end
        return nil
      end,
      arms = { buyer = { name = "thanks", send = "thanks_tpl" } } },
  },
}

-- revenue per variant and hold-out, from a data field of the goal event
journey.define {
  name = "ab", enter = "ab.start", goal = "order.paid", revenue = "total",
  variants = { A = 1, B = 1 }, holdout = 20,
  steps = { { name = "w", after = "30d", send = { A = "ab_a", B = "ab_b" } } },
}

-- re-entry after a 30-day rest, at most three runs in all
journey.define {
  name = "again", enter = "again.start", reenter = { cooldown = "30d", max_runs = 3 },
  steps = { { name = "s", send = "again_tpl" } },
}

-- a split inside a wait branch: its arms are timed from the moment the branch was taken
journey.define {
  name = "branchy", enter = "br.start",
  steps = {
    { name = "w", wait = "order.paid", within = "2d",
      on_event = { name = "by_tier", split = "tier",
        arms = { gold = { name = "gold_thanks", after = "1d", send = "gold_tpl" } },
        otherwise = { name = "plain_thanks", after = "1d", send = "plain_tpl" } } },
  },
}

-- hold-out members take their arm silently and are not counted per arm
journey.define {
  name = "hsplit", enter = "hs.start", holdout = 50,
  steps = { { name = "route", split = "city", arms = { sh = { name = "sh_hi", after = "1d", send = "sh_hi" } } } },
}
