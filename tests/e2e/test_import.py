"""test_import: `hearth import` end to end — scripts turn events into points, ledger
entries, attributes, tags and actions; the built-in member fields; dedupe within and across
imports; rejected lines; the data of well-known types and the bound on future times
(--max-future); handler failures rolled back alone; `hearth member`; the schema version
guard; usage errors and --help."""

import calendar
import json
import datetime
import os
import sqlite3
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq, contains, action_by_id, action_ids  # noqa: E402

# ---------------------------------------------------------------- example scripts

LOYALTY = r'''
-- loyalty: welcome bonus, points per order, redemptions, a daily tip.
-- One channel delivers every kind, so the records of points and tags are outbox rows too.
hearth.channel("log", { type = "log", kinds = { "send", "task", "webhook", "points", "tag", "untag" } })
hearth.on("member.joined", function(m, ev)
  m:add_points(20, "welcome bonus")
  m:tag("member")
  m:set("welcome_event", { id = ev.id, type = ev.type, time = ev.time })
  m:send("welcome", { key = "welcome", vars = { name = ev.data.name } })
end)

hearth.on("order.paid", function(m, ev)
  m:add_points(math.floor(ev.data.amount), "order " .. ev.data.order_id)
  m:set("last_order", ev.data.order_id)
  -- the built-ins ran before the handler
  m:set("seen_orders", m.orders)
  m:set("seen_spend", m.spend)
  if m.orders == 1 then m:tag("buyer") end
  m:set("tags_seen", m:tags())
end)

hearth.on("redeem", function(m, ev)
  m:add_points(5, "redeem attempt")   -- rolled back too when the next line fails
  m:add_points(-ev.data.points - 5, "redeem " .. ev.data.item)
end)

hearth.on("checkin", function(m, ev)
  local st = m:send("daily_tip", { key = "tip", category = "service" })
  m:set("tip_status", st)
  m:task("call " .. m.id, { status = "skipped" })
end)
'''

SHANGHAI = 8 * 3600


def epoch(y, mo, d, h=0, mi=0, s=0):
    """Epoch seconds of a wall time in Asia/Shanghai (UTC+8, no DST)."""
    return calendar.timegm((y, mo, d, h, mi, s)) - SHANGHAI


def t(day, hour, minute=0):
    return "2026-11-%02dT%02d:%02d:00+08:00" % (day, hour, minute)


# Import is history: an action due more than --stale-after before now is stored as
# `expired`. Tests about other things keep November 2026 current with this bound.
CURRENT = ("--stale-after", "36500d")


# ---------------------------------------------------------------- tests

def test_events_drive_points_ledger_attrs_tags_and_actions():
    with Workspace({"loyalty.lua": LOYALTY}) as w:
        events = [
            {"id": "e-1", "type": "member.joined", "member": "m-1", "time": t(22, 10),
             "data": {"channel": "wecom", "store": "sh-01", "staff": "s-7", "referrer": "m-0",
                      "name": "Ann"}},
            {"id": "e-2", "type": "order.paid", "member": "m-1", "time": t(22, 11),
             "data": {"amount": 128.5, "order_id": "o-9"}},
            {"id": "e-3", "type": "order.paid", "member": "m-1", "time": t(23, 9),
             "data": {"amount": 71.5, "order_id": "o-10"}},
            {"id": "e-4", "type": "order.refunded", "member": "m-1", "time": t(23, 12),
             "data": {"amount": 50}},
            {"id": "e-5", "type": "member.updated", "member": "m-1", "time": t(24, 8),
             "data": {"vip": True, "store": None, "birthday": "05-17"}},
        ]
        r = w.import_events(events, *CURRENT)
        eq(r.rc, 0, "import exit status (stderr: %s)" % r.err)
        s = r.summary
        eq((s["lines"], s["accepted"], s["duplicates"], s["rejected"], s["failed"]),
           (5, 5, 0, 0, 0), "summary lines/accepted/duplicates/rejected/failed")
        # joined: points + tag + send; each order: points (+ tag "buyer" on the first)
        eq(s["actions"]["queued"], 3 + 2 + 1, "summary actions.queued")
        eq(r.failures(), [], "handler failures logged")

        m = w.member("m-1")
        eq(m["id"], "m-1", "id")
        eq(m["joined_at"], t(22, 10), "joined_at")
        eq(m["last_active_at"], t(24, 8), "last_active_at")
        eq(m["orders"], 2, "orders")
        eq(m["spend"], 150.0, "spend = 128.5 + 71.5 - 50")
        eq(m["points"], 20 + 128 + 71, "points")
        eq(m["tags"], ["buyer", "member"], "tags (sorted)")

        attrs = m["attrs"]
        eq(attrs.get("channel"), "wecom", "attrs.channel copied from member.joined")
        eq(attrs.get("staff"), "s-7", "attrs.staff copied from member.joined")
        eq(attrs.get("referrer"), "m-0", "attrs.referrer copied from member.joined")
        assert "store" not in attrs, "member.updated with store=null must delete it: %r" % attrs
        assert "name" not in attrs, "only channel/store/staff/referrer are copied: %r" % attrs
        eq(attrs.get("vip"), True, "attrs.vip merged by member.updated")
        eq(attrs.get("birthday"), "05-17", "attrs.birthday merged by member.updated")
        eq(attrs.get("last_order"), "o-10", "attrs.last_order set by the handler")
        eq(attrs.get("seen_orders"), 2, "m.orders as the handler saw it (built-ins first)")
        eq(attrs.get("seen_spend"), 200.0, "m.spend as the handler saw it (before the refund)")
        eq(attrs.get("tags_seen"), ["buyer", "member"], "m:tags() is a sorted array")
        eq(attrs.get("welcome_event"),
           {"id": "e-1", "type": "member.joined", "time": epoch(2026, 11, 22, 10)},
           "ev fields seen by the handler (time in epoch seconds)")

        ledger = m["ledger"]
        eq([e["reason"] for e in ledger], ["order o-10", "order o-9", "welcome bonus"],
           "ledger reasons, latest first")
        eq([e["delta"] for e in ledger], [71, 128, 20], "ledger deltas")
        eq([e["balance"] for e in ledger], [219, 148, 20], "ledger balances")
        eq([e["campaign"] for e in ledger], ["loyalty"] * 3, "ledger campaigns")
        eq([e["cause"] for e in ledger], ["e-3", "e-2", "e-1"], "ledger causes")

        eq(action_ids(m), [
            "loyalty/m-1/e-3/1",       # points for o-10
            "loyalty/m-1/e-2/2",       # tag buyer
            "loyalty/m-1/e-2/1",       # points for o-9
            "loyalty/m-1/welcome",     # keyed send
            "loyalty/m-1/e-1/2",       # tag member
            "loyalty/m-1/e-1/1",       # welcome points
        ], "action ids, latest first")
        welcome = action_by_id(m, "loyalty/m-1/welcome")
        eq((welcome["action"], welcome["status"], welcome.get("delivery")),
           ("send", "queued", "pending"), "welcome action kind/status/delivery")
        eq((welcome["template"], welcome["channel"], welcome["category"], welcome["vars"]),
           ("welcome", "log", "marketing", {"name": "Ann"}), "welcome action fields")
        eq((welcome["member"], welcome["campaign"]), ("m-1", "loyalty"), "welcome member/campaign")
        pts = action_by_id(m, "loyalty/m-1/e-2/1")
        eq((pts["action"], pts["delta"], pts["reason"], pts["balance"]),
           ("points", 128, "order o-9", 148), "points action fields")
        tag = action_by_id(m, "loyalty/m-1/e-2/2")
        eq((tag["action"], tag["tag"], tag["status"]), ("tag", "buyer", "queued"), "tag action")
        eq(m["failed"], [], "failed events")


