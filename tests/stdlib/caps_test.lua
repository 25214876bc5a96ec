-- caps: marketing cap, quiet hours, suppression, service sends (SPEC §5 caps).
-- Clock zone: Asia/Shanghai (+08:00). 2026-11-02 is a Monday.
use("caps_default.lua", "caps_promo.lua")

local function promo(t, member, key, extra)
  local d = { key = key }
  for k, v in pairs(extra or {}) do d[k] = v end
  return t:event(member, "promo", d)
end

local function statuses(t, id)
  local out = {}
  for _, a in ipairs(t:actions { id = id }) do out[#out + 1] = a.status .. "@" .. a.time end
  return out
end

test("two marketing sends in 7 days are queued, the third is capped and recorded", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  promo(t, "m-1", "k1")
  t:expect_attr("m-1", "last_status", "queued")
  t:advance("1d")
  promo(t, "m-1", "k2", { campaign = "other" }) -- the cap counts every campaign's sends
  t:expect_attr("m-1", "last_status", "queued")
  t:advance("1d")
  promo(t, "m-1", "k3", { step = "s3" })
  t:expect_attr("m-1", "last_status", "capped")
  local a = t:expect_action({ id = "promo/m-1/k3" }, 1)
  t:eq(a.status, "capped", "status of the third send")
  t:eq(a.step, "s3", "a capped send keeps its step (counted per step)")
  t:expect_action({ status = "queued", action = "send" }, 2)
  -- another member has a cap of their own
  promo(t, "m-2", "k1")
  t:expect_action { id = "promo/m-2/k1", status = "queued" }
end)

test("a send queued exactly per earlier no longer counts", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  promo(t, "m-1", "a")
  t:at("2026-11-02T11:00:00+08:00")
  promo(t, "m-1", "b")
  -- one second before "a" leaves the window: still two in the 7 days before
  t:at("2026-11-09T09:59:59+08:00")
  promo(t, "m-1", "c")
  t:expect_action { id = "promo/m-1/c", status = "capped" }
  -- exactly 7d after "a": only "b" counts
  t:at("2026-11-09T10:00:00+08:00")
  promo(t, "m-1", "d")
  t:expect_action { id = "promo/m-1/d", status = "queued" }
  -- "b" and "d" are in the window now
  t:at("2026-11-09T10:59:59+08:00")
  promo(t, "m-1", "e")
  t:expect_action { id = "promo/m-1/e", status = "capped" }
  t:at("2026-11-09T11:00:00+08:00")
  promo(t, "m-1", "f")
  t:expect_action { id = "promo/m-1/f", status = "queued" }
end)

test("only queued sends count toward the cap", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  promo(t, "m-1", "a")                         -- queued (Mon 10:00)
  t:at("2026-11-03T10:00:00+08:00")
  promo(t, "m-1", "b")                         -- queued (Tue 10:00)
  t:at("2026-11-04T10:00:00+08:00")
  promo(t, "m-1", "c")                         -- capped (Wed)
  t:expect_action { id = "promo/m-1/c", status = "capped" }
  t:event("m-1", "member.unsubscribed")
  promo(t, "m-1", "d")                         -- suppressed
  t:expect_action { id = "promo/m-1/d", status = "suppressed" }
  t:event("m-1", "member.subscribed")
  promo(t, "m-1", "s", { category = "service" }) -- service: not counted
  t:expect_action { id = "promo/m-1/s", status = "queued" }
  -- Mon 10:00 + 7d: "a" leaves; only "b" is left (capped, suppressed, service not counted)
  t:at("2026-11-09T10:00:00+08:00")
  promo(t, "m-1", "e")
  t:expect_action { id = "promo/m-1/e", status = "queued" }
  -- and the cap holds again: "b" and "e" are in the window
  promo(t, "m-1", "f")
  t:expect_action { id = "promo/m-1/f", status = "capped" }
  t:eq(t:actions { id = "promo/m-1/f" }[1].reason, { rule = "cap", max = 2, per = "7d", sent = 2 },
       "the capped send's reason names the rule and its numbers")
end)

test("the same key twice is recorded once and counted once", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  promo(t, "m-1", "a")
  promo(t, "m-1", "a")
  t:expect_action({ id = "promo/m-1/a" }, 1)
  t:expect_attr("m-1", "last_status", "queued")
  promo(t, "m-1", "b")
  t:expect_action { id = "promo/m-1/b", status = "queued" }
  promo(t, "m-1", "c")
  t:expect_action { id = "promo/m-1/c", status = "capped" }
  -- a capped key sent again stays capped
  t:advance("8d")
  promo(t, "m-1", "c")
  t:expect_action({ id = "promo/m-1/c" }, 1)
  t:expect_attr("m-1", "last_status", "capped")
  t:expect_attr("m-1", "_caps.sent", nil)   -- not counted: nothing was queued
end)

test("a send in quiet hours is deferred, then queued at 09:00 under the same id", function(t)
  t:at("2026-11-02T22:00:00+08:00")
  promo(t, "m-1", "night", { vars = { coupon = "C1" } })
  t:expect_attr("m-1", "last_status", "deferred")
  t:expect_action { id = "promo/m-1/night", status = "deferred" }
  t:at("2026-11-03T08:59:59+08:00")
  t:expect_no_action { id = "promo/m-1/night", status = "queued" }
  t:at("2026-11-03T09:00:00+08:00")
  t:eq(statuses(t, "promo/m-1/night"),
       { "deferred@2026-11-02T22:00:00+08:00", "queued@2026-11-03T09:00:00+08:00" }, "records of the send")
  t:expect_action { id = "promo/m-1/night", status = "queued", coupon = "C1", template = "promo" }
  t:expect_attr("m-1", "_caps.deferred", nil)
  -- the released send counts toward the cap from 09:00
  promo(t, "m-1", "x")
  promo(t, "m-1", "y")
  t:expect_action { id = "promo/m-1/y", status = "capped" }
end)

test("quiet hours after midnight end the same morning", function(t)
  t:at("2026-11-03T03:00:00+08:00")
  promo(t, "m-1", "k")
  t:at("2026-11-04T00:00:00+08:00")
  t:eq(statuses(t, "promo/m-1/k"),
       { "deferred@2026-11-03T03:00:00+08:00", "queued@2026-11-03T09:00:00+08:00" }, "records")
end)

test("quiet hour boundaries: from is quiet, to is not", function(t)
  t:at("2026-11-02T20:59:59+08:00")
  promo(t, "m-1", "a")
  t:expect_action { id = "promo/m-1/a", status = "queued" }
  t:at("2026-11-02T21:00:00+08:00")
  promo(t, "m-2", "b")
  t:expect_action { id = "promo/m-2/b", status = "deferred" }
  t:at("2026-11-03T08:59:59+08:00")
  promo(t, "m-3", "c")
  t:expect_action { id = "promo/m-3/c", status = "deferred" }
  t:expect_no_action { status = "queued", member = "m-2" }
  t:at("2026-11-03T09:00:00+08:00")
  promo(t, "m-4", "d")
  t:expect_action({ id = "promo/m-4/d" }, 1)
  t:expect_action { id = "promo/m-4/d", status = "queued" }
  t:expect_action { id = "promo/m-2/b", status = "queued", time = "2026-11-03T09:00:00+08:00" }
  t:expect_action { id = "promo/m-3/c", status = "queued", time = "2026-11-03T09:00:00+08:00" }
end)

test("a member who unsubscribes during quiet hours ends suppressed", function(t)
  t:at("2026-11-02T22:00:00+08:00")
  promo(t, "m-1", "k")
  t:at("2026-11-02T23:30:00+08:00")
  t:event("m-1", "member.unsubscribed")
  t:at("2026-11-03T12:00:00+08:00")
  t:eq(statuses(t, "promo/m-1/k"),
       { "deferred@2026-11-02T22:00:00+08:00", "suppressed@2026-11-03T09:00:00+08:00" }, "records")
  t:expect_no_action { status = "queued" }
end)

test("a deferred send is judged against the subscription at the end: resubscribed gets it", function(t)
  t:at("2026-11-02T20:00:00+08:00")
  t:event("m-1", "member.unsubscribed")
  t:at("2026-11-02T22:00:00+08:00")
  promo(t, "m-1", "k")                 -- deferral comes first, even when unsubscribed
  t:expect_action { id = "promo/m-1/k", status = "deferred" }
  t:at("2026-11-03T07:00:00+08:00")
  t:event("m-1", "member.subscribed")
  t:at("2026-11-03T09:00:00+08:00")
  t:expect_action { id = "promo/m-1/k", status = "queued", time = "2026-11-03T09:00:00+08:00" }
end)

test("a deferred send is judged against the cap at the end of quiet hours", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  promo(t, "m-1", "a")
  t:at("2026-11-02T20:00:00+08:00")
  promo(t, "m-1", "b")
  t:at("2026-11-02T22:00:00+08:00")
  promo(t, "m-1", "c")
  t:expect_action { id = "promo/m-1/c", status = "deferred" }
  t:at("2026-11-03T09:00:00+08:00")
  t:expect_action { id = "promo/m-1/c", status = "capped", time = "2026-11-03T09:00:00+08:00" }
  -- deferred when the cap is full, queued at 09:00 if the window has moved on by then
  t:at("2026-11-09T08:00:00+08:00")
  promo(t, "m-1", "d")                 -- "a" (Mon 10:00) is still in the window at 08:00
  t:expect_action { id = "promo/m-1/d", status = "deferred" }
  t:at("2026-11-09T09:00:00+08:00")
  t:expect_action { id = "promo/m-1/d", status = "capped" }  -- a 10:00 and b 20:00 still count
  t:at("2026-11-09T22:30:00+08:00")
  promo(t, "m-1", "e")                 -- both left by the next 09:00
  t:at("2026-11-10T09:00:00+08:00")
  t:expect_action { id = "promo/m-1/e", status = "queued", time = "2026-11-10T09:00:00+08:00" }
end)

test("unsubscribed members get suppressed marketing until member.subscribed", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "member.unsubscribed")
  promo(t, "m-1", "a")
  t:expect_action { id = "promo/m-1/a", status = "suppressed" }
  t:expect_attr("m-1", "last_status", "suppressed")
  t:event("m-1", "member.subscribed")
  promo(t, "m-1", "b")
  t:expect_action { id = "promo/m-1/b", status = "queued" }
end)

