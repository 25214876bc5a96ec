"""test_sandbox: the Lua sandbox end to end. Handlers that loop, allocate without bound,
reach for io/os/debug, load bytecode or require C modules are stopped with a clear error
stored with the failed event, their own changes are rolled back, and the other events of
the same import still go in. Declarations from a handler and stale member handles are
refused; `hearth check` reports every load error as file:line; chunk names are real
paths."""

import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq, contains  # noqa: E402

# ---------------------------------------------------------------- one batch of probes

# name -> (handler body, the error must contain one of these)
PROBES = {
    "loop": ("while true do end", ["CPU budget", "time budget"]),
    "pcall_loop": ("while true do pcall(function() while true do end end) end",
                   ["CPU budget", "time budget"]),
    "coroutine_loop": ("while true do pcall(coroutine.wrap(function() while true do end end)) end",
                       ["CPU budget", "time budget"]),
    "alloc": ("local t, i, piece = {}, 0, string.rep('y', 1 << 20)\n"
              "  while true do i = i + 1; t[i] = piece .. i end",
              # touching 64 MiB of fresh pages can outlast the 2 s wall-clock budget on a
              # loaded machine under ASan; either budget stopping it is right (big_string
              # checks the memory ceiling deterministically)
              ["memory budget", "time budget"]),
    "big_string": ("local s = string.rep('x', 1 << 30)", ["memory budget"]),
    "recursion": ("local function f(n) return 1 + f(n + 1) end\n  f(1)",
                  ["stack overflow", "memory budget", "time budget"]),
    "io_open": ("local f = io.open(ev.data.path, 'w')\n  f:write('pwned')", ["global 'io'"]),
    "os_execute": ("os.execute('touch ' .. ev.data.path)", ["field 'execute'"]),
    "os_getenv": ("return os.getenv('HOME')", ["field 'getenv'"]),
    "load_binary_mode": ("local f = load('return 1', 'x', 'b')", ["only text chunks"]),
    "load_bytecode": ("local f, err = load('\\27LuaT\\0')\n  assert(f, err)",
                      ["attempt to load a binary chunk"]),
    "string_dump": ("local b = string.dump(function() end)", ["field 'dump'"]),
    "string_dump_method": ("local b = ('x'):dump()", ["method 'dump'"]),
    "string_meta_dump": ("local b = getmetatable('').__index.dump(print)", ["field 'dump'"]),
    "require_c": ("local s = require('socket.core')", ["module 'socket.core' not found"]),
    "require_escape": ("local s = require('../../etc/passwd')", ["bad module name"]),
    "debug": ("debug.sethook()", ["global 'debug'"]),
    "on_in_handler": ("hearth.on('checkin', function() end)",
                      ["hearth.on: can only be called while the scripts load"]),
    "cron_in_handler": ("hearth.cron('* * * * *', function() end)",
                        ["hearth.cron: can only be called while the scripts load"]),
    "stale_handle": ("Stashed:add_points(50, 'stolen')", ["outside the handler"]),
}


def probe_script():
    parts = ['''-- probes: each handler first changes its member, then misbehaves.
-- a channel that delivers every kind: the probes check the records of points too
hearth.channel("log", { type = "log", kinds = { "send", "task", "webhook", "points", "tag", "untag" } })
local function taint(m)
  m:add_points(100, "before misbehaving")
  m:tag("tainted")
  m:set("tainted", true)
  m:send("tainted", { key = "tainted" })
end

hearth.on("ok", function(m, ev) m:add_points(1, "ok " .. ev.id) end)

hearth.on("stash", function(m, ev) Stashed = m end)
''']
    for name, (body, _) in PROBES.items():
        parts.append('hearth.on("probe.%s", function(m, ev)\n  taint(m)\n  %s\nend)\n'
                     % (name, body))
    return "".join(parts)


_batch = None


def probe_batch():
    """Import every probe (each followed by an ok event for the same member) in one batch,
    once per run; return (workspace, ImportResult)."""
    global _batch
    if _batch is None:
        w = Workspace({"probes.lua": probe_script()})
        events = [{"id": "stash", "type": "stash", "member": "m-stash"},
                  {"id": "ok-stash", "type": "ok", "member": "m-stash"}]
        for name in PROBES:
            events.append({"id": "p-" + name, "type": "probe." + name, "member": "m-" + name,
                           "data": {"path": os.path.join(w.dir, "pwned-" + name)}})
            events.append({"id": "ok-" + name, "type": "ok", "member": "m-" + name})
        events.append({"id": "ok-last", "type": "ok", "member": "m-last"})
        _batch = (w, w.import_events(events))
    return _batch