def test_refund_floors_spend_at_zero_and_last_active_only_moves_forward():
    with Workspace({"loyalty.lua": LOYALTY}) as w:
        r = w.import_events([
            {"type": "order.paid", "member": "m-2", "time": t(20, 10),
             "data": {"amount": 30, "order_id": "o-1"}},
            {"type": "order.refunded", "member": "m-2", "time": t(21, 10), "data": {"amount": 100}},
            {"type": "order.refunded", "member": "m-2", "time": t(19, 10), "data": {"amount": 5}},
        ])
        eq(r.rc, 0, "import exit status (stderr: %s)" % r.err)
        m = w.member("m-2")
        eq(m["orders"], 1, "a refund does not change the order count")
        eq(m["spend"], 0.0, "spend floors at 0")
        eq(m["last_active_at"], t(21, 10), "last_active_at keeps the latest event time")
        eq(m["joined_at"], None, "no member.joined: joined_at stays null")
        eq(m["points"], 30, "points from the order")


def test_member_builtins_joined_updated_subscription():
    # a script with no handler for these types: the built-ins alone
    with Workspace({"other.lua": 'hearth.on("checkin", function(m, ev) end)\n'}) as w:
        r = w.import_events([
            {"type": "member.joined", "member": "m-3", "time": t(1, 9),
             "data": {"channel": "wecom", "store": "bj-2"}},
            {"type": "member.updated", "member": "m-3", "time": t(2, 9),
             "data": {"a": 1, "b": {"x": [1, 2]}, "channel": "app"}},
            {"type": "member.joined", "member": "m-3", "time": t(3, 9),
             "data": {"channel": "web", "referrer": "m-9"}},
            {"type": "member.updated", "member": "m-3", "time": t(4, 9),
             "data": {"b": None, "c": "z", "missing": None}},
            {"type": "member.unsubscribed", "member": "m-3", "time": t(5, 9)},
        ])
        eq(r.rc, 0, "import exit status (stderr: %s)" % r.err)
        m = w.member("m-3")
        eq(m["joined_at"], t(1, 9), "joined_at is the first member.joined")
        eq(m["attrs"], {"channel": "app", "store": "bj-2", "referrer": "m-9", "a": 1, "c": "z",
                        "unsubscribed": True},
           "attrs after joined/updated/joined/updated/unsubscribed")
        eq(m["last_active_at"], t(5, 9), "last_active_at")
        r = w.import_events([{"type": "member.subscribed", "member": "m-3", "time": t(6, 9)}])
        eq(r.rc, 0, "second import exit status (stderr: %s)" % r.err)
        m = w.member("m-3")
        assert "unsubscribed" not in m["attrs"], "member.subscribed must remove it: %r" % m["attrs"]
        eq(m["last_active_at"], t(6, 9), "last_active_at after member.subscribed")


