"""test_cluster: Hearth scaled out on NATS JetStream, end to end, the way an operator runs
it: `hearth cluster init`, `hearth import FILE --cluster URL`, engines started with
`hearth run --cluster URL --engine NAME --data DIR --scripts DIR --virtual-clock T`, time
moved with `hearth cluster tick --to T`, quiescence with `hearth cluster wait`, ownership
read from `hearth cluster status --json`, and the actions read from each engine's stdout
(the default log channel: one NDJSON line per action). Every test starts its own
three-node nats-server cluster on loopback (tests/e2e/nats_cluster.py).

Cases:
- the same actions (sorted lines, checksum) on one engine and on three;
- kill -9 of an engine mid-stream: its partitions move, and the union of every engine's
  actions is the single-engine run's, each id exactly once;
- a referral whose referrer and invitee fall in different partitions (FNV-1a 64 mod P,
  pinned here) is rewarded once, also when the same events are published twice;
- GET /v1/members/ID answers the same document from every engine (routed to the owner);
- bad input: init again with another P names both; run before init names
  `hearth cluster init`.

Time is the virtual clock's: engines never move their clocks; every tick is followed by
`cluster wait`, so what is read afterwards is final. Waits are bounded polls for something
that must happen (the guards are hang guards, never thresholds); no test sleeps to show
that something did not happen; every engine and nats-server is stopped in a finally (and
at exit).

`hearth cluster status --json`, as read by status_owners() and status_engines() (the one
place that knows its shape):
  {"layout":{"partitions":P,"replicas":R,...},
   "engines":[{"name":NAME,...}, ...],
   "partitions":[{"partition":0,"owner":NAME or null,"last_seq":N,"ack_floor":N,
                  "pending":N,"ack_pending":N}, ...]}
"""

import calendar
import hashlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq, contains  # noqa: E402
from nats_cluster import NatsCluster  # noqa: E402

P = 12                       # partitions of every test cluster
REFERRER, INVITEE = "ref-1", "inv-1"   # partitions 0 and 10 of 12 (pinned in a test)
MONTH = os.path.join(harness.ROOT, "examples", "events", "month.ndjson")
SHIPPED_SCRIPTS = os.path.join(harness.ROOT, "scripts")
ZONE = "+08:00"              # the month's offset (the engine's default zone, Asia/Shanghai)

START_GUARD = 30             # seconds an engine may take to log "listening" (hang guard only)
STOP_GUARD = 30              # seconds an engine may take to exit after SIGTERM (hang guard only)
SPREAD_GUARD = 60            # seconds for the partitions to spread over the engines (hang guard)
WAIT_TIMEOUT = "90s"         # `cluster wait --timeout` (a hang guard: a dead lease lapses in 6 s)


# ---------------------------------------------------------------- partitions

def fnv1a64(data):
    """FNV-1a 64 over bytes, as engine/cluster.h defines a member's partition."""
    h = 0xcbf29ce484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def partition_of(member, partitions):
    return fnv1a64(member.encode("utf-8")) % partitions


# ---------------------------------------------------------------- time

def parse_time(s):
    """Epoch seconds of an RFC 3339 time with a numeric offset or Z (whole seconds)."""
    base, off = s[:19], s[19:]
    t = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    if off in ("Z", "z"):
        return t
    sign = 1 if off[0] == "+" else -1
    return t - sign * (int(off[1:3]) * 3600 + int(off[4:6]) * 60)