def check_probe(name):
    w, r = probe_batch()
    needles = PROBES[name][1]
    m = w.member("m-" + name)
    eq(len(m["failed"]), 1, "probe %s: failed events stored (log: %r)" % (name, r.failures()))
    fe = m["failed"][0]
    err = fe["error"]
    assert any(n in err for n in needles), \
        "probe %s: stored error %r mentions none of %r" % (name, err, needles)
    eq((fe["campaign"], fe["event"].get("id"), fe["event"].get("type")),
       ("probes", "p-" + name, "probe." + name), "probe %s: failed event" % name)
    # the probe's own changes are rolled back; the ok event after it in the batch went in
    eq(m["points"], 1, "probe %s: points (only the later ok event's)" % name)
    eq([e["reason"] for e in m["ledger"]], ["ok ok-" + name], "probe %s: ledger" % name)
    eq(m["tags"], [], "probe %s: tags" % name)
    eq(m["attrs"], {}, "probe %s: attrs" % name)
    eq([a["action"] for a in m["actions"]], ["points"], "probe %s: actions" % name)
    logged = [f for f in r.failures() if f.get("event") == "p-" + name]
    eq(len(logged), 1, "probe %s: one 'handler failed' log line" % name)
    eq(logged[0].get("member"), "m-" + name, "probe %s: log member" % name)
    assert any(n in logged[0].get("error", "") for n in needles), \
        "probe %s: logged error %r" % (name, logged[0].get("error"))


def test_probe_batch_summary():
    w, r = probe_batch()
    eq(r.rc, 1, "exit status with failed handlers (stderr tail %r)" % r.err[-2000:])
    n = len(PROBES)
    s = r.summary
    eq((s["lines"], s["accepted"], s["duplicates"], s["rejected"], s["failed"]),
       (2 * n + 3, 2 * n + 3, 0, 0, n), "summary lines/accepted/duplicates/rejected/failed")
    eq(len(r.failures()), n, "one 'handler failed' log line per probe")
    last = w.member("m-last")
    eq((last["points"], last["failed"]), (1, []), "the last event of the batch went in")
    stash = w.member("m-stash")
    eq(stash["points"], 1, "the stashed handle's member got nothing from the stale use")
    eq([e["reason"] for e in stash["ledger"]], ["ok ok-stash"], "stashed member's ledger")


def test_infinite_loop_stopped():
    check_probe("loop")


def test_loop_inside_pcall_stopped():
    check_probe("pcall_loop")


def test_loop_inside_coroutine_under_pcall_stopped():
    check_probe("coroutine_loop")


def test_unbounded_allocation_stopped():
    check_probe("alloc")


def test_huge_string_stopped():
    check_probe("big_string")


def test_unbounded_recursion_stopped():
    check_probe("recursion")


def test_io_unavailable():
    check_probe("io_open")
    w, _ = probe_batch()
    assert not os.path.exists(os.path.join(w.dir, "pwned-io_open")), "io.open wrote a file"


def test_os_execute_unavailable():
    check_probe("os_execute")
    w, _ = probe_batch()
    assert not os.path.exists(os.path.join(w.dir, "pwned-os_execute")), "os.execute ran"


def test_os_getenv_unavailable():
    check_probe("os_getenv")


def test_load_binary_mode_refused():
    check_probe("load_binary_mode")


def test_load_of_bytecode_refused():
    check_probe("load_bytecode")


def test_string_dump_unavailable():
    check_probe("string_dump")
    check_probe("string_dump_method")
    check_probe("string_meta_dump")


def test_require_of_c_module_refused():
    check_probe("require_c")
    check_probe("require_escape")


def test_debug_unavailable():
    check_probe("debug")


def test_declarations_refused_inside_handler():
    check_probe("on_in_handler")
    check_probe("cron_in_handler")


def test_member_handle_used_in_a_later_event_refused():
    check_probe("stale_handle")


def test_memory_budget_error_cannot_be_caught_by_pcall():
    # Regression (engine/lua_host.c, luahost_call / host_alloc): the CPU budget re-raises on
    # every instruction once tripped so pcall cannot swallow it, but the memory budget only
    # fails the one allocation: a handler that catches it with pcall goes on, and when it
    # returns normally luahost_call ignores h->mem_tripped, so the handler that allocated
    # too much is committed as a success (SPEC §4: such a handler "is stopped").
    with Workspace({"mem.lua": '''
hearth.on("probe", function(m, ev)
  local ok, err = pcall(string.rep, "x", 1 << 30)
  m:set("caught", tostring(err))
  m:add_points(5, "survived the memory budget")
end)
hearth.on("ok", function(m, ev) m:add_points(1, "ok") end)
'''}) as w:
        r = w.import_events([{"id": "p", "type": "probe", "member": "m-probe"},
                             {"id": "ok", "type": "ok", "member": "m-ok"}])
        m = w.member("m-probe")
        eq((r.summary["accepted"], r.summary["failed"]), (2, 1),
           "accepted/failed: the handler that ran over its memory budget must fail "
           "(member state: attrs %r, points %r)" % (m["attrs"], m["points"]))
        eq(len(m["failed"]), 1, "failed events stored")
        contains(m["failed"][0]["error"], "memory budget", "stored error")
        eq((m["points"], m["attrs"]), (0, {}), "the handler's changes rolled back")
        eq(w.member("m-ok")["points"], 1, "the next event went in")


# ---------------------------------------------------------------- hangs
# Each runs in its own import, all started together so that a hang costs one guard period.