def test_action_ids_statuses_and_keyed_actions_recorded_once():
    with Workspace({"loyalty.lua": LOYALTY}) as w:
        r = w.import_events([
            {"id": "c-1", "type": "checkin", "member": "m-4", "time": t(10, 9)},
            {"type": "checkin", "member": "m-4", "time": t(11, 9)},
        ], *CURRENT)
        eq(r.rc, 0, "import exit status (stderr: %s)" % r.err)
        eq(r.summary["actions"]["queued"], 1, "one queued action (the keyed tip, once)")
        eq(r.summary["actions"]["skipped"], 2, "two skipped tasks")
        m = w.member("m-4")
        # the second event has no id: its actions are keyed by its sequence number (@2)
        eq(action_ids(m), ["loyalty/m-4/@2/1", "loyalty/m-4/c-1/1", "loyalty/m-4/tip"],
           "action ids, latest first")
        tip = action_by_id(m, "loyalty/m-4/tip")
        eq((tip["action"], tip["status"], tip.get("delivery"), tip["category"]),
           ("send", "queued", "pending", "service"), "tip action")
        task = action_by_id(m, "loyalty/m-4/c-1/1")
        eq((task["action"], task["status"], task["text"]), ("task", "skipped", "call m-4"),
           "task action")
        assert "delivery" not in task, "a skipped action is not delivered: %r" % task
        eq(m["attrs"].get("tip_status"), "queued", "m:send returns the status (also the 2nd time)")


def test_duplicate_id_in_one_import_applied_once():
    with Workspace({"loyalty.lua": LOYALTY}) as w:
        r = w.import_events([
            {"id": "p-1", "type": "order.paid", "member": "m-5", "time": t(5, 10),
             "data": {"amount": 10, "order_id": "o-1"}},
            {"id": "p-1", "type": "order.paid", "member": "m-5", "time": t(5, 11),
             "data": {"amount": 999, "order_id": "o-2"}},
            {"id": "p-2", "type": "order.paid", "member": "m-5", "time": t(5, 12),
             "data": {"amount": 1, "order_id": "o-3"}},
        ])
        eq(r.rc, 0, "a duplicate is not an error (stderr: %s)" % r.err)
        eq((r.summary["accepted"], r.summary["duplicates"], r.summary["rejected"]), (2, 1, 0),
           "accepted/duplicates/rejected")
        m = w.member("m-5")
        eq((m["orders"], m["spend"], m["points"]), (2, 11.0, 11), "orders/spend/points")
        eq([e["reason"] for e in m["ledger"]], ["order o-3", "order o-1"], "ledger reasons")
        eq(m["last_active_at"], t(5, 12), "the duplicate's time is not applied either")


def test_duplicate_ids_across_two_imports():
    with Workspace({"loyalty.lua": LOYALTY}) as w:
        events = [
            {"id": "j-1", "type": "member.joined", "member": "m-6", "time": t(6, 10)},
            {"id": "p-1", "type": "order.paid", "member": "m-6", "time": t(6, 11),
             "data": {"amount": 40, "order_id": "o-1"}},
        ]
        r1 = w.import_events(events, *CURRENT)
        eq(r1.rc, 0, "first import exit status (stderr: %s)" % r1.err)
        eq((r1.summary["accepted"], r1.summary["duplicates"]), (2, 0), "first import counts")
        before = w.member("m-6")
        r2 = w.import_events(events + [
            {"id": "p-2", "type": "order.paid", "member": "m-6", "time": t(6, 12),
             "data": {"amount": 2, "order_id": "o-2"}}], *CURRENT)
        eq(r2.rc, 0, "second import exit status (stderr: %s)" % r2.err)
        eq((r2.summary["accepted"], r2.summary["duplicates"], r2.summary["failed"]), (1, 2, 0),
           "second import: only p-2 is new")
        eq(r2.summary["actions"]["queued"], 1, "second import: one new points action")
        m = w.member("m-6")
        eq((m["orders"], m["spend"], m["points"]), (2, 42.0, 20 + 40 + 2), "orders/spend/points")
        eq(len(m["ledger"]), len(before["ledger"]) + 1, "one new ledger entry")
        eq(len(m["actions"]), len(before["actions"]) + 1, "one new action")


def test_bad_lines_rejected_with_line_and_field_good_lines_applied():
    with Workspace({"loyalty.lua": LOYALTY}) as w:
        good = lambda n: {"id": "g-%d" % n, "type": "order.paid", "member": "m-7",
                          "time": t(7, n), "data": {"amount": n, "order_id": "o-%d" % n}}
        lines = [
            good(1),                                                          # 1
            '{"type":"order.paid","member":"bad-json","data":{"amount":5}',   # 2 bad JSON
            good(2),                                                          # 3
            {"member": "bad-notype", "time": t(7, 3)},                        # 4 missing type
            {"type": "order.paid", "member": "bad-unknown", "amount": 3},     # 5 unknown field
            "",                                                               # 6 blank: skipped
            good(3),                                                          # 7
            {"type": "checkin", "member": "bad-time", "time": "yesterday"},   # 8 bad time
            {"type": "checkin", "member": "bad-data", "data": [1, 2]},        # 9 data not object
            {"id": "g-9", "type": "Order.Paid", "member": "bad-type"},        # 10 bad type
            good(4),                                                          # 11
        ]
        r = w.import_events(lines, "--batch", "2")
        eq(r.rc, 1, "exit status with rejected lines (stderr: %s)" % r.err)
        s = r.summary
        eq((s["lines"], s["accepted"], s["rejected"], s["failed"]), (11, 4, 6, 0),
           "summary lines/accepted/rejected/failed")
        got = {line: msg for (_f, line, msg) in r.rejections}
        eq(sorted(got), [2, 4, 5, 8, 9, 10], "rejected line numbers")
        for f, _line, _msg in r.rejections:
            eq(f, r.path, "file named in the rejection")
        contains(got.get(2, ""), "invalid JSON", "line 2 message")
        contains(got.get(4, ""), "type: missing", "line 4 message")
        contains(got.get(5, ""), "unknown field 'amount'", "line 5 message")
        contains(got.get(8, ""), "time:", "line 8 message names the field")
        contains(got.get(8, ""), "yesterday", "line 8 message shows the value")
        contains(got.get(9, ""), "data: must be an object", "line 9 message")
        contains(got.get(10, ""), "type:", "line 10 message names the field")
        m = w.member("m-7")
        eq((m["orders"], m["points"]), (4, 1 + 2 + 3 + 4), "every good line applied")
        eq([e["cause"] for e in m["ledger"]], ["g-4", "g-3", "g-2", "g-1"], "ledger causes")
        for bad in ("bad-json", "bad-notype", "bad-unknown", "bad-time", "bad-data", "bad-type"):
            rc, out, err = w.member_raw(bad)
            eq(rc, 1, "nothing of rejected line for %s applied (stdout %r)" % (bad, out))
        # the id of a rejected line was not marked as seen
        r2 = w.import_events([{"id": "g-9", "type": "checkin", "member": "m-7", "time": t(8, 1)}])
        eq((r2.rc, r2.summary["accepted"], r2.summary["duplicates"]), (0, 1, 0),
           "an id from a rejected line is still new")


