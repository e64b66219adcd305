"""What a scenario costs per option, from measured runs: monthly cost, $/1M tokens, cost per
successful outcome, instances for the peak, and the break-even volume against each API.

Definitions (the report prints them):
- volume V = requests per month; operating seconds S = days × hours of operation × 3600.
- peak rate = V ÷ S × peak_to_average; instances n = ⌈peak rate ÷ capacity⌉ (at least 1), where
  capacity is the req/s of the best bench level that meets the SLO (error share ≤ 1%), scaled by
  output tokens when the bench's requests were shorter or longer than the scenario's.
- self-hosted monthly = n × per-instance + ops hours × rate + storage + egress; per instance:
  rented $/h × billed hours (hours of operation, or 24 with always_on) × days; owned capex ÷
  lifetime months + power, or an all-in $/h × 24 × days.
- API monthly = V × (input × (cached share × cached price + (1 − share) × input price) + output ×
  output price) ÷ 1e6 (+ ops hours the option names).
- $/1M tokens = monthly ÷ (V × (input + output) ÷ 1e6); cost per success = monthly ÷ (V × pass rate).
- break-even: the volume from which self-hosting *stays* cheaper than the API. With fixed costs
  F (self) and Fa (API), per-instance cost I, per-instance monthly capacity C = capacity × S ÷
  peak, API cost per request a and self-hosted variable cost per request e (egress), the API is
  cheaper in the n-th instance step at its start when (a − e)(n − 1)C + Fa − F − I·n < 0; n₀ is
  the last such n, and V* = (F − Fa + I·n₀) ÷ (a − e) (capped at n₀·C). When a − e ≤ I ÷ C the API
  is cheaper per request than any instance can be: self-hosting never stays cheaper.
"""

from __future__ import annotations

from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.errors import WeighbridgeError
from .scenario import LatencySLO, Option, PriceLine, PriceSheet, Quality, Scenario
from ..core.format import count_label, ms as _ms
from ..storage.store import Store
from .deploy_math import break_even, instances_for_peak, monthly_capacity, self_hosted_monthly

MAX_LEVEL_ERROR_SHARE = 0.01
SHAPE_TOLERANCE = 0.25


# -- the scenario's pieces ---------------------------------------------------------------------------
def api_per_request(line: PriceLine, scenario: Scenario, tokens_in: float, tokens_out: float) -> float:
    return line.cost(tokens_in, tokens_out, scenario.cached_input_share)


def per_instance_monthly(option: Option, scenario: Scenario) -> float:
    if option.kind == "rented":
        hours = 24 if option.always_on else scenario.hours_per_day
        return option.usd_per_hour * hours * scenario.days_per_month  # type: ignore[operator]
    if option.capex_usd is not None:
        return option.capex_usd / option.lifetime_months + option.power_usd_per_month  # type: ignore[operator]
    return option.usd_per_hour * 24 * scenario.days_per_month + option.power_usd_per_month  # type: ignore[operator]


@dataclass
class LevelCheck:
    level: float
    rps: float
    output_tps: float
    error_share: float
    figures: dict[str, float | None]  # ttft / e2e / tpot at the SLO's percentile, ms
    meets: bool
    why: str


@dataclass
class Capacity:
    bench_id: str
    target: str
    mode: str
    level: float | None
    measured_rps: float | None
    capacity_rps: float | None
    bench_output_tokens: float | None
    bench_input_tokens: float | None
    levels: list[LevelCheck]
    shape_note: str | None = None


@dataclass
class BreakEven:
    api: str
    requests_per_month: float | None
    text: str


@dataclass
class OptionCost:
    name: str
    kind: str
    monthly_usd: float | None = None
    per_mtok_usd: float | None = None
    per_success_usd: float | None = None
    pass_rate: float | None = None
    pass_ci95: tuple[float, float] | None = None
    quality_from: str | None = None
    instances: int | None = None
    capacity: Capacity | None = None
    breakdown: dict[str, float] = field(default_factory=dict)
    price: dict[str, Any] | None = None
    problem: str | None = None
    fix: str | None = None
    notes: list[str] = field(default_factory=list)
    break_even: list[BreakEven] = field(default_factory=list)
    # for the chart and the break-even: the cost as a function of volume
    fixed_usd: float = 0.0
    per_instance_usd: float = 0.0
    capacity_per_month: float | None = None
    per_request_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pass_ci95"] = list(self.pass_ci95) if self.pass_ci95 else None
        return d

    def monthly_at(self, volume: float) -> float | None:
        """This option's monthly cost at another volume (same shape, same SLO)."""
        if self.monthly_usd is None:
            return None
        if self.kind == "api":
            return self.fixed_usd + self.per_request_usd * volume
        return self_hosted_monthly(volume, fixed=self.fixed_usd, per_instance=self.per_instance_usd,
                                   capacity_per_month=self.capacity_per_month, per_request=self.per_request_usd)  # type: ignore[arg-type]