HANG_GUARD = 20  # seconds; a correct engine stops each of these within its budgets

HANG_PROBES = {
    # Regression (engine/lua_host.c, safe_xpcall): the budget error is raised from inside the
    # count hook, and Lua runs a script's xpcall message handler for it while hooks are
    # disabled (allowhook = 0 during a hook), so a looping message handler runs unbounded:
    # the CPU and time budgets are bypassed and `hearth import` hangs.
    "xpcall_handler_loop": (
        "xpcall(function() while true do end end, function(e) while true do end end)"),
    # Regression (engine/lua_host.c, safe_setmetatable): __gc finalizers would run
    # outside any budget: at lua_close in engine_close (the import hangs after its commit,
    # never exits), and in the lua_gc(LUA_GCCOLLECT) done after a memory trip.
    "gc_finalizer_loop": (
        "setmetatable({}, { __gc = function() while true do end end })"),
    # Regression (engine/lua_pattern.c): the count hook never runs inside a C
    # function, and the time budget is only checked by the hook, so one backtracking
    # string.find/match/gmatch/gsub call runs unbounded (string patterns are exponential).
    # The matcher's steps are charged to the handler's instruction budget.
    "pattern_backtracking": (
        "local s = string.rep('a', 40)\n  s:find(string.rep('a*', 40) .. 'b')"),
    # The same from inside pcall: the budget stays tripped, so the handler still fails
    # (its points are rolled back) instead of carrying on after the caught error.
    "pattern_backtracking_pcall": (
        "local s = string.rep('a', 40)\n"
        "  for i = 1, 3 do pcall(string.gsub, s, string.rep('a*', 40) .. 'b', '') end\n"
        "  m:add_points(7, 'after the pattern')"),
    # Same cause: a plain string.find (no pattern) is one C call too, and Lua's own naive
    # search is O(len(s) * len(needle)): 24 MiB searched for a 64 KiB needle took minutes
    # with no budget check (the test passes if it finishes, stopped or not).
    "plain_find_quadratic": (
        "local s = string.rep('a', 24 << 20)\n"
        "  s:find(string.rep('a', 1 << 16) .. 'b', 1, true)"),
}

_hang = {}


def hang_probe(name):
    """Start every hang probe the first time one is needed; return (workspace, result)."""
    if not _hang:
        for n, body in HANG_PROBES.items():
            src = ('hearth.on("probe", function(m, ev)\n  m:add_points(100, "probe")\n  %s\nend)\n'
                   'hearth.on("ok", function(m, ev) m:add_points(1, "ok") end)\n' % body)
            w = Workspace({"hang.lua": src})
            _hang[n] = (w, w.start_import([
                {"id": "p", "type": "probe", "member": "m-probe"},
                {"id": "ok", "type": "ok", "member": "m-ok"}]))
    w, pending = _hang[name]
    return w, pending.result(HANG_GUARD)


def test_xpcall_message_handler_cannot_escape_cpu_budget():
    w, r = hang_probe("xpcall_handler_loop")
    eq(r.summary["failed"], 1, "the probe failed")
    err = w.member("m-probe")["failed"][0]["error"]
    assert "CPU budget" in err or "time budget" in err, "stored error: %r" % err
    eq(w.member("m-probe")["points"], 0, "the probe's points rolled back")
    eq(w.member("m-ok")["points"], 1, "the next event went in")


def test_gc_finalizer_cannot_run_unbounded():
    # The sandbox's setmetatable refuses __gc (finalizers would run outside any budget):
    # the handler fails with a clear error, nothing hangs, the next event goes in.
    w, r = hang_probe("gc_finalizer_loop")
    eq(r.summary["accepted"], 2, "both events accepted")
    eq(r.summary["failed"], 1, "the probe failed")
    err = w.member("m-probe")["failed"][0]["error"]
    assert "__gc metamethods are not allowed" in err, "stored error: %r" % err
    eq(w.member("m-probe")["points"], 0, "the probe's points rolled back")
    eq(w.member("m-ok")["points"], 1, "the next event went in")


# A loaded machine under ASan may reach the 2 s deadline before 10 million steps.
PATTERN_BUDGET_ERRORS = ("handler stopped: ran over its CPU budget of 10000000 instructions",
                         "handler stopped: ran over its time budget of 2000 ms")


def test_pattern_backtracking_cannot_escape_budget():
    w, r = hang_probe("pattern_backtracking")
    eq(r.summary["failed"], 1, "the probe failed")
    err = w.member("m-probe")["failed"][0]["error"]
    assert any(e in err for e in PATTERN_BUDGET_ERRORS), "stored error: %r" % err
    eq(w.member("m-probe")["points"], 0, "the probe's points rolled back")
    eq(w.member("m-ok")["points"], 1, "the next event went in")


def test_pattern_backtracking_budget_cannot_be_caught_by_pcall():
    w, r = hang_probe("pattern_backtracking_pcall")
    eq(r.summary["failed"], 1, "the probe failed")
    err = w.member("m-probe")["failed"][0]["error"]
    assert any(e in err for e in PATTERN_BUDGET_ERRORS), "stored error: %r" % err
    eq(w.member("m-probe")["points"], 0, "the probe's points rolled back")
    eq(w.member("m-ok")["points"], 1, "the next event went in")