def test_add_points_below_zero_fails_and_leaves_balance():
    with Workspace({"loyalty.lua": LOYALTY}) as w:
        r = w.import_events([
            {"id": "j", "type": "member.joined", "member": "m-8", "time": t(8, 9)},
            {"id": "r-1", "type": "redeem", "member": "m-8", "time": t(8, 10),
             "data": {"points": 50, "item": "mug"}},
            {"id": "r-2", "type": "redeem", "member": "m-8", "time": t(8, 11),
             "data": {"points": 15, "item": "pen"}},
        ])
        eq(r.rc, 1, "exit status when a handler failed (stderr: %s)" % r.err)
        eq((r.summary["accepted"], r.summary["failed"]), (3, 1), "accepted/failed")
        fails = r.failures()
        eq(len(fails), 1, "one 'handler failed' log line: %r" % r.log)
        f = fails[0]
        eq((f.get("level"), f.get("campaign"), f.get("event"), f.get("member")),
           ("error", "loyalty", "r-1", "m-8"), "failure log fields")
        contains(f.get("error", ""), "below zero", "failure log error")
        contains(f.get("error", ""), "stack traceback", "failure log error has a traceback")
        m = w.member("m-8")
        # r-1: +5 then -55 from 25 fails -> all of r-1 rolled back; r-2: +5 then -20 -> 5
        eq(m["points"], 5, "points")
        eq([(e["delta"], e["balance"], e["reason"]) for e in m["ledger"]],
           [(-20, 5, "redeem pen"), (5, 25, "redeem attempt"), (20, 20, "welcome bonus")],
           "ledger: nothing of the failed redemption")
        eq(len(m["failed"]), 1, "one failed event stored")
        fe = m["failed"][0]
        eq((fe["campaign"], fe["event"].get("id"), fe["event"].get("type")),
           ("loyalty", "r-1", "redeem"), "failed event")
        eq(fe["event"].get("data"), {"points": 50, "item": "mug"}, "failed event data")
        contains(fe["error"], "below zero", "stored error")
        assert not any(a["id"].startswith("loyalty/m-8/r-1/") for a in m["actions"]), \
            "no action of the failed handler: %r" % action_ids(m)


A_FAILS = r'''
hearth.on("promo", function(m, ev)
  m:set("a_attr", "set by a")
  m:set("keep", "overwritten by a")
  m:tag("a-tag")
  m:untag("old")
  m:send("a_promo", { key = "a-promo" })
  m:add_points(3, "a points")
  m:after("1d", "a.followup")
  error("promo exploded")
end)
hearth.on("order.paid", function(m, ev)
  m:set("a_saw_orders", m.orders)
  error("order handler exploded")
end)
'''

FIRST = r'''
-- runs before a.lua's failing handler for the same event: its changes must survive a's
-- rollback
hearth.on("promo", function(m, ev)
  m:set("first", "kept")
  m:tag("first-tag")
  m:add_points(2, "first points")
end)
'''

B_WORKS = r'''
hearth.channel("log", { type = "log", kinds = { "send", "task", "webhook", "points", "tag", "untag" } })
hearth.on("member.joined", function(m, ev)
  m:set("keep", "original")
  m:tag("old")
end)
hearth.on("promo", function(m, ev)
  m:add_points(7, "b points")
  m:tag("b-tag")
  m:set("b_saw_a_tag", m:has("a-tag"))
  m:set("b_saw_a_attr", m:get("a_attr") ~= nil)
end)
hearth.on("look", function(m, ev)
  m:set("later_saw_a_tag", m:has("a-tag"))
  m:set("later_saw_old", m:has("old"))
  m:set("later_keep", m:get("keep"))
end)
'''