def format_local(t):
    """RFC 3339 in the month's offset (+08:00)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t + 8 * 3600)) + ZONE


def daily_steps(start, end):
    """start + 1 day, start + 2 days, ... while before end, then end itself."""
    steps = []
    t = start + 86400
    while t < end:
        steps.append(t)
        t += 86400
    steps.append(end)
    return steps


def month_events():
    with open(MONTH, encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    return lines, [json.loads(l) for l in lines]


# ---------------------------------------------------------------- the CLI

def hearth(*args, timeout=harness.HANG_GUARD):
    return harness.run([str(a) for a in args], timeout=timeout)


def hearth_ok(*args, what=None):
    rc, out, err = hearth(*args)
    eq(rc, 0, "%s: exit status (stderr: %s)" % (what or "hearth " + " ".join(map(str, args)), err[-3000:]))
    return out


def cluster_init(url, partitions=P, replicas=3):
    return hearth_ok("cluster", "init", "--cluster", url, "--partitions", partitions,
                     "--replicas", replicas, what="hearth cluster init")


def cluster_wait(url):
    rc, out, err = hearth("cluster", "wait", "--cluster", url, "--timeout", WAIT_TIMEOUT)
    if rc != 0:
        rc2, status, _ = hearth("cluster", "status", "--cluster", url, "--json")
        raise AssertionError("hearth cluster wait: exit %d (stderr: %s); status: %s"
                             % (rc, err[-2000:], status[-3000:]))


def cluster_tick(url, t):
    hearth_ok("cluster", "tick", "--cluster", url, "--to", format_local(t), what="hearth cluster tick")


def cluster_status(url):
    out = hearth_ok("cluster", "status", "--cluster", url, "--json", what="hearth cluster status --json")
    try:
        status = json.loads(out)
    except ValueError as exc:
        raise AssertionError("cluster status --json printed no JSON (%s): %r" % (exc, out))
    assert isinstance(status, dict), "cluster status --json is not an object: %r" % (status,)
    return status


def status_owners(status):
    """{partition: owner name or None} from `cluster status --json`."""
    parts = status.get("partitions")
    assert isinstance(parts, list), "status has no partitions list: %r" % (status,)
    return {p["partition"]: p.get("owner") for p in parts}


def status_engines(status):
    engines = status.get("engines")
    assert isinstance(engines, list), "status has no engines list: %r" % (status,)
    return sorted(e["name"] for e in engines)


def import_cluster(w, url, lines, name):
    """Published as history whose actions are all still delivered (--stale-after: the
    month is older than a day; see test_history_import_into_a_cluster_expires_stale_actions)."""
    path = w.write_events(lines, name=name)
    hearth_ok("import", path, "--cluster", url, "--stale-after", "36500d", what="hearth import %s --cluster" % name)


def tick_through(url, start, end):
    """Move every partition's clock from start to end a day at a time, waiting after each."""
    for t in daily_steps(start, end):
        cluster_tick(url, t)
        cluster_wait(url)


# ---------------------------------------------------------------- engines

class Engine:
    """One `hearth run --cluster` process; stdout (actions) and stderr (log) in files.
    Use as a context manager: the process is always killed on exit."""

    def __init__(self, w, url, name, scripts, clock=None, listen=False):
        self.name = name
        self.data = os.path.join(w.dir, name)
        self.out_path = os.path.join(w.dir, name + ".stdout")
        self.err_path = os.path.join(w.dir, name + ".stderr")
        args = [harness.BIN, "run", "--cluster", url, "--engine", name, "--data", self.data,
                "--scripts", scripts, "--listen", "127.0.0.1:0"]  # several engines on one machine
        if clock is not None:
            args += ["--virtual-clock", clock]
        env = dict(os.environ)
        env.pop("HEARTH_LOG", None)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.p = subprocess.Popen(args, cwd=w.dir, env=env, stdin=subprocess.DEVNULL,
                                  stdout=self._out, stderr=self._err)
        self.port = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.p.poll() is None

    def assert_alive(self):
        assert self.alive(), "engine %s exited with %s; stderr: %s" % (
            self.name, self.p.returncode, self.stderr()[-3000:])

    def wait_listening(self):
        deadline = time.monotonic() + START_GUARD
        while time.monotonic() < deadline:
            for rec in harness.parse_log(self.stderr()):
                if rec.get("msg") == "listening":
                    addr = rec.get("addr", "")
                    assert addr.startswith("127.0.0.1:"), "%s listening on %r" % (self.name, addr)
                    self.port = int(addr.rsplit(":", 1)[1])
                    assert self.port > 0, "listening log names port 0: %r" % rec
                    return self
            self.assert_alive()
            time.sleep(0.05)
        raise AssertionError("engine %s logged no 'listening' line within %d s; stderr: %s"
                             % (self.name, START_GUARD, self.stderr()[-3000:]))

    def actions(self, complete_only=False):
        """The action lines on stdout, each a (id, line) pair. Every line must be an
        action; complete_only drops an unfinished last line (an engine killed -9)."""
        text = self.stdout()
        lines = text.split("\n")
        last = lines.pop()          # "" when stdout ends with a newline
        if last and not complete_only:
            lines.append(last)
        out = []
        for line in lines:
            try:
                a = json.loads(line)
            except ValueError:
                raise AssertionError("engine %s: stdout line is not JSON: %r" % (self.name, line))
            assert isinstance(a, dict) and isinstance(a.get("id"), str), \
                "engine %s: stdout line is not an action with an id: %r" % (self.name, line)
            out.append((a["id"], line))
        return out

    def stop_clean(self):
        """SIGTERM (its partitions are handed over) and exit status 0."""
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
        try:
            rc = self.p.wait(timeout=STOP_GUARD)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("engine %s did not exit within %d s of SIGTERM; stderr: %s"
                                 % (self.name, STOP_GUARD, self.stderr()[-3000:]))
        self._close()
        eq(rc, 0, "engine %s exit status after SIGTERM (stderr: %s)" % (self.name, self.stderr()[-3000:]))

    def kill(self):
        if self.alive():
            self.p.kill()
            try:
                self.p.wait(timeout=STOP_GUARD)
            except subprocess.TimeoutExpired:
                pass
        self._close()

    def _close(self):
        for f in (self._out, self._err):
            try:
                f.close()
            except OSError:
                pass

    def post_events(self, events):
        assert self.port, "engine %s not listening" % self.name
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("POST", "/v1/events", body="\n".join(json.dumps(e) for e in events),
                         headers={"Content-Type": "application/x-ndjson"})
            r = conn.getresponse()
            raw = r.read().decode("utf-8", "replace")
        finally:
            conn.close()
        return r.status, json.loads(raw) if raw else None

    def get(self, path):
        assert self.port, "engine %s not listening" % self.name
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            raw = r.read().decode("utf-8", "replace")
        finally:
            conn.close()
        try:
            return r.status, json.loads(raw) if raw else None
        except ValueError:
            return r.status, raw


