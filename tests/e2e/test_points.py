"""test_points: points lots, expiry and redemption end to end through `hearth import` and
the store — the bundled month imported with the shipped scripts keeps the ledger, the
lots and every balance in agreement; expiry fires on event time in a history import;
a redemption's stock is shared and a refund applies once across imports."""

import json
import os
import sqlite3
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq  # noqa: E402

CURRENT = ("--stale-after", "36500d")

EXPIRING = r'''
hearth.points_rule { expire = "7d" }
hearth.item { name = "cup", cost = 40, stock = 1 }
hearth.on("grant", function(m, ev) m:add_points(ev.data.n, "grant", { expire = ev.data.expire }) end)
hearth.on("probe", function(m, ev) m:set("seen", m.points) end)
hearth.on("mall.redeem", function(m, ev)
  local status = m:redeem("cup", { key = ev.data.order })
  m:set("redeemed", status)
end)
'''


def t(month, day, hour=10):
    return "2026-%02d-%02dT%02d:00:00+08:00" % (month, day, hour)


def audit(db):
    """Members whose points do not add up, from the ledger and the lots as stored: the
    ledger's deltas sum to the balance; each lot (a grant that expires, keyed by its ledger
    entry) holds its amount less what the entries that took from it say they took; and
    what never expires (lot 0: no row) is the grants and refunds without a lot, less what
    was taken from lot 0, which is the balance less the lots."""
    con = sqlite3.connect(db)
    try:
        members = con.execute("SELECT id, points FROM members").fetchall()
        ledger = {}
        for member, n, delta, lots in con.execute("SELECT member, n, delta, lots FROM ledger ORDER BY member, n"):
            ledger.setdefault(member, []).append((n, delta, json.loads(lots) if lots else []))
        rows = {}
        for member, n, amount, remaining in con.execute("SELECT member, n, amount, remaining FROM point_lots"):
            rows.setdefault(member, {})[n] = (amount, remaining)
    finally:
        con.close()
    out, bad = [], []
    for member, points in members:
        entries, lots = ledger.get(member, []), rows.get(member, {})
        taken = {}
        never = 0
        for n, delta, took in entries:
            if delta > 0 and n not in lots:
                never += delta
            for lot_n, t in took:
                taken[lot_n] = taken.get(lot_n, 0) + t
        never -= taken.get(0, 0)
        in_lots = sum(r for _, r in lots.values())
        ledger_sum = sum(d for _, d, _ in entries)
        lots_ok = all(remaining == amount - taken.get(n, 0) for n, (amount, remaining) in lots.items())
        row = (member, points, ledger_sum, in_lots + never)
        out.append(row)
        if not (points == ledger_sum == in_lots + never and lots_ok and never >= 0):
            bad.append(row + (lots_ok,))
    return out, bad


def test_month_import_keeps_ledger_lots_and_balances_in_agreement():
    with Workspace() as w:
        month = os.path.join(harness.ROOT, "examples", "events", "month.ndjson")
        scripts = os.path.join(harness.ROOT, "scripts")
        rc, out, err = w.run("import", month, "--db", w.db, "--scripts", scripts, "--json", *CURRENT)
        eq(rc, 0, "import exit status (stderr tail: %s)" % err[-500:])
        rows, bad = audit(w.db)
        assert len(rows) > 100, "members imported: %d" % len(rows)
        eq(bad, [], "members whose ledger, lots and balance disagree")
        con = sqlite3.connect(w.db)
        try:
            expiring, never_rows = con.execute(
                "SELECT SUM(expires < 9223372036854775807), SUM(expires = 9223372036854775807)"
                " FROM point_lots").fetchone()
            assert expiring > 0, "check-in grants expire: their lots are rows"
            eq(never_rows, 0, "a grant that never expires makes no lot row")
            never_part = con.execute("SELECT COUNT(*) FROM members m WHERE m.points >"
                                     " (SELECT COALESCE(SUM(remaining), 0) FROM point_lots p WHERE p.member = m.id)"
                                     ).fetchone()[0]
            assert never_part > 0, "members hold points that never expire (order points, invite rewards)"
            eq(con.execute("SELECT used FROM item_stock WHERE item = 'coupon_20'").fetchone(), (2,), "stock used")
            eq(con.execute("SELECT COUNT(*) FROM redemptions WHERE status = 'queued'").fetchone(), (2,),
               "redemptions")
            eq(con.execute("SELECT COUNT(*) FROM ledger WHERE type = 'redeem'").fetchone(), (2,), "redeem entries")
        finally:
            con.close()


