"""test_console: the operators' console in a real browser (Debian's chromium and
chromedriver, driven by python3-selenium; installed by `bash setup.sh test`).

The daemon runs on the bundled month (imported first) with a token file; a headless
browser opens http://127.0.0.1:PORT/ and the tests check what a person sees: the page asks
for the token and shows no data without it; the campaign list has the shipped campaigns;
the onboarding funnel's numbers equal GET /v1/campaigns; the daily-sends chart has one
point per day of the month; searching m-0001 shows the balance `hearth member m-0001`
gives; a wrong token is refused. Each view is kept as a screenshot under
build-test/console-screenshots/ (or $HEARTH_ARTIFACTS), a test artefact, not committed.

Waits are bounded polls for something to appear (WebDriverWait), never sleeps."""

import json
import os
import subprocess
import sys
import time
import urllib.request

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    # Debian's python3-selenium belongs to Debian's python3; CTest may have found another
    # python3 first on PATH (a pyenv one, say): run this file again with Debian's.
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Workspace, eq, contains  # noqa: E402

TOKEN = "console-test-token"
START_GUARD = 30   # seconds: hang guards only, never thresholds
WAIT = 30
MONTH = os.path.join(harness.ROOT, "examples", "events", "month.ndjson")
SCRIPTS = os.path.join(harness.ROOT, "scripts")
SHOTS = os.environ.get("HEARTH_ARTIFACTS") or os.path.join(
    os.path.dirname(os.path.abspath(harness.BIN)), "console-screenshots")


class Console:
    """The daemon on the imported month, and a headless browser on its console."""

    def __init__(self, w):
        self.w = w
        tok = os.path.join(w.dir, "token")
        with open(tok, "w") as f:
            f.write(TOKEN + "\n")
        # --stale-after: the month's sends stay queued whatever today's date is (with the
        # default 1d they were all `expired` once the month was more than a day old)
        rc, out, err = w.run("import", MONTH, "--db", w.db, "--scripts", SCRIPTS, "--quiet", "--stale-after", "36500d")
        eq(rc, 0, "import of the bundled month (stderr %s)" % err[-2000:])
        self.err_path = os.path.join(w.dir, "daemon.stderr")
        self._err = open(self.err_path, "wb")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        self.p = subprocess.Popen([harness.BIN, "run", "--listen", "127.0.0.1:0", "--db", w.db, "--scripts", SCRIPTS,
                                   "--token-file", tok], cwd=w.dir, env=env, stdout=subprocess.DEVNULL,
                                  stderr=self._err, stdin=subprocess.DEVNULL)
        self.port = self._wait_port()
        self.base = "http://127.0.0.1:%d" % self.port
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400",
                  "--lang=zh-CN"):
            opts.add_argument(a)
        self.driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        self.driver.set_page_load_timeout(WAIT)

    def _wait_port(self):
        deadline = time.time() + START_GUARD
        while time.time() < deadline:
            with open(self.err_path, "rb") as f:
                for rec in harness.parse_log(f.read().decode("utf-8", "replace")):
                    if rec.get("msg") == "listening":
                        return int(rec["addr"].rsplit(":", 1)[1])
            if self.p.poll() is not None:
                raise AssertionError("daemon exited with %d" % self.p.returncode)
            time.sleep(0.05)
        raise AssertionError("daemon did not listen within %d s" % START_GUARD)

    def api(self, path):
        req = urllib.request.Request(self.base + path, headers={"Authorization": "Bearer " + TOKEN})
        with urllib.request.urlopen(req, timeout=WAIT) as r:
            return json.loads(r.read())

    def open(self, view=""):
        self.driver.get(self.base + "/" + ("#" + view if view else ""))

    def until(self, fn, what):
        try:
            return WebDriverWait(self.driver, WAIT, poll_frequency=0.1).until(lambda d: fn())
        except Exception as e:  # a timeout: say what was awaited and what the page shows
            raise AssertionError("%s: not seen within %d s (%s); page text: %s"
                                 % (what, WAIT, type(e).__name__, self.text()[:1500]))

    def text(self, css="body"):
        els = self.driver.find_elements(By.CSS_SELECTOR, css)
        return els[0].text if els else ""

    def visible(self, css):
        els = self.driver.find_elements(By.CSS_SELECTOR, css)
        return bool(els) and els[0].is_displayed()

    def js(self, script):
        return self.driver.execute_script(script)

    def login(self, token=TOKEN):
        self.open()
        self.until(lambda: self.visible("#login") or self.visible("#nav"), "the page's first view")
        if self.visible("#login"):
            box = self.driver.find_element(By.ID, "token")
            box.clear()
            box.send_keys(token)
            self.driver.find_element(By.ID, "login-go").click()

    def shot(self, name):
        os.makedirs(SHOTS, exist_ok=True)
        self.driver.save_screenshot(os.path.join(SHOTS, name + ".png"))

    def close(self):
        try:
            self.driver.quit()
        finally:
            self.p.terminate()
            try:
                self.p.wait(START_GUARD)
            except subprocess.TimeoutExpired:
                self.p.kill()
            self._err.close()


