"""harness: small helpers shared by the Hearth end-to-end tests (Python 3 stdlib only).

- HEARTH_BIN (set by CTest) names the binary, falling back to /work/main/build/hearth;
  HEARTH_ROOT names the repository.
- Workspace: a temp dir with a scripts/ folder made from {filename: lua source}, a database
  path, NDJSON event files, and `hearth` runs that return (rc, stdout, stderr).
- Parsers for the `import --json` summary, `hearth member` JSON, the stderr JSON log lines
  and the "FILE:LINE: rejected: ..." lines.
- A tiny runner: main() runs every test_* function of the calling module in definition
  order, prints "ok name" / "FAIL name: reason", then exactly "N passed, N failed", and
  exits 1 when any test failed.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.environ.get("HEARTH_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BIN = os.environ.get("HEARTH_BIN") or "/work/main/build/hearth"

# A guard against a hung process only (a test never asserts on how long anything took):
# far above what any run needs, so that a hang fails the test instead of blocking CTest.
HANG_GUARD = 120


class Hung(AssertionError):
    pass


def _env(extra):
    full_env = dict(os.environ)
    full_env.pop("HEARTH_LOG", None)
    if extra:
        full_env.update(extra)
    return full_env


class Pending:
    """A hearth process started in the background; result() waits for it (up to a hang
    guard) and returns (rc, stdout, stderr), or raises Hung after killing it."""

    def __init__(self, args, stdin=None, cwd=None, env=None):
        self.args = [str(a) for a in args]
        self.stdin = stdin
        self.p = subprocess.Popen([BIN] + self.args, cwd=cwd, env=_env(env),
                                  stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._done = None
        self._started = time.monotonic()

    def result(self, timeout=HANG_GUARD):
        """timeout counts from the start of the process (a hang guard, not a threshold)."""
        if self._done is None:
            left = max(0.1, timeout - (time.monotonic() - self._started))
            try:
                out, err = self.p.communicate(self.stdin, timeout=left)
            except subprocess.TimeoutExpired:
                self.p.kill()
                out, err = self.p.communicate()
                self._done = Hung("hearth %s did not finish within %d s (hung); stderr: %s"
                                  % (" ".join(self.args), timeout,
                                     err.decode("utf-8", "replace")[-2000:]))
            else:
                self._done = (self.p.returncode, out.decode("utf-8", "replace"),
                              err.decode("utf-8", "replace"))
        if isinstance(self._done, Hung):
            raise self._done
        return self._done

    def kill(self):
        """Stop the process if it is still running (cleanup of tests that never waited)."""
        if self.p.poll() is None:
            self.p.kill()
        self.p.communicate()


def run(args, stdin=None, cwd=None, timeout=HANG_GUARD, env=None):
    """Run hearth with args (a list of strings); return (rc, stdout, stderr) as text."""
    return Pending(args, stdin=stdin, cwd=cwd, env=env).result(timeout)


def event_line(ev):
    """One NDJSON line: a dict is dumped compactly, a str is taken as the raw line."""
    if isinstance(ev, str):
        return ev
    return json.dumps(ev, separators=(",", ":"), ensure_ascii=False)


def write_events(path, events):
    with open(path, "w", encoding="utf-8") as f:
        for ev in events:
            f.write(event_line(ev) + "\n")
    return path


def parse_summary(stdout):
    """The one JSON object `hearth import --json` prints on stdout."""
    lines = [l for l in stdout.splitlines() if l.strip()]
    assert len(lines) == 1, "expected exactly one summary line on stdout, got %r" % stdout
    try:
        s = json.loads(lines[0])
    except ValueError as exc:
        raise AssertionError("summary is not JSON (%s): %r" % (exc, lines[0]))
    assert isinstance(s, dict), "summary is not an object: %r" % s
    for k in ("lines", "accepted", "duplicates", "rejected", "failed", "actions"):
        assert k in s, "summary has no %r: %r" % (k, s)
    return s


def parse_log(stderr):
    """Every stderr line that is a JSON object (the structured log), in order."""
    out = []
    for line in stderr.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            v = json.loads(line)
        except ValueError:
            continue
        if isinstance(v, dict):
            out.append(v)
    return out


REJECT_RE = re.compile(r"^(?P<file>.*):(?P<line>\d+): rejected: (?P<msg>.*)$")


def parse_rejections(stderr):
    """[(file, line number, message)] for each "FILE:LINE: rejected: message" line."""
    out = []
    for line in stderr.splitlines():
        m = REJECT_RE.match(line)
        if m:
            out.append((m.group("file"), int(m.group("line")), m.group("msg")))
    return out


class ImportResult:
    def __init__(self, rc, out, err, path, json_summary):
        self.rc, self.out, self.err, self.path = rc, out, err, path
        self.summary = parse_summary(out) if json_summary else None
        self.log = parse_log(err)
        self.rejections = parse_rejections(err)

    def failures(self):
        """The "handler failed" log records."""
        return [r for r in self.log if r.get("msg") == "handler failed"]

    def __repr__(self):
        return "ImportResult(rc=%r, stdout=%r, stderr=%r)" % (self.rc, self.out, self.err[-3000:])


class Workspace:
    """A temp dir with scripts/ and a database path. Use as a context manager."""

    def __init__(self, scripts=None, keep=False):
        self.dir = tempfile.mkdtemp(prefix="hearth-e2e-")
        self.scripts = os.path.join(self.dir, "scripts")
        os.mkdir(self.scripts)
        self.db = os.path.join(self.dir, "hearth.db")
        self.keep = keep
        self._n = 0
        for name, src in (scripts or {}).items():
            self.write_script(name, src)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    def cleanup(self):
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def write_script(self, name, src):
        path = os.path.join(self.scripts, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(src)
        return path

    def script_path(self, name):
        return os.path.join(self.scripts, name)

    def write_events(self, events, name=None):
        if name is None:
            self._n += 1
            name = "events%d.ndjson" % self._n
        return write_events(os.path.join(self.dir, name), events)

    def run(self, *args, **kw):
        return run(list(args), cwd=self.dir, **kw)

    def import_events(self, events, *extra, json_summary=True, timeout=HANG_GUARD):
        """Write events to a file and `hearth import` it into this workspace's database."""
        path = self.write_events(events)
        return self.import_file(path, *extra, json_summary=json_summary, timeout=timeout)

    def import_file(self, path, *extra, json_summary=True, timeout=HANG_GUARD):
        return self.start_import_file(path, *extra, json_summary=json_summary).result(timeout)

    def start_import(self, events, *extra, json_summary=True):
        """Start an import in the background; .result(timeout) gives the ImportResult."""
        return self.start_import_file(self.write_events(events), *extra,
                                      json_summary=json_summary)

    def start_import_file(self, path, *extra, json_summary=True):
        args = ["import", path, "--db", self.db, "--scripts", self.scripts]
        if json_summary:
            args.append("--json")
        args += list(extra)
        p = Pending(args, cwd=self.dir)
        outer = self

        class _PendingImport:
            workspace = outer

            def result(self, timeout=HANG_GUARD):
                rc, out, err = p.result(timeout)
                return ImportResult(rc, out, err, path, json_summary)

            def kill(self):
                p.kill()

        return _PendingImport()

    def member_raw(self, member_id, *extra):
        return self.run("member", member_id, "--db", self.db, *extra)

    def member(self, member_id, *extra):
        """`hearth member ID` as a dict; fails the test when the command fails."""
        rc, out, err = self.member_raw(member_id, *extra)
        assert rc == 0, "hearth member %s: exit %d, stderr: %s" % (member_id, rc, err)
        try:
            return json.loads(out)
        except ValueError as exc:
            raise AssertionError("hearth member %s printed no JSON (%s): %r" % (member_id, exc, out))

    def check(self, *extra):
        return self.run("check", self.scripts, *extra)