def test_failing_handler_rolled_back_other_script_applies():
    with Workspace({"0_first.lua": FIRST, "a.lua": A_FAILS, "b.lua": B_WORKS}) as w:
        r = w.import_events([
            {"id": "j", "type": "member.joined", "member": "m-9", "time": t(9, 9)},
            {"id": "p", "type": "promo", "member": "m-9", "time": t(9, 10)},
            {"id": "l", "type": "look", "member": "m-9", "time": t(9, 11)},
            {"id": "o", "type": "order.paid", "member": "m-9", "time": t(9, 12),
             "data": {"amount": 30, "order_id": "o-1"}},
        ], *CURRENT)
        eq(r.rc, 1, "exit status when a handler failed (stderr: %s)" % r.err)
        eq((r.summary["accepted"], r.summary["failed"]), (4, 2), "accepted/failed")
        m = w.member("m-9")
        eq(m["tags"], ["b-tag", "first-tag", "old"],
           "tags: a's tag/untag rolled back, first's and b's kept")
        eq(m["attrs"], {"keep": "original", "first": "kept", "b_saw_a_tag": False,
                        "b_saw_a_attr": False, "later_saw_a_tag": False, "later_saw_old": True,
                        "later_keep": "original"},
           "attrs: nothing of a's handlers, seen neither by b nor by a later event")
        eq(m["points"], 9, "points: first's and b's")
        eq([(e["reason"], e["campaign"]) for e in m["ledger"]],
           [("b points", "b"), ("first points", "0_first")], "ledger")
        # the built-ins of an event stay applied when a handler for it fails
        eq((m["orders"], m["spend"], m["last_active_at"]), (1, 30.0, t(9, 12)),
           "orders/spend/last_active_at after a failed order.paid handler")
        # a's timer was rolled back with the rest (the timers table is internal: looked at
        # directly, read-only)
        con = sqlite3.connect("file:%s?mode=ro" % w.db, uri=True)
        try:
            eq(con.execute("SELECT count(*) FROM timers").fetchone()[0], 0, "timers left")
        finally:
            con.close()
        ids = action_ids(m)
        assert not any(i.startswith("a/") for i in ids), "a's actions must be rolled back: %r" % ids
        # (the number in a default id counts the actions of the event, here including the
        # ones a's failed handler recorded before it was rolled back; only the prefix is
        # asserted)
        eq(len([i for i in ids if i.startswith("b/m-9/p/")]), 2, "b's actions for the promo: %r" % ids)
        kinds = sorted(a["action"] for a in m["actions"] if a["campaign"] == "b")
        eq(kinds, ["points", "tag", "tag"], "b's actions (tag old, points, tag b-tag)")
        eq(len(m["failed"]), 2, "two failed events")
        fe = m["failed"][1]
        eq((fe["campaign"], fe["event"].get("id")), ("a", "p"), "failed event campaign/id")
        contains(fe["error"], "promo exploded", "stored error")
        eq((m["failed"][0]["event"].get("id"), m["failed"][0]["campaign"]), ("o", "a"),
           "latest failed event first")
        contains(fe["error"], w.script_path("a.lua"), "stored traceback names the script path")


def test_summary_counts_only_committed_actions():
    # Regression (engine/engine.c, engine_action): e->stats.actions[status]++ runs when an
    # action is recorded, and is not undone when the handler then fails and its savepoint
    # is rolled back; so `import --json` reports actions that were never committed.
    with Workspace({"a.lua": A_FAILS, "b.lua": B_WORKS}) as w:
        r = w.import_events([{"id": "p", "type": "promo", "member": "m-10", "time": t(10, 10)}], *CURRENT)
        eq(r.rc, 1, "exit status when a handler failed (stderr: %s)" % r.err)
        m = w.member("m-10")
        stored = len([a for a in m["actions"] if a["status"] == "queued"])
        eq(stored, 2, "queued actions stored (b: points, tag)")
        eq(r.summary["actions"]["queued"], stored,
           "summary actions.queued must count only the actions that were committed")


def test_import_with_an_empty_scripts_folder():
    # Regression (engine/lua_host.c, luahost_load_scripts): with no *.lua in the folder,
    # names stays NULL and qsort(NULL, 0, ...) is called; UBSan (HEARTH_SANITIZE=ON)
    # aborts with "null pointer passed as argument 1" and the import exits 1 having
    # applied nothing. Repro: mkdir empty; hearth import ev.ndjson --scripts empty.
    with Workspace() as w:
        r = w.import_events([{"id": "x-1", "type": "member.joined", "member": "m-12",
                              "time": t(12, 9), "data": {"channel": "wecom"}}],
                            json_summary=False)
        eq(r.rc, 0, "import with no scripts: exit status (stderr %r)" % r.err)
        m = w.member("m-12")
        eq((m["joined_at"], m["attrs"]), (t(12, 9), {"channel": "wecom"}), "built-ins applied")
        rc, out, err = w.check()
        eq(rc, 0, "check of an empty folder: exit status (stderr %r)" % err)
        contains(out, "ok: 0 handlers", "check of an empty folder: stdout")


def test_json_summary_is_json_for_any_file_name():
    # Regression (engine/cmd_import.c, print_summary): the file name is printed into the
    # --json summary with printf("%s") unescaped, so a name with '"' or '\\' makes the
    # summary invalid JSON. Repro: hearth import 'a"b\\c.ndjson' --json
    with Workspace({"loyalty.lua": LOYALTY}) as w:
        path = os.path.join(w.dir, 'odd "name" \\ x.ndjson')
        harness.write_events(path, [{"type": "checkin", "member": "m-13", "time": t(13, 9)}])
        rc, out, err = w.run("import", path, "--db", w.db, "--scripts", w.scripts, "--json")
        eq(rc, 0, "exit status (stderr %r)" % err)
        s = harness.parse_summary(out)
        eq(s.get("file"), path, "summary.file")
        eq((s["lines"], s["accepted"]), (1, 1), "summary lines/accepted")


