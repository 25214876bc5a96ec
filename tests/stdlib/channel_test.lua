-- channel_test.lua: channel-code attribution, welcomes and per-channel state (channel_codes.lua).
-- `hearth test` cannot read funnel counters; the member state that drives them (converted,
-- counted whole yuan) is checked here, the counters themselves show in dry-run summaries.
use("channel_codes.lua")

local T0 = "2026-11-02T15:00:00+08:00"

local function state(t, id, name)
  return t:member(id).attrs["_channel." .. (name or "channels")]
end

test("a first join is tagged with its channel and gets that channel's welcome", function(t)
  t:at(T0)
  t:event("m-1", "member.joined", { channel = "poster" })
  t:expect_tag("m-1", "channel:poster")
  local a = t:expect_action({ template = "welcome_poster", campaign = "channels", step = "welcome",
    category = "service", status = "queued" }, 1)
  t:eq(a.id, "channels/m-1/welcome", "stable id")
  t:eq(a.vars, { brand = "Hearth", channel = "poster" }, "vars")
  t:event("m-1", "test.source")
  t:expect_attr("m-1", "src", "poster")
  t:eq(state(t, "m-1").source, "poster", "state")
end)

test("a channel without its own welcome gets the default; no channel is 'direct'", function(t)
  t:at(T0)
  t:event("m-1", "member.joined", { channel = "guide_card" })
  t:expect_tag("m-1", "channel:guide_card")
  t:expect_action({ member = "m-1", template = "welcome", campaign = "channels" }, 1)
  t:event("m-2", "member.joined")
  t:expect_tag("m-2", "channel:direct")
  local a = t:expect_action({ member = "m-2", template = "welcome", campaign = "channels" }, 1)
  t:eq(a.vars.channel, "direct", "vars.channel")
  -- a value that is not a usable channel name counts as unknown
  t:event("m-3", "member.joined", { channel = "bad channel!" })
  t:expect_tag("m-3", "channel:direct")
  -- a channel that is not a string never reaches the module: the event is refused
  local ok, err = pcall(t.event, t, "m-4", "member.joined", { channel = 42 })
  t:eq(ok, false, "member.joined with channel 42 refused")
  t:eq(tostring(err):find("data.channel: must be a string", 1, true) ~= nil, true, "the message names data.channel")
end)

test("the source does not change on a re-join; the re-join is welcomed for the code scanned", function(t)
  t:at(T0)
  t:event("m-1", "member.joined", { channel = "poster" })
  t:advance("2d")
  t:event("m-1", "member.joined", { channel = "live" }, { id = "join-2" })
  t:expect_tag("m-1", "channel:poster")
  t:expect_no_tag("m-1", "channel:live")
  t:event("m-1", "test.source")
  t:expect_attr("m-1", "src", "poster")
  local a = t:expect_action({ template = "welcome_live", campaign = "channels" }, 1)
  t:eq(a.id, "channels/m-1/welcome/join-2", "keyed by the join event")
  -- the same event again is a duplicate: no second welcome
  t:eq(t:event("m-1", "member.joined", { channel = "live" }, { id = "join-2" }), "duplicate")
  t:expect_action({ template = "welcome_live" }, 1)
  t:expect_action({ template = "welcome_poster" }, 1)
  t:expect_action({ action = "tag", campaign = "channels" }, 1)
end)

test("a service welcome passes quiet hours and the marketing cap", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "test.promo")
  t:expect_action({ template = "promo", status = "queued" }, 1)
  t:at("2026-11-02T23:00:00+08:00")
  t:event("m-1", "member.joined", { channel = "live" })
  local a = t:expect_action({ template = "welcome_live" }, 1)
  t:eq(a.status, "queued", "not deferred, not capped")
  t:eq(a.time, "2026-11-02T23:00:00+08:00", "sent at once")
end)

test("a marketing welcome goes through caps; welcome_rejoin = false; unknown name option", function(t)
  t:at("2026-11-02T23:00:00+08:00")
  t:event("m-1", "member.joined", { channel = "ad" })
  t:expect_tag("m-1", "src:ad")
  t:expect_action({ template = "welcome_ad", campaign = "ads", status = "deferred" }, 1)
  t:at("2026-11-03T09:00:00+08:00")
  t:expect_action({ template = "welcome_ad", campaign = "ads", status = "queued" }, 1)
  t:event("m-1", "member.joined", { channel = "ad" })
  t:expect_action({ template = "welcome_ad" }, 2)     -- the deferred record and its release only
  t:event("m-2", "member.joined")
  t:expect_tag("m-2", "src:organic")
  t:expect_no_action{ member = "m-2", campaign = "ads", action = "send" }   -- no template, no default
end)