def test_plain_find_cannot_escape_budget():
    # Either a linear search finishes the handler, or the budget stops it; never a hang.
    w, r = hang_probe("plain_find_quadratic")
    m = w.member("m-probe")
    if r.summary["failed"]:
        err = m["failed"][0]["error"]
        assert "budget" in err, "stored error: %r" % err
        eq(m["points"], 0, "the stopped probe's points rolled back")
    else:
        eq(m["points"], 100, "the probe completed")
    eq(w.member("m-ok")["points"], 1, "the next event went in")


# ---------------------------------------------------------------- check, chunk names

CHECK_LINE = re.compile(r"^(?P<file>[^:\n]+\.lua):(?P<line>\d+): (?P<msg>.*)$")


def test_check_reports_syntax_and_runtime_errors_with_file_and_line():
    with Workspace({
        "a_good.lua": 'hearth.on("checkin", function(m, ev) end)\n',
        "b_syntax.lua": '-- a syntax error on line 3\nlocal x = 1\nlocal y = = 2\n',
        "c_runtime.lua": 'local t = {}\n\nerror("broken at load time")\n',
        "d_bad_api.lua": '\nhearth.on("Not A Type", function() end)\n',
        "e_good_test.lua": 'error("a *_test.lua file is not loaded by check")\n',
        "f_shared_helpers.lua": 'error("a *_helpers.lua file is not loaded by check")\n',
        "g_bad_option.lua": ('local journey = require "journey"\n'
                             'journey.define {\n'
                             '  name = "g", enter = "member.joined",\n'
                             '  steps = { { name = "a", send = "x" }, { name = "b", after = "3x", send = "y" } },\n'
                             '}\n'),
        "h_bad_cron.lua": ('local tiers = require "tiers"\n\n'
                           'tiers.define { name = "v", levels = { { name = "a", min = 1 } },\n'
                           '  review = "0 25 1 * *" }\n'),
    }) as w:
        rc, out, err = w.check()
        eq(rc, 1, "check exit status (stdout %r, stderr %r)" % (out, err))
        assert "ok:" not in out, "check must not say ok: %r" % out
        found = {}
        for line in err.splitlines():
            m = CHECK_LINE.match(line)
            if m:
                found[os.path.basename(m.group("file"))] = (m.group("file"), int(m.group("line")),
                                                            m.group("msg"))
        eq(sorted(found), ["b_syntax.lua", "c_runtime.lua", "d_bad_api.lua", "g_bad_option.lua",
                        "h_bad_cron.lua"],
           "files reported (stderr %r)" % err)
        eq(found["b_syntax.lua"][:2], (w.script_path("b_syntax.lua"), 3), "syntax error file:line")
        eq(found["c_runtime.lua"][:2], (w.script_path("c_runtime.lua"), 3),
           "runtime error file:line")
        contains(found["c_runtime.lua"][2], "broken at load time", "runtime error message")
        eq(found["d_bad_api.lua"][:2], (w.script_path("d_bad_api.lua"), 2), "API error file:line")
        contains(found["d_bad_api.lua"][2], "Not A Type", "API error message")
        eq(found["g_bad_option.lua"][1:], (2, 'journey.define: option \'steps[2].after\' must be a duration '
                                              'like "3d" or "1d12h", got "3x"'),
           "a bad option: the define call's line, the option's path, what it must be, what it got")
        eq(found["h_bad_cron.lua"][1:], (3, "tiers.define: option 'review' must be a five-field cron spec "
                                            "(hour field: value 25 out of range 0-23), got \"0 25 1 * *\""),
           "a cron spec the engine refuses: the define call's line and the engine's reason")

        # once fixed, the same folder checks ok and counts the handlers
        os.remove(w.script_path("b_syntax.lua"))
        os.remove(w.script_path("c_runtime.lua"))
        os.remove(w.script_path("d_bad_api.lua"))
        os.remove(w.script_path("g_bad_option.lua"))
        os.remove(w.script_path("h_bad_cron.lua"))
        w.write_script("b_more.lua", 'hearth.on("ok", function() end)\n'
                                     'hearth.on("*", function() end)\n')
        rc, out, err = w.check()
        eq(rc, 0, "check of a good folder (stderr %r)" % err)
        eq(out.strip(), "%s: ok: 3 handlers, 0 cron entries, 0 channels" % w.scripts,
           "check summary")

        missing = os.path.join(w.dir, "no-such-folder")
        rc, out, err = w.run("check", missing)
        eq(rc, 1, "check of a missing folder: exit status")
        contains(err, missing, "check of a missing folder names it")


HELPERS = '''-- shared_helpers: what the tests share. Loaded as a campaign script (it is not) it
-- would declare a handler tagging every "probe" member.
if hearth then hearth.on("probe", function(m) m:tag("helper_ran_as_script") end) end
return { join = function(t, id) t:event(id, "member.joined") end }
'''