# ---------------------------------------------------------------- assertions

def eq(actual, expected, what):
    assert actual == expected, "%s: got %r, expected %r" % (what, actual, expected)


def contains(text, needle, what):
    assert needle in text, "%s: %r not found in %r" % (what, needle, text)


def action_ids(member_json):
    return [a.get("id") for a in member_json["actions"]]


def action_by_id(member_json, action_id):
    for a in member_json["actions"]:
        if a.get("id") == action_id:
            return a
    raise AssertionError("no action %r; actions are %r" % (action_id, action_ids(member_json)))


# ---------------------------------------------------------------- runner

def main(module_globals=None):
    """Run every test_* function of the calling module, in definition order."""
    if module_globals is None:
        module_globals = sys._getframe(1).f_globals
    tests = [(name, fn) for name, fn in module_globals.items()
             if name.startswith("test_") and callable(fn)]
    tests.sort(key=lambda t: t[1].__code__.co_firstlineno)
    only = sys.argv[1:]
    if only:
        tests = [t for t in tests if t[0] in only or t[0][5:] in only]
    if not os.access(BIN, os.X_OK):
        print("FAIL setup: no hearth binary at %s (set HEARTH_BIN)" % BIN)
        print("0 passed, %d failed" % max(1, len(tests)))
        sys.exit(1)
    passed = failed = 0
    for name, fn in tests:
        try:
            fn()
        except AssertionError as exc:
            failed += 1
            msg = str(exc) or "assertion failed"
            where = traceback.extract_tb(exc.__traceback__)
            line = ""
            for fr in reversed(where):
                if fr.name == name:
                    line = " (line %d)" % fr.lineno
                    break
            print("FAIL %s%s: %s" % (name, line, msg))
        except Exception:  # a crash in a test is a failure too, with its traceback
            failed += 1
            print("FAIL %s: exception\n%s" % (name, traceback.format_exc()))
        else:
            passed += 1
            print("ok %s" % name)
        sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
