"""test_dataio: data out (`hearth export members|actions|ledger`) and in (`hearth load`).

Export: the bundled month is imported once; each table is exported in NDJSON and CSV and
the rows are checked against `hearth member` (members, ledger, actions) and against the
dry-run's lines (actions); --since against the full export; CSV quoting of commas, quotes
and newlines with Python's csv module; an export beside a running daemon.
Load: a file of member records, then `hearth member` shows the state and no action, timer,
failure or funnel count exists; loading twice changes nothing; a bad line is refused with
its number and field and nothing changes; a generated file of 50,000 members loads and
exports with progress lines.

Every run is bounded by the harness's hang guard; no test sleeps."""

import csv
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq, contains  # noqa: E402

MONTH = os.path.join(harness.ROOT, "examples", "events", "month.ndjson")
SCRIPTS = os.path.join(harness.ROOT, "scripts")
CHANGE_KINDS = ("points", "tag", "untag")

_month = {}


def month_db():
    """A workspace whose database holds the bundled month imported with the bundled
    scripts (made once for the tests that only read it)."""
    if "w" not in _month:
        w = Workspace()
        rc, out, err = w.run("import", MONTH, "--scripts", SCRIPTS, "--db", w.db, "--quiet")
        eq(rc, 0, "import of the bundled month (stderr %s)" % err[-2000:])
        _month["w"] = w
    return _month["w"]


def export(w, table, *extra, db=None):
    rc, out, err = w.run("export", table, "--db", db or w.db, "--quiet", *extra)
    eq(rc, 0, "export %s %s: exit status (stderr %s)" % (table, " ".join(extra), err[-2000:]))
    return out


def export_rows(w, table, *extra, db=None):
    return [json.loads(l) for l in export(w, table, *extra, db=db).splitlines()]


def export_csv(w, table, *extra, db=None):
    text = export(w, table, "--format", "csv", *extra, db=db)
    assert text.endswith("\r\n"), "CSV records end with CRLF: %r" % text[-20:]
    return list(csv.DictReader(io.StringIO(text, newline="")))


def member_doc(w, member, db=None):
    rc, out, err = w.run("member", member, "--db", db or w.db, "--limit", "1000000")
    eq(rc, 0, "hearth member %s (stderr %s)" % (member, err))
    return json.loads(out)


def without_lists(doc):
    return {k: v for k, v in doc.items() if k not in ("lots", "ledger", "actions", "failed", "owners", "tasks")}