def test_helpers_are_required_by_tests_and_never_loaded_as_scripts():
    with Workspace({
        "welcome.lua": 'hearth.on("member.joined", function(m) m:tag("welcomed") end)\n',
        "shared_helpers.lua": HELPERS,
        "welcome_test.lua": '''local helpers = require "shared_helpers"
test("a helper required from the test; the helper is no campaign script", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  helpers.join(t, "m-1")
  t:expect_tag("m-1", "welcomed")
  t:event("m-1", "probe")
  t:expect_no_tag("m-1", "helper_ran_as_script")
end)
''',
        "folder_test.lua": '''test("the whole folder loads without the helper", function(t)
  t:at("2026-11-02T10:00:00+08:00")
  t:event("m-1", "probe")
  t:expect_no_tag("m-1", "helper_ran_as_script")
  t:expect_tag("m-1", "welcomed_too")
end)
''',
        "zz_more.lua": 'hearth.on("probe", function(m) m:tag("welcomed_too") end)\n',
        "use_test.lua": '''use("welcome.lua", "shared_helpers.lua")
test("never runs", function(t) end)
''',
    }) as w:
        rc, out, err = w.run("test", w.script_path("welcome_test.lua"), w.script_path("folder_test.lua"))
        eq(rc, 0, "tests requiring a helper pass (stdout %r, stderr %r)" % (out, err))
        contains(out, "2 passed, 0 failed", "both cases ran")
        rc, out, err = w.run("test", w.script_path("use_test.lua"))
        eq(rc, 1, "use() of a helper fails the test file (stdout %r)" % out)
        contains(out, 'use("shared_helpers.lua"): a *_helpers.lua file is a test helper', "use() refusal")
        rc, out, err = w.check()
        eq((rc, out.strip()), (0, "%s: ok: 2 handlers, 0 cron entries, 0 channels" % w.scripts),
           "check loads welcome.lua and zz_more.lua only (stderr %r)" % err)


def test_import_refuses_to_start_with_a_broken_script():
    with Workspace({"a.lua": 'hearth.on("ok", function(m, ev) m:add_points(1, "ok") end)\n',
                    "b.lua": 'local x = \n'}) as w:
        path = w.write_events([{"type": "ok", "member": "m-1"}])
        r = w.import_file(path, json_summary=False)
        eq(r.rc, 1, "import with a broken script: exit status")
        contains(r.err, w.script_path("b.lua") + ":", "the error names the script")
        rc, _, _ = w.member_raw("m-1")
        eq(rc, 1, "nothing imported")


def test_chunk_names_are_real_paths():
    with Workspace({"campaign.lua": '''local helper = require "lib.helper"
hearth.on("boom", function(m, ev)
  helper.explode(ev.data.what)
end)
'''}) as w:
        os.mkdir(os.path.join(w.scripts, "lib"))
        w.write_script(os.path.join("lib", "helper.lua"), '''local M = {}
function M.explode(what)
  error("exploded: " .. what)
end
return M
''')
        r = w.import_events([{"id": "b-1", "type": "boom", "member": "m-1",
                              "data": {"what": "kaboom"}}])
        eq(r.rc, 1, "exit status (stderr %r)" % r.err)
        err = w.member("m-1")["failed"][0]["error"]
        helper = w.script_path(os.path.join("lib", "helper.lua"))
        campaign = w.script_path("campaign.lua")
        assert err.startswith(helper + ":3: exploded: kaboom"), "error message: %r" % err
        contains(err, "stack traceback", "a traceback is stored")
        contains(err, campaign + ":3:", "the traceback names the handler's script and line")
        eq(w.member("m-1")["failed"][0]["campaign"], "campaign", "campaign is the script stem")


def cleanup():
    if _batch:
        _batch[0].cleanup()
    if _c_work:
        _c_work[0].cleanup()
    for w, pending in _hang.values():
        pending.kill()
        w.cleanup()


# ---------------------------------------------------------------- isolation between scripts

EVIL = r"""
-- a_evil: changes every shared table it can reach, at load time and in a handler
string.lower = function() return "HACKED at load" end
local function hack()
  string.upper = function() return "HACKED" end
  rawset(string, "rep", function() return "HACKED" end)
  getmetatable("").__index.len = function() return -1 end
  getmetatable("").__index = { upper = function() return "HACKED meta" end }
  hearth.now = function() return 0 end
  hearth.emit = function() error("HACKED emit") end
  table.insert = nil
  math.floor = function() return "HACKED" end
  os.time = function() return 0 end
  coroutine.wrap = nil
  pcall = nil
  local base = getmetatable(_G).__index
  setmetatable(_G, { __index = function(_, k) return k == "no_such_global" and "HACKED" or base[k] end })
end
hearth.on("hack", function(m, ev) hack() end)
-- the evil script breaks itself: its own later handlers see its own changes
hearth.on("self", function(m, ev) m:set("upper", ("x"):upper()) m:set("now", hearth.now()) end)
"""

