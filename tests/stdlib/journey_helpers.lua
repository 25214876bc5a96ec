-- journey tests: "test.tag" tags the member with data.tag.
hearth.on("test.tag", function(m, ev) m:tag(ev.data.tag) end)
