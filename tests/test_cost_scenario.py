"""`weighbridge cost`: the scenario arithmetic against hand-computed cases (peak sizing, per-instance
cost, API token cost, the break-even volume), and a clear message for a missing bench, a scenario
whose run or model does not exist, and an SLO no bench level meets.

The bench levels and bakeoff rows here are written into a real SQLite store by hand, so the figures
they lead to can be computed on paper; `test_cost_cli.py` prices real measured runs."""

from __future__ import annotations

import pytest

from weighbridge.backends.base import Generation
from weighbridge.pricing.deploy_cost import (ScenarioPricer, api_per_request, break_even, instances_for_peak,
                                     per_instance_monthly, self_hosted_monthly)
from weighbridge.core.errors import ConfigError, WeighbridgeError
from weighbridge.pricing.scenario import Option, PriceSheet, Scenario, load_scenario, shipped_prices
from weighbridge.scorers import Score
from weighbridge.storage.store import Store

from .conftest import write

PRICES = PriceSheet(sheet_date="2026-12-02", lines=[
    {"id": "cheap/api", "input_per_mtok": 0.56, "cached_input_per_mtok": 0.07, "output_per_mtok": 1.68,
     "source": "https://example.invalid/prices", "as_of": "2026-12-02"},
    {"id": "dear/api", "input_per_mtok": 2.5, "output_per_mtok": 10.0, "source": "https://example.invalid/p2",
     "as_of": "2026-12-02"}])


def test_break_even_is_where_self_hosting_stays_cheaper():
    # F = $50 fixed, I = $100 per instance carrying C = 100,000 requests; the API costs $0.002 a request
    v = break_even(50, 100, 100_000, 0.0, 0.002)
    assert v == pytest.approx(125_000)  # (F + I·n₀) ÷ a with n₀ = ⌈(50 + 200) ÷ (200 − 100)⌉ − 1 = 2
    assert self_hosted_monthly(125_000, fixed=50, per_instance=100, capacity_per_month=100_000,
                               per_request=0) == pytest.approx(0.002 * 125_000)
    # one instance is cheaper just below 100k, then a second instance makes the API cheaper again until 125k
    assert self_hosted_monthly(99_999, fixed=50, per_instance=100, capacity_per_month=100_000, per_request=0) < 0.002 * 99_999
    assert self_hosted_monthly(110_000, fixed=50, per_instance=100, capacity_per_month=100_000, per_request=0) > 0.002 * 110_000
    for volume in range(125_001, 2_000_000, 7_919):  # and from the break-even on, it stays cheaper
        assert self_hosted_monthly(volume, fixed=50, per_instance=100, capacity_per_month=100_000,
                                   per_request=0) <= 0.002 * volume
    # an API cheaper per request than an instance can ever be: no break-even
    assert break_even(50, 100, 100_000, 0.0, 0.0009) is None
    # egress per request counts against self-hosting: 0.002 − 0.0011 = 0.0009 per request left, again never
    assert break_even(50, 100, 100_000, 0.0011, 0.002) is None
    # an API option with more fixed cost (its ops) than self-hosting's fixed + one instance: cheaper from 0
    assert break_even(0, 10, 1_000_000, 0.0, 0.001, fixed_api=20) == 0.0
    assert break_even(0, 10, 1_000_000, 0.0, 0.001) == pytest.approx(10_000)


def test_peak_sizing_and_per_instance_costs():
    # 20,000 a day × 30 days in 12 h a day: 0.463 req/s on average, ×3 at the peak = 1.389 req/s
    assert instances_for_peak(600_000, 30 * 12 * 3600, 3, 0.5) == 3  # 2.78 → 3
    assert instances_for_peak(600_000, 30 * 12 * 3600, 3, 600_000 / (30 * 12 * 3600) * 3) == 1  # exactly 1
    assert instances_for_peak(10, 30 * 24 * 3600, 1, 5.0) == 1  # never fewer than one
    s = Scenario.model_validate({"requests_per_day": 20_000, "hours_per_day": 12, "tokens": {"input": 400, "output": 150},
                                 "options": [{"name": "x", "kind": "api", "price": "cheap/api"}]})
    rented = Option(name="r", kind="rented", usd_per_hour=0.10, model="m")
    assert per_instance_monthly(rented, s) == pytest.approx(0.10 * 12 * 30)
    assert per_instance_monthly(rented.model_copy(update={"always_on": True}), s) == pytest.approx(0.10 * 24 * 30)
    owned = Option(name="o", kind="owned", capex_usd=1200, lifetime_months=36, power_usd_per_month=8, model="m")
    assert per_instance_monthly(owned, s) == pytest.approx(1200 / 36 + 8)
    # API: 400 in (half of them cache hits) and 150 out per request
    line = PRICES.get("cheap/api")
    half = s.model_copy(update={"cached_input_share": 0.5})
    assert api_per_request(line, half, 400, 150) == pytest.approx((400 * (0.5 * 0.07 + 0.5 * 0.56) + 150 * 1.68) / 1e6)