VICTIM = r"""
-- b_victim: what it sees of the libraries and of hearth, recorded on its member
local at_load = ("Q"):lower()
hearth.on("probe", function(m, ev)
  m:set("at_load", at_load)
  m:set("upper_method", ("x"):upper())
  m:set("upper_fn", string.upper("y"))
  m:set("lower", ("A"):lower())
  m:set("rep", ("ab"):rep(2))
  m:set("len", ("abc"):len())
  m:set("now_positive", hearth.now() > 0)
  m:set("floor", math.floor(1.5))
  m:set("time_positive", os.time() > 0)
  local t = {} table.insert(t, "ok")
  m:set("insert", t[1])
  m:set("wrap", coroutine.wrap(function() return "ok" end)())
  m:set("pcall", (pcall(function() end)))
  m:set("missing_global", type(no_such_global))
  hearth.emit(m.id, "echo", {})
end)
hearth.on("echo", function(m, ev) m:tag("echoed") end)
"""


def test_a_script_cannot_change_what_another_sees():
    # Regression (engine/lua_host.c): the string table, the string metatable's __index and
    # the hearth table were shared by every script: one handler replacing string.upper,
    # hearth.now or hearth.emit changed every other campaign until a restart.
    with Workspace({"a_evil.lua": EVIL, "b_victim.lua": VICTIM}) as w:
        r = w.import_events([{"id": "h1", "type": "hack", "member": "m-evil"},
                             {"id": "s1", "type": "self", "member": "m-evil"}])
        eq(r.summary["failed"], 0, "the evil handlers ran (stderr %s)" % r.err[-2000:])
        evil = w.member("m-evil")["attrs"]
        eq((evil["upper"], evil["now"]), ("HACKED", 0), "the evil script broke only itself")
        # later events, in a later import and in the same one
        r = w.import_events([{"id": "p1", "type": "probe", "member": "m-victim"},
                             {"id": "h2", "type": "hack", "member": "m-evil"},
                             {"id": "p2", "type": "probe", "member": "m-victim2"}])
        eq(r.summary["failed"], 0, "no handler failed (stderr %s)" % r.err[-2000:])
        for mid in ("m-victim", "m-victim2"):
            m = w.member(mid)
            eq(m["attrs"], {"at_load": "q", "upper_method": "X", "upper_fn": "Y", "lower": "a",
                            "rep": "abab", "len": 3, "now_positive": True, "floor": 1,
                            "time_positive": True, "insert": "ok", "wrap": "ok", "pcall": True,
                            "missing_global": "nil"},
               "%s: what the victim sees" % mid)
            eq(m["tags"], ["echoed"], "%s: the victim's hearth.emit still delivers" % mid)


# ---------------------------------------------------------------- C work pays from the budget

C_WORK = {
    "load_loop": "local s = ('a=1;'):rep(1e6) for i = 1, 1e4 do load(s) end",
    "rep_loop": "for i = 1, 1e9 do local s = ('x'):rep(16 << 20) end",
    "rep_empty_loop": "for i = 1, 1e9 do local s = (''):rep(1e12) end",
    "concat_op_loop": "local s = ('x'):rep(1 << 22) for i = 1, 1e9 do local t = s .. i end",
    "format_loop": "local s = ('x'):rep(1 << 22) for i = 1, 1e9 do local t = string.format('%s%s', s, s) end",
    "upper_loop": "local s = ('x'):rep(1 << 12):rep(1 << 12) for i = 1, 1e9 do local t = s:upper() end",
    "gsub_loop": "local s = ('x'):rep(1 << 16) for i = 1, 1e9 do local t = s:gsub('x', 'yy') end",
    "table_concat_loop": ("local t = {} for i = 1, 1e5 do t[i] = 'abcdefgh' end\n"
                          "  for i = 1, 1e9 do local s = table.concat(t) end"),
    "table_move": "table.move({}, 1, 1e12, 1)",
    "table_sort_loop": ("local t = {} for i = 1, 1e5 do t[i] = (i * 7919) % 100003 end\n"
                        "  for i = 1, 1e9 do table.sort(t) end"),
    "table_insert_loop": ("local t = {} for i = 1, 1e5 do t[i] = i end\n"
                          "  for i = 1, 1e9 do table.insert(t, 1, i) end"),
    "utf8_len_loop": "local s = ('\\u{e9}'):rep(1 << 20) for i = 1, 1e9 do utf8.len(s) end",
}


def c_work_batch():
    """Every C-work probe in one import (each a handler of its own, followed by an ok
    event); return (workspace, ImportResult)."""
    global _c_work
    if _c_work is None:
        parts = ['hearth.on("ok", function(m, ev) m:add_points(1, "ok") end)\n']
        for name, body in C_WORK.items():
            parts.append('hearth.on("c.%s", function(m, ev)\n  m:add_points(100, "probe")\n  %s\n'
                         '  hearth.log("info", "survived %s")\nend)\n' % (name, body, name))
        w = Workspace({"cwork.lua": "".join(parts)})
        events = []
        for name in C_WORK:
            events.append({"id": "c-" + name, "type": "c." + name, "member": "m-" + name})
            events.append({"id": "ok-" + name, "type": "ok", "member": "m-" + name})
        _c_work = (w, w.import_events(events))
    return _c_work