def test_member_limit_and_unicode_ids():
    with Workspace({"loyalty.lua": LOYALTY}) as w:
        events = [{"id": "会员-%d" % i, "type": "order.paid", "member": "会员-1",
                   "time": t(14, i), "data": {"amount": i, "order_id": "单-%d" % i}}
                  for i in range(1, 6)]
        r = w.import_events(events, *CURRENT)
        eq(r.rc, 0, "import exit status (stderr %r)" % r.err)
        m = w.member("会员-1", "--limit", "2")
        eq(m["id"], "会员-1", "unicode member id")
        eq((m["orders"], m["points"]), (5, 15), "orders/points")
        eq([e["reason"] for e in m["ledger"]], ["order 单-5", "order 单-4"], "ledger limited to 2")
        eq(len(m["actions"]), 2, "actions limited to 2")
        eq(m["actions"][0]["id"], "loyalty/会员-1/会员-5/1", "latest action first")
        eq(len(w.member("会员-1")["ledger"]), 5, "default limit shows all 5")


def test_member_of_unknown_member_exits_1():
    with Workspace({"loyalty.lua": LOYALTY}) as w:
        r = w.import_events([{"type": "checkin", "member": "known", "time": t(1, 1)}])
        eq(r.rc, 0, "import exit status (stderr: %s)" % r.err)
        rc, out, err = w.member_raw("nobody")
        eq(rc, 1, "exit status for an unknown member")
        eq(out, "", "nothing on stdout")
        contains(err, "nobody", "stderr names the member")
        eq(w.member("known")["id"], "known", "the known member is there")
        rc, out, err = w.run("member", "x", "--db", os.path.join(w.dir, "absent.db"))
        eq(rc, 1, "exit status without a database")
        assert not os.path.exists(os.path.join(w.dir, "absent.db")), "member must not create a db"


def test_newer_schema_version_is_refused():
    with Workspace({"loyalty.lua": LOYALTY}) as w:
        con = sqlite3.connect(w.db)
        con.execute("CREATE TABLE future(x)")
        con.execute("PRAGMA user_version = 99")
        con.commit()
        con.close()
        path = w.write_events([{"type": "checkin", "member": "m-1", "time": t(1, 1)}])
        r = w.import_file(path, json_summary=False)
        eq(r.rc, 1, "import into a newer database: exit status (stdout %r)" % r.out)
        contains(r.err, "newer", "import error message")
        rc, out, err = w.member_raw("m-1")
        eq(rc, 1, "member on a newer database: exit status")
        contains(err, "99", "member error message names the version")
        con = sqlite3.connect(w.db)
        try:
            eq(con.execute("PRAGMA user_version").fetchone()[0], 99, "user_version untouched")
            tables = sorted(row[0] for row in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"))
            eq(tables, ["future"], "no hearth tables created in the newer database")
        finally:
            con.close()


def test_usage_errors_exit_2():
    with Workspace() as w:
        path = w.write_events([{"type": "checkin", "member": "m"}])
        cases = [
            (["import", path, "--bogus"], "unknown option '--bogus'"),
            (["import"], "one FILE"),
            (["import", path, path], "one FILE"),
            (["import", path, "--batch", "0"], "--batch"),
            (["import", path, "--db"], "needs a value"),
            (["member"], "member ID"),
            (["member", "m", "--limit", "x"], "--limit"),
            (["check", "a", "b"], "at most one"),
            (["check", "--json"], "unknown option '--json'"),
            (["frobnicate"], "unknown command"),
            ([], "usage"),
        ]
        for args, needle in cases:
            rc, out, err = w.run(*args)
            eq(rc, 2, "hearth %s: exit status (stderr %r)" % (" ".join(args), err))
            contains(err, needle, "hearth %s: stderr" % " ".join(args))
        assert not os.path.exists(os.path.join(w.dir, "hearth.db")), \
            "a usage error must not create a database"


def test_help_exits_0():
    with Workspace() as w:
        for cmd in ("import", "member", "check"):
            for flag in ("--help", "-h"):
                rc, out, err = w.run(cmd, flag)
                eq(rc, 0, "hearth %s %s: exit status (stderr %r)" % (cmd, flag, err))
                contains(out, "usage: hearth %s" % cmd, "hearth %s %s: stdout" % (cmd, flag))
                contains(out, "--db", "hearth %s %s: common options listed" % (cmd, flag))
        rc, out, err = w.run("--help")
        eq(rc, 0, "hearth --help: exit status")
        for cmd in ("import", "member", "check"):
            contains(out, cmd, "hearth --help lists the commands")


def test_import_from_stdin_and_plain_summary():
    with Workspace({"loyalty.lua": LOYALTY}) as w:
        text = "\n".join(harness.event_line(e) for e in [
            {"id": "s-1", "type": "order.paid", "member": "m-11", "time": t(11, 1),
             "data": {"amount": 12, "order_id": "o-1"}},
            {"id": "s-1", "type": "order.paid", "member": "m-11", "time": t(11, 2),
             "data": {"amount": 12, "order_id": "o-1"}},
        ]) + "\n"
        rc, out, err = w.run("import", "-", "--db", w.db, "--scripts", w.scripts,
                             stdin=text.encode())
        eq(rc, 0, "import - exit status (stderr %r)" % err)
        contains(out, "1 events accepted, 1 duplicates, 0 rejected, 0 failed", "plain summary")
        m = w.member("m-11")
        eq((m["orders"], m["points"]), (1, 12), "orders/points from stdin")


# ---------------------------------------------------------------- history on event time

HISTORY = r"""
hearth.on("member.joined", function(m, ev)
  m:send("welcome", { key = "welcome" })
  m:after("3d", "day3")
  m:after("40d", "day40")
end)
hearth.on("day3", function(m, ev) m:send("tips", { key = "day3", vars = { at = hearth.now() } }) end)
hearth.on("day40", function(m, ev) m:send("coupon", { key = "day40" }) end)
"""


def harness_epoch(rfc3339_utc):
    return calendar.timegm(__import__("time").strptime(rfc3339_utc, "%Y-%m-%dT%H:%M:%SZ"))


def utc(seconds_from_now):
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(time.time()) + seconds_from_now))