def _level(level: float, rps: float, out_tps: float, e2e_p95: float, ttft_p95: float, errors: int = 0,
           requests: int = 20) -> dict:
    pct = lambda v: {"p50": v * 0.8, "p90": v * 0.95, "p95": v, "p99": v * 1.1, "mean": v * 0.85}  # noqa: E731
    return {"level": level, "rps": rps, "output_tps": out_tps, "requests": requests, "ok": requests - errors,
            "errors": {"timeout": errors} if errors else {}, "ttft_ms": pct(ttft_p95), "e2e_ms": pct(e2e_p95),
            "tpot_ms": pct(20.0), "itl_ms": pct(20.0), "mode": "closed"}


def _store_with_runs(tmp_path) -> Store:
    st = Store(tmp_path / "w.db")
    st.save_bench(target="smol via llama_cpp.server on http://127.0.0.1:1/v1", mode="closed",
                  settings={"model": "smol", "input_tokens": 400, "output_tokens": 150},
                  levels=[_level(1, 1.0, 150.0, 2000, 300), _level(2, 1.6, 240.0, 4000, 600),
                          _level(4, 2.0, 300.0, 9000, 2500)], stopped=None)
    run = st.create_run(config={}, manifest={}, suite_hash="h", samples=1,
                        models=[("smol", "llamacpp", "k", {"name": "smol", "backend": "llamacpp", "bundled": "smollm2-135m"})],
                        cases=[(f"c{i}", "s", "general", {"id": f"c{i}", "prompt": "q"}) for i in range(4)])
    for i in range(4):
        gen = Generation(text="a", finish_reason="stop", prompt_tokens=400, completion_tokens=150,
                         token_source="tokenizer", latency_ms=1000.0, ttft_ms=100.0, decode_ms=900.0)
        st.record(run, "smol", f"c{i}", 0, f"key{i}", "k", gen, [("exact", Score(i < 3, float(i < 3), "r"))], cached=False)
    st.set_status(run, "finished")
    return st


SCENARIO = """\
name: support
requests_per_day: 20000
hours_per_day: 12
peak_to_average: 3
tokens: {input: 400, output: 150}
latency_slo: {e2e: 5s, ttft: 1s}
ops: {hours_per_month: 4, usd_per_hour: 100}
storage_usd_per_month: 2
egress: {gb_per_month: 10, usd_per_gb: 0.09}
quality: {run: latest}
options:
  - {name: vm, kind: rented, usd_per_hour: 0.10, model: smol}
  - {name: cheap, kind: api, price: cheap/api}
  - {name: dear, kind: api, price: dear/api}
"""


def test_a_scenario_is_priced_from_the_stored_bench_and_run(tmp_path):
    st = _store_with_runs(tmp_path)
    s = load_scenario(write(tmp_path / "s.yaml", SCENARIO))
    pricer = ScenarioPricer(s, st, PRICES)
    vm, cheap, dear = pricer.price_all()
    # level 2 is the best that meets e2e p95 ≤ 5 s and ttft p95 ≤ 1 s (level 4 misses both)
    assert vm.capacity.level == 2 and vm.capacity.capacity_rps == pytest.approx(1.6)  # 240/1.6 = 150 out: no scaling
    assert vm.instances == 1  # peak 1.389 req/s ≤ 1.6
    hardware = 0.10 * 12 * 30
    assert vm.breakdown == pytest.approx({"hardware": hardware, "ops": 400, "storage": 2, "egress": 0.9})
    assert vm.monthly_usd == pytest.approx(hardware + 400 + 2 + 0.9)
    volume = 600_000
    assert vm.per_mtok_usd == pytest.approx(vm.monthly_usd / (volume * 550 / 1e6))
    assert vm.pass_rate == 0.75 and vm.per_success_usd == pytest.approx(vm.monthly_usd / (volume * 0.75))
    per_req = (400 * 0.56 + 150 * 1.68) / 1e6
    assert cheap.monthly_usd == pytest.approx(volume * per_req) and cheap.instances is None
    # break-even against each API, from the same formula with this option's numbers
    C = 1.6 * 30 * 12 * 3600 / 3
    be = {b.api: b for b in vm.break_even}
    assert be["cheap"].requests_per_month == pytest.approx(break_even(402, hardware, C, 0.9 / volume, per_req))
    assert be["dear"].requests_per_month == pytest.approx(break_even(402, hardware, C, 0.9 / volume,
                                                                      (400 * 2.5 + 150 * 10) / 1e6))
    assert vm.monthly_at(be["dear"].requests_per_month) == pytest.approx(dear.monthly_at(be["dear"].requests_per_month))


def test_missing_bench_says_what_to_run(tmp_path):
    st = _store_with_runs(tmp_path)
    s = load_scenario(write(tmp_path / "s.yaml", SCENARIO.replace("model: smol}", "model: qwen}")
                            .replace("quality: {run: latest}\n", "")))
    vm = ScenarioPricer(s, st, PRICES).price_all()[0]
    assert vm.monthly_usd is None and "no stored bench of 'qwen'" in vm.problem
    # no config or stored run says where 'qwen' is served: the command says what to fill in
    assert vm.fix == ("run: weighbridge bench <URL of its server>/v1 --server-model <its model id> --name qwen "
                      "--concurrency 1,2,4,8 --input-tokens 400 --output-tokens 150 --slo ttft=1000ms,e2e=5000ms")


