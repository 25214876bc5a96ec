"""test_tutorial: examples/tutorial/README.md prints what its commands print, so that the
tutorial cannot drift from the binary.

The ```sh blocks of the README are parsed: a line that does not start with `#` is a
command (a trailing backslash continues it on the next line); the `# ` lines after it are
what it prints: its standard output, then its standard error. A line `...` (indented or
not) stands for any number of lines, none included; every other line must match whole.
The commands run in order with the built binary (HEARTH_BIN, HEARTH_ROOT, as harness.py
reads them) in a temp dir that holds `build/hearth` and `examples/` as links, so they run
as the README writes them "from the repository root"; /tmp/tutorial.db is rewritten to a
file of the temp dir (and back in what is printed). Each command must exit 0.

What depends on the wall clock or the machine, and only that, is masked on both sides:
- `"deliver_after": ...` of an expired action (the moment of the import minus
  --stale-after);
- `"ts":...` of a log line;
- the daemon's address: `hearth run` is started with `--listen 127.0.0.1:0` added (the
  README's 8707 may be taken), read from its "listening" line, then stopped with SIGTERM.
And the import's statuses depend on the wall clock: the README shows every action
`expired`, which holds once the tutorial's November is more than a day (the default
--stale-after) behind; test_the_clock_is_past_the_tutorials_history says so plainly if the
machine's clock is earlier.

The ```lua blocks must be verbatim parts of the scripts the tutorial names. The curl line
(an indented block, not a ```sh one) is not run."""

import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import shutil
import calendar

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import eq  # noqa: E402

README = os.path.join(harness.ROOT, "examples", "tutorial", "README.md")
SCRIPTS = os.path.join(harness.ROOT, "examples", "tutorial", "scripts")
DB_IN_README = "/tmp/tutorial.db"
START_GUARD = 30   # seconds the daemon may take to log "listening" (a hang guard only)
STOP_GUARD = 30    # seconds it may take to exit after SIGTERM (a hang guard only)
# The latest action of the tutorial's history comes due at the day-3 coupon.
LAST_DUE = "2026-11-05T07:00:00Z"
STALE_AFTER = 86400  # hearth import's default --stale-after

MASKS = [
    (re.compile(r'"deliver_after": ?"[^"]*"'), '"deliver_after": "<import time - stale-after>"'),
    (re.compile(r'"ts": ?"[^"]*"'), '"ts":"<wall clock>"'),
    (re.compile(r'"addr": ?"127\.0\.0\.1:\d+"'), '"addr":"127.0.0.1:<port>"'),
]


def mask(line):
    for rx, repl in MASKS:
        line = rx.sub(repl, line)
    return line


# ---------------------------------------------------------------- the README

def fenced_blocks(text, lang):
    """The bodies (lists of lines) of the ```lang blocks of a Markdown text."""
    blocks, cur = [], None
    for line in text.split("\n"):
        if cur is None:
            if line.strip() == "```" + lang:
                cur = []
        elif line.strip() == "```":
            blocks.append(cur)
            cur = None
        else:
            cur.append(line)
    assert cur is None, "an unclosed ```%s block in the README" % lang
    return blocks


def commands(block):
    """[(command, [expected line, ...])] of one ```sh block."""
    out, pending = [], None
    for line in block:
        if line.startswith("#"):
            assert out, "an output line before any command: %r" % line
            assert line == "#" or line.startswith("# "), "an output line must start with '# ': %r" % line
            out[-1][1].append(line[2:])
            continue
        if not line.strip():
            continue
        pending = line if pending is None else pending + "\n" + line
        if line.endswith("\\"):
            continue
        out.append((pending, []))
        pending = None
    assert pending is None, "a command continued past the end of its block: %r" % pending
    return out


# ---------------------------------------------------------------- matching

def is_ellipsis(line):
    return line.strip() == "..."


def matches(expected, actual):
    """Whether every actual line is accounted for by expected, where an `...` line stands
    for any number of actual lines (none included)."""
    # reach[j]: actual[:j] is matched by the expected lines read so far
    reach = [True] + [False] * len(actual)
    for e in expected:
        if is_ellipsis(e):
            for j in range(1, len(actual) + 1):
                reach[j] = reach[j] or reach[j - 1]
        else:
            reach = [False] + [reach[j] and mask(e) == mask(actual[j]) for j in range(len(actual))]
    return reach[len(actual)]


def check_output(cmd, expected, printed):
    actual = printed.split("\n")
    if actual and actual[-1] == "":
        actual.pop()
    assert matches(expected, actual), (
        "`%s` does not print what the tutorial shows.\n--- the README shows:\n%s\n--- it prints:\n%s"
        % (cmd, "\n".join(expected), "\n".join(actual)))