def with_console(fn):
    def run():
        with Workspace() as w:
            c = Console(w)
            try:
                fn(c)
            finally:
                c.close()
    run.__name__ = fn.__name__
    return run


@with_console
def test_without_the_token_the_page_asks_for_it_and_shows_no_data(c):
    c.open()
    c.until(lambda: c.visible("#login"), "the token form")
    assert not c.visible("#nav"), "the views' menu is hidden before the token"
    eq(c.driver.find_elements(By.CSS_SELECTOR, "#campaigns tbody tr"), [], "no campaign rows without the token")
    eq(c.js("return Object.keys(window.hearth.docs).length"), 0, "no document was read without the token")
    c.shot("login")
    # a wrong token is refused and still shows nothing
    c.login("not-the-token")
    c.until(lambda: c.text("#login-error") != "", "the refusal")
    assert c.visible("#login") and not c.visible("#nav"), "still asking after a wrong token"
    eq(c.driver.find_elements(By.CSS_SELECTOR, "#campaigns tbody tr"), [], "no data after a wrong token")


@with_console
def test_campaigns_list_and_onboarding_funnel_equal_the_api(c):
    c.login()
    c.until(lambda: c.driver.find_elements(By.CSS_SELECTOR, "#campaigns tbody tr"), "the campaign rows")
    api = c.api("/v1/campaigns")
    shown = [r.get_attribute("data-campaign") for r in c.driver.find_elements(By.CSS_SELECTOR, "#campaigns tbody tr")]
    eq(sorted(shown), sorted(x["name"] for x in api["campaigns"]), "campaigns listed")
    for name in ("onboarding", "checkin", "invite", "winback", "channel_welcome", "tiers", "shop"):
        if any(x["name"] == name for x in api["campaigns"]):
            assert name in shown, "shipped campaign %s listed" % name
    assert "onboarding" in shown, "the shipped onboarding journey is listed"
    c.driver.find_element(By.CSS_SELECTOR, '#campaigns tr[data-campaign="onboarding"]').click()
    c.until(lambda: c.visible("#funnel") and c.text("#funnel-name") == "onboarding", "the onboarding funnel")
    onboarding = [x for x in api["campaigns"] if x["name"] == "onboarding"][0]
    for step in onboarding["steps"]:
        row = c.driver.find_element(By.CSS_SELECTOR, '#funnel-table tr[data-step="%s"]' % step["name"])
        for cell in row.find_elements(By.CSS_SELECTOR, "td[data-metric]"):
            metric = cell.get_attribute("data-metric")
            eq(int(cell.text), step.get(metric, 0), "onboarding step %s, %s" % (step["name"], metric))
    chart_steps = c.js("return window.hearth.charts['funnel-chart'].data.labels")
    eq(sorted(chart_steps), sorted(s["name"] for s in onboarding["steps"]), "the funnel chart's steps")
    eq(chart_steps[:2], ["day3", "day7"], "steps in the journey's order (day3, day7, ... not day15 first)")
    for v in onboarding["variants"]:
        row = c.driver.find_element(By.CSS_SELECTOR, '#variants tr[data-variant="%s"]' % v["name"])
        cells = row.find_elements(By.TAG_NAME, "td")
        eq((int(cells[1].text), int(cells[2].text or 0)), (v["entered"], v.get("converted", 0)),
           "variant %s entered / converted" % v["name"])
        if v["name"] != "holdout":
            contains(cells[4].text, "95% CI", "variant %s lift and interval" % v["name"])
    c.shot("campaigns")
    # the switch to English relabels the page
    c.driver.find_element(By.ID, "lang").click()
    c.until(lambda: "Campaigns" in c.text("#nav"), "English labels")
    c.shot("campaigns-en")