def test_an_slo_no_level_meets_names_the_closest_level(tmp_path):
    st = _store_with_runs(tmp_path)
    s = load_scenario(write(tmp_path / "s.yaml", SCENARIO.replace("latency_slo: {e2e: 5s, ttft: 1s}",
                                                                   "latency_slo: {e2e: 1500ms}")))
    vm = ScenarioPricer(s, st, PRICES).price_all()[0]
    assert vm.monthly_usd is None and vm.break_even == []
    assert vm.problem.startswith("no level of bench-") and "meets the SLO (e2e p95 ≤ 1.5 s, errors ≤ 1%)" in vm.problem
    assert "level 1 gave e2e p95 2.00 s > 1.50 s" in vm.problem


@pytest.mark.parametrize("change,message", [
    (("quality: {run: latest}", "quality: {run: latest, model: nope}"), "has no model 'nope' (it has: smol)"),
    (("quality: {run: latest}", "quality: {run: 20990101-000000-abcdef}"), "no run '20990101-000000-abcdef'"),
    (("tokens: {input: 400, output: 150}", "tokens: {from_run: latest, model: ghost}"), "has no model 'ghost'"),
])
def test_a_run_or_model_that_does_not_exist_is_a_clear_error(tmp_path, change, message):
    st = _store_with_runs(tmp_path)
    s = load_scenario(write(tmp_path / "s.yaml", SCENARIO.replace(*change)))
    with pytest.raises(WeighbridgeError) as e:
        ScenarioPricer(s, st, PRICES).price_all()
    assert message in str(e.value)


def test_an_empty_store_says_run_a_bakeoff_first(tmp_path):
    s = load_scenario(write(tmp_path / "s.yaml", SCENARIO))
    with pytest.raises(WeighbridgeError, match="holds no bakeoff run; run `weighbridge bakeoff` first"):
        ScenarioPricer(s, Store(tmp_path / "empty.db"), PRICES).price_all()


def test_tokens_can_come_from_a_stored_run(tmp_path):
    st = _store_with_runs(tmp_path)
    s = load_scenario(write(tmp_path / "s.yaml", SCENARIO.replace("tokens: {input: 400, output: 150}",
                                                                   "tokens: {from_run: latest, model: smol}")))
    p = ScenarioPricer(s, st, PRICES)
    assert (p.tokens_in, p.tokens_out) == (400, 150) and "mean of 4 answers" in p.tokens_from


@pytest.mark.parametrize("change,message", [
    (("requests_per_day: 20000", "requests_per_day: 20000\nrequests_per_month: 5"), "requests_per_day or requests_per_month"),
    (("{name: cheap, kind: api, price: cheap/api}", "{name: cheap, kind: api}"), "an api option needs price"),
    (("{name: dear, kind: api, price: dear/api}", "{name: vm, kind: api, price: dear/api}"), "two options are named 'vm'"),
    (("latency_slo: {e2e: 5s, ttft: 1s}", "latency_slo: {e2e: soon}"), "'soon' is not a duration"),
    (("{name: vm, kind: rented, usd_per_hour: 0.10, model: smol}", "{name: vm, kind: owned, capex_usd: 900, model: smol}"),
     "capex_usd needs lifetime_months"),
    (("hours_per_day: 12", "hours_per_day: 12\nhours_per_day: 24"), "duplicate key"),  # no silent last-one-wins
])
def test_bad_scenarios_name_file_line_and_field(tmp_path, change, message):  # noqa: D103 - the params say it
    with pytest.raises(ConfigError) as e:
        load_scenario(write(tmp_path / "s.yaml", SCENARIO.replace(*change)))
    assert message in str(e.value) and "s.yaml:" in str(e.value)


def test_the_shipped_price_sheet_is_sourced_and_dated():
    sheet = shipped_prices()
    assert {"deepseek/deepseek-chat", "openai/gpt-4o-mini"} <= {p.id for p in sheet.lines}
    for p in sheet.lines:
        assert p.source.startswith("https://") and p.as_of[:4] == "2026"


def test_a_users_price_sheet_is_validated_like_a_config(tmp_path):
    from weighbridge.pricing.scenario import load_prices

    bad = write(tmp_path / "prices.yaml", "sheet_date: '2026-12-01'\nlines:\n"
                "  - {id: x/y, input_per_mtok: -1, output_per_mtok: 1, source: 'https://x', as_of: '2026-12-01'}\n")
    with pytest.raises(ConfigError) as e:
        load_prices(bad)
    assert "prices.yaml:3" in str(e.value) and "lines.0.input_per_mtok" in str(e.value)
    unsourced = write(tmp_path / "p2.yaml", "sheet_date: '2026-12-01'\nlines:\n  - {id: x/y, input_per_mtok: 1, "
                      "output_per_mtok: 1, as_of: '2026-12-01'}\n")
    with pytest.raises(ConfigError, match="source"):
        load_prices(unsourced)  # a price without where it was read is refused