# ---------------------------------------------------------------- running

def workspace():
    d = tempfile.mkdtemp(prefix="hearth-tutorial-")
    os.mkdir(os.path.join(d, "build"))
    os.symlink(os.path.abspath(harness.BIN), os.path.join(d, "build", "hearth"))
    os.symlink(os.path.join(harness.ROOT, "examples"), os.path.join(d, "examples"))
    return d


def env():
    e = dict(os.environ)
    for k in ("HEARTH_LOG", "HEARTH_TZ"):  # the README shows the defaults
        e.pop(k, None)
    return e


def localize(cmd, d):
    return cmd.replace(DB_IN_README, os.path.join(d, "tutorial.db"))


def unlocalize(text, d):
    return text.replace(os.path.join(d, "tutorial.db"), DB_IN_README)


def is_daemon(cmd):
    words = shlex.split(cmd.replace("\\\n", " "))
    return len(words) > 1 and words[0].endswith("hearth") and words[1] == "run"


def run_command(cmd, d):
    p = subprocess.run(["sh", "-c", localize(cmd, d)], cwd=d, env=env(), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=harness.HANG_GUARD)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    eq(p.returncode, 0, "exit status of `%s` (stderr: %s)" % (cmd, err[-2000:]))
    return unlocalize(out + err, d)


def run_daemon(cmd, d):
    """Start the daemon on a free port, wait for its "listening" line, stop it with
    SIGTERM; return what it printed."""
    args = shlex.split(localize(cmd, d).replace("\\\n", " ")) + ["--listen", "127.0.0.1:0"]
    out_path, err_path = os.path.join(d, "daemon.stdout"), os.path.join(d, "daemon.stderr")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        p = subprocess.Popen(args, cwd=d, env=env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    try:
        deadline = time.time() + START_GUARD
        while not any(r.get("msg") == "listening" for r in harness.parse_log(read(err_path))):
            assert p.poll() is None, "`%s` exited with %d before listening: %s" % (
                cmd, p.returncode, read(err_path)[-2000:])
            assert time.time() < deadline, "`%s` logged no 'listening' line within %d s" % (cmd, START_GUARD)
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=STOP_GUARD)
        eq(rc, 0, "exit status of `%s` after SIGTERM (stderr: %s)" % (cmd, read(err_path)[-2000:]))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return unlocalize(read(out_path) + read(err_path), d)


def read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


# ---------------------------------------------------------------- tests

def test_the_matcher_refuses_a_changed_or_missing_line():
    shown = ["a", "...", "z"]
    assert matches(shown, ["a", "z"])
    assert matches(shown, ["a", "b", "c", "z"])
    assert not matches(shown, ["a", "b"]), "a missing last line must not match"
    assert not matches(["a", "b"], ["a", "c"]), "a changed line must not match"
    assert not matches(["a"], ["a", "b"]), "an extra line must not match without '...'"
    assert matches(['"deliver_after": "2026-11-30T16:57:41+08:00"'], ['"deliver_after": "2027-01-01T00:00:00+08:00"'])
    assert not matches(['"due": "2026-11-05T15:00:00+08:00"'], ['"due": "2026-11-05T15:00:01+08:00"'])


def test_the_clock_is_past_the_tutorials_history():
    last_due = calendar.timegm(time.strptime(LAST_DUE, "%Y-%m-%dT%H:%M:%SZ"))
    assert time.time() - STALE_AFTER > last_due, (
        "the tutorial's step 5 shows every imported action expired, which holds only once "
        "%s is more than --stale-after (1d) ago; this machine's clock says %s"
        % (LAST_DUE, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))


def test_the_lua_excerpts_are_in_the_scripts():
    with open(README, encoding="utf-8") as f:
        blocks = fenced_blocks(f.read(), "lua")
    assert blocks, "no ```lua block in the README"
    sources = ""
    for name in sorted(os.listdir(SCRIPTS)):
        with open(os.path.join(SCRIPTS, name), encoding="utf-8") as f:
            sources += f.read() + "\n"
    for block in blocks:
        text = "\n".join(block)
        assert text in sources, "this ```lua block of the README is not in %s:\n%s" % (SCRIPTS, text)


def test_every_command_prints_what_the_tutorial_shows():
    with open(README, encoding="utf-8") as f:
        blocks = fenced_blocks(f.read(), "sh")
    steps = [c for b in blocks for c in commands(b)]
    assert len(steps) >= 6, "the README's ```sh blocks hold only %d commands" % len(steps)
    d = workspace()
    try:
        for cmd, expected in steps:
            printed = run_daemon(cmd, d) if is_daemon(cmd) else run_command(cmd, d)
            check_output(cmd, expected, printed)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    harness.main()
