"""test_dedupe_generations: event ids are remembered in generations (store.c "dedupe
marks"), and a duplicate is still judged by its own id's time, across generations.

On the daemon's virtual clock with a 2-day window: an id accepted late in the first
generation is still a duplicate after the second generation has begun; an id from the
start of the first generation, older than the window, is new again; once the whole first
generation is older than the window the hourly retention drops it, the ids it held are
gone from the database and new again. Time moves with POST /v1/clock, never by sleeping;
every wait is a bounded poll for something that must happen."""
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq  # noqa: E402
from test_daemon import Daemon, VSTART  # noqa: E402

PING = r'''
hearth.on("ping", function(m, ev)
  m:add_points(1, "ping " .. ev.id)
end)
'''


def ping(eid):
    return {"id": eid, "type": "ping", "member": "m-" + eid}


def marks(w):
    """{id: number of marks} and the number of generations, read from the database."""
    con = sqlite3.connect(w.db)
    try:
        ids = dict(con.execute("SELECT id, count(*) FROM seen_events GROUP BY id").fetchall())
        gens = con.execute("SELECT count(*) FROM seen_gens").fetchone()[0]
    finally:
        con.close()
    return ids, gens


def test_a_duplicate_is_judged_by_its_own_time_across_generations():
    with Workspace({"p.lua": PING}) as w:
        with Daemon(w, "--virtual-clock", VSTART, "--dedupe-window", "2d") as d:
            d.wait_listening()
            d.post_ok([ping("a")], accepted=1)                 # generation 0, at the start
            d.move(advance="36h")
            d.post_ok([ping("b")], accepted=1)                 # generation 0, 36 h later
            d.move(advance="24h")                             # generation 0 began 60 h ago
            d.post_ok([ping("c")], accepted=1)                 # opens generation 1
            eq(marks(w), ({"a": 1, "b": 1, "c": 1}, 2), "marks and generations after c")
            d.post_ok([ping("b")], accepted=0, duplicates=1)   # 24 h old, in generation 0
            d.post_ok([ping("a")], accepted=1)                 # 60 h old: new again
            eq(d.member("m-a")["points"], 2, "a ran twice, once per window")
            eq(d.member("m-b")["points"], 1, "b ran once")
            # generation 0's newest mark (b) passes the window 2 days after it
            d.move(advance="25h")
            deadline = time.time() + 20
            while marks(w)[1] != 1:  # the retention runs a chunk per loop turn
                assert time.time() < deadline, "generation 0 was not dropped: %s" % d.stderr()[-2000:]
                time.sleep(0.05)
            ids, gens = marks(w)
            eq((sorted(ids), gens), (["a", "c"], 1), "generation 0 dropped whole by the retention")
            d.post_ok([ping("b")], accepted=1)                 # forgotten: new again
            d.post_ok([ping("c")], accepted=0, duplicates=1)   # 25 h old, in generation 1
            eq(d.member("m-b")["points"], 2, "b ran again after its window")
            d.stop_clean()


if __name__ == "__main__":
    harness.main(globals())