def sample(ids, n=8):
    ids = sorted(ids)
    step = max(1, len(ids) // n)
    return ids[::step][:n]


def stats(w, db=None):
    rc, out, err = w.run("stats", "--db", db or w.db, "--json")
    eq(rc, 0, "hearth stats (stderr %s)" % err)
    return json.loads(out)


# ---------------------------------------------------------------- export

def test_export_members_are_hearth_member_without_its_lists():
    w = month_db()
    rows = export_rows(w, "members")
    eq(len(rows), stats(w)["totals"]["members"], "one line per member")
    eq([r["id"] for r in rows], sorted(r["id"] for r in rows), "members in id order")
    by_id = {r["id"]: r for r in rows}
    for m in sample(by_id):
        eq(by_id[m], without_lists(member_doc(w, m)), "export of %s against hearth member" % m)


def test_export_members_csv_has_the_same_values_as_ndjson():
    w = month_db()
    rows = export_rows(w, "members")
    recs = export_csv(w, "members")
    eq(len(recs), len(rows), "CSV records")
    eq(list(recs[0].keys()), ["id", "created_at", "joined_at", "last_active_at", "orders", "spend", "points",
                              "attrs", "tags"], "CSV header")
    for j, c in zip(rows, recs):
        eq(c["id"], j["id"], "id")
        eq(c["joined_at"], j["joined_at"] or "", "joined_at of %s (null is empty)" % j["id"])
        eq(int(c["points"]), j["points"], "points of %s" % j["id"])
        eq(float(c["spend"]), j["spend"], "spend of %s" % j["id"])
        eq(json.loads(c["attrs"]), j["attrs"], "attrs of %s as JSON text" % j["id"])
        eq(json.loads(c["tags"]), j["tags"], "tags of %s as JSON text" % j["id"])


def test_export_ledger_matches_hearth_member_and_sums_to_the_balance():
    w = month_db()
    rows = export_rows(w, "ledger")
    assert rows, "the month grants points"
    points = {r["id"]: r["points"] for r in export_rows(w, "members")}
    sums = {}
    for r in rows:
        eq(sorted(r.keys()), sorted(["member", "n", "time", "delta", "balance", "reason", "campaign", "cause", "type", "lots"]),
           "ledger row keys")
        sums[r["member"]] = sums.get(r["member"], 0) + r["delta"]
    for m, total in sums.items():
        eq(total, points[m], "ledger of %s sums to her balance" % m)
    for m in sample(sums):
        doc = member_doc(w, m)
        mine = [r for r in rows if r["member"] == m]
        eq([r["n"] for r in mine], list(range(1, len(mine) + 1)), "entries of %s numbered from 1" % m)
        want = [{k: e[k] for k in ("time", "delta", "balance", "reason")} for e in reversed(doc["ledger"])]
        got = [{k: r[k] for k in ("time", "delta", "balance", "reason")} for r in mine]
        eq(got, want, "ledger of %s against hearth member" % m)
    recs = export_csv(w, "ledger")
    eq(len(recs), len(rows), "CSV ledger records")
    eq([(c["member"], int(c["n"]), int(c["delta"]), c["cause"]) for c in recs],
       [(r["member"], r["n"], r["delta"], r["cause"] or "") for r in rows], "CSV ledger against NDJSON")


def test_export_actions_match_hearth_member_and_the_dry_run():
    w = month_db()
    rows = export_rows(w, "actions")
    assert rows, "the month records actions"
    by_member = {}
    for r in rows:
        by_member.setdefault(r["member"], []).append(r)
    for m in sample(by_member):
        eq(by_member[m], list(reversed(member_doc(w, m)["actions"])), "actions of %s against hearth member" % m)

    rc, out, err = w.run("dry-run", "--events", MONTH, "--scripts", SCRIPTS, "--until", "30d")
    eq(rc, 0, "dry-run of the month (stderr %s)" % err[-2000:])
    dry = {}
    for line in out.splitlines():
        a = json.loads(line)
        dry[a["id"]] = a  # a deferred send is printed again when judged again: the last counts
    horizon = max(a["time"] for a in dry.values())
    last_event = max(json.loads(l)["time"] for l in open(MONTH) if l.strip())

    def same(a):
        return {k: v for k, v in a.items() if k not in ("status", "reason", "delivery")}

    exported = {r["id"] for r in rows}
    for r in rows:
        if r["time"] > horizon:
            continue  # the import ran to the present, past the dry-run's 30 days
        assert r["id"] in dry, "exported action %s is not among the dry-run's" % r["id"]
        eq(same(r), same(dry[r["id"]]), "action %s against the dry-run's line" % r["id"])
    for a in dry.values():
        if a["action"] not in CHANGE_KINDS and a["time"] <= last_event:
            assert a["id"] in exported, "dry-run action %s (before the last event) not exported" % a["id"]

    recs = export_csv(w, "actions")
    eq(list(recs[0].keys()), ["id", "time", "member", "campaign", "step", "action", "status", "delivery",
                              "channel", "reason", "fields"], "CSV actions header")
    eq(len(recs), len(rows), "CSV action records")
    for c, r in zip(recs, rows):
        eq((c["id"], c["time"], c["status"], c["channel"]), (r["id"], r["time"], r["status"], r.get("channel", "")),
           "CSV action %s" % r["id"])
        fields = json.loads(c["fields"])
        for k, v in fields.items():
            eq(r[k], v, "CSV fields.%s of %s" % (k, r["id"]))


def test_export_since_keeps_the_rows_at_or_after_the_time():
    w = month_db()
    since = "2026-11-20T00:00:00+08:00"
    for table in ("actions", "ledger"):
        full = export_rows(w, table)
        part = export_rows(w, table, "--since", since)
        want = [r for r in full if r["time"] >= since]
        assert 0 < len(want) < len(full), "the cut falls inside the month's %s" % table
        eq(part, want, "%s --since %s" % (table, since))
    members = export_rows(w, "members")
    ledger = export_rows(w, "ledger")
    last_entry = {}
    for r in ledger:
        last_entry[r["member"]] = max(last_entry.get(r["member"], ""), r["time"])

    def changed(m):  # all times are in the one zone (--tz), so strings compare as times
        return max(m["created_at"], m["joined_at"] or "", m["last_active_at"] or "", last_entry.get(m["id"], ""))

    cut = sorted(changed(m) for m in members)[len(members) // 2]  # half of them changed since
    want = [m for m in members if changed(m) >= cut]
    assert 0 < len(want) < len(members), "the cut %s falls inside the month's members" % cut
    eq(export_rows(w, "members", "--since", cut), want, "members --since %s" % cut)
    eq(export_rows(w, "ledger", "--since", "2026-11-20"), [r for r in ledger if r["time"] >= since],
       "--since as a date is midnight in --tz")


QUOTING = r'''
hearth.on("member.joined", function(m, ev)
  m:add_points(5, 'a, "quoted"' .. "\nreason")
end)
'''


def test_export_csv_quotes_commas_quotes_and_newlines():
    with Workspace({"quoting.lua": QUOTING}) as w:
        ev = {"id": "e-1", "type": "member.joined", "member": "m,1", "time": "2026-11-01T10:00:00+08:00"}
        r = w.import_events([ev])
        eq(r.rc, 0, "import (%r)" % r)
        text = export(w, "ledger", "--format", "csv")
        contains(text, '"m,1",1,', "a member id with a comma is quoted")
        contains(text, '"a, ""quoted""\nreason"', "a reason with a comma, quotes and a newline")
        recs = export_csv(w, "ledger")
        eq(len(recs), 1, "one record despite the newline inside")
        eq(recs[0]["reason"], 'a, "quoted"\nreason', "the reason read back by a CSV reader")
        eq(recs[0]["member"], "m,1", "the member read back")
        eq(recs[0]["campaign"], "quoting", "campaign")


def test_export_usage_errors():
    w = month_db()
    for args, needle in ((["export", "orders"], "no table 'orders'"),
                         (["export", "members", "--format", "xml"], "--format must be ndjson or csv"),
                         (["export", "members", "--since", "last week"], "--since")):
        rc, out, err = w.run(*args, "--db", w.db)
        eq(rc, 2, "%s: usage error" % args)
        contains(err, needle, "%s: message" % args)
    rc, out, err = w.run("export", "members", "--db", os.path.join(w.dir, "none.db"))
    eq(rc, 1, "no database")
    contains(err, "no database at", "no database message")


# ---------------------------------------------------------------- load

RECORDS = [
    {"member": "m-1", "attrs": {"city": "Hangzhou", "level": 3}, "tags": ["vip", "imported"], "points": 1200,
     "staff": "s-9", "tz": "Asia/Tokyo", "joined_at": "2025-01-05T10:00:00+08:00"},
    {"member": "m-2", "points": 50},
    {"member": "m-3", "attrs": {"note": "a, \"b\""}, "tags": ["x"]},
]


def write_records(w, records, name="members.ndjson"):
    return w.write_events(records, name)


def load(w, path, *extra):
    rc, out, err = w.run("load", path, "--db", w.db, "--scripts", w.scripts, "--json", *extra)
    summary = json.loads(out) if out.strip() else None
    return rc, summary, err


CATCH_ALL = r'''
hearth.on("*", function(m, ev)
  m:tag("saw_" .. ev.type)
  m:send("hello", { step = "any" })
  m:after("1d", "later")
end)
'''


def test_load_sets_the_state_without_actions_or_timers():
    with Workspace({"onboarding.lua": open(os.path.join(SCRIPTS, "onboarding.lua")).read(),
                    "catch_all.lua": CATCH_ALL}) as w:
        path = write_records(w, RECORDS)
        rc, s, err = load(w, path)
        eq(rc, 0, "load (stderr %s)" % err)
        eq((s["members"], s["created"], s["ledger_entries"], s["rejected"]), (3, 3, 2, 0), "summary %r" % s)
        m = member_doc(w, "m-1")
        eq(m["points"], 1200, "points")
        eq(m["joined_at"], "2025-01-05T10:00:00+08:00", "joined_at")
        eq(m["attrs"], {"city": "Hangzhou", "level": 3, "staff": "s-9", "tz": "Asia/Tokyo"}, "attributes")
        eq(m["tags"], ["imported", "vip"], "tags")
        eq([(e["delta"], e["balance"], e["reason"], e["cause"]) for e in m["ledger"]],
           [(1200, 1200, "load", "load:members.ndjson:1")], "one ledger entry of the balance")
        eq(m["actions"], [], "no action")
        eq(member_doc(w, "m-3")["attrs"], {"note": "a, \"b\""}, "m-3's attributes")
        t = stats(w)["totals"]
        eq((t["members"], t["actions"], t["timers_pending"], t["failed_events"]), (3, 0, 0, 0),
           "three members, no action, timer or failure: %r" % t)
        eq(stats(w)["campaigns"] and [c["metrics"] for c in stats(w)["campaigns"] if c["metrics"]], [],
           "no funnel count")
        rc, out, err = w.run("export", "members", "--db", w.db, "--quiet")
        eq(rc, 0, "export of loaded members")
        eq([json.loads(l)["id"] for l in out.splitlines()], ["m-1", "m-2", "m-3"], "the loaded members exported")


def test_load_twice_changes_nothing_and_a_new_balance_is_one_entry():
    with Workspace() as w:
        path = write_records(w, RECORDS)
        eq(load(w, path)[0], 0, "first load")
        before = (export(w, "members"), export(w, "ledger"))
        rc, s, err = load(w, path)
        eq(rc, 0, "second load (stderr %s)" % err)
        eq((s["members"], s["created"], s["changed"], s["ledger_entries"]), (3, 0, 0, 0), "second summary %r" % s)
        eq((export(w, "members"), export(w, "ledger")), before, "members and ledger after loading twice")
        lower = write_records(w, [{"member": "m-1", "points": 200, "tags": ["vip"]}], "lower.ndjson")
        rc, s, err = load(w, lower)
        eq(rc, 0, "load of a lower balance (stderr %s)" % err)
        m = member_doc(w, "m-1")
        eq(m["points"], 200, "balance set, not added")
        eq([(e["delta"], e["balance"]) for e in m["ledger"]], [(-1000, 200), (1200, 1200)], "ledger entries")
        eq(m["tags"], ["imported", "vip"], "load adds tags and removes none")


def test_load_refuses_a_file_with_a_bad_line_and_changes_nothing():
    with Workspace() as w:
        eq(load(w, write_records(w, RECORDS))[0], 0, "first load")
        before = (export(w, "members"), export(w, "ledger"))
        lines = [{"member": "m-1", "points": 5}, {"member": "m-4", "points": 7}, "",
                 {"member": "m-5", "points": "lots"}, {"member": "m-6", "colour": "red"}]
        rc, s, err = load(w, write_records(w, lines, "bad.ndjson"))
        eq(rc, 1, "exit status with bad lines")
        rej = harness.parse_rejections(err)
        eq([(line, msg.split(":")[0]) for _, line, msg in rej], [(4, "points"), (5, "colour")],
           "each bad line by number and field (the blank line counts): %s" % err)
        eq((s["rejected"], s["members"]), (2, 0), "summary %r" % s)
        eq((export(w, "members"), export(w, "ledger")), before, "nothing changed")
        rc, out, err = w.run("member", "m-4", "--db", w.db)
        eq(rc, 1, "the good line before the bad one was not loaded either")


GRANT = r'''
hearth.on("order.paid", function(m, ev)
  m:add_points(10, "order")
end)
'''


def test_load_and_export_run_beside_the_daemon():
    import test_daemon  # noqa: E402 (its Daemon helper)
    with Workspace({"grant.lua": GRANT}) as w:
        d = test_daemon.Daemon(w)
        try:
            d.wait_listening()
            eq(load(w, write_records(w, RECORDS))[0], 0, "load beside the daemon")
            eq(d.member("m-2")["points"], 50, "the daemon serves the loaded balance")
            d.post_ok({"id": "o-1", "type": "order.paid", "member": "m-2", "data": {"amount": 10}}, 1)
            m = d.wait_member("m-2", lambda m: m["points"] == 60, "the order's points on the loaded balance")
            eq([(e["delta"], e["balance"], e["reason"]) for e in m["ledger"]],
               [(10, 60, "order"), (50, 50, "load")], "ledger after the order")
            path = os.path.join(w.dir, "members.out")
            rc, out, err = w.run("export", "members", "--db", w.db, "--out", path)
            eq(rc, 0, "export beside the daemon (stderr %s)" % err)
            eq(out, "", "nothing on stdout with --out")
            contains(err, "exported 3 rows of members to %s" % path, "summary line")
            with open(path) as f:
                eq([json.loads(l) for l in f], export_rows(w, "members"), "--out file against stdout")
            assert not os.path.exists(path + ".tmp"), "the temporary file is renamed"
        finally:
            d.kill()


def test_load_past_the_size_cap_rolls_back_its_batch_and_keeps_the_ones_before():
    with Workspace() as w:
        lines = [{"member": "m-1", "points": 1}, {"member": "m-2", "points": 2},
                 {"member": "m-3", "attrs": {"big": "x" * 2000}}, {"member": "m-4", "points": 4}]
        rc, s, err = load(w, write_records(w, lines), "--batch", "2", "--max-member-bytes", "1024")
        eq(rc, 1, "exit status (stderr %s)" % err)
        eq([(line, msg.split(":")[0]) for _, line, msg in harness.parse_rejections(err)], [(3, "attrs.big")],
           "the line and field past the cap: %s" % err)
        contains(err, "lines 3-3 not loaded", "the batch rolled back is named")
        eq((s["members"], s["ledger_entries"]), (2, 2), "the first batch counts: %r" % s)
        eq([r["id"] for r in export_rows(w, "members")], ["m-1", "m-2"], "the batch before stays loaded")


def test_load_of_50000_members_exports_with_progress():
    with Workspace() as w:
        path = os.path.join(w.dir, "big.ndjson")
        n = 50000
        with open(path, "w") as f:
            for i in range(n):
                f.write(json.dumps({"member": "b-%05d" % i, "attrs": {"n": i}, "tags": ["t%d" % (i % 5)],
                                    "points": i % 300}) + "\n")
        rc, out, err = w.run("load", path, "--db", w.db, "--scripts", w.scripts, "--progress", "10000",
                             "--batch", "5000")
        eq(rc, 0, "load (stderr %s)" % err[-2000:])
        contains(out, "%d members loaded (%d new" % (n, n), "summary")
        loaded = [l for l in err.splitlines() if l.startswith("hearth: loaded ")]
        eq([l.split()[2] for l in loaded], ["10000", "20000", "30000", "40000", "50000"], "load progress lines")
        rc, out, err = w.run("export", "members", "--db", w.db, "--progress", "10000")
        eq(rc, 0, "export (stderr %s)" % err[-2000:])
        rows = out.splitlines()
        eq(len(rows), n, "exported members")
        eq(json.loads(rows[123]), {**json.loads(rows[123]), "id": "b-00123", "points": 123 % 300,
                                   "attrs": {"n": 123}, "tags": ["t3"]}, "one exported member")
        progress = [l for l in err.splitlines() if l.startswith("hearth: exported ") and "rows (" in l]
        eq(len(progress), 5, "export progress lines: %s" % err)
        ledger = export_csv(w, "ledger")
        eq(len(ledger), sum(1 for i in range(n) if i % 300), "one ledger entry per non-zero balance")
        rc, out, err = w.run("export", "members", "--db", w.db, "--progress", "10000", "--quiet")
        eq(err, "", "--quiet: nothing on stderr")


if __name__ == "__main__":
    harness.main()
