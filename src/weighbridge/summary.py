"""Per-model figures of one stored run: the numbers every report (terminal, JSON, HTML) shows.

Everything is computed from the run's rows in the store, so a report can be rebuilt at any time
without calling a model. Cached answers keep the latency measured when they were generated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .config import ModelSpec
from .cost import CostFigures, compute_cost
from .stats import mean, pass_at_k, percentile, wilson_interval
from .store import Store, StoredGeneration

DEFINITIONS = {
    "pass_rate": "share of (case × sample) jobs whose every scorer passed; errors count as failures",
    "ci95": "95% Wilson score interval of the pass rate",
    "latency": "request sent → last byte, per job (ms); cached answers keep their original latency",
    "ttft": "request sent → first generated content (text, reasoning or tool call), never a role-only chunk",
    "output_tok_s": "Σ completion tokens ÷ Σ latency over answered jobs (per-request speed, not server throughput)",
    "tokens": "from the server's usage when given ('server'), else the model's tokenizer ('tokenizer'), "
              "else one per streamed chunk ('chunks', where prompt tokens are unknown: '?')",
    "cost_per_success": "total cost ÷ passed jobs",
    "pass@k": "unbiased estimate over cases of passing at least once in k samples: 1 − C(n−c, k) / C(n, k)",
    "unstable": "cases where some samples pass and others fail (needs samples > 1 and temperature > 0)",
}


@dataclass
class ModelSummary:
    model: str
    backend: str
    jobs: int
    answered: int
    errors: int
    cached: int
    passed: int
    pass_rate: float
    ci95: tuple[float, float]
    by_workload: dict[str, dict[str, float]]
    latency_mean_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    ttft_mean_ms: float | None
    ttft_p95_ms: float | None
    output_tok_s: float | None
    prompt_tokens: int
    completion_tokens: int
    prompt_tokens_known: bool
    token_sources: list[str]
    cost: CostFigures
    error_kinds: dict[str, int] = field(default_factory=dict)
    license: str | None = None
    license_verdict: str | None = None
    samples: int = 1
    pass_at_k: dict[str, float] = field(default_factory=dict)  # "pass@1", "pass@n" over cases
    unstable_cases: list[str] = field(default_factory=list)  # some samples pass, some fail

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci95"] = list(self.ci95)
        return d


def summarise_model(name: str, spec: ModelSpec, rows: list[StoredGeneration], workloads: dict[str, str]) -> ModelSummary:
    answered = [r for r in rows if r.generation is not None]
    gens = [r.generation for r in answered]
    passed = sum(1 for r in rows if r.passed)
    latencies = [g.latency_ms for g in gens]
    ttfts = [g.ttft_ms for g in gens if g.ttft_ms is not None]
    prompt_tokens = sum(g.prompt_tokens or 0 for g in gens)
    completion_tokens = sum(g.completion_tokens or 0 for g in gens)
    busy_s = sum(latencies) / 1000
    by_wl: dict[str, list[bool]] = {}
    for r in rows:
        by_wl.setdefault(workloads.get(r.case_id, "general"), []).append(r.passed)
    per_case: dict[str, list[bool]] = {}
    for r in rows:
        per_case.setdefault(r.case_id, []).append(r.passed)
    samples = max((len(v) for v in per_case.values()), default=1)
    ks = sorted({1, samples})
    complete = {c: v for c, v in per_case.items() if len(v) == samples}
    at_k = {f"pass@{k}": sum(pass_at_k(samples, sum(v), k) for v in complete.values()) / len(complete)
            for k in ks} if complete else {}
    unstable = sorted(c for c, v in per_case.items() if len(set(v)) > 1)
    errors: dict[str, int] = {}
    for r in rows:
        if r.error:
            kind = r.error.split(":", 1)[0]
            errors[kind] = errors.get(kind, 0) + 1
    return ModelSummary(
        model=name, backend=spec.backend, jobs=len(rows), answered=len(answered), errors=len(rows) - len(answered),
        cached=sum(1 for r in rows if r.cached), passed=passed,
        pass_rate=passed / len(rows) if rows else 0.0, ci95=wilson_interval(passed, len(rows)),
        by_workload={w: {"passed": sum(v), "jobs": len(v), "pass_rate": sum(v) / len(v)} for w, v in sorted(by_wl.items())},
        latency_mean_ms=mean(latencies), latency_p50_ms=percentile(latencies, 50), latency_p95_ms=percentile(latencies, 95),
        ttft_mean_ms=mean(ttfts), ttft_p95_ms=percentile(ttfts, 95),
        output_tok_s=completion_tokens / busy_s if busy_s > 0 and completion_tokens else None,
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        prompt_tokens_known=all(g.prompt_tokens is not None for g in gens),
        token_sources=sorted({g.token_source for g in gens}),
        cost=compute_cost(spec.price, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          busy_seconds=busy_s, concurrency=spec.effective_concurrency, passed=passed),
        error_kinds=errors, samples=samples, pass_at_k=at_k, unstable_cases=unstable)


@dataclass
class RunSummary:
    run: dict[str, Any]
    models: list[ModelSummary]
    cases: list[dict[str, Any]]
    rows: list[StoredGeneration]

    @property
    def isolation(self) -> str:
        """How this run's model code was isolated, in one line (runs before bubblewrap stored a word)."""
        sb = self.run["manifest"].get("sandbox")
        if isinstance(sb, dict):
            return str(sb.get("summary") or sb.get("mode"))
        return f"layered guards ({sb}), not isolated" if sb else "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run["id"], "status": self.run["status"], "created_at": self.run["created_at"],
                "finished_at": self.run["finished_at"], "samples": self.run["samples"],
                "cases": len(self.cases), "definitions": DEFINITIONS,
                "models": [{**m.to_dict(), "outcomes": self.outcomes(m.model), "scores": self.scores(m.model)}
                           for m in self.models],
                "manifest": self.run["manifest"]}

    def scores(self, model: str) -> dict[str, float]:
        """Per (case, sample) mean scorer value (partial credit)."""
        return {r.key: r.mean_score for r in self.rows if r.model == model}

    def outcomes(self, model: str) -> dict[str, bool]:
        """Per (case, sample) pass/fail: what a later `weighbridge check --baseline` compares against."""
        return {r.key: r.passed for r in self.rows if r.model == model}


def summarise_run(store: Store, run_id: str) -> RunSummary:
    run = store.run(run_id)
    cases = store.run_cases(run_id)
    workloads = {c["id"]: c["workload"] for c in cases}
    rows = store.generations(run_id)
    models = []
    licenses = run["manifest"].get("licenses", {})
    for m in store.run_models(run_id):
        spec = ModelSpec.model_validate(m["spec"])
        ms = summarise_model(m["name"], spec, [r for r in rows if r.model == m["name"]], workloads)
        lic = licenses.get(m["name"]) or {}
        ms.license, ms.license_verdict = lic.get("license_name") or lic.get("license_key"), lic.get("verdict")
        models.append(ms)
    return RunSummary(run=run, models=models, cases=cases, rows=rows)