class Engines:
    """Several engines, all killed on exit."""

    def __init__(self, w, url, names, scripts, clock=None, listen=False):
        self.url = url
        self.list = [Engine(w, url, n, scripts, clock=clock, listen=listen) for n in names]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for e in self.list:
            e.kill()

    def live(self):
        return [e for e in self.list if e.alive()]

    def wait_spread(self):
        """Poll `cluster status --json` until every partition has an owner among the live
        engines and each live engine owns its fair share (P/N rounded down or up)."""
        deadline = time.monotonic() + SPREAD_GUARD
        last = None
        while time.monotonic() < deadline:
            live = self.live()
            for e in self.list:
                if e not in live and not getattr(e, "expected_dead", False):
                    e.assert_alive()
            names = sorted(e.name for e in live)
            owners = status_owners(cluster_status(self.url))
            counts = {n: 0 for n in names}
            for owner in owners.values():
                if owner in counts:
                    counts[owner] += 1
            last = owners
            fair = P // len(names)
            if len(owners) == P and all(o in counts for o in owners.values()) \
                    and all(fair <= c <= fair + 1 for c in counts.values()):
                return owners
            time.sleep(0.2)
        raise AssertionError("partitions not spread over %s within %d s; owners: %r"
                             % ([e.name for e in self.live()], SPREAD_GUARD, last))

    def stop_all(self):
        for e in self.live():
            e.stop_clean()


# ---------------------------------------------------------------- comparing actions

def digest(pairs):
    h = hashlib.sha256()
    for _, line in pairs:
        h.update(line.encode("utf-8") + b"\n")
    return h.hexdigest()


def assert_ids_once(pairs, what):
    seen, twice = set(), []
    for aid, _ in pairs:
        if aid in seen:
            twice.append(aid)
        seen.add(aid)
    assert not twice, "%s: %d action ids appear more than once, first: %r" % (what, len(twice), twice[:5])


def assert_same_lines(actual, expected, what):
    """Sorted (id, line) lists equal; on a mismatch the two checksums and the first ids
    that differ."""
    a, e = sorted(actual), sorted(expected)
    if a == e:
        return
    first = next((i for i, (x, y) in enumerate(zip(a, e)) if x != y), min(len(a), len(e)))
    a_ids = [aid for aid, _ in a[first:first + 3]]
    e_ids = [aid for aid, _ in e[first:first + 3]]
    raise AssertionError("%s: %d lines (sha256 %s) against %d expected (sha256 %s); first "
                         "difference at sorted line %d: got ids %r, expected %r"
                         % (what, len(a), digest(a), len(e), digest(e), first, a_ids, e_ids))