_c_work = None


def test_library_work_outside_the_vm_is_paid_from_the_budget():
    # Regression (engine/lua_host.c, lua_safe.c): the instruction hook never fires inside a
    # C function, so a loop of load() of a 4 MB source ran 28-46 s against a 2 s budget and
    # a loop of 16 MiB string.rep stalled the daemon 9.6 s.
    w, r = c_work_batch()
    eq(r.summary["failed"], len(C_WORK), "every probe failed (log: %r)" % r.failures())
    for name in C_WORK:
        m = w.member("m-" + name)
        eq(len(m["failed"]), 1, "%s: one failed event" % name)
        err = m["failed"][0]["error"]
        assert re.search(r"handler stopped: ran over its (CPU|time|memory) budget", err), \
            "%s: stored error %r" % (name, err)
        eq(m["points"], 1, "%s: the probe's points rolled back, the ok event went in" % name)
        assert "survived " + name not in r.err, "%s: the handler went on after the budget" % name


# ---------------------------------------------------------------- no path swallows a budget error

CLOSE_LOOP = "setmetatable({}, { __close = function() while true do end end })"
REENTRY = {
    # Regression: a CPU-budget error raised inside __close came back as a return value of
    # coroutine.close, and the handler committed.
    "coroutine_close": ("local co = coroutine.create(function()\n"
                        "    local x <close> = %s\n    coroutine.yield()\n  end)\n"
                        "  coroutine.resume(co)\n  local ok, err = coroutine.close(co)" % CLOSE_LOOP),
    "coroutine_resume": "local ok, err = coroutine.resume(coroutine.create(function() while true do end end))",
    "coroutine_wrap": "local ok, err = pcall(coroutine.wrap(function() while true do end end))",
    "pcall": "local ok, err = pcall(function() while true do end end)",
    "xpcall": "local ok, err = xpcall(function() while true do end end, function(e) return e end)",
    "close_in_pcall": "local ok, err = pcall(function() local x <close> = %s end)" % CLOSE_LOOP,
    "memory_in_coroutine": ("local ok, err = coroutine.resume(coroutine.create(function()\n"
                            "    return string.rep('x', 1 << 30) end))"),
    "memory_in_pcall": ("local piece = ('y'):rep(1 << 16)\n"
                        "  local ok, err = pcall(function() local t = {} for i = 1, 1e9 do t[i] = piece .. i end end)"),
    "memory_in_wrap": "local ok, err = pcall(coroutine.wrap(function() return ('x'):rep(1 << 30) end))",
}


def test_no_path_back_into_the_script_swallows_a_budget_error():
    parts = ['hearth.on("ok", function(m, ev) m:add_points(1, "ok") end)\n']
    for name, body in REENTRY.items():
        parts.append('hearth.on("r.%s", function(m, ev)\n  m:add_points(100, "probe")\n  %s\n'
                     '  hearth.log("info", "survived %s", tostring(err))\nend)\n' % (name, body, name))
    with Workspace({"reentry.lua": "".join(parts)}) as w:
        events = []
        for name in REENTRY:
            events.append({"id": "r-" + name, "type": "r." + name, "member": "m-" + name})
            events.append({"id": "ok-" + name, "type": "ok", "member": "m-" + name})
        r = w.import_events(events)
        for name in REENTRY:
            m = w.member("m-" + name)
            eq(len(m["failed"]), 1, "%s: the handler failed (stderr %s)" % (name, r.err[-1500:]))
            err = m["failed"][0]["error"]
            assert re.search(r"handler stopped: ran over its (CPU|time|memory) budget", err), \
                "%s: stored error %r" % (name, err)
            if name.startswith("memory"):
                contains(err, "memory budget", "%s: the memory budget" % name)
            eq(m["points"], 1, "%s: the probe's points rolled back" % name)
            assert "survived " + name not in r.err, "%s: the script went on after the budget" % name


# ---------------------------------------------------------------- every failure says where

def test_every_budget_failure_has_file_line_and_traceback():
    # Regression (engine/lua_host.c): a memory error skips Lua's message handler, so the
    # memory-budget failures (17 of 100 stored ones) had no file:line and no traceback.
    w, _ = probe_batch()
    path = w.script_path("probes.lua")
    for name in ("loop", "pcall_loop", "coroutine_loop", "alloc", "big_string", "recursion"):
        fe = w.member("m-" + name)["failed"][0]
        err = fe["error"]
        assert re.match(re.escape(path) + r":\d+: ", err), "%s: no file:line first: %r" % (name, err)
        contains(err, "stack traceback", "%s: a traceback" % name)
        eq(fe["campaign"], "probes", "%s: the campaign" % name)
    big = w.member("m-big_string")["failed"][0]["error"]
    contains(big, "handler stopped: ran over its memory budget of 64 MiB", "big_string: the budget")
    contains(big, "'rep'", "big_string: the traceback names the call that allocated")


# ---------------------------------------------------------------- causal chains

