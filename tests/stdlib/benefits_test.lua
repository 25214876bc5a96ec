-- benefits_test.lua: birthday and member-day benefits (benefits_perks.lua).
use("benefits_perks.lua")

local function birthday(t, id, b, attr)
  t:event(id, "member.updated", { [attr or "birthday"] = b })
end

test("a birthday gift at the configured time on the member's local birthday", function(t)
  t:at("2026-11-04T08:00:00+08:00")
  birthday(t, "m-1", "11-05")
  birthday(t, "m-2", "11-04")
  t:at("2026-11-04T09:00:00+08:00")
  t:expect_no_action{ member = "m-1" , template = "birthday_gift" }
  t:expect_action({ member = "m-2", template = "birthday_gift" }, 1)
  t:at("2026-11-05T08:59:00+08:00")
  t:expect_no_action{ member = "m-1" , template = "birthday_gift" }
  t:at("2026-11-05T09:00:00+08:00")
  local a = t:expect_action({ member = "m-1", template = "birthday_gift", campaign = "perks",
    step = "birthday", status = "queued" }, 1)
  t:eq(a.id, "perks/m-1/birthday/2026/send", "stable id")
  t:eq(a.vars, { year = 2026, birthday = "11-05" }, "vars")
  t:eq(a.time, "2026-11-05T09:00:00+08:00", "time")
  t:expect_points("m-1", 100)
  t:expect_action({ member = "m-1", action = "points", reason = "birthday 2026" }, 1)
end)

test("YYYY-MM-DD birthdays; impossible or malformed dates are ignored", function(t)
  t:at("2026-11-04T10:00:00+08:00")
  birthday(t, "m-1", "1990-11-05")
  birthday(t, "m-2", "11/05")
  birthday(t, "m-3", "2026-02-30")
  birthday(t, "m-4", "13-05")
  birthday(t, "m-5", "2025-02-29")      -- not a leap year
  t:at("2026-11-05T09:00:00+08:00")
  t:expect_action({ member = "m-1", template = "birthday_gift" }, 1)
  t:expect_action({ template = "birthday_gift" }, 1)
  t:at("2027-03-01T09:00:00+08:00")
  t:expect_no_action{ member = "m-5" }
end)

test("once per year: a changed birthday the same year gives nothing; next year again", function(t)
  t:at("2026-11-05T08:00:00+08:00")
  birthday(t, "m-1", "11-05")
  t:at("2026-11-05T09:00:00+08:00")
  birthday(t, "m-1", "11-06")
  t:at("2026-11-06T09:00:00+08:00")
  t:expect_action({ template = "birthday_gift" }, 1)
  t:expect_points("m-1", 100)
  t:at("2027-11-06T09:00:00+08:00")
  t:expect_action({ template = "birthday_gift" }, 2)
  t:expect_action({ id = "perks/m-1/birthday/2027/send" }, 1)
  t:expect_points("m-1", 200)
end)

test("29 February: 28 February in a non-leap year (feb29 = feb28), 29 in a leap year", function(t)
  t:at("2027-02-27T10:00:00+08:00")
  birthday(t, "m-1", "02-29")
  t:at("2027-02-28T09:00:00+08:00")
  t:expect_action({ template = "birthday_gift", member = "m-1" }, 1)
  t:at("2027-03-01T09:00:00+08:00")
  t:expect_action({ template = "birthday_gift", member = "m-1" }, 1)
  t:at("2028-02-28T09:00:00+08:00")
  t:expect_action({ template = "birthday_gift", member = "m-1" }, 1)
  t:at("2028-02-29T09:00:00+08:00")
  local a = t:expect_action({ template = "birthday_gift", member = "m-1" }, 2)
  t:expect_action({ id = "perks/m-1/birthday/2028/send", time = "2028-02-29T09:00:00+08:00" }, 1)
end)

