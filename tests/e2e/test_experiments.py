"""test_experiments: a journey with a hold-out is an experiment, and `hearth stats` (text
and --json) reports it: the conversion of the treated members and of the hold-out, the
lift of the campaign and of each variant against the hold-out, and its 95% interval
(Newcombe's hybrid score interval). The figures are checked against this file's own
computation from the counts stats reports, and the campaign's conversion no longer counts
the hold-out."""

import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq, contains  # noqa: E402

Z = 1.959963984540054

EXPERIMENT = r'''
local journey = require "journey"
journey.define {
  name = "trial", enter = "member.joined", goal = "order.paid",
  holdout = 30, variants = { A = 50, B = 50 },
  steps = { { name = "day1", after = "1d", send = { A = "tip_a", B = "tip_b" } } },
}
'''


def wilson(k, n):
    a = 2 * k + Z * Z
    b = Z * math.sqrt(4 * k * (1 - k / n) + Z * Z)
    c = 2 * (n + Z * Z)
    return (a - b) / c, (a + b) / c


def newcombe(ct, nt, ch, nh):
    pt, ph = ct / nt, ch / nh
    lt, ut = wilson(ct, nt)
    lh, uh = wilson(ch, nh)
    d = pt - ph
    return d, d - math.sqrt((pt - lt) ** 2 + (uh - ph) ** 2), d + math.sqrt((ut - pt) ** 2 + (ph - lh) ** 2)


def events(n_members):
    out = []
    for i in range(n_members):
        mid = "m-%03d" % i
        out.append({"id": "j-%d" % i, "type": "member.joined", "member": mid,
                    "time": "2026-11-01T10:00:00+08:00"})
    for i in range(0, n_members, 3):  # every third member orders before the first step
        out.append({"id": "o-%d" % i, "type": "order.paid", "member": "m-%03d" % i,
                    "time": "2026-11-01T18:00:00+08:00", "data": {"amount": 10, "order_id": "o-%d" % i}})
    return out


def near(a, b, what):
    assert abs(a - b) < 1e-9, "%s: got %r, expected %r" % (what, a, b)


def test_stats_reports_lift_and_interval_against_the_holdout():
    with Workspace({"trial.lua": EXPERIMENT}) as w:
        r = w.import_events(events(90))
        eq(r.rc, 0, "import exit status (stderr %s)" % r.err)
        rc, out, err = w.run("stats", "--db", w.db, "--json")
        eq(rc, 0, "stats --json exit status (stderr %s)" % err)
        trial = [c for c in json.loads(out)["campaigns"] if c["name"] == "trial"][0]
        variants = {v["name"]: v for v in trial["variants"]}
        ho = variants["holdout"]
        assert ho["entered"] > 0 and variants["A"]["entered"] > 0 and variants["B"]["entered"] > 0, variants
        x = trial["experiment"]
        nt, ct = trial["metrics"]["entered"] - ho["entered"], trial["metrics"]["converted"] - ho["converted"]
        eq((x["treated"]["entered"], x["treated"]["converted"]), (nt, ct), "treated counts")
        eq((x["holdout"]["entered"], x["holdout"]["converted"]), (ho["entered"], ho["converted"]), "hold-out counts")
        near(trial["metrics"]["conversion"], ct / nt, "the campaign's conversion counts the treated only")
        d, lo, hi = newcombe(ct, nt, ho["converted"], ho["entered"])
        near(x["lift"]["diff"], d, "campaign lift")
        near(x["lift"]["low"], lo, "campaign lift, lower bound")
        near(x["lift"]["high"], hi, "campaign lift, upper bound")
        eq(x["lift"]["significant"], lo > 0 or hi < 0, "significance: the interval excludes 0")
        eq(x["method"], "newcombe-wilson-95", "method named")
        for name in ("A", "B"):
            v = variants[name]
            d, lo, hi = newcombe(v["converted"], v["entered"], ho["converted"], ho["entered"])
            near(v["lift"]["diff"], d, "variant %s lift" % name)
            near(v["lift"]["low"], lo, "variant %s lower bound" % name)
            near(v["lift"]["high"], hi, "variant %s upper bound" % name)
        assert "lift" not in ho, "the hold-out has no lift against itself"

        rc, text, err = w.run("stats", "--db", w.db)
        eq(rc, 0, "stats exit status (stderr %s)" % err)
        contains(text, "  experiment: treated %d entered, %d converted" % (nt, ct), "the experiment line")
        contains(text, "; hold-out %d entered, %d converted" % (ho["entered"], ho["converted"]), "the hold-out's counts")
        contains(text, "(95% CI ", "the interval")
        for name in ("A", "B"):
            line = [l for l in text.splitlines() if l.startswith("  variant %s:" % name)][0]
            contains(line, "lift vs hold-out ", "variant %s line" % name)


def test_shipped_onboarding_shows_lift_for_its_variants():
    with Workspace() as w:
        month = os.path.join(harness.ROOT, "examples", "events", "month.ndjson")
        rc, out, err = w.run("import", month, "--db", w.db, "--scripts", os.path.join(harness.ROOT, "scripts"),
                             "--quiet")
        eq(rc, 0, "import of the bundled month (stderr %s)" % err[-2000:])
        rc, text, err = w.run("stats", "--db", w.db)
        eq(rc, 0, "stats exit status (stderr %s)" % err)
        block = text.split("campaign onboarding:")[1].split("\ncampaign ")[0]
        for name in ("A", "B"):
            line = [l for l in block.splitlines() if l.startswith("  variant %s:" % name)][0]
            contains(line, "lift vs hold-out ", "onboarding variant %s" % name)
            contains(line, "(95% CI ", "onboarding variant %s interval" % name)
        contains(block, "  experiment: treated ", "onboarding's experiment line")


def test_campaign_without_holdout_has_no_experiment():
    src = EXPERIMENT.replace("holdout = 30, ", "")
    with Workspace({"trial.lua": src}) as w:
        r = w.import_events(events(12))
        eq(r.rc, 0, "import exit status (stderr %s)" % r.err)
        rc, out, err = w.run("stats", "--db", w.db, "--json")
        eq(rc, 0, "stats --json exit status (stderr %s)" % err)
        trial = [c for c in json.loads(out)["campaigns"] if c["name"] == "trial"][0]
        assert "experiment" not in trial, trial
        near(trial["metrics"]["conversion"], trial["metrics"]["converted"] / trial["metrics"]["entered"],
             "conversion of everyone who entered")


if __name__ == "__main__":
    harness.main()