def test_history_import_expires_points_on_event_time():
    with Workspace({"points.lua": EXPIRING}) as w:
        r = w.import_events([
            {"id": "e-1", "type": "grant", "member": "m-1", "time": t(10, 1), "data": {"n": 100}},
            {"id": "e-2", "type": "probe", "member": "m-1", "time": t(10, 8, 9)},
            {"id": "e-3", "type": "probe", "member": "m-2", "time": t(10, 8, 11)},
            {"id": "e-4", "type": "grant", "member": "m-1", "time": t(10, 8, 12), "data": {"n": 30}},
        ], *CURRENT)
        eq(r.rc, 0, "import exit status (stderr: %s)" % r.err)
        m = w.member("m-1")
        eq(m["attrs"]["seen"], 100, "an hour before the expiry")
        expiry = [e for e in m["ledger"] if e["type"] == "expire"]
        # newest first: the clock ran to now after the last event, so the second grant
        # (7 days too) expired as well
        eq([(e["time"], e["delta"], e["lots"]) for e in expiry],
           [("2026-10-15T12:00:00+08:00", -30, [[3, 30]]), ("2026-10-08T10:00:00+08:00", -100, [[1, 100]])],
           "expired on event time, naming the lot")
        eq(m["points"], 0, "balance after the import ran to now")
        eq(m["lots"], [], "no lot left")
        eq(audit(w.db)[1], [], "ledger, lots and balance agree")


def test_redemption_stock_is_shared_and_a_refund_applies_once_across_imports():
    with Workspace({"points.lua": EXPIRING}) as w:
        now = [{"id": "g-%d" % i, "type": "grant", "member": "m-%d" % i, "time": t(11, 20), "data": {"n": 50, "expire": "never"}}
               for i in (1, 2)]
        eq(w.import_events(now, *CURRENT).rc, 0, "grants")
        r = w.import_events([
            {"id": "r-1", "type": "mall.redeem", "member": "m-1", "time": t(11, 21), "data": {"order": "o-1"}},
            {"id": "r-2", "type": "mall.redeem", "member": "m-2", "time": t(11, 21, 11), "data": {"order": "o-2"}},
        ], *CURRENT)
        eq(r.rc, 0, "redeem import (stderr: %s)" % r.err)
        eq((w.member("m-1")["attrs"]["redeemed"], w.member("m-2")["attrs"]["redeemed"]), ("queued", "limited"),
           "one cup in stock, in the store, for both members")
        refund = {"type": "redemption.refunded", "member": "m-1", "time": t(11, 22),
                  "data": {"redemption": "points/m-1/o-1"}}
        for n in (1, 2):
            eq(w.import_events([dict(refund, id="x-%d" % n)], *CURRENT).rc, 0, "refund import %d" % n)
        m = w.member("m-1")
        eq([e["type"] for e in m["ledger"] if e["type"] in ("redeem", "refund")], ["refund", "redeem"],
           "one refund (newest first)")
        eq(audit(w.db)[1], [], "ledger, lots and balance agree")
        con = sqlite3.connect(w.db)
        try:
            eq(con.execute("SELECT used FROM item_stock WHERE item = 'cup'").fetchone(), (0,), "stock back once")
        finally:
            con.close()


# The schema as migration 4 left it: what a database written before points lots holds.
SCHEMA_4_TABLES = {"meta", "members", "member_tags", "ledger", "seen_events", "outbox", "timers",
                   "failed_events", "cron_state", "funnel", "action_keys"}
SCHEMA_4_INDEXES = {"outbox_member", "outbox_pending"}
# columns later migrations added to schema-4 tables
LATER_COLUMNS = {"ledger": ("type", "lots"), "outbox": ("keyed",)}


def back_to_schema_4(con):
    """Take a current database back to schema 4 (no lots, no ledger types, nothing the later
    migrations added), so that opening it runs migration 5 and every one after it again."""
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").fetchall():
        if name not in SCHEMA_4_INDEXES:
            con.execute("DROP INDEX %s" % name)
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        if name not in SCHEMA_4_TABLES and not name.startswith("sqlite_"):
            con.execute("DROP TABLE %s" % name)
    for table, cols in LATER_COLUMNS.items():
        have = {r[1] for r in con.execute("PRAGMA table_info(%s)" % table)}
        for col in cols:
            if col in have:
                con.execute("ALTER TABLE %s DROP COLUMN %s" % (table, col))
    con.execute("PRAGMA user_version = 4")
    con.commit()


def test_a_balance_from_before_lots_becomes_one_lot_that_never_expires():
    with Workspace({"points.lua": EXPIRING}) as w:
        eq(w.import_events([{"id": "g-1", "type": "grant", "member": "m-1", "time": t(11, 20),
                             "data": {"n": 50, "expire": "never"}}], *CURRENT).rc, 0, "grant")
        # take the database back to schema 4: no lots, no ledger types, no stock
        con = sqlite3.connect(w.db)
        try:
            back_to_schema_4(con)
        finally:
            con.close()
        r = w.import_events([{"id": "r-1", "type": "mall.redeem", "member": "m-1", "time": t(11, 21),
                              "data": {"order": "o-1"}}], *CURRENT)
        eq(r.rc, 0, "import after the migration (stderr: %s)" % r.err)
        m = w.member("m-1")
        eq([(l["n"], l["expires"], l["amount"], l["left"]) for l in m["lots"]], [(0, None, 10, 10)],
           "the balance from before lots never expires: lot 0, what is left of it")
        eq([(e["type"], e.get("lots")) for e in m["ledger"]], [("redeem", [[0, 40]]), ("grant", None)],
           "the redemption took from it; the old entry reads as a grant")
        eq(m["points"], 10, "balance")
        eq(audit(w.db)[1], [], "ledger, lots and balance agree")


if __name__ == "__main__":
    harness.main()