test("29 February with feb29 = mar1: 1 March in a non-leap year", function(t)
  t:at("2027-02-27T10:00:00+08:00")
  t:event("m-1", "test.tag", { tag = "vip" })
  birthday(t, "m-1", "02-29", "bday")
  t:at("2027-02-28T23:00:00+08:00")
  t:expect_no_action{ campaign = "leap" }
  t:at("2027-03-01T08:00:00+08:00")
  local a = t:expect_action({ campaign = "leap", action = "task", text = "call for the birthday" }, 1)
  t:eq(a.id, "leap/m-1/birthday/2027/task", "id")
end)

test("by_tag: a gold member's birthday gift replaces the default", function(t)
  t:at("2026-11-04T10:00:00+08:00")
  birthday(t, "m-1", "11-05")
  t:event("m-1", "test.tag", { tag = "tier:gold" })
  t:at("2026-11-05T09:00:00+08:00")
  t:expect_no_action{ template = "birthday_gift" }
  t:expect_action({ template = "birthday_gold", member = "m-1" }, 1)
  t:expect_points("m-1", 500)
end)

test("tag filter and when(): only tagged members, and not those when() refuses", function(t)
  t:at("2026-11-04T10:00:00+08:00")
  birthday(t, "m-1", "11-05", "bday")
  birthday(t, "m-2", "11-05", "bday")
  birthday(t, "m-3", "11-05", "bday")
  t:event("m-2", "test.tag", { tag = "vip" })
  t:event("m-3", "test.tag", { tag = "vip" })
  t:event("m-3", "test.tag", { tag = "no_gifts" })
  t:at("2026-11-05T08:00:00+08:00")
  t:expect_action({ campaign = "leap", member = "m-2" }, 1)
  t:expect_no_action{ campaign = "leap", member = "m-1" }
  t:expect_no_action{ campaign = "leap", member = "m-3" }
end)

test("catch_up_days: a birthday set after the day's run is served the next days, once", function(t)
  t:at("2026-11-05T10:00:00+08:00")
  t:event("m-1", "test.tag", { tag = "vip" })
  birthday(t, "m-1", "11-05", "bday")             -- after today's 08:00 run
  t:at("2026-11-06T08:00:00+08:00")
  t:expect_action({ campaign = "leap", member = "m-1", id = "leap/m-1/birthday/2026/task" }, 1)
  t:at("2026-11-07T08:00:00+08:00")
  t:expect_action({ campaign = "leap", member = "m-1" }, 1)
  -- the default definition (no catch-up) never serves it this year
  t:expect_no_action{ campaign = "perks", template = "birthday_gift" }
end)

test("catch_up_days across new year: last year's birthday, last year's key", function(t)
  t:at("2026-12-31T10:00:00+08:00")
  t:event("m-1", "test.tag", { tag = "vip" })
  birthday(t, "m-1", "12-31", "bday")
  t:at("2027-01-01T08:00:00+08:00")
  t:expect_action({ campaign = "leap", id = "leap/m-1/birthday/2026/task" }, 1)
  t:at("2027-12-31T08:00:00+08:00")
  t:expect_action({ campaign = "leap", id = "leap/m-1/birthday/2027/task" }, 1)
end)

test("a changed birthday re-arms the timer: the old date gives nothing", function(t)
  t:at("2026-11-01T10:00:00+08:00")
  birthday(t, "m-1", "11-05")
  birthday(t, "m-1", "11-07")
  birthday(t, "m-2", "11-05")
  birthday(t, "m-2", "unknown")                 -- no longer a date: the timer is cancelled
  t:at("2026-11-05T09:00:00+08:00")
  t:expect_no_action{ template = "birthday_gift" }
  t:at("2026-11-07T09:00:00+08:00")
  local a = t:expect_action({ template = "birthday_gift", member = "m-1" }, 1)
  t:eq(a.vars.birthday, "11-07", "the new birthday")
  t:expect_no_action{ member = "m-2" }
  t:at("2027-11-05T09:00:00+08:00")
  t:expect_no_action{ member = "m-2" }
end)