# ---------------------------------------------------------------- the reference run

_REFERENCE = {}


def month_run(engine_names, kill_one=False):
    """The bundled month on a fresh nats cluster (P=12, R=3) with the shipped scripts and
    the given engines on the virtual clock at the first event's time. Returns the (id,
    line) pairs of every engine's stdout; with kill_one, the last engine is killed -9
    between the first and the second half of the events (its lines up to its death count)."""
    lines, events = month_events()
    first_time = events[0]["time"]
    start = parse_time(first_time)
    end = max(parse_time(ev["time"]) for ev in events) + 30 * 86400
    half = len(lines) // 2
    with NatsCluster(3) as nats, Workspace() as w:
        cluster_init(nats.url)
        with Engines(w, nats.url, engine_names, SHIPPED_SCRIPTS, clock=first_time) as engines:
            engines.wait_spread()
            if not kill_one:
                import_cluster(w, nats.url, lines, "month.ndjson")
                cluster_wait(nats.url)
            else:
                import_cluster(w, nats.url, lines[:half], "first-half.ndjson")
                cluster_wait(nats.url)
                victim = engines.list[-1]
                victim.kill()  # SIGKILL
                victim.expected_dead = True
                import_cluster(w, nats.url, lines[half:], "second-half.ndjson")
                cluster_wait(nats.url)
                owners = status_owners(cluster_status(nats.url))
                moved = sorted(p for p, o in owners.items() if o == victim.name or o is None)
                eq(moved, [], "partitions still owned by the killed engine %s or by nobody (owners %r)"
                   % (victim.name, owners))
                engines.wait_spread()   # the survivors hold P/2 each
            tick_through(nats.url, start, end)
            engines.stop_all()
            pairs = []
            for e in engines.list:
                pairs += e.actions(complete_only=getattr(e, "expected_dead", False))
            return pairs


def single_engine_reference():
    if "one" not in _REFERENCE:
        pairs = month_run(["e1"])
        assert pairs, "the single engine printed no action for the month"
        assert_ids_once(pairs, "one engine")
        _REFERENCE["one"] = pairs
    return _REFERENCE["one"]


# ---------------------------------------------------------------- tests

def test_partition_hash_is_fnv1a_64_mod_p():
    # The FNV-1a 64 test vectors, then the pins the referral test relies on.
    eq(fnv1a64(b""), 0xcbf29ce484222325, "FNV-1a 64 of the empty string")
    eq(fnv1a64(b"a"), 0xaf63dc4c8601ec8c, "FNV-1a 64 of 'a'")
    eq(fnv1a64(b"foobar"), 0x85944171f73967e8, "FNV-1a 64 of 'foobar'")
    eq(partition_of(REFERRER, P), 0, "partition of %s" % REFERRER)
    eq(partition_of(INVITEE, P), 10, "partition of %s" % INVITEE)


def test_same_actions_on_one_and_three_engines():
    one = single_engine_reference()
    three = month_run(["e1", "e2", "e3"])
    assert_ids_once(three, "three engines")
    assert_same_lines(three, one, "three engines against one")


def test_kill_engine_mid_stream_loses_and_repeats_nothing():
    one = single_engine_reference()
    union = month_run(["e1", "e2", "e3"], kill_one=True)
    assert_ids_once(union, "three engines, one killed -9")
    got, expected = set(a for a, _ in union), set(a for a, _ in one)
    missing, extra = sorted(expected - got), sorted(got - expected)
    assert not missing and not extra, ("action ids after kill -9: %d missing (first %r), %d extra (first %r)"
                                       % (len(missing), missing[:5], len(extra), extra[:5]))


REFERRAL_SCRIPT = """-- the referral of test_cluster: a send to each side, so both show on stdout
local referral = require "referral"
referral.define {
  name = "invite", reward_on = "order.paid",
  reward = { send = "invite_reward" },
  invitee_reward = { send = "invite_welcome" },
}
"""
REFERRAL_T0 = "2026-11-02T10:00:00+08:00"


