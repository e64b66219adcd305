"""`weighbridge view` as a real server process over a real store, read in headless Chromium: the
runs list, a run's page, two runs compared (paired stats, flips), a model's trend, two load tests
side by side; screenshots are kept. It binds loopback only."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from weighbridge.cli import app as cli
from weighbridge.analysis.compare import compare, outcomes_from_run
from weighbridge.storage.store import Store

from .conftest import free_port
from .test_report_browser import ARTIFACTS, browser, make_run, severe_logs  # noqa: F401 - browser is a fixture


def _level(level: float, e2e: float) -> dict:
    pct = {"p50": e2e, "p90": e2e, "p95": e2e, "p99": e2e * 1.2, "mean": e2e}
    return {"level": level, "rps": level / (e2e / 1000), "output_tps": 10 * level, "requests": 10, "ok": 10, "errors": {},
            "ttft_ms": {k: v / 4 for k, v in pct.items()}, "e2e_ms": pct, "tpot_ms": pct, "itl_ms": pct,
            "goodput_rps": None, "client_cpu": 0.1, "client_bound": False, "mode": "closed"}


@pytest.fixture()
def viewer(tmp_path):
    store = Store(tmp_path / "view.db")
    runs = [make_run(store, 30, flip_every=k) for k in (5, 3, 2)]  # three runs of one suite, alpha getting worse
    for i in range(2):
        store.save_bench(target=f"m{i} via llama_cpp.server on http://127.0.0.1:1/v1", mode="closed",
                         settings={"model": f"m{i}"}, levels=[_level(1, 900 + 300 * i), _level(2, 1500 + 300 * i)],
                         stopped=None)
        time.sleep(0.01)
    port = free_port()
    exe = Path(sys.executable).parent / "weighbridge"
    proc = subprocess.Popen([str(exe), "view", "--store", str(tmp_path / "view.db"), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                if httpx.get(base + "/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read().decode() if proc.stdout else ""
            time.sleep(0.2)
        yield base, store, runs
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_view_shows_runs_a_comparison_a_trend_and_load_tests(browser, viewer):  # noqa: F811
    base, store, runs = viewer
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.get(base + "/")
    rows = browser.find_elements("css selector", "tr.run")
    assert [r.get_attribute("data-run") for r in rows] == list(reversed(runs))  # newest first
    assert "alpha" in rows[0].text and "%" in rows[0].text
    browser.get_screenshot_as_file(str(ARTIFACTS / "view-runs.png"))

    # tick the two oldest runs and compare: the page's figures are compare()'s on the same pairs
    boxes = browser.find_elements("css selector", "input[name=pick]")
    boxes[1].click()
    boxes[2].click()
    browser.find_element("id", "cmp").click()
    assert "/compare?a=" in browser.current_url
    expected = compare("alpha", outcomes_from_run(store, runs[0])["alpha"], outcomes_from_run(store, runs[1])["alpha"], runs[0])
    pair = browser.find_element("css selector", "#compare tr.pair").text
    assert f"{expected.delta:+.1%}" in pair and f"{expected.p_value:.3g}" in pair
    flips = browser.find_elements("css selector", "#flips li")
    assert len(flips) == sum(len(compare(m, outcomes_from_run(store, runs[0])[m], outcomes_from_run(store, runs[1])[m],
                                          runs[0]).fixed + compare(m, outcomes_from_run(store, runs[0])[m],
                                          outcomes_from_run(store, runs[1])[m], runs[0]).broken) for m in ("alpha", "beta"))
    browser.get_screenshot_as_file(str(ARTIFACTS / "view-compare.png"))

    # a model's trend over the runs of its suite: one point per run, oldest first, an interval band
    browser.get(base + "/")
    browser.find_element("link text", "alpha").click()
    points = browser.find_elements("css selector", "#trend tr.point")
    assert len(points) == 3 and [p.find_element("css selector", "a").text for p in points] == runs
    assert browser.find_elements("css selector", "svg.plot polygon.band")
    rates = [float(p.find_elements("css selector", "td")[3].text.split("%")[0]) for p in points]
    assert rates[0] > rates[-1]  # alpha was made worse run by run
    browser.get_screenshot_as_file(str(ARTIFACTS / "view-trend.png"))

    browser.get(base + "/bench")
    for box in browser.find_elements("css selector", "input[name=b]"):
        box.click()
    browser.find_element("id", "show").click()
    curves = browser.find_elements("css selector", "#curves svg.plot")
    assert len(curves) == 3 and len(curves[0].find_elements("css selector", "polyline")) == 2
    browser.get_screenshot_as_file(str(ARTIFACTS / "view-bench.png"))

    browser.get(base + f"/run/{runs[0]}")
    assert "weighbridge bakeoff" in browser.page_source and "<b>not bold</b>" not in browser.page_source
    assert httpx.get(base + "/run/nope").status_code == 404
    assert severe_logs(browser) == []


def test_view_binds_loopback_only(tmp_path):
    Store(tmp_path / "v.db")
    r = CliRunner().invoke(cli, ["view", "--store", str(tmp_path / "v.db"), "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "refusing to bind 0.0.0.0" in r.output
    r = CliRunner().invoke(cli, ["view", "--store", str(tmp_path / "missing.db")])
    assert r.exit_code == 2 and "no such store" in r.output