test("the gift arms next year's run; members without a birthday get no state", function(t)
  t:at("2026-11-01T10:00:00+08:00")
  birthday(t, "m-1", "1990-11-05")
  t:event("m-2", "member.updated", { city = "Hangzhou" })
  t:event("m-3", "member.joined")
  t:expect_attr("m-2", "_benefits.perks", nil)
  t:expect_attr("m-3", "_benefits.perks", nil)
  local st = t:member("m-1").attrs["_benefits.perks"]
  t:eq(st.bd_at, t:eval("return hearth.time('2026-11-05T09:00:00+08:00')"), "this year's run")
  t:at("2026-11-05T09:00:00+08:00")
  st = t:member("m-1").attrs["_benefits.perks"]
  t:eq(st.birthday, 2026, "year given")
  t:eq(st.bd_at, t:eval("return hearth.time('2027-11-05T09:00:00+08:00')"), "next year's run")
  -- an unrelated update changes nothing
  t:event("m-1", "member.updated", { city = "Suzhou" })
  t:eq(t:member("m-1").attrs["_benefits.perks"], st, "unchanged")
end)

test("a birthday set at exactly the run's time on the day is served at once", function(t)
  t:at("2026-11-05T09:00:00+08:00")
  birthday(t, "m-1", "11-05")
  local a = t:expect_action({ template = "birthday_gift", member = "m-1" }, 1)
  t:eq(a.time, "2026-11-05T09:00:00+08:00", "time")
  t:at("2026-11-05T09:00:01+08:00")
  birthday(t, "m-2", "11-05")                   -- after the run, no catch-up: next year
  t:at("2026-11-06T09:00:00+08:00")
  t:expect_no_action{ member = "m-2" }
  t:at("2027-11-05T09:00:00+08:00")
  t:expect_action({ template = "birthday_gift", member = "m-2", id = "perks/m-2/birthday/2027/send" }, 1)
end)

test("a birthday set without member.updated is picked up at the next member.updated or joined", function(t)
  t:at("2026-11-01T10:00:00+08:00")
  t:event("m-1", "test.set", { k = "birthday", v = "11-05" })
  t:event("m-2", "test.set", { k = "birthday", v = "11-05" })
  t:event("m-3", "test.set", { k = "birthday", v = "11-05" })
  t:event("m-1", "member.updated", { city = "Hangzhou" })
  t:event("m-2", "member.joined")
  t:at("2026-11-05T09:00:00+08:00")
  t:expect_action({ template = "birthday_gift", member = "m-1" }, 1)
  t:expect_action({ template = "birthday_gift", member = "m-2" }, 1)
  t:expect_no_action{ member = "m-3" }           -- never seen: no timer (no backfill here)
end)

test("a member refused on the day (tag, when) is tried again on the catch-up days", function(t)
  t:at("2026-11-04T10:00:00+08:00")
  birthday(t, "m-1", "11-05", "bday")
  t:event("m-1", "test.tag", { tag = "vip" })
  t:event("m-1", "test.tag", { tag = "no_gifts" })
  birthday(t, "m-2", "11-05", "bday")           -- tagged vip only after its day
  t:at("2026-11-05T08:00:00+08:00")
  t:expect_no_action{ campaign = "leap" }
  t:event("m-1", "test.untag", { tag = "no_gifts" })
  t:at("2026-11-06T08:00:00+08:00")
  t:expect_action({ campaign = "leap", member = "m-1", id = "leap/m-1/birthday/2026/task" }, 1)
  t:event("m-2", "test.tag", { tag = "vip" })
  t:at("2026-11-07T08:00:00+08:00")
  t:expect_action({ campaign = "leap", member = "m-2", id = "leap/m-2/birthday/2026/task" }, 1)
  t:at("2026-11-08T08:00:00+08:00")
  t:expect_action({ campaign = "leap" }, 2)
end)

