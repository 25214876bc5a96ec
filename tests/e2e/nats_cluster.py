"""nats_cluster: NATS JetStream servers on loopback for the scale-out tests and benchmarks
(Python 3 stdlib only; Debian's nats-server 2.9).

- NatsCluster(nodes=3): a JetStream cluster of `nodes` nats-server processes on 127.0.0.1,
  each with its own config file (server_name, client listen, HTTP monitoring port,
  jetstream store_dir, cluster name, route listen and routes to every other node), free
  ports picked at run time, everything in one temp dir. nodes=1 is a single standalone
  JetStream server (no cluster block), for benchmarks.
- start() returns once JetStream is ready on every node: /healthz answers ok and, for a
  cluster, every node's /jsz names the same meta leader (a poll with a generous guard
  timeout; a failure names the node and shows the end of its log).
- url: the client URL "nats://127.0.0.1:a,nats://127.0.0.1:b,nats://127.0.0.1:c".
- kill(i) (SIGKILL), stop(i) (SIGTERM), restart(i) (same ports and store dir, waits for
  it to be ready again), meta_leader(), jsz(i), healthz(i).
- Use as a context manager; every started cluster is also stopped at interpreter exit
  (atexit), so a failing test never leaves servers behind; and each server asks the
  kernel for SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG), for a test runner
  that was itself killed (CTest's timeout) and ran no atexit hook.

Run as a script without arguments, it is its own self-test: it starts a three-node
cluster, prints its URL and the meta leader from /jsz, kills a follower, restarts it, and
stops everything. `nats_cluster.py run --nodes N CMD [ARG...]` starts N nodes, runs CMD
with NATS_URL set to the client URL, stops the servers and exits with CMD's status (the
benchmarks use it).

The ideas are the nats-server documentation's (configuration file, clustering, monitoring
endpoints); the code is ours.
"""

import atexit
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

READY_GUARD = 60   # seconds a cluster may take to elect a meta leader (a hang guard only)
STOP_GUARD = 20    # seconds a server may take to exit after SIGTERM (a hang guard only)
CLUSTER_NAME = "hearth-test"

_LIVE = []         # clusters started and not yet stopped, for the atexit hook