def test_import_runs_history_on_event_time_and_expires_what_is_stale():
    # Regression (engine/cmd_import.c): import ran the scripts on the wall clock, so m:after
    # counted from the import, timers due in the history never fired, and `hearth run`
    # afterwards sent a month of welcomes at once.
    with Workspace({"h.lua": HISTORY}) as w:
        joined = utc(-10 * 86400)
        r = w.import_events([{"id": "j", "type": "member.joined", "member": "m-h", "time": joined}])
        eq(r.rc, 0, "import exit status (stderr: %s)" % r.err)
        m = w.member("m-h")
        acts = {a["id"]: a for a in m["actions"]}
        welcome, day3 = acts.get("h/m-h/welcome"), acts.get("h/m-h/day3")
        assert welcome and day3, "welcome and day3 recorded: %r" % sorted(acts)
        eq(welcome["status"], "expired", "the welcome of ten days ago")
        eq(welcome["reason"]["rule"], "stale", "its reason names the rule")
        # day3 fired in the history, at its own time (3 days after joining), not at the import
        eq(day3["status"], "expired", "day 3, a week ago")
        eq(day3["vars"]["at"] - harness_epoch(joined), 3 * 86400, "day3 ran 3 days after joining")
        assert "h/m-h/day40" not in acts, "day 40 is still in the future: pending, not fired"
        eq(r.summary["actions"]["expired"], 2, "summary: expired actions")
        eq(r.summary["actions"]["queued"], 0, "summary: nothing to deliver")


def test_import_keeps_recent_actions_deliverable():
    with Workspace({"h.lua": HISTORY}) as w:
        r = w.import_events([{"id": "j", "type": "member.joined", "member": "m-r", "time": utc(-3600)}])
        eq(r.rc, 0, "import exit status (stderr: %s)" % r.err)
        acts = {a["id"]: a for a in w.member("m-r")["actions"]}
        eq(acts["h/m-r/welcome"]["status"], "queued", "an hour-old welcome is within --stale-after 1d")
        r = w.import_events([{"id": "j2", "type": "member.joined", "member": "m-s", "time": utc(-3600)}],
                            "--stale-after", "30m")
        acts = {a["id"]: a for a in w.member("m-s")["actions"]}
        eq(acts["h/m-s/welcome"]["status"], "expired", "the same welcome with --stale-after 30m")
        rc, out, err = w.run("import", w.write_events([]), "--stale-after", "0")
        eq(rc, 2, "--stale-after 0 is a usage error (stderr %s)" % err)


def test_import_gives_the_same_actions_as_dry_run_apart_from_expired():
    month = os.path.join(harness.ROOT, "examples", "events", "month.ndjson")
    scripts = os.path.join(harness.ROOT, "scripts")
    with Workspace({}) as w:
        now = utc(0)
        rc, out, err = w.run("import", month, "--db", w.db, "--scripts", scripts, "--quiet")
        eq(rc, 0, "import of the month (stderr: %s)" % err[-2000:])
        rc, out, err = harness.run(["dry-run", "--events", month, "--scripts", scripts, "--until", now])
        eq(rc, 0, "dry-run of the month (stderr: %s)" % err[-2000:])
        dry = {}
        for line in out.splitlines():
            a = json.loads(line)
            if a["action"] in ("points", "tag", "untag"):
                continue  # records of changes: in the ledger and tags, no rows (no channel asks)
            dry[a["id"]] = a  # a deferred action judged again: the last judgement holds
        db = sqlite3.connect(w.db)
        members = [r[0] for r in db.execute("SELECT id FROM members")]
        db.close()
        imported = {}
        for mid in members:
            for a in w.member(mid, "--limit", "100000")["actions"]:
                imported[a["id"]] = a

        def same(a):
            a = {k: v for k, v in a.items() if k not in ("reason", "delivery")}
            if a["status"] == "expired":
                a["status"] = "queued"
            return a
        eq(sorted(imported), sorted(dry), "action ids under import and dry-run")
        differ = [k for k in dry if same(dry[k]) != same(imported[k])]
        eq(differ[:3], [], "actions that differ apart from the stale status")
        assert any(a["status"] == "expired" for a in imported.values()), "November is stale now"
def from_now(**delta):
    """An RFC 3339 time at the real present plus delta (the bound on the future is judged
    against the real clock)."""
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(**delta)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


# Lines the engine must refuse for what its built-ins rely on, and the start of the
# message each gets. Shared by the dry-run and HTTP tests.
BAD_DATA = [
    ({"type": "order.paid", "member": "bad-string", "time": t(2, 9), "data": {"amount": "12.5"}},
     'data.amount: must be a number >= 0, got "12.5"'),
    ({"type": "order.paid", "member": "bad-negative", "time": t(2, 9), "data": {"amount": -5}},
     "data.amount: must be a number >= 0, got -5"),
    ({"type": "order.paid", "member": "bad-missing", "time": t(2, 9), "data": {"order_id": "o-1"}},
     "data.amount: missing"),
    ({"type": "order.refunded", "member": "bad-refund", "time": t(2, 9)}, "data.amount: missing"),
    ({"type": "member.joined", "member": "bad-referrer", "time": t(2, 9), "data": {"referrer": ""}},
     "data.referrer: must not be empty"),
    ({"type": "member.joined", "member": "bad-channel", "time": t(2, 9), "data": {"channel": 7}},
     "data.channel: must be a string, got 7"),
    ({"type": "member.updated", "member": "bad-tz", "time": t(2, 9), "data": {"tz": "Mars/Olympus"}},
     "data.tz: unknown time zone 'Mars/Olympus'"),
    ({"type": "checkin", "member": "bad-future", "time": "2031-06-01T10:00:00+08:00"},
     "time: 2031-06-01T02:00:00+00:00 is more than 1h after the present"),
]


