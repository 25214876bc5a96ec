#!/usr/bin/env python3
"""post_client.py: the client of the POST benchmark (tests/bench/run_post.sh).

Standard library only. Reads an NDJSON event file, cuts it into bodies of --body events
(in file order), and posts them to a running `hearth run` from --clients threads, each
with its own keep-alive connection, body i going to client i mod N (so each client's
bodies keep file order; bodies of different clients interleave). Each request is timed
from the first byte sent to the end of the answer; a 503 (busy, or a delivery backlog) is
retried after its Retry-After and counted, and its time counts in the next attempt's
latency (what a client waits for its 202). Prints one JSON object: events, bodies, wall
seconds from the first request to the last 202, events/s, p50/p99/max time to 202 in ms,
retries, and the summed accepted/duplicates. Exit 1 when a body got anything but 202
in the end.

  post_client.py --port PORT --events FILE [--clients 4] [--body 1000] [--token T]
"""
import argparse
import http.client
import json
import sys
import threading
import time


def bodies_of(path, per_body):
    """The file's lines as bodies of per_body events (bytes), in file order."""
    out, chunk = [], []
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                chunk.append(line)
            if len(chunk) == per_body:
                out.append((len(chunk), b"".join(chunk)))
                chunk = []
    if chunk:
        out.append((len(chunk), b"".join(chunk)))
    return out


class Client(threading.Thread):
    def __init__(self, port, token, bodies):
        super().__init__(daemon=True)
        self.port, self.bodies = port, bodies
        self.headers = {"Content-Type": "application/x-ndjson"}
        if token:
            self.headers["Authorization"] = "Bearer " + token
        self.latencies, self.retries, self.failed = [], 0, []
        self.accepted = self.duplicates = 0
        self.done_at = None

    def post(self, conn, body):
        conn.request("POST", "/v1/events", body=body, headers=self.headers)
        r = conn.getresponse()
        return r.status, r.getheader("Retry-After"), r.read()

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        for _, body in self.bodies:
            t0 = time.monotonic()
            while True:
                try:
                    status, retry_after, raw = self.post(conn, body)
                except (http.client.HTTPException, OSError):
                    conn.close()  # the server closed a kept-alive connection: a new one
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
                    status, retry_after, raw = self.post(conn, body)
                if status != 503:
                    break
                self.retries += 1
                time.sleep(float(retry_after or 1))
            self.latencies.append(time.monotonic() - t0)
            if status != 202:
                self.failed.append((status, raw[:300]))
                continue
            reply = json.loads(raw)
            self.accepted += reply["accepted"]
            self.duplicates += reply["duplicates"]
        conn.close()
        self.done_at = time.monotonic()


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def main():
    ap = argparse.ArgumentParser(description="POST an NDJSON file to hearth run in bodies, from N clients")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--body", type=int, default=1000, help="events per body (1000)")
    ap.add_argument("--token", default=None)
    a = ap.parse_args()
    bodies = bodies_of(a.events, a.body)
    clients = [Client(a.port, a.token, bodies[i::a.clients]) for i in range(a.clients)]
    t0 = time.monotonic()
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    wall = max(c.done_at for c in clients) - t0
    lat = sorted(x for c in clients for x in c.latencies)
    events = sum(n for n, _ in bodies)
    failed = [f for c in clients for f in c.failed]
    print(json.dumps({
        "events": events, "bodies": len(bodies), "clients": a.clients, "wall_s": round(wall, 3),
        "events_per_s": round(events / wall) if wall else 0,
        "p50_ms": round(percentile(lat, 50) * 1000, 1), "p99_ms": round(percentile(lat, 99) * 1000, 1),
        "max_ms": round(lat[-1] * 1000, 1) if lat else 0, "retries_503": sum(c.retries for c in clients),
        "accepted": sum(c.accepted for c in clients), "duplicates": sum(c.duplicates for c in clients),
        "failed": [[s, r.decode("utf-8", "replace")] for s, r in failed[:5]], "failed_bodies": len(failed)}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
