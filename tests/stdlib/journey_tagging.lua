-- journey tests: a campaign script for journey_test.lua: "test.tag" tags the member with
-- data.tag (a test helper would be journey_helpers.lua, required rather than loaded).
hearth.on("test.tag", function(m, ev) m:tag(ev.data.tag) end)
