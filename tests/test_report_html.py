"""The HTML report in a real headless Chromium (the system's package, driven by Playwright): it renders
with no network and no console error, its chart has one bar per event day with the gap in red, and a
hostile payload stays text."""

from __future__ import annotations

import re
import shutil
import tempfile
from datetime import timedelta

import pytest

from pipeline.launcher import run
from pipeline.report_html import CHART_ID
from tests.factory import line, write_ndjson
from tests.test_run_history import DAYS, FIRST, HOLE, export_lines

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOSTILE = '</script><img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
NAMESPACES = {"http://www.w3.org/1999/xlink", "http://www.w3.org/2000/svg", "http://www.w3.org/2000/xmlns/"}
"""The only http URLs the inlined library holds that a browser could meet: XML namespace names, never fetched
(three more are in messages and a link the page never shows: Vega-Embed's actions are off)."""


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html")
    lines, n_events = export_lines()
    src = write_ndjson(tmp / "export.ndjson", lines[:n_events] + [HOSTILE.encode(), line({"key": "<b>bold</b>"})])
    code, report = run(["--input", str(src), "--output_dir", str(tmp / "out"), "--direct_num_workers=1"])
    assert code == 0, report["problems"]
    return tmp / "out" / "import_report.html", report


def test_the_page_is_self_contained_and_small(page_file):
    path, _ = page_file
    html = path.read_text()
    assert len(html.encode()) < 1_100_000
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "<script></script>", html, flags=re.S)  # the page, not the code
    assert not re.search(r"<(script|img|link|iframe|object|embed)\b[^>]*\b(src|href|data)\s*=", markup, re.I)
    assert markup.count("<script") == 3  # the library, the chart's spec (JSON) and the call that draws it
    assert "cdn" not in html.lower() and "@import" not in html
    urls = set(re.findall(r"https?://[^\s\"'<>)\\]+", html))
    assert urls - NAMESPACES <= {"https://github.com/vega/vega-lite/issues/2415", "https://vega.github.io/editor/",
                                 "https://vega.github.io/schema/vega/v6.json"}
    assert HOSTILE not in html and "&lt;/script&gt;&lt;img src=x" in html


@pytest.fixture(scope="module")
def browser_page(page_file):
    if not shutil.which(CHROMIUM):
        pytest.skip("no Chromium: apt-get install -y chromium (./run.sh test installs it)")
    from playwright.sync_api import sync_playwright

    path, _ = page_file
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                        args=FLAGS, viewport={"width": 1200, "height": 900})
        requests, console = [], []
        context.route("**/*", lambda route: (requests.append(route.request.url),
                                             route.continue_() if route.request.url.startswith("file:")
                                             else route.abort()))
        page = context.new_page()
        page.on("console", lambda m: console.append((m.type, m.text)))
        page.on("pageerror", lambda e: console.append(("pageerror", str(e))))
        page.goto(path.as_uri())
        page.wait_for_selector(f"#{CHART_ID}[data-rendered=true]", state="attached", timeout=30_000)
        yield page, requests, console
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def test_it_renders_offline_without_console_errors(browser_page, page_file):
    page, requests, console = browser_page
    path, _ = page_file
    assert requests == [path.as_uri()]
    assert [m for m in console if m[0] in ("error", "pageerror", "warning")] == []


def test_the_chart_has_one_bar_per_day_and_the_gap_in_red(browser_page):
    page, _, _ = browser_page
    bars = page.eval_on_selector_all(f"#{CHART_ID} svg g.days_marks path",
                                     "els => els.map(e => e.getAttribute('fill'))")
    assert len(bars) == DAYS
    assert bars.count("#e45756") == 1
    ticks = page.eval_on_selector_all(f"#{CHART_ID} svg g.gap_days_marks path", "els => els.length")
    assert ticks == 1
    data = page.evaluate("window.reportView.data('days')")
    days = sorted(d["day"] for d in data)
    assert days[0] == FIRST.isoformat() and days[-1] == (FIRST + timedelta(DAYS - 1)).isoformat()
    assert [d["day"] for d in data if d["status"] == "probable gap"] == [HOLE.isoformat()]


def test_payloads_are_shown_as_text(browser_page):
    page, _, _ = browser_page
    assert page.evaluate("window.__pwned === undefined")
    assert page.eval_on_selector_all("img", "els => els.length") == 0
    cells = page.eval_on_selector_all("pre", "els => els.map(e => e.textContent)")
    assert HOSTILE in cells
    assert any("<b>bold</b>" in c for c in cells)
    text = page.inner_text("body")
    for heading in ("Events per day", "Dead letters by reason", "Duplicates and conflicts per file", "Accounting",
                    "Timing"):
        assert heading in text