def test_order_amount_referrer_tz_and_future_time_rejected_with_line_and_field():
    # Regression: "amount":"12.5", -5 or none counted an order with no spend, and an
    # event dated 2031 moved last_active_at five years ahead; all were accepted silently.
    with Workspace({"other.lua": 'hearth.on("checkin", function(m, ev) end)\n'}) as w:
        lines = [{"type": "checkin", "member": "m-ok", "time": t(1, 9)}]
        lines += [ev for ev, _msg in BAD_DATA]
        r = w.import_events(lines)
        eq(r.rc, 1, "exit status with rejected lines (stderr: %s)" % r.err)
        eq((r.summary["accepted"], r.summary["rejected"]), (1, len(BAD_DATA)), "accepted/rejected")
        got = {line: msg for (_f, line, msg) in r.rejections}
        eq(sorted(got), list(range(2, 2 + len(BAD_DATA))), "rejected line numbers")
        for n, (ev, want) in enumerate(BAD_DATA, 2):
            assert got[n].startswith(want), "line %d: got %r, want %r..." % (n, got[n], want)
            rc, out, _err = w.member_raw(ev["member"])
            eq(rc, 1, "nothing of rejected line %d applied (stdout %r)" % (n, out))


def test_valid_forms_of_checked_data_accepted():
    with Workspace({"other.lua": 'hearth.on("checkin", function(m, ev) end)\n'}) as w:
        r = w.import_events([
            {"type": "member.joined", "member": "m-1", "time": t(1, 9),
             "data": {"channel": "poster", "store": "sh-01", "staff": "s-7", "referrer": "m-0",
                      "tz": "Asia/Shanghai", "extra": 5}},
            {"type": "order.paid", "member": "m-1", "time": t(1, 10), "data": {"amount": 12}},
            {"type": "order.paid", "member": "m-1", "time": t(1, 11), "data": {"amount": 0.5}},
            {"type": "order.paid", "member": "m-1", "time": t(1, 12), "data": {"amount": 0}},
            {"type": "order.refunded", "member": "m-1", "time": t(1, 13), "data": {"amount": 0}},
            {"type": "member.updated", "member": "m-1", "time": t(1, 14),
             "data": {"tz": "America/New_York", "vip": True}},
            {"type": "member.updated", "member": "m-1", "time": t(1, 15), "data": {"tz": None}},
            # the data of other types, and other attributes of member.updated, are not checked
            {"type": "member.updated", "member": "m-1", "time": t(1, 16),
             "data": {"channel": 3, "amount": "x"}},
            {"type": "order.created", "member": "m-1", "time": t(1, 17), "data": {"amount": "12.5"}},
            {"type": "checkin", "member": "m-1", "time": from_now(minutes=30)},  # inside 1h
            {"type": "checkin", "member": "m-1"},  # no time: the time of the import
        ])
        eq(r.rc, 0, "exit status (stderr: %s)" % r.err)
        eq((r.summary["accepted"], r.summary["rejected"]), (11, 0), "accepted/rejected")
        m = w.member("m-1")
        eq((m["orders"], m["spend"]), (3, 12.5), "orders/spend: a 0 amount counts an order")
        eq(m["attrs"], {"channel": 3, "store": "sh-01", "staff": "s-7", "referrer": "m-0",
                        "vip": True, "amount": "x"}, "attributes")


def test_max_future_flag_sets_or_lifts_the_bound():
    with Workspace({"other.lua": 'hearth.on("checkin", function(m, ev) end)\n'}) as w:
        ahead = [{"type": "checkin", "member": "m-1", "time": from_now(days=3)},
                 {"type": "checkin", "member": "m-2", "time": from_now(days=5)}]
        r = w.import_events(ahead, "--max-future", "4d")
        eq((r.rc, r.summary["accepted"], r.summary["rejected"]), (1, 1, 1), "rc/accepted/rejected with 4d")
        eq([(line, msg.split(" is ")[0][:5]) for (_f, line, msg) in r.rejections], [(2, "time:")],
           "line 2 refused for its time")
        contains(r.rejections[0][2], "is more than 4d after the present", "the bound in the message")
        r = w.import_events([{"type": "checkin", "member": "m-3", "time": "2031-06-01T10:00:00Z"}],
                            "--max-future", "0")
        eq((r.rc, r.summary["accepted"]), (0, 1), "0 = no bound (stderr: %s)" % r.err)
        eq(w.member("m-3")["last_active_at"], "2031-06-01T18:00:00+08:00", "the far date applied")
        for bad in ("soon", "-1h", ""):
            rc, _out, err = w.run("import", w.write_events([]), "--scripts", w.scripts,
                                  "--db", w.db, "--max-future", bad)
            eq(rc, 2, "--max-future %r is a usage error (stderr: %s)" % (bad, err))
            contains(err, "--max-future", "the message names the flag")


if __name__ == "__main__":
    harness.main()