test("service sends pass the cap, quiet hours and unsubscription", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  promo(t, "m-1", "a")
  promo(t, "m-1", "b")
  t:event("m-1", "member.unsubscribed")
  t:at("2026-11-02T23:00:00+08:00")
  promo(t, "m-1", "receipt", { category = "service" })
  t:expect_action { id = "promo/m-1/receipt", status = "queued", category = "service",
                    time = "2026-11-02T23:00:00+08:00" }
  t:expect_attr("m-1", "last_status", "queued")
  promo(t, "m-1", "mkt")
  t:expect_action { id = "promo/m-1/mkt", status = "deferred" }
end)

test("a deferred send without key or campaign is judged again under its own id", function(t)
  t:at("2026-11-02T22:00:00+08:00")
  t:event("m-1", "promo", { no_campaign = true })
  t:event("m-1", "promo", { no_campaign = true, tpl = "second" })
  local first = t:actions { template = "promo", status = "deferred" }
  local second = t:actions { template = "second", status = "deferred" }
  t:eq({ #first, #second }, { 1, 1 }, "each deferred once")
  t:eq(first[1].reason.rule, "quiet", "deferred by quiet hours")
  t:eq(first[1].reason["until"], "2026-11-03T09:00:00+08:00", "until the end of them")
  t:at("2026-11-03T09:00:00+08:00")
  t:expect_action { id = first[1].id, status = "queued" }
  t:expect_action { id = second[1].id, status = "queued" }
  -- in the day, without a campaign the send belongs to the calling script
  t:event("m-1", "promo", { no_campaign = true, key = "day" })
  t:expect_action { id = "caps_promo/m-1/day", status = "capped" }
end)

test("caps.config shows the configuration", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:eq(t:eval("return require('caps').config()"),
       { marketing = { max = 2, per = 604800 }, quiet = { from = "21:00", to = "09:00" } }, "config")
  t:eq(t:eval("return require('caps').in_quiet(hearth.time('2026-11-02T21:30:00+08:00'))"), true, "in_quiet")
  t:eq(t:eval("return require('caps').in_quiet(hearth.time('2026-11-02T12:00:00+08:00'))"), false, "not in_quiet")
  t:eq(t:eval("return require('caps').quiet_end(hearth.time('2026-11-02T21:30:00+08:00'))"),
       t:eval("return hearth.time('2026-11-03T09:00:00+08:00')"), "quiet_end")
end)

test("caps.set validates every option: the path, what it must be, what it got", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  local got = t:eval([[
    local caps = require "caps"
    local bad = {
      { "x" }, "nope", { marketing = 3 }, { marketing = { max = 2 } }, { marketing = { per = "7d" } },
      { marketing = { max = -1, per = "7d" } }, { marketing = { max = 1.5, per = "7d" } },
      { marketing = { max = 2, per = "7x" } }, { marketing = { max = 2, per = "7d", every = 1 } },
      { quiet = { from = "21:00" } }, { quiet = { from = "25:00", to = "09:00" } },
      { quiet = { from = "21:00", to = "9" } }, { quiet = { from = "09:00", to = "09:00" } },
      { quite = {} },
    }
    local out = {}
    for i, spec in ipairs(bad) do
      local ok, err = pcall(caps.set, spec)
      out[i] = ok and "accepted" or err
    end
    return out
  ]])
  local want = {
    "caps.set: option '1' is unknown (known: channels, marketing, quiet)",
    "caps.set: expects a table { marketing = { max = 2, per = \"7d\" }, quiet = { from = \"21:00\", to = \"09:00\" } }, got \"nope\"",
    "caps.set: option 'marketing' must be a table { max = n, per = \"7d\" }, got 3",
    "caps.set: option 'marketing.per' must be a positive duration like \"3d\" or \"1d12h\", got nil",
    "caps.set: option 'marketing.max' must be an integer >= 0, got nil",
    "caps.set: option 'marketing.max' must be an integer >= 0, got -1",
    "caps.set: option 'marketing.max' must be an integer >= 0, got 1.5",
    "caps.set: option 'marketing.per' must be a positive duration like \"3d\" or \"1d12h\", got \"7x\"",
    "caps.set: option 'marketing.every' is unknown (known: max, per)",
    "caps.set: option 'quiet.to' must be a local time \"HH:MM\" (00:00-23:59), got nil",
    "caps.set: option 'quiet.from' must be a local time \"HH:MM\" (00:00-23:59), got \"25:00\"",
    "caps.set: option 'quiet.to' must be a local time \"HH:MM\" (00:00-23:59), got \"9\"",
    "caps.set: option 'quiet.to' must be a time other than quiet.from, got \"09:00\"",
    "caps.set: option 'quite' is unknown (known: channels, marketing, quiet)",
  }
  for i, w in ipairs(want) do
    if got[i] ~= w then error(("case %d: expected the error %q, got %s"):format(i, w, tostring(got[i]))) end
  end
  -- the configuration is unchanged by the rejected calls
  t:eq(t:eval("return require('caps').config().marketing.max"), 2, "max")
end)
