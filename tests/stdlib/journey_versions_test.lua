-- journey versions (docs/modules/journey.md "Versions and migration"): a journey's
-- version is its own hash and label, each run records it with the due time of every
-- pending step (what a migration moves and `hearth reload --plan` reports). Reloads and
-- migrations themselves are driven through a daemon in tests/e2e/test_versions.py.
use("journey_versions.lua")

local state = require("journey_helpers").state
local T0 = "2026-11-02T10:00:00+08:00"

test("a journey's version: 12 hex digits of its own hash, and its label", function(t)
  local v = t:eval("local h, l = require('journey').version('jv') return h .. ' ' .. l")
  t:eq(v:match("^[0-9a-f]+ 3$") ~= nil and #v, 14, "version: 12 hex digits, then the label: " .. v)
end)

test("a run records its version and its pending steps' due times", function(t)
  t:at(T0)
  t:event("m-1", "member.joined")
  local hash = t:eval("return (require('journey').version('jv'))")
  local st = state(t, "m-1", "jv")
  local t0 = t:eval("return hearth.time('" .. T0 .. "')")
  t:eq({ st.version, st.label, st.sched.day1[1], st.sched.wait_pay[1], st.sched.day9[1] },
       { hash, "3", t0 + 86400, t0 + 2 * 86400, t0 + 9 * 86400 }, "the run's version and schedule")
  t:at("2026-11-04T12:00:00+08:00") -- day1 fired, the wait started
  st = state(t, "m-1", "jv")
  t:eq({ st.sched.day1 == nil, st.sched.wait_pay == nil, st.waits.wait_pay ~= nil, st.sched.day9 ~= nil },
       { true, true, true, true }, "fired steps leave the schedule; the wait is in waits")
  t:at("2026-11-07T12:00:00+08:00") -- the wait timed out: its branch is scheduled
  st = state(t, "m-1", "jv")
  t:eq({ st.waits.wait_pay == nil, st.sched.nudge == nil, st.sched.day9 ~= nil }, { true, true, true },
       "the branch was taken and its step fired")
  t:expect_action { id = "jv/m-1/1/nudge" }
  t:at("2026-11-12T12:00:00+08:00")
  st = state(t, "m-1", "jv")
  t:eq({ st.active, st.sched == nil, st.ended }, { false, true, "done" }, "a completed run keeps no schedule")
end)

test("hearth.fn_digest: the code and its plain upvalues, not where it sits", function(t)
  local got = t:eval([[
    local function only(tag) return function(m) return m:has(tag) end end
    local a, b, c = only("vip"), only("vip"), only("new")
    local f = load("\n\n\nreturn function(m) return m:has(tag) end")()
    local g = load("return function(m) return m:has(tag) end")()
    local body = "function(m) local k = { 1, 2.5, true, false, nil, 'short', string.rep('x', 3) .. '%s' }\n"
                 .. "  local function inner(x) return function() return x .. k[6] end end\n"
                 .. "  return inner(m.id)() ~= nil end"
    body = body:format(string.rep("long string constant ", 4))
    local h = load("return " .. body)()
    local i = load("\n\n\n\n-- moved\nreturn " .. body)()
    local j = load("return " .. body:gsub("2.5", "3.5"))()
    if hearth.fn_digest(h) ~= hearth.fn_digest(i) then return "nested functions and constants moved: differ" end
    if hearth.fn_digest(h) == hearth.fn_digest(j) then return "a changed constant: same" end
    return tostring(hearth.fn_digest(a) == hearth.fn_digest(b)) .. " " .. tostring(hearth.fn_digest(a) ~= hearth.fn_digest(c))
           .. " " .. tostring(hearth.fn_digest(f) == hearth.fn_digest(g))]])
  t:eq(got, "true true true", "same closure code and upvalue: same; another upvalue value: another; moved lines: same")
end)