test("an unsubscribed member joining again still gets the service welcome", function(t)
  t:at(T0)
  t:event("m-1", "member.joined", { channel = "poster" })
  t:event("m-1", "member.unsubscribed")
  t:event("m-1", "member.joined", { channel = "poster" }, { id = "j2" })
  t:expect_action({ template = "welcome_poster", status = "queued" }, 2)
end)

test("the first order after joining is a conversion; spend is counted in whole yuan", function(t)
  t:at(T0)
  t:event("m-1", "member.joined", { channel = "live" })
  t:eq(state(t, "m-1").converted, nil, "not yet")
  t:event("m-1", "order.paid", { amount = 10.6 })
  local st = state(t, "m-1")
  t:eq(st.converted, true, "converted")
  t:eq(st.counted, 10, "10.6 counts 10")
  t:event("m-1", "order.paid", { amount = 10.6 })
  st = state(t, "m-1")
  t:eq(st.converted, true, "still one conversion")
  t:eq(st.counted, 21, "21.2 counts 21, no rounding drift")
  t:event("m-1", "order.refunded", { amount = 5 })
  t:eq(state(t, "m-1").counted, 16, "refunds subtract")
  t:event("m-1", "order.refunded", { amount = 500 })
  t:eq(state(t, "m-1").counted, 0, "never below zero")
end)

test("a member who ordered before joining is attributed but not a conversion", function(t)
  t:at(T0)
  t:event("m-1", "order.paid", { amount = 30 })
  t:eq(state(t, "m-1"), nil, "no source, nothing counted")
  t:event("m-1", "member.joined", { channel = "poster" })
  t:event("m-1", "order.paid", { amount = 30 })
  local st = state(t, "m-1")
  t:eq(st.converted, false, "not a conversion")
  t:eq(st.counted, 30, "spend after joining counts")
end)

test("define validates its options: the path, what it must be, what it got", function(t)
  t:at(T0)
  local function err(code)
    return t:eval("local ok, e = pcall(require('channel').define, " .. code .. ") return tostring(e)")
  end
  local cases = {
    { "{ welcome = {} }",
      "option 'name' must be a name of 1-64 letters, digits, '_', '.' or '-', got nil" },
    { "{ name = 'channels', tag_prefix = 'x:' }",
      "option 'name' must be a name no other definition uses (it is defined twice), got \"channels\"" },
    { "{ name = 'x', tag_prefix = 'channel:' }",
      "option 'tag_prefix' must be a prefix no other definition uses ('channels' does), got \"channel:\"" },
    { "{ name = 'x', tag_prefix = 'x:', welcome = { poster = 3 } }",
      "option 'welcome.poster' must be a template name of 1-128 bytes, got 3" },
    { "{ name = 'x', tag_prefix = 'x:', category = 'loud' }",
      "option 'category' must be \"service\" or \"marketing\", got \"loud\"" },
    { "{ name = 'x', tag_prefix = 'x:', unknown = 'a b' }",
      "option 'unknown' must be a channel name of 1-64 letters, digits, '_', '.', '-' or ':', got \"a b\"" },
    { "{ name = 'x', tag_prefix = 'x:', welcome_rejoin = 'no' }",
      "option 'welcome_rejoin' must be true or false, got \"no\"" },
    { "{ name = 'x', tag_prefix = 'x:', greeting = 'hi' }",
      "option 'greeting' is unknown (known: category, name, owner, tag_prefix, unknown, vars, welcome, welcome_rejoin)" },
    { "{ name = 'x', tag_prefix = 'x:' }",
      "call it at the top level of a script, while the scripts load" },
  }
  for _, c in ipairs(cases) do
    local e = err(c[1])
    if e ~= "channel.define: " .. c[2] then
      error(("define %s: expected the error %q, got %s"):format(c[1], "channel.define: " .. c[2], e))
    end
  end
end)
