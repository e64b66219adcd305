"""The HTML report in a real headless Chromium (Debian's chromium + chromium-driver): it renders,
its filters work, the browser logs no errors, and a screenshot is saved for people to look at."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from weighbridge.backends.base import Generation
from weighbridge.analysis.compare import outcomes_from_run
from weighbridge.report.html import write_html
from weighbridge.scorers import Score
from weighbridge.storage.store import Store
from weighbridge.analysis.summary import summarise_run

ARTIFACTS = Path(os.environ.get("WEIGHBRIDGE_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's chromium and chromium-driver (.ci/run installs them)")
        pytest.skip("chromium not installed (apt-get install chromium chromium-driver; .ci/run does this)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1300,1600"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)  # a local driver: nothing is downloaded
    yield driver
    driver.quit()


def gen(text: str, ms: float) -> Generation:
    return Generation(text=text, finish_reason="stop", prompt_tokens=20, completion_tokens=len(text.split()),
                      token_source="server", latency_ms=ms, ttft_ms=ms / 4, decode_ms=ms / 2)


def make_run(store: Store, n_cases: int, models=("alpha", "beta"), flip_every: int = 3) -> str:
    """A run written through the store's own API: rows exactly as a bakeoff leaves them."""
    cases = [(f"case-{i:05d}", "s", ["code", "math", "extraction"][i % 3], {"id": f"case-{i:05d}", "prompt": f"q{i}"})
             for i in range(n_cases)]
    specs = [(m, "openai", f"id-{m}", {"name": m, "backend": "openai", "base_url": "http://x/v1", "model": m,
                                        "price": {"input_per_mtok": 0.1 * (k + 1), "output_per_mtok": 0.4 * (k + 1)}})
             for k, m in enumerate(models)]
    run = store.create_run(config={}, manifest={"machine": {"cpu_count": 2}}, suite_hash="h", samples=1,
                           models=specs, cases=cases)
    for k, m in enumerate(models):
        for i, (cid, *_rest) in enumerate(cases):
            passed = (i % flip_every != 0) if k == 0 else (i % 2 == 0)
            text = ("long answer " * 120) if i == 1 else f"answer {i} from {m} <b>not bold</b>"
            store.record(run, m, cid, 0, f"{m}-{cid}", f"id-{m}", gen(text, 100 + 7 * i % 900 + 300 * k),
                         [("exact", Score(passed, float(passed), "ok" if passed else "wrong"))], cached=False)
    store.set_status(run, "finished")
    return run


def visible_rows(driver) -> int:
    return driver.execute_script("return [...document.querySelectorAll('tr.case')].filter(r => r.style.display !== 'none').length")


def severe_logs(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_report_renders_filters_and_logs_no_errors(browser, tmp_path):
    store = Store(tmp_path / "wb.db")
    base_run = make_run(store, 30, flip_every=5)
    run = make_run(store, 30)
    summary = summarise_run(store, run)
    page = write_html(summary, tmp_path / "report.html", outcomes_from_run(store, base_run), f"run {base_run}")
    browser.get(page.resolve().as_uri())
    assert "weighbridge run" in browser.title
    assert visible_rows(browser) == 30
    assert len(browser.find_elements("css selector", "svg.plot")) == 2
    assert "Paired comparison" in browser.page_source and "McNemar" in browser.page_source
    assert "<b>not bold</b>" not in browser.find_element("css selector", "table:last-of-type").get_attribute("innerHTML")

    expected_failed = sum(1 for c in summary.cases if not all(r.passed for r in summary.rows if r.case_id == c["id"]))
    browser.find_element("id", "failed").click()
    assert visible_rows(browser) == expected_failed
    browser.find_element("id", "failed").click()

    expected_disagree = sum(1 for c in summary.cases
                            if len({r.passed for r in summary.rows if r.case_id == c["id"]}) > 1)
    browser.find_element("id", "disagree").click()
    assert visible_rows(browser) == expected_disagree
    browser.find_element("id", "disagree").click()

    browser.find_element("id", "flipped").click()
    assert 0 < visible_rows(browser) < 30
    browser.find_element("id", "flipped").click()

    search = browser.find_element("id", "q")
    search.send_keys("answer 17 from")
    assert visible_rows(browser) == 1
    search.clear()
    search.send_keys(" ")  # fire input
    from selenium.webdriver.support.ui import Select
    Select(browser.find_element("id", "wl")).select_by_visible_text("math")
    assert visible_rows(browser) == 10

    assert browser.find_elements("css selector", "details.fold")  # the long answer folds
    assert severe_logs(browser) == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    Select(browser.find_element("id", "wl")).select_by_visible_text("all workloads")
    browser.get_screenshot_as_file(str(shot))
    assert shot.stat().st_size > 10_000


def test_report_with_5000_generations_loads_and_filters(browser, tmp_path):
    store = Store(tmp_path / "big.db")
    run = make_run(store, 2500)
    page = write_html(summarise_run(store, run), tmp_path / "big.html")
    t0 = time.perf_counter()
    browser.get(page.resolve().as_uri())
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && document.getElementById('shown').textContent === '2500'"))
    loaded = time.perf_counter() - t0
    assert visible_rows(browser) == 2500
    browser.find_element("id", "failed").click()
    assert 0 < visible_rows(browser) < 2500
    assert severe_logs(browser) == []
    print(f"5,000-generation report: {page.stat().st_size / 1e6:.1f} MB, loaded in {loaded:.2f} s")


def test_cost_page_renders_the_chart_and_the_bench_levels_it_used(browser, tmp_path):
    from weighbridge.pricing.deploy_cost import ScenarioPricer
    from weighbridge.report.cost_report import write_cost_html
    from weighbridge.pricing.scenario import load_scenario

    from .conftest import write
    from .test_cost_scenario import PRICES, SCENARIO, _store_with_runs

    store = _store_with_runs(tmp_path)
    pricer = ScenarioPricer(load_scenario(write(tmp_path / "s.yaml", SCENARIO)), store, PRICES)
    costs = pricer.price_all()
    page = write_cost_html(pricer, costs, tmp_path / "cost.html", bench_report="weighbridge-bench.html")
    browser.get(page.resolve().as_uri())
    assert "weighbridge cost" in browser.title
    assert len(browser.find_elements("css selector", "svg.plot polyline")) == 3  # one line per priced option
    marks = browser.find_elements("css selector", "svg.plot circle.break-even")
    assert len(marks) == sum(1 for c in costs for b in c.break_even if b.requests_per_month)
    used = browser.find_element("css selector", "table.levels tr.used")
    assert used.find_element("css selector", "a").get_attribute("href").endswith("weighbridge-bench.html#level-2")
    assert "used · meets the SLO" in used.text
    assert severe_logs(browser) == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.get_screenshot_as_file(str(ARTIFACTS / "cost.png"))