def referral_events():
    join_r = {"id": "c-1", "type": "member.joined", "member": REFERRER, "time": REFERRAL_T0,
              "data": {"channel": "poster"}}
    join_i = {"id": "c-2", "type": "member.joined", "member": INVITEE, "time": "2026-11-02T11:00:00+08:00",
              "data": {"channel": "invite_card", "referrer": REFERRER}}
    order = {"id": "c-3", "type": "order.paid", "member": INVITEE, "time": "2026-11-02T12:00:00+08:00",
             "data": {"amount": 99, "order_id": "o-1"}}
    return [join_r, join_i, join_i, order, order]


def test_referral_across_partitions_rewarded_once():
    assert partition_of(REFERRER, P) != partition_of(INVITEE, P), "referrer and invitee share a partition"
    with NatsCluster(3) as nats, Workspace(scripts={"invite.lua": REFERRAL_SCRIPT}) as w:
        cluster_init(nats.url)
        with Engines(w, nats.url, ["e1", "e2", "e3"], w.scripts, clock=REFERRAL_T0) as engines:
            engines.wait_spread()
            import_cluster(w, nats.url, referral_events(), "referral.ndjson")
            cluster_wait(nats.url)
            # the same events published again, ids unchanged: nothing new may come of them
            import_cluster(w, nats.url, referral_events(), "referral-again.ndjson")
            cluster_wait(nats.url)
            tick_through(nats.url, parse_time(REFERRAL_T0), parse_time("2026-11-03T12:00:00+08:00"))
            engines.stop_all()
            union = []
            for e in engines.list:
                union += e.actions()
    assert_ids_once(union, "referral actions")
    ids = sorted(a for a, _ in union)
    eq(ids, ["invite/%s/invitee_reward/send" % INVITEE, "invite/%s/reward/%s/send" % (REFERRER, INVITEE)],
       "action ids of the referral")
    reward = json.loads(next(l for a, l in union if a.startswith("invite/%s/" % REFERRER)))
    eq({k: reward.get(k) for k in ("member", "campaign", "step", "action", "status", "template", "vars")},
       {"member": REFERRER, "campaign": "invite", "step": "reward", "action": "send", "status": "queued",
        "template": "invite_reward", "vars": {"invitee": INVITEE}}, "the referrer's reward")


def test_get_member_from_any_node():
    _, events = month_events()
    members = sorted({ev["member"] for ev in events[:200]})
    partitions = {partition_of(m, P) for m in members}
    assert len(partitions) >= 3, "the sample spans only partitions %r" % sorted(partitions)
    with NatsCluster(3) as nats, Workspace() as w:
        cluster_init(nats.url)
        with Engines(w, nats.url, ["e1", "e2", "e3"], SHIPPED_SCRIPTS, clock=events[0]["time"],
                     listen=True) as engines:
            for e in engines.list:
                e.wait_listening()
            owners = engines.wait_spread()
            import_cluster(w, nats.url, [json.dumps(ev) for ev in events[:200]], "sample.ndjson")
            cluster_wait(nats.url)
            for m in members:
                answers = [(e.name,) + e.get("/v1/members/" + m) for e in engines.list]
                for name, status, body in answers:
                    eq(status, 200, "GET /v1/members/%s from %s (partition %d, owner %s): status (body %r)"
                       % (m, name, partition_of(m, P), owners[partition_of(m, P)], body))
                    eq(body.get("id"), m, "GET /v1/members/%s from %s: id" % (m, name))
                first = answers[0][2]
                for name, _, body in answers[1:]:
                    eq(body, first, "GET /v1/members/%s from %s against %s" % (m, name, answers[0][0]))
            for e in engines.list:
                eq(e.get("/v1/members/nobody-here"), (404, {"error": "no such member"}),
                   "GET /v1/members/nobody-here from %s" % e.name)
            engines.stop_all()