def check_levels(levels: list[dict[str, Any]], slo: LatencySLO) -> list[LevelCheck]:
    out = []
    pct = slo.percentile
    for lv in levels:
        requests = lv.get("requests") or 0
        errors = sum((lv.get("errors") or {}).values())
        share = errors / requests if requests else 1.0
        figures = {k: (lv.get(f"{k}_ms") or {}).get(pct) for k in ("ttft", "e2e", "tpot")}
        why = []
        if not lv.get("ok"):
            why.append("no request answered")
        if share > MAX_LEVEL_ERROR_SHARE:
            why.append(f"{share:.0%} errors")
        for k in ("ttft", "e2e", "tpot"):
            limit = getattr(slo, k)
            if limit is not None and (figures[k] is None or figures[k] > limit):
                why.append(f"{k} {pct} {_ms(figures[k])} > {_ms(limit)}")
        out.append(LevelCheck(level=lv["level"], rps=lv.get("rps") or 0.0, output_tps=lv.get("output_tps") or 0.0,
                              error_share=share, figures=figures, meets=not why, why="; ".join(why) or "meets the SLO"))
    return out


def best_level(checks: list[LevelCheck]) -> LevelCheck | None:
    """The level a scenario is priced at when its option names none: the most requests per second
    among the levels that meet the SLO."""
    meeting = [c for c in checks if c.meets]
    return max(meeting, key=lambda c: c.rps) if meeting else None


def bench_model(bench: dict[str, Any]) -> str:
    """The model a stored bench tested: its own record, or (older benches) read from the target line."""
    model = (bench.get("settings") or {}).get("model")
    if model:
        return str(model)
    target = str(bench.get("target", ""))
    for sep in (" via ", " (", " model="):
        if sep in target:
            return target.split(sep, 1)[0] if sep != " model=" else target.split(sep, 1)[1]
    return target


def bench_target(model: str, store: Store, config: Path | None) -> list[str]:
    """How ``weighbridge bench`` reaches ``model`` and stores its figures under that name, as arguments:
    the config that names it, else the spec a stored bakeoff ran it with (its URL and server id, its
    bundled alias or its GGUF), each with ``--name`` so `cost` finds the bench; else placeholders."""
    import shlex

    from ..core.config import load_config

    if config is not None and config.is_file():
        try:
            if any(m.name == model for m in load_config(config).models):
                return [model, "-c", str(config)]
        except WeighbridgeError:
            pass
    for run in store.runs(limit=200):
        for m in store.run_models(run["id"]):
            if m["name"] != model:
                continue
            spec = m["spec"]
            if spec.get("base_url") and spec.get("model"):
                return [spec["base_url"], "--server-model", spec["model"], "--name", model]
            if spec.get("bundled"):
                return [spec["bundled"], "--name", model]
            where = ((store.run(run["id"])["manifest"].get("models") or {}).get(model) or {}).get("path")
            if spec.get("path") and isinstance(where, str):
                return [where, "--name", model]  # the GGUF as the run resolved it
    return ["<URL of its server>/v1", "--server-model", "<its model id>", "--name", shlex.quote(model)]


def bench_command(target: list[str], scenario: Scenario, tokens_in: float, tokens_out: float) -> str:
    import shlex

    slo = scenario.latency_slo
    parts = [f"{k}={int(v)}ms" for k, v in (("ttft", slo.ttft), ("tpot", slo.tpot), ("e2e", slo.e2e)) if v is not None]
    where = " ".join(a if a.startswith("<") else shlex.quote(a) for a in target)
    return (f"weighbridge bench {where} --concurrency 1,2,4,8 --input-tokens {round(tokens_in)} "
            f"--output-tokens {round(tokens_out)}" + (f" --slo {','.join(parts)}" if parts else ""))