LOOPS = r"""
hearth.on("c", function(m, ev) m:add_points(1, "c") hearth.emit(m.id, "c", {}) end)
hearth.on("t", function(m, ev) m:add_points(1, "t") m:at(0, "t") end)
hearth.on("later", function(m, ev)
  m:add_points(1, "later")
  if (m:get("n") or 0) < 40 then m:set("n", (m:get("n") or 0) + 1) m:after("1d", "later") end
end)
"""


def test_causal_loops_are_bounded_and_recorded_with_their_chain():
    # Regression (engine/engine.c): a handler that emits its own event (or sets a timer due
    # at once) never stopped: the daemon froze at ~6,000 events/s and ignored SIGTERM.
    with Workspace({"loops.lua": LOOPS}) as w:
        r = w.import_events([{"id": "e-c", "type": "c", "member": "m-c"},
                             {"id": "e-t", "type": "t", "member": "m-t"}])
        eq(r.rc, 1, "import exits 1: the end of each chain is a failed event (stderr %s)" % r.err[-1500:])
        for mid, kind in (("m-c", "c"), ("m-t", "t")):
            m = w.member(mid)
            eq(m["points"], 33, "%s: the event and the 32 that followed at once were applied" % mid)
            eq(len(m["failed"]), 1, "%s: the 34th is recorded as failed" % mid)
            err = m["failed"][0]["error"]
            contains(err, "causal chain too long", "%s: the failure says why" % mid)
            contains(err, "loops:%s > loops:%s" % (kind, kind), "%s: the failure names the chain" % mid)


def test_timers_due_later_are_not_a_chain():
    with Workspace({"loops.lua": LOOPS}) as w:
        import time as _t
        start = _t.strftime("%Y-%m-%dT%H:%M:%SZ", _t.gmtime(int(_t.time()) - 60 * 86400))
        r = w.import_events([{"id": "e-l", "type": "later", "member": "m-l", "time": start}])
        eq(r.rc, 0, "import (stderr %s)" % r.err[-1500:])
        m = w.member("m-l")
        eq((m["points"], m["failed"]), (41, []), "41 daily events, each set a day ahead: no chain")


# ---------------------------------------------------------------- the member size cap

BIG = r"""
hearth.on("big", function(m, ev) m:set("blob", ("x"):rep(ev.data.n)) end)
hearth.on("many", function(m, ev) for i = 1, ev.data.n do m:tag("t" .. i) end end)
hearth.on("small", function(m, ev) m:set("note", "ok") end)
"""


def test_member_size_cap_refuses_a_set_and_stores_nothing_of_it():
    # Regression (engine/engine.c): a member record had no size cap; one handler left a
    # member with 16.8 MB of attributes and the next 100 events took 11 s.
    with Workspace({"big.lua": BIG}) as w:
        r = w.import_events([{"id": "b1", "type": "big", "member": "m-b", "data": {"n": 300 * 1024}},
                             {"id": "s1", "type": "small", "member": "m-b"}])
        eq(r.rc, 1, "import exits 1: the big set failed (stderr %s)" % r.err[-1500:])
        m = w.member("m-b")
        eq(m["attrs"], {"note": "ok"}, "nothing of the big set is stored; the later event is")
        contains(m["failed"][0]["error"], "m:set('blob'): member would hold more than 262144 bytes",
                 "the error names the attribute and the cap")
        r = w.import_events([{"id": "b2", "type": "big", "member": "m-c", "data": {"n": 3000}}],
                            "--max-member-bytes", "2048")
        eq(r.rc, 1, "over a smaller cap (stderr %s)" % r.err[-1500:])
        r = w.import_events([{"id": "b3", "type": "big", "member": "m-d", "data": {"n": 1000}}],
                            "--max-member-bytes", "2048")
        eq(r.rc, 0, "under it (stderr %s)" % r.err[-1500:])
        r = w.import_events([{"id": "t1", "type": "many", "member": "m-t", "data": {"n": 500}}],
                            "--max-member-bytes", "2048")
        eq(r.rc, 1, "tags count too")
        eq(w.member("m-t")["tags"], [], "and none of the handler's tags stay")


def test_every_call_keeps_its_budget_after_one_ran_over():
    # Regression (engine/lua_host.c, luahost_call reusing the last call's thread): a thread
    # reset after a budget error (raised inside the count hook) kept its hooks off, so the
    # next handler on it ran with no budget and never stopped.
    with Workspace({"burn.lua": 'hearth.on("burn", function(m) while true do end end)\n'}) as w:
        r = w.import_events([{"id": "b%d" % i, "type": "burn", "member": "m-%d" % i} for i in range(4)])
        eq(r.rc, 1, "import exits 1 (stderr %s)" % r.err[-1000:])
        eq(r.summary["failed"], 4, "each of the four calls stopped by its budget")
        for i in range(4):
            contains(w.member("m-%d" % i)["failed"][0]["error"], "ran over its CPU budget",
                     "call %d stopped by the CPU budget" % i)


if __name__ == "__main__":
    try:
        harness.main()
    finally:
        cleanup()
