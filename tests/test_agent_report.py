"""Agent episodes in the reports: the agent table (success, pass^k, steps, $ per success, how episodes
ended) in the terminal, JSON and HTML alike; the trace view of each episode - turns, calls with their
arguments, results, the end state against the gold - in the HTML report opened in headless Chromium
and on `weighbridge view`'s run page, with a hostile model's text shown as text."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from weighbridge.analysis.summary import summarise_run
from weighbridge.backends.toolcalls import make_call
from weighbridge.core.config import load_config
from weighbridge.core.types import Generation, Timings
from weighbridge.report.html import write_html
from weighbridge.report.terminal import render
from weighbridge.storage.store import Store
from weighbridge.suites import load_suite

from .conftest import free_port, write
from .test_agent_suite import GoldPlayer, _bake
from .test_report_browser import ARTIFACTS, browser, severe_logs  # noqa: F401 - browser is a fixture

pytestmark = pytest.mark.usefixtures("need_bubblewrap")
HOSTILE = "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>"


class HostileScripted:
    """A scripted model (fake, named so): answers with markup, calls an unknown tool, then a real one badly."""

    name = "hostile"

    def __init__(self):
        self.n = 0

    def identity(self):
        return {"backend": "hostile-scripted"}

    manifest = identity

    async def preflight(self):
        return None

    async def generate(self, request):
        self.n += 1
        t = Timings(sent=time.perf_counter_ns())
        t.mark_token()
        t.done = time.perf_counter_ns()
        if request.messages[-1]["role"] == "user":
            calls = [make_call("h1", "drop_database", "{}"), make_call("h2", "get_order", '{"order_id": "A1001"}')]
            return Generation.from_timings(t, text=HOSTILE, finish_reason="tool_calls", prompt_tokens=50,
                                           completion_tokens=9, token_source="engine", tool_calls=calls)
        return Generation.from_timings(t, text=HOSTILE, finish_reason="stop", prompt_tokens=60, completion_tokens=9,
                                       token_source="engine")

    async def aclose(self):
        return None


@pytest.fixture(scope="module")
def agent_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agent-report")
    cfg = load_config(write(tmp / "weighbridge.yaml", (
        "models:\n  - {name: gold, backend: openai, base_url: 'http://127.0.0.1:9/v1', model: x,\n"
        "     price: {input_per_mtok: 1.0, output_per_mtok: 2.0}}\n"
        "  - {name: hostile, backend: openai, base_url: 'http://127.0.0.1:9/v1', model: y,\n"
        "     price: {input_per_mtok: 1.0, output_per_mtok: 2.0}}\n"
        "samples: 2\nsuites: ['builtin:agent[:6]']\n")))
    store = Store(tmp / "wb.db")
    player = GoldPlayer(load_suite("builtin:agent"))
    stats = asyncio.run(_bake(cfg, store, {"gold": player, "hostile": HostileScripted()}))
    return tmp, store, stats.run_id


def test_the_agent_table_gives_success_pass_k_effort_and_cost_per_success(agent_run):
    _, store, run_id = agent_run
    summary = summarise_run(store, run_id)
    gold, hostile = (m.agent for m in summary.models)
    assert gold.episodes == 12 and gold.tasks == 6 and gold.trials == 2
    assert hostile.passed == 0 and hostile.pass_hat_k["pass^2"] == 0.0
    assert hostile.invalid_calls == 14 and hostile.validity_rate == 0.5  # 7 turns × 2 trials: the unknown tool never ran, get_order did
    by_case = {}
    for r in summary.rows:
        if r.model == "gold":
            by_case.setdefault(r.case_id, []).append(r.passed)
    expected = sum(all(v) for v in by_case.values()) / len(by_case)  # 2 trials, deterministic: pass^2 = all passed
    assert gold.pass_hat_k["pass^2"] == pytest.approx(expected)
    rows = [r for r in summary.rows if r.model == "gold"]
    tokens = sum(r.generation.prompt_tokens for r in rows) * 1.0 + sum(r.generation.completion_tokens for r in rows) * 2.0
    assert gold.cost.per_success_usd == pytest.approx(tokens / 1e6 / gold.passed)
    console = Console(record=True, width=200)
    render(summary, console)
    text = console.export_text()
    assert "Agent episodes" in text and "pass^2" in text and "$ / successful episode" in text
    figures = summary.to_dict()["models"][0]["agent"]
    assert figures["pass_hat_k"]["pass^2"] == gold.pass_hat_k["pass^2"] and figures["validity_rate"] == 1.0


def test_the_trace_view_renders_in_chromium_and_shows_hostile_text_as_text(agent_run, browser):  # noqa: F811
    tmp, store, run_id = agent_run
    page = write_html(summarise_run(store, run_id), tmp / "report.html")
    browser.get(page.resolve().as_uri())
    assert browser.title.startswith("weighbridge run")  # no script of the model's ran
    assert browser.find_element("id", "agent").is_displayed()
    traces = browser.find_elements("css selector", "details.trace")
    assert len(traces) == 24  # 6 tasks × 2 trials × 2 models
    traces[1].find_element("css selector", "summary").click()
    body = traces[1].text
    assert "drop_database" in body and "never reached the tool" in body and "stopped:" in body
    assert HOSTILE[:20] in body  # shown as text
    assert not browser.find_elements("css selector", "td img")
    assert severe_logs(browser) == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.get_screenshot_as_file(str(ARTIFACTS / "agent-trace.png"))


def test_weighbridge_view_shows_the_same_traces(agent_run):
    tmp, _, run_id = agent_run
    port = free_port()
    exe = Path(sys.executable).parent / "weighbridge"
    proc = subprocess.Popen([str(exe), "view", "--store", str(tmp / "wb.db"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})
    try:
        deadline = time.time() + 30
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/run/{run_id}", timeout=2)
                if page.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.2)
        assert page.text.count("<details class=trace>") == 24 and "Agent episodes" in page.text
        assert "&lt;script&gt;" in page.text and "<script>document.title" not in page.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_model_that_can_take_no_agent_case_is_shown_as_not_run_and_the_report_still_renders(tmp_path):
    cfg = load_config(write(tmp_path / "weighbridge.yaml", (
        "models:\n  - {name: gold, backend: openai, base_url: 'http://127.0.0.1:9/v1', model: x}\n"
        "  - {name: base, backend: openai, base_url: 'http://127.0.0.1:9/v1', model: y, mode: completion}\n"
        "suites: ['builtin:agent[:2]']\n")))
    store = Store(tmp_path / "wb.db")
    base = HostileScripted()
    base.name = "base"
    stats = asyncio.run(_bake(cfg, store, {"gold": GoldPlayer(load_suite("builtin:agent")), "base": base}))
    assert base.n == 0  # never asked
    summary = summarise_run(store, stats.run_id)
    assert summary.models[1].not_run == 2 and "completion mode" in summary.models[1].not_run_reason
    assert summary.paired == [] and summary.models[1].agent is None
    assert "Agent episodes" in write_html(summary, tmp_path / "r.html").read_text(encoding="utf-8")