class ScenarioPricer:
    """Prices one scenario's options against a store's bench and bakeoff runs and a price sheet."""

    def __init__(self, scenario: Scenario, store: Store, prices: PriceSheet, default_run: str | None = None,
                 config: Path | None = None) -> None:
        """``default_run``: where an option that names a model but no quality takes its pass rate (the
        bakeoff whose report shows this scenario)."""
        self.default_run = default_run
        self.config = config  # where the advice's bench command finds the options' models
        self.scenario = scenario
        self.store = store
        self.prices = prices
        self._summaries: dict[str, Any] = {}
        self.tokens_in, self.tokens_out, self.tokens_from = self._tokens()

    # -- inputs from the store ---------------------------------------------------------------
    def _run_id(self, ref: str, what: str) -> str:
        if ref == "latest":
            run_id = self.store.latest_run()
            if run_id is None:
                raise WeighbridgeError(f"{what}: {self.store.path} holds no bakeoff run; run `weighbridge bakeoff` first "
                                       "or name a run id")
            return run_id
        self.store.run(ref)  # raises naming the store when there is no such run
        return ref

    def _model_summary(self, run_ref: str, model: str, what: str) -> Any:
        from ..analysis.summary import summarise_run

        run_id = self._run_id(run_ref, what)
        if run_id not in self._summaries:
            self._summaries[run_id] = summarise_run(self.store, run_id)
        summary = self._summaries[run_id]
        found = next((m for m in summary.models if m.model == model), None)
        if found is None:
            raise WeighbridgeError(f"{what}: run {run_id} has no model '{model}' (it has: "
                                   f"{', '.join(m.model for m in summary.models)})")
        return run_id, found

    def _tokens(self) -> tuple[float, float, str]:
        t = self.scenario.tokens
        if t.from_run is None:
            return float(t.input), float(t.output), "the scenario"  # type: ignore[arg-type]
        run_id, m = self._model_summary(t.from_run, t.model, "tokens.from_run")  # type: ignore[arg-type]
        if not m.answered or not m.completion_tokens:
            raise WeighbridgeError(f"tokens.from_run: model '{t.model}' answered nothing in run {run_id}")
        return (t.input or m.prompt_tokens / m.answered, t.output or m.completion_tokens / m.answered,
                f"run {run_id}, model {t.model} (mean of {m.answered} answers)")

    def _quality(self, option: Option) -> tuple[float | None, tuple[float, float] | None, str | None]:
        q = option.quality or (self.scenario.quality.model_copy(update={"model": self.scenario.quality.model or option.model})
                               if self.scenario.quality else None)
        if q is None and self.default_run and option.model:
            from ..analysis.summary import summarise_run

            if self.default_run not in self._summaries:
                self._summaries[self.default_run] = summarise_run(self.store, self.default_run)
            if not any(m.model == option.model for m in self._summaries[self.default_run].models):
                return None, None, None  # a model this run did not have: no pass rate, not an error
            q = Quality(run=self.default_run, model=option.model)
        if q is None or q.model is None:
            return None, None, None
        run_id, m = self._model_summary(q.run, q.model, f"option '{option.name}' quality")
        return m.pass_rate, m.ci95, f"run {run_id}, model {q.model} ({m.passed}/{m.jobs} passed)"

    def _find_bench(self, option: Option) -> dict[str, Any] | None:
        if option.bench != "latest":
            return self.store.bench(option.bench)
        for b in self.store.benches():
            if bench_model(b) == option.model:
                return self.store.bench(b["id"])
        return None

    # -- pricing ----------------------------------------------------------------------------------
    @property
    def volume(self) -> float:
        return self.scenario.monthly_requests

    def price_all(self) -> list[OptionCost]:
        costs = [self._price(o) for o in self.scenario.options]
        apis = [c for c in costs if c.kind == "api" and c.monthly_usd is not None]
        for c in costs:
            if c.kind != "api" and c.monthly_usd is not None:
                c.break_even = [self._break_even(c, a) for a in apis]
        return costs

    def _price(self, option: Option) -> OptionCost:
        s = self.scenario
        cost = OptionCost(name=option.name, kind=option.kind)
        cost.pass_rate, cost.pass_ci95, cost.quality_from = self._quality(option)
        total_tokens = self.volume * (self.tokens_in + self.tokens_out)
        ops_rate = s.ops.usd_per_hour
        if option.kind == "api":
            line = self.prices.get(option.price)  # type: ignore[arg-type]
            if line is None:
                cost.problem = (f"no price line '{option.price}' in the price sheet (known: "
                                f"{', '.join(p.id for p in self.prices.lines)})")
                cost.fix = "add it under prices: in the scenario, or pass --prices with your own sheet"
                return cost
            cost.price = line.model_dump()
            cost.per_request_usd = api_per_request(line, s, self.tokens_in, self.tokens_out)
            ops = (option.ops_hours_per_month or 0) * ops_rate
            cost.fixed_usd = ops
            cost.breakdown = {"tokens": cost.per_request_usd * self.volume, "ops": ops}
        else:
            capacity = self._capacity(option, cost)
            if capacity is None:
                return cost
            cost.capacity = capacity
            cost.capacity_per_month = monthly_capacity(capacity.capacity_rps, s.operating_seconds, s.peak_to_average)  # type: ignore[arg-type]
            cost.instances = instances_for_peak(self.volume, s.operating_seconds, s.peak_to_average, capacity.capacity_rps)  # type: ignore[arg-type]
            cost.per_instance_usd = per_instance_monthly(option, s)
            hours = option.ops_hours_per_month if option.ops_hours_per_month is not None else s.ops.hours_per_month
            egress = s.egress.gb_per_month * s.egress.usd_per_gb
            cost.fixed_usd = hours * ops_rate + s.storage_usd_per_month
            cost.per_request_usd = egress / self.volume
            cost.breakdown = {"hardware": cost.per_instance_usd * cost.instances, "ops": hours * ops_rate,
                              "storage": s.storage_usd_per_month, "egress": egress}
        cost.monthly_usd = sum(cost.breakdown.values())
        cost.per_mtok_usd = cost.monthly_usd / (total_tokens / 1e6) if total_tokens else None
        if cost.pass_rate:
            cost.per_success_usd = cost.monthly_usd / (self.volume * cost.pass_rate)
        elif cost.pass_rate == 0:
            cost.notes.append("no case passed in the named run: there is no cost per success")
        elif option.model or option.quality:
            cost.notes.append("no pass rate: name a bakeoff run with this model (quality: {run: …}) for the cost "
                              "per success")
        return cost

    def _capacity(self, option: Option, cost: OptionCost) -> Capacity | None:
        s = self.scenario
        bench = self._find_bench(option)
        cmd = bench_command(bench_target(option.model or option.name, self.store, self.config), s, self.tokens_in,
                            self.tokens_out)
        if bench is None:
            cost.problem = f"no stored bench of '{option.model}' in {self.store.path}: its throughput is not measured"
            cost.fix = f"run: {cmd}"
            return None
        checks = check_levels(bench["levels"], s.latency_slo)
        settings = bench.get("settings") or {}
        chosen = None
        if option.bench_level is not None:
            chosen = next((c for c in checks if c.level == option.bench_level), None)
            if chosen is None:
                cost.problem = f"{bench['id']} has no level {option.bench_level:g} (levels: " \
                               f"{', '.join(f'{c.level:g}' for c in checks)})"
                return None
        else:
            chosen = best_level(checks)
        cap = Capacity(bench_id=bench["id"], target=bench["target"], mode=bench["mode"],
                       level=chosen.level if chosen else None, measured_rps=chosen.rps if chosen else None,
                       capacity_rps=None, bench_output_tokens=None, bench_input_tokens=settings.get("input_tokens"),
                       levels=checks)
        if chosen is None:
            closest = min(checks, key=lambda c: len(c.why)) if checks else None
            cost.capacity = cap
            cost.problem = (f"no level of {bench['id']} meets the SLO ({s.latency_slo.describe()}, errors ≤ "
                            f"{MAX_LEVEL_ERROR_SHARE:.0%})" + (f": level {closest.level:g} gave {closest.why}" if closest else ""))
            cost.fix = f"a looser SLO, shorter answers or faster hardware; re-measure with: {cmd}"
            return None
        if chosen.rps <= 0:
            cost.problem = f"{bench['id']} level {chosen.level:g} answered nothing"
            return None
        bench_out = chosen.output_tps / chosen.rps if chosen.rps else None
        cap.bench_output_tokens = bench_out
        cap.capacity_rps = chosen.rps * (bench_out / self.tokens_out) if bench_out else chosen.rps
        off = [f"output {bench_out:.0f} vs {self.tokens_out:.0f}"] if bench_out and abs(bench_out / self.tokens_out - 1) > SHAPE_TOLERANCE else []
        bin_ = settings.get("input_tokens")
        if bin_ and abs(bin_ / self.tokens_in - 1) > SHAPE_TOLERANCE:
            off.append(f"input {bin_:.0f} vs {self.tokens_in:.0f}")
        if off:
            cap.shape_note = (f"the bench's requests differ from the scenario's ({'; '.join(off)} tokens): capacity is "
                              f"scaled by output tokens and its latencies are not the scenario's; for measured figures "
                              f"run: {cmd}")
            cost.notes.append(cap.shape_note)
        return cap

    def _break_even(self, own: OptionCost, api: OptionCost) -> BreakEven:
        v = break_even(own.fixed_usd, own.per_instance_usd, own.capacity_per_month, own.per_request_usd,  # type: ignore[arg-type]
                       api.per_request_usd, api.fixed_usd)
        if v is None:
            text = (f"never: {api.name} costs ${api.per_request_usd * 1e3:.4g} per 1,000 requests, less than one "
                    f"instance of {own.name} costs per 1,000 requests it can carry at the peak "
                    f"(${(own.per_instance_usd / own.capacity_per_month + own.per_request_usd) * 1e3:.4g})")  # type: ignore[operator]
        elif v == 0:
            text = f"at any volume: {own.name} is cheaper than {api.name} from the first request"
        else:
            text = (f"from {count_label(v)} requests/month {own.name} stays cheaper than {api.name} "
                    f"(this scenario: {count_label(self.volume)})")
        return BreakEven(api=api.name, requests_per_month=v, text=text)
