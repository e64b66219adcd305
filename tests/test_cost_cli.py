"""`weighbridge cost` on real measured runs: a load test of the bundled SmolLM2 through a real
llama.cpp server and a real bakeoff, priced against two API lines of the shipped sheet; the
figures it prints follow from the stored levels, and the bakeoff report carries the same section."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from weighbridge.cli import app as cli
from weighbridge.storage.store import Store

from .conftest import write

runner = CliRunner()

SCENARIO = """\
name: triage
requests_per_day: 3000
hours_per_day: 10
peak_to_average: 2
tokens: {input: 64, output: 16}
latency_slo: {e2e: 30s}
ops: {hours_per_month: 1, usd_per_hour: 50}
quality: {run: latest}
options:
  - {name: vm, kind: rented, usd_per_hour: 0.10, model: smollm2-135m}
  - {name: deepseek, kind: api, price: deepseek/deepseek-chat}
  - {name: mini, kind: api, price: openai/gpt-4o-mini}
"""


@pytest.mark.slow
def test_cost_prices_a_measured_bench_and_run_against_two_api_lines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "weighbridge.yaml", "models:\n  - {name: smollm2-135m, backend: llamacpp, bundled: smollm2-135m, "
          "n_threads: 2, params: {max_tokens: 16}}\nsuites: ['builtin:starter[:3]']\n")
    write(tmp_path / "scenario.yaml", SCENARIO)
    r = runner.invoke(cli, ["cost", "scenario.yaml"])  # nothing measured yet
    assert r.exit_code == 2 and "no such store" in r.output

    r = runner.invoke(cli, ["bench", "smollm2-135m", "--concurrency", "1,2", "--requests", "3", "--warmup", "0",
                            "--input-tokens", "64", "--output-tokens", "16", "--threads", "2"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["cost", "scenario.yaml"])  # a bench, but no bakeoff for the pass rate
    assert r.exit_code == 2 and "holds no bakeoff run; run `weighbridge bakeoff` first" in r.output
    assert runner.invoke(cli, ["bakeoff"]).exit_code == 0

    r = runner.invoke(cli, ["cost", "scenario.yaml", "--json", "cost.json", "--html", "cost.html"])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "cost.json").read_text())
    vm, ds, mini = data["options"]
    st = Store(tmp_path / "weighbridge.db")
    bench = st.bench(st.benches()[0]["id"])
    level = next(lv for lv in bench["levels"] if lv["level"] == vm["capacity"]["level"])
    assert level["rps"] == max(lv["rps"] for lv in bench["levels"] if lv["e2e_ms"]["p95"] <= 30_000)
    volume = 3000 * 30
    cap = vm["capacity"]["capacity_rps"]
    assert cap == pytest.approx(level["rps"] * (level["output_tps"] / level["rps"]) / 16)
    assert vm["instances"] == max(1, math.ceil(volume / (30 * 10 * 3600) * 2 / cap - 1e-9))
    assert vm["monthly_usd"] == pytest.approx(vm["instances"] * 0.10 * 10 * 30 + 50)
    assert ds["monthly_usd"] == pytest.approx(volume * (64 * 0.56 + 16 * 1.68) / 1e6)
    assert mini["monthly_usd"] == pytest.approx(volume * (64 * 0.15 + 16 * 0.60) / 1e6)
    run = st.latest_run()
    passed = sum(1 for g in st.generations(run) if g.passed)
    assert vm["pass_rate"] == pytest.approx(passed / 3)
    assert {b["api"] for b in vm["break_even"]} == {"deepseek", "mini"}
    assert "break-even:" in r.output and "deepseek/deepseek-chat $0.56 in / $1.68 out per 1M" in r.output
    html = (tmp_path / "cost.html").read_text()
    assert "Monthly cost against volume" in html and f"levels of {bench['id']}" in html

    r = runner.invoke(cli, ["report", "--scenario", "scenario.yaml", "-o", "report.html"])
    assert r.exit_code == 0, r.output
    assert "<h2 id=cost>Cost: triage</h2>" in (tmp_path / "report.html").read_text()