def nats_server_binary():
    """The nats-server path, or an AssertionError saying how to install it."""
    for candidate in (os.environ.get("NATS_SERVER"), shutil.which("nats-server"),
                      "/usr/bin/nats-server", "/usr/sbin/nats-server"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError("nats-server is not installed (the scale-out tests start a JetStream "
                         "cluster on loopback): run `bash setup.sh test`, which installs it")


PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """In the child before exec: SIGKILL when the parent dies (Linux; best effort)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (all held open until every one is picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Node:
    """One nats-server: its ports, config file, store dir, log file and process."""

    def __init__(self, index, root, client_port, http_port, route_port):
        self.index = index
        self.name = "n%d" % (index + 1)
        self.client_port = client_port
        self.http_port = http_port
        self.route_port = route_port
        self.dir = os.path.join(root, self.name)
        self.store_dir = os.path.join(self.dir, "jetstream")
        self.config_path = os.path.join(self.dir, "server.conf")
        self.log_path = os.path.join(self.dir, "server.log")
        self.proc = None
        os.makedirs(self.store_dir)

    @property
    def url(self):
        return "nats://127.0.0.1:%d" % self.client_port

    def write_config(self, peers):
        """peers: the other nodes (empty for a standalone server)."""
        lines = [
            "# %s: written by tests/e2e/nats_cluster.py" % self.name,
            "server_name: %s" % self.name,
            "listen: 127.0.0.1:%d" % self.client_port,
            "http: 127.0.0.1:%d" % self.http_port,
            "jetstream {",
            "  store_dir: %s" % json.dumps(self.store_dir),
            "}",
        ]
        if peers:
            lines += [
                "cluster {",
                "  name: %s" % CLUSTER_NAME,
                "  listen: 127.0.0.1:%d" % self.route_port,
                "  routes: [",
            ] + ["    nats-route://127.0.0.1:%d" % p.route_port for p in peers] + [
                "  ]",
                "}",
            ]
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, binary):
        assert not self.running(), "%s is already running" % self.name
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([binary, "-c", self.config_path], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        finally:
            log.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal_and_wait(self, sig):
        """Send sig and wait for the exit (SIGKILL after the guard); return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=STOP_GUARD)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_tail(self, n=2000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-n:]
        except OSError as exc:
            return "(no log: %s)" % exc

    def monitor(self, path):
        """GET http://127.0.0.1:<http port><path>: (status, parsed JSON or None)."""
        url = "http://127.0.0.1:%d%s" % (self.http_port, path)
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, _json_or_none(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json_or_none(exc.read())


def _json_or_none(raw):
    try:
        return json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return None


class NatsCluster:
    """nodes nats-server processes with JetStream on loopback (see the module doc)."""

    def __init__(self, nodes=3, keep=False):
        assert nodes >= 1, "a cluster needs at least one node"
        self.binary = nats_server_binary()
        self.dir = tempfile.mkdtemp(prefix="hearth-nats-")
        self.keep = keep
        ports = free_ports(3 * nodes)
        self.nodes = [Node(i, self.dir, ports[3 * i], ports[3 * i + 1], ports[3 * i + 2])
                      for i in range(nodes)]
        clustered = nodes > 1
        for node in self.nodes:
            node.write_config([p for p in self.nodes if p is not node] if clustered else [])
        self._stopped = False

    # ---- the client's view
    @property
    def url(self):
        return ",".join(node.url for node in self.nodes)

    @property
    def clustered(self):
        return len(self.nodes) > 1

    # ---- lifecycle
    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop_all()

    def start(self):
        _LIVE.append(self)
        for node in self.nodes:
            node.start(self.binary)
        self.wait_ready()
        return self

    def stop_all(self):
        """Stop every node (SIGTERM, SIGKILL after the guard) and remove the temp dir."""
        if self._stopped:
            return
        self._stopped = True
        for node in self.nodes:
            node.signal_and_wait(signal.SIGTERM)
        if self in _LIVE:
            _LIVE.remove(self)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def kill(self, i):
        """kill -9 node i; returns once it has exited."""
        return self.nodes[i].signal_and_wait(signal.SIGKILL)

    def stop(self, i):
        """Stop node i cleanly (SIGTERM: lame duck, then exit)."""
        return self.nodes[i].signal_and_wait(signal.SIGTERM)

    def restart(self, i):
        """Start node i again on its ports and store dir, and wait until JetStream is ready
        on every running node."""
        self.nodes[i].start(self.binary)
        self.wait_ready()

    # ---- monitoring
    def jsz(self, i):
        status, body = self.nodes[i].monitor("/jsz")
        assert status == 200 and isinstance(body, dict), \
            "%s /jsz answered %r: %r" % (self.nodes[i].name, status, body)
        return body

    def healthz(self, i):
        return self.nodes[i].monitor("/healthz")

    def meta_leader(self, i=None):
        """The meta leader's server name as node i (default: the first running node) sees
        it, or None (also None for a standalone server, which has no meta group)."""
        if i is None:
            i = next(n.index for n in self.nodes if n.running())
        meta = self.jsz(i).get("meta_cluster") or {}
        return meta.get("leader") or None

    def _not_ready(self):
        """Why the running nodes are not ready yet, or None once they are."""
        running = [n for n in self.nodes if n.running()]
        leaders = set()
        for node in running:
            try:
                status, body = node.monitor("/healthz")
            except (OSError, urllib.error.URLError) as exc:
                return "%s: monitoring not answering (%s)" % (node.name, exc)
            if status != 200 or not isinstance(body, dict) or body.get("status") != "ok":
                return "%s: /healthz answered %r %r" % (node.name, status, body)
            if self.clustered:
                leader = self.meta_leader(node.index)
                if not leader:
                    return "%s: /jsz names no meta leader" % node.name
                leaders.add(leader)
        if len(leaders) > 1:
            return "the nodes disagree on the meta leader: %s" % sorted(leaders)
        return None

    def wait_ready(self, guard=READY_GUARD):
        deadline = time.monotonic() + guard
        why = "not polled yet"
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.proc is not None and node.proc.poll() is not None and node.proc.returncode not in (
                        -signal.SIGKILL, -signal.SIGTERM, 0):
                    raise AssertionError("nats-server %s exited with %d; its log:\n%s"
                                         % (node.name, node.proc.returncode, node.log_tail()))
            why = self._not_ready()
            if why is None:
                return
            time.sleep(0.1)
        logs = "\n".join("--- %s\n%s" % (n.name, n.log_tail()) for n in self.nodes)
        raise AssertionError("JetStream not ready within %d s (%s); server logs:\n%s"
                             % (guard, why, logs))


def stop_every_cluster():
    """The atexit hook: stop whatever a test left running (also after a failure)."""
    for cluster in list(_LIVE):
        cluster.stop_all()


atexit.register(stop_every_cluster)


def _self_test():
    with NatsCluster(3) as c:
        print("url: %s" % c.url)
        leader = c.meta_leader()
        print("meta leader (/jsz): %s" % leader)
        follower = next(n.index for n in c.nodes if n.name != leader)
        c.kill(follower)
        print("killed %s (kill -9)" % c.nodes[follower].name)
        c.restart(follower)
        print("restarted %s; meta leader now %s (as %s sees it)"
              % (c.nodes[follower].name, c.meta_leader(follower), c.nodes[follower].name))
    with NatsCluster(1) as one:
        print("one node: %s, /healthz %r" % (one.url, one.healthz(0)[1]))
    print("stopped")


def _run_command(argv):
    """run --nodes N CMD [ARG...]: CMD with NATS_URL set; its exit status."""
    nodes = 3
    if len(argv) >= 2 and argv[0] == "--nodes":
        nodes, argv = int(argv[1]), argv[2:]
    if not argv:
        print("usage: nats_cluster.py run [--nodes N] CMD [ARG...]", file=sys.stderr)
        return 2
    with NatsCluster(nodes) as c:
        env = dict(os.environ, NATS_URL=c.url)
        return subprocess.call(argv, env=env)


if __name__ == "__main__":
    try:
        if len(sys.argv) > 1 and sys.argv[1] == "run":
            sys.exit(_run_command(sys.argv[2:]))
        _self_test()
    except AssertionError as exc:
        print("FAIL: %s" % exc)
        sys.exit(1)