def test_real_clock_referral_posted_to_any_engine_rewarded_without_ticks():
    """On a real clock (the default) the owners move their partitions' clocks themselves:
    a referral POSTed to an engine that owns neither member is rewarded across partitions
    with no `cluster tick`, once (the body is posted twice)."""
    with NatsCluster(3) as nats, Workspace(scripts={"invite.lua": REFERRAL_SCRIPT}) as w:
        cluster_init(nats.url)
        with Engines(w, nats.url, ["e1", "e2", "e3"], w.scripts) as engines:
            for e in engines.list:
                e.wait_listening()
            owners = engines.wait_spread()
            other = [e for e in engines.list
                     if e.name not in (owners[partition_of(REFERRER, P)], owners[partition_of(INVITEE, P)])]
            via = other[0] if other else engines.list[0]
            # the same events dated in the last hour (the referrer joined before the invitee)
            now = int(time.time())
            stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
            body = referral_events()
            for ev, ago in zip(body, (3600, 120, 120, 60, 60)):
                ev["time"] = stamp(now - ago)
            for _ in range(2):
                eq(via.post_events(body), (202, {"accepted": len(body)}), "POST /v1/events to %s" % via.name)
            want = ["invite/%s/invitee_reward/send" % INVITEE, "invite/%s/reward/%s/send" % (REFERRER, INVITEE)]
            deadline = time.monotonic() + 60     # a hang guard: polling for what must come
            union = []
            while time.monotonic() < deadline:
                union = [a for e in engines.list for a in e.actions(complete_only=True)]
                if sorted({a for a, _ in union}) == want:
                    break
                time.sleep(0.2)
            eq(sorted({a for a, _ in union}), want, "the referral's actions on a real clock")
            cluster_wait(nats.url)
            engines.stop_all()
            union = [a for e in engines.list for a in e.actions()]
    assert_ids_once(union, "real-clock referral actions")


def test_history_import_into_a_cluster_expires_stale_actions():
    """hearth import --cluster keeps the rule of hearth import: what comes due more than
    --stale-after before the import is recorded `expired`, never sent (it was sent once)."""
    with NatsCluster(3) as nats, Workspace(scripts={"invite.lua": REFERRAL_SCRIPT}) as w:
        cluster_init(nats.url)
        with Engines(w, nats.url, ["e1", "e2"], w.scripts, clock=REFERRAL_T0) as engines:
            engines.wait_spread()
            path = w.write_events([json.dumps(ev) for ev in referral_events()], name="old.ndjson")
            hearth_ok("import", path, "--cluster", nats.url, what="hearth import --cluster (default --stale-after)")
            cluster_wait(nats.url)
            tick_through(nats.url, parse_time(REFERRAL_T0), parse_time("2026-11-03T12:00:00+08:00"))
            statuses = {}
            for e in engines.list:
                for name in sorted(os.listdir(e.data)):
                    if name.endswith(".db"):
                        rc, out, err = hearth("export", "actions", "--db", os.path.join(e.data, name))
                        eq(rc, 0, "hearth export actions of %s/%s (stderr %r)" % (e.name, name, err))
                        for line in out.splitlines():
                            a = json.loads(line)
                            statuses[a["id"]] = a["status"]
            engines.stop_all()
            union = [a for e in engines.list for a in e.actions()]
    eq(union, [], "actions sent from history older than a day")
    eq(statuses, {"invite/%s/invitee_reward/send" % INVITEE: "expired",
                  "invite/%s/reward/%s/send" % (REFERRER, INVITEE): "expired"}, "the referral's actions as recorded")


def test_bad_input_init_twice_and_run_before_init():
    with NatsCluster(3) as nats, Workspace() as w:
        rc, out, err = hearth("run", "--cluster", nats.url, "--engine", "e1",
                              "--data", os.path.join(w.dir, "e1"), "--scripts", SHIPPED_SCRIPTS)
        eq(rc, 1, "hearth run before init: exit status (stderr %r)" % err[-2000:])
        contains(err, "hearth cluster init", "hearth run before init: stderr")
        cluster_init(nats.url, partitions=12)
        cluster_init(nats.url, partitions=12)   # the same layout again changes nothing
        rc, out, err = hearth("cluster", "init", "--cluster", nats.url, "--partitions", 8, "--replicas", 3)
        eq(rc, 1, "hearth cluster init with another P: exit status (stderr %r)" % err[-2000:])
        assert re.search(r"\b12\b", err) and re.search(r"\b8\b", err), \
            "init with another P names neither or only one of 12 and 8: %r" % err
        status = cluster_status(nats.url)
        eq(status.get("layout", {}).get("partitions"), 12, "the layout's partitions after the refused init")
        eq(status_owners(status), {p: None for p in range(12)}, "the cluster keeps its 12 partitions, none owned")


if __name__ == "__main__":
    harness.main()