@with_console
def test_daily_sends_chart_has_one_point_per_day_of_the_month(c):
    c.login()
    c.until(lambda: c.visible("#nav"), "the menu")
    c.driver.find_element(By.CSS_SELECTOR, '#nav button[data-view="daily"]').click()
    c.until(lambda: c.js("return !!(window.hearth.charts['daily-chart'])"), "the daily chart")
    c.js("document.getElementById('from').value = '2026-11-01'; document.getElementById('to').value = '2026-11-30';")
    c.driver.find_element(By.CSS_SELECTOR, "#daily-form button").click()
    c.until(lambda: c.js("return window.hearth.docs.daily.to") == "2026-11-30", "the month's range")
    labels = c.js("return window.hearth.charts['daily-chart'].data.labels")
    eq(len(labels), 30, "one point per day of November")
    eq(labels[0], "2026-11-01", "first day")
    eq(labels[-1], "2026-11-30", "last day")
    api = c.api("/v1/sends/daily?from=2026-11-01&to=2026-11-30")
    queued = [sum(ch.get("queued", [0] * 30)[i] for ch in api["channels"].values()) for i in range(30)]
    data = c.js("return window.hearth.charts['daily-chart'].data.datasets.find(d => d.label === '已排队').data")
    eq(data, queued, "queued sends per day, as the API counts them")
    assert sum(queued) > 0, "the month queued sends"
    rows = c.driver.find_elements(By.CSS_SELECTOR, "#daily-table tbody tr")
    eq(len(rows), 30, "one table row per day")
    c.shot("daily")


@with_console
def test_member_search_shows_her_balance_as_hearth_member_does(c):
    rc, out, err = c.w.run("member", "m-0001", "--db", c.w.db)
    eq(rc, 0, "hearth member m-0001 (stderr %s)" % err)
    cli = json.loads(out)
    c.login()
    c.until(lambda: c.visible("#nav"), "the menu")
    c.driver.find_element(By.CSS_SELECTOR, '#nav button[data-view="member"]').click()
    c.until(lambda: c.visible("#member-id"), "the member search")
    c.driver.find_element(By.ID, "member-id").send_keys("m-0001")
    c.driver.find_element(By.ID, "member-go").click()
    c.until(lambda: c.visible("#member-card") and c.text("#member-points") != "", "m-0001's card")
    eq(int(c.text("#member-points")), cli["points"], "balance shown equals hearth member m-0001")
    ledger_rows = c.driver.find_elements(By.CSS_SELECTOR, "#member-ledger tbody tr")
    assert ledger_rows, "her ledger is shown"
    eq(int(ledger_rows[0].find_elements(By.TAG_NAME, "td")[2].text), cli["points"], "the latest balance in the ledger")
    actions = c.driver.find_elements(By.CSS_SELECTOR, "#member-actions tbody tr")
    assert actions, "her latest actions are shown"
    c.shot("member")
    # an unknown member is said so
    box = c.driver.find_element(By.ID, "member-id")
    box.clear()
    box.send_keys("m-nobody")
    c.driver.find_element(By.ID, "member-go").click()
    c.until(lambda: c.text("#member-error") != "", "the no-such-member message")
    assert not c.visible("#member-card"), "no card for an unknown member"


@with_console
def test_operations_view_shows_backlog_and_totals(c):
    c.login()
    c.until(lambda: c.visible("#nav"), "the menu")
    c.driver.find_element(By.CSS_SELECTOR, '#nav button[data-view="ops"]').click()
    c.until(lambda: c.text("#ops-members") != "", "the operations figures")
    ops = c.api("/v1/operations")
    eq(int(c.text("#ops-members")), ops["totals"]["members"], "members")
    eq(int(c.text("#ops-backlog")), ops["backlog"], "delivery backlog")
    eq(int(c.text("#ops-dead")), ops["dead_letters"]["count"], "dead letters")
    assert ops["script_version"], "the import noted the script version"
    contains(c.text("#ops-version"), ops["script_version"]["hash"][:12], "the script version loaded")
    c.shot("operations")


if __name__ == "__main__":
    harness.main()