test("member day: Wednesdays 10:00, only members with one of the tags, once each", function(t)
  t:at("2026-11-02T12:00:00+08:00")                 -- a Monday
  t:event("m-1", "test.tag", { tag = "tier:silver" })
  t:event("m-2", "test.tag", { tag = "tier:gold" })
  t:event("m-2", "test.tag", { tag = "tier:silver" })  -- two of the tags: still once
  t:event("m-3", "member.joined")
  for i = 4, 8 do t:event("m-" .. i, "test.tag", { tag = "tier:gold" }) end   -- several chunks
  t:at("2026-11-04T09:59:00+08:00")
  t:expect_no_action{ template = "member_day" }
  t:at("2026-11-04T10:00:00+08:00")
  t:expect_action({ template = "member_day", step = "member_day", campaign = "perks" }, 7)
  t:expect_action({ template = "member_day", member = "m-2", id = "perks/m-2/member_day/2026-11-04/send" }, 1)
  t:expect_no_action{ template = "member_day", member = "m-3" }
  t:expect_points("m-2", 5)
  t:at("2026-11-11T10:00:00+08:00")
  t:expect_action({ template = "member_day", member = "m-2" }, 2)
  t:expect_points("m-2", 10)
end)

test("member day for an unsubscribed member: points, but the send is suppressed", function(t)
  t:at("2026-11-02T12:00:00+08:00")
  t:event("m-1", "test.tag", { tag = "tier:gold" })
  t:event("m-1", "member.unsubscribed")
  t:at("2026-11-04T10:00:00+08:00")
  t:expect_action({ template = "member_day", status = "suppressed" }, 1)
  t:expect_points("m-1", 5)
end)

test("define validates its options: the path, what it must be, what it got", function(t)
  t:at("2026-11-02T12:00:00+08:00")
  local function err(code)
    return t:eval("local ok, e = pcall(require('benefits').define, " .. code .. ") return tostring(e)")
  end
  local cases = {
    { "{ birthday = { send = 'x' } }",
      "option 'name' must be a name of 1-64 letters, digits, '_', '.' or '-', got nil" },
    { "{ name = 'perks', birthday = { send = 'x' } }",
      "option 'name' must be a name no other definition uses (it is defined twice), got \"perks\"" },
    { "{ name = 'x' }",
      "option 'birthday' or option 'member_day' must be set (a definition needs at least one)" },
    { "{ name = 'x', birthday = { } }",
      "option 'birthday' must be a benefit with at least one of send, points, task" },
    { "{ name = 'x', birthday = { send = 'x', at = '9am' } }",
      "option 'birthday.at' must be a local time \"HH:MM\" (00:00-23:59), got \"9am\"" },
    { "{ name = 'x', birthday = { send = 'x', feb29 = 'skip' } }",
      "option 'birthday.feb29' must be \"feb28\" or \"mar1\", got \"skip\"" },
    { "{ name = 'x', birthday = { send = 'x', backfill = 5 } }",
      "option 'birthday.backfill' must be a cron spec like \"0 3 1 * *\", got 5" },
    { "{ name = 'x', birthday = { send = 'x', cron = '0 9 * * *' } }",
      "option 'birthday.cron' is unknown (known: at, attr, backfill, by_tag, catch_up_days, category, chunk, feb29, points, send, tag, task, vars, when)" },
    { "{ name = 'x', birthday = { points = -1 } }",
      "option 'birthday.points' must be a positive integer, got -1" },
    { "{ name = 'x', member_day = { send = 'x' } }",
      "option 'member_day.cron' must be a cron spec like \"0 10 * * 3\", got nil" },
    { "{ name = 'x', member_day = { send = 'x', cron = '0 10 * * 3' } }",
      "call it at the top level of a script, while the scripts load" },
    { "{ name = 'x', member_day = { send = 'x', cron = '0 10 * * 3', colour = 1 } }",
      "option 'member_day.colour' is unknown (known: by_tag, category, chunk, cron, points, send, tag, task, vars, when)" },
  }
  for _, c in ipairs(cases) do
    local e = err(c[1])
    if e ~= "benefits.define: " .. c[2] then
      error(("define %s: expected the error %q, got %s"):format(c[1], "benefits.define: " .. c[2], e))
    end
  end
end)
