"""Per-model figures of one stored run: the numbers every report (terminal, JSON, HTML) shows.

Everything is computed from the run's rows in the store, so a report can be rebuilt at any time
without calling a model. Cached answers keep the latency measured when they were generated.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..core.config import DEFAULT_MAX_ERROR_RATE, ModelSpec
from ..core.contention import busy_note
from .agent import AgentFigures, agent_figures
from .definitions import DEFINITIONS
from .cost import CostFigures, compute_cost, concurrency_used
from .thinking import ThinkingFigures, thinking_figures, thinking_rows
from ..scorers.schema import schema_valid
from .stats import mean, pass_at_k, percentile, wilson_interval
from ..storage.store import Store, StoredGeneration

if TYPE_CHECKING:
    from .compare import Comparison
    from .fidelity import FidelityGroup
    from .variants import VariantGroup

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
    license_caveats: list[str] = field(default_factory=list)  # what the verdict rests on that was not checked
    samples: int = 1
    pass_at_k: dict[str, float] = field(default_factory=dict)  # "pass@1", "pass@n" over cases
    unstable_cases: list[str] = field(default_factory=list)  # some samples pass, some fail
    answered_pass_rate: float | None = None
    answered_ci95: tuple[float, float] | None = None
    error_example: str | None = None  # one message of the commonest error kind
    not_run: int = 0  # cases this model cannot take (tool cases without tool support): not jobs at all
    not_run_reason: str | None = None
    long_context: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # length -> depth -> counts
    refusals: dict[str, dict[str, int]] = field(default_factory=dict)  # part -> refused / factual / jobs
    schema_valid: int = 0  # answers to json_schema-checked cases that parsed and validated
    schema_checked: int = 0
    structured_output: str = "off"
    variant_of: str | None = None  # the config entry this variant came from
    variant: str | None = None
    reference: bool = False
    variant_margin: float = 0.05
    file_bytes: int | None = None  # the weights on disk (in-process models)
    resident_bytes: int | None = None  # peak resident memory while it ran (weights resident + llama.cpp's buffers)
    runtime: dict[str, Any] | None = None
    busy: str | None = None  # "measured on a busy machine: …" when latency and speed were measured under contention
    agent: AgentFigures | None = None  # the run's agent episodes, when it has agent cases
    thinking: ThinkingFigures | None = None  # thinking apart from answers, censored answers

    @property
    def error_rate(self) -> float:
        return self.errors / self.jobs if self.jobs else 0.0

    @property
    def main_error_kind(self) -> str | None:
        return max(self.error_kinds, key=lambda k: self.error_kinds[k]) if self.error_kinds else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci95"] = list(self.ci95)
        d["answered_ci95"] = list(self.answered_ci95) if self.answered_ci95 else None
        d["error_rate"] = self.error_rate
        d["cost"]["estimated"] = self.cost.estimated
        d["agent"] = self.agent.to_dict() if self.agent else None
        d["thinking"] = self.thinking.to_dict() if self.thinking else None
        return d


# One line of advice per error kind that dominates a model's failed jobs.
ADVICE = {
    "connection": "the server dropped connections mid-request. llama-cpp-python's server does that when a "
                  "second request arrives if it was started without --interrupt_requests False: set "
                  "concurrency: 1 for this model, or restart the server with that flag",
    "timeout": "requests ran past timeout_s: raise timeout_s, or lower concurrency or max_tokens",
    "truncated": "streams ended without [DONE] or a finish_reason: the server or a proxy cut them short",
    "http_429": "the server rate-limited the requests: lower concurrency or raise max_retries",
    "http_401": "the server refused the API key: check the env var named in api_key_env",
    "http_403": "the server refused the API key: check the env var named in api_key_env",
    "http_404": "no such endpoint or model on the server: base_url usually ends in /v1; check model:",
    "context_length": "prompt + max_tokens do not fit the context: raise n_ctx or lower max_tokens",
    "stream_error": "the server sent error events mid-stream: see the server's log",
    "engine": "llama.cpp failed on these prompts: see the errors in the report",
}


def advice_for(kind: str | None) -> str | None:
    if kind is None:
        return None
    if kind.startswith("http_5"):
        return "the server failed (HTTP 5xx): see the server's log"
    return ADVICE.get(kind)


def summarise_model(name: str, spec: ModelSpec, rows: list[StoredGeneration], workloads: dict[str, str],
                    concurrency: tuple[float, str] | None = None) -> ModelSummary:
    """``concurrency``: what the engine ran the model at, and how that is known (old runs recorded
    nothing: the configured value, said so in the formula)."""
    used, how = concurrency or (spec.effective_concurrency, "configured; this run recorded none")
    answered = [r for r in rows if r.generation is not None]
    gens = [r.generation for r in rows if r.generation is not None]
    passed = sum(1 for r in rows if r.passed)
    latencies = [g.latency_ms for g in gens if g.timed]
    ttfts = [g.ttft_ms for g in gens if g.ttft_ms is not None]
    prompt_tokens = sum(g.prompt_tokens or 0 for g in gens)
    prompt_tokens_known = all(g.prompt_tokens is not None for g in gens)
    completion_tokens = sum(g.completion_tokens or 0 for g in gens)
    busy_s = math.fsum(latencies) / 1000  # exactly rounded: the same whatever order the rows were stored in
    by_wl: dict[str, list[bool]] = {}
    for r in rows:
        by_wl.setdefault(workloads.get(r.case_id, "general"), []).append(r.passed)
    per_case: dict[str, list[bool]] = {}
    for r in rows:
        per_case.setdefault(r.case_id, []).append(r.passed)
    samples = max((len(v) for v in per_case.values()), default=1)
    ks = sorted({1, samples})
    at_k = {}
    for k in ks:  # over the cases tried at least k times (a case's own trials: may differ from the run's samples)
        tried = [v for v in per_case.values() if len(v) >= k]
        if tried:
            at_k[f"pass@{k}"] = sum(pass_at_k(len(v), sum(v), k) for v in tried) / len(tried)
    unstable = sorted(c for c, v in per_case.items() if len(set(v)) > 1)
    errors: dict[str, int] = {}
    examples: dict[str, str] = {}
    for r in rows:
        if r.error:
            kind = r.error.split(":", 1)[0]
            errors[kind] = errors.get(kind, 0) + 1
            message = r.error.split(":", 1)[-1].strip()
            examples.setdefault(kind, message if len(message) <= 160 else message[:159] + "…")
    answered_passed = sum(1 for r in answered if r.passed)
    schema_scores = [s.reason for r in answered for kind, s in r.scores or [] if kind == "json_schema"]
    main_kind = max(errors, key=lambda k: errors[k]) if errors else None
    cost = compute_cost(spec.price, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                        busy_seconds=busy_s, concurrency=used, passed=passed, concurrency_note=how,
                        prompt_tokens_known=prompt_tokens_known)
    if how.endswith("an upper bound") and cost.basis == "gpu_hour":
        cost.marks.append(how)  # the denominator is not known: the hardware cost is an upper bound, marked ≈
    if not rows:  # nothing ran (every case not applicable): no cost, rather than a cost of $0 with no passes
        cost.total_usd = cost.per_mtok_output_usd = cost.per_success_usd = None
    return ModelSummary(
        model=name, backend=spec.backend, jobs=len(rows), answered=len(answered), errors=len(rows) - len(answered),
        cached=sum(1 for r in rows if r.cached), passed=passed,
        pass_rate=passed / len(rows) if rows else 0.0, ci95=wilson_interval(passed, len(rows)),
        by_workload={w: {"passed": sum(v), "jobs": len(v), "pass_rate": sum(v) / len(v)} for w, v in sorted(by_wl.items())},
        latency_mean_ms=mean(latencies), latency_p50_ms=percentile(latencies, 50), latency_p95_ms=percentile(latencies, 95),
        ttft_mean_ms=mean(ttfts), ttft_p95_ms=percentile(ttfts, 95),
        output_tok_s=completion_tokens / busy_s if busy_s > 0 and completion_tokens else None,
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        prompt_tokens_known=prompt_tokens_known,
        token_sources=sorted({g.token_source for g in gens}),
        cost=cost, error_kinds=errors, samples=samples, pass_at_k=at_k, unstable_cases=unstable,
        answered_pass_rate=answered_passed / len(answered) if answered else None,
        answered_ci95=wilson_interval(answered_passed, len(answered)) if answered else None,
        error_example=examples.get(main_kind) if main_kind else None,
        schema_valid=sum(1 for reason in schema_scores if schema_valid(reason)), schema_checked=len(schema_scores),
        structured_output=spec.structured_output, long_context=_long_context_grid(rows),
        refusals=_refusal_rates(answered, workloads), variant_of=spec.variant_of, variant=spec.variant,
        reference=spec.reference, variant_margin=spec.variant_margin,
        thinking=thinking_figures(rows, cost, completion_tokens, passed,
                                  spec.price.output_per_mtok if spec.price is not None else None))


def _refusal_rates(rows: list[StoredGeneration], workloads: dict[str, str]) -> dict[str, dict[str, int]]:
    """Per part of a refusal suite (workload refusal-*): answers refused (by the refusal scorer's
    rule set), answers that carried their facts, and answers in all."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        wl = workloads.get(r.case_id, "")
        if not wl.startswith("refusal-"):
            continue
        for kind, s in r.scores or []:
            if kind == "refusal":
                part = out.setdefault(wl.removeprefix("refusal-"), {"refused": 0, "factual": 0, "jobs": 0})
                part["jobs"] += 1
                part["refused"] += int(s.reason.startswith("refused"))
                part["factual"] += int(s.passed and not s.reason.startswith("refused"))
    return out


_LC_ID = re.compile(r"^lc-(?:needle|multi)-(?P<len>[^-]+)-d(?P<depth>\d+)$")


def _long_context_grid(rows: list[StoredGeneration]) -> dict[str, dict[str, dict[str, int]]]:
    """Passed / jobs of the long-context cases by nominal length and needle depth (from their ids)."""
    grid: dict[str, dict[str, dict[str, int]]] = {}
    for r in rows:
        m = _LC_ID.match(r.case_id)
        if m:
            cell = grid.setdefault(m["len"], {}).setdefault(m["depth"], {"passed": 0, "jobs": 0})
            cell["jobs"] += 1
            cell["passed"] += int(r.passed)
    return grid



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

    @property
    def max_error_rate(self) -> float:
        return float(self.run["config"].get("max_error_rate", DEFAULT_MAX_ERROR_RATE))

    def unreliable(self) -> list[ModelSummary]:
        """Models whose errored share of jobs passes ``max_error_rate``: their figures are not a result."""
        return [m for m in self.models if m.jobs and m.error_rate > self.max_error_rate]

    def error_banner(self) -> list[str]:
        """The lines every report puts above its figures when some model's run was mostly errors."""
        lines = []
        for m in self.unreliable():
            kind = m.main_error_kind
            lines.append(f"{m.model}: {m.errors} of {m.jobs} jobs failed: {kind} ({m.error_example}) - its pass "
                         f"rate counts them as failures; {m.answered_pass_rate:.0%} of the {m.answered} answered "
                         "jobs passed" if m.answered else
                         f"{m.model}: {m.errors} of {m.jobs} jobs failed: {kind} ({m.error_example}) - no job was "
                         "answered, so there is no result for this model")
            tip = advice_for(kind)
            if tip:
                lines.append(f"  fix: {tip}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run["id"], "status": self.run["status"], "created_at": self.run["created_at"],
                "finished_at": self.run["finished_at"], "samples": self.run["samples"],
                "score_version": self.run.get("score_version", 1),
                "cases": len(self.cases), "definitions": DEFINITIONS,
                "max_error_rate": self.max_error_rate, "unreliable_models": [m.model for m in self.unreliable()],
                "error_banner": self.error_banner(),
                "models": [{**m.to_dict(), "outcomes": self.outcomes(m.model), "scores": self.scores(m.model)}
                           for m in self.models],
                "paired": [c.to_dict() for c in self.paired],
                "variants": [g.to_dict() for g in self.variants],
                "fidelity": [g.to_dict() for g in self.fidelity],
                "manifest": self.run["manifest"]}

    @cached_property
    def paired(self) -> list[Comparison]:
        """Every other model against the first, on the same (case, sample) items - computed once here,
        shown by every renderer."""
        from .compare import compare

        if len(self.models) < 2:
            return []
        ref = self.models[0].model
        base = self.outcomes(ref)  # a model that ran none of these items (every case not applicable) has no pair
        return [compare(m.model, base, self.outcomes(m.model), ref, self.scores(ref), self.scores(m.model))
                for m in self.models[1:] if set(base) & set(self.outcomes(m.model))]

    @cached_property
    def variants(self) -> list[VariantGroup]:
        """Variants of one model compared with their reference (empty when the config lists none)."""
        from .variants import variant_groups

        return variant_groups(self)

    @cached_property
    def fidelity(self) -> list[FidelityGroup]:
        """Each variant against its reference answer by answer (deployment fidelity; see ``fidelity``)."""
        from .fidelity import fidelity_groups

        return fidelity_groups(self)

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
    agent_cases = {c["id"] for c in cases if (c.get("case") or {}).get("environment")}
    rows = store.generations(run_id)
    models = []
    licenses = run["manifest"].get("licenses", {})
    for m in store.run_models(run_id):
        spec = ModelSpec.model_validate(m["spec"])
        used = concurrency_used(run["manifest"], m["name"], m.get("runtime"))
        mine = [r for r in rows if r.model == m["name"]]
        ms = summarise_model(m["name"], spec, mine, workloads, used)
        ms.agent = agent_figures(mine, agent_cases, spec, *(used or (spec.effective_concurrency,
                                                                     "configured; this run recorded none")))
        facts = run["manifest"].get("models", {}).get(m["name"]) or {}
        if facts.get("size_bytes") is not None:
            ms.file_bytes = int(facts["size_bytes"]) + int((facts.get("lora") or {}).get("size_bytes") or 0)
        ms.runtime = m.get("runtime")
        if ms.runtime:
            ms.resident_bytes = ms.runtime.get("resident_peak_bytes")
            ms.busy = busy_note(ms.runtime.get("contention"))
            if ms.busy and ms.cost.basis == "gpu_hour":  # hardware cost is latency priced: as busy as it
                ms.cost.marks.append(ms.busy)
                if ms.agent and ms.agent.cost:
                    ms.agent.cost.marks.append(ms.busy)
        lic = licenses.get(m["name"]) or {}
        ms.license, ms.license_verdict = lic.get("license_name") or lic.get("license_key"), lic.get("verdict")
        ms.license_caveats = [str(c) for c in lic.get("caveats") or []]
        na = (run["manifest"].get("not_applicable") or {}).get(m["name"])
        if na:
            ms.not_run, ms.not_run_reason = len(na["cases"]), na["reason"]
            for cid in na["cases"]:  # lengths the model could not hold still appear in the grid, as not run
                lc = _LC_ID.match(cid)
                if lc:
                    ms.long_context.setdefault(lc["len"], {}).setdefault(lc["depth"], {"passed": 0, "jobs": 0})
        models.append(ms)
    return RunSummary(run=run, models=models, cases=cases, rows=rows)


REFUSAL_ROWS = [("refused: harmful", "harmful", "refused"), ("refused: benign (over-refusal)", "benign", "refused"),
                ("refused: contested topics", "sensitive", "refused"),
                ("contested topics, with the facts", "sensitive", "factual")]


def workload_rows(models: list[ModelSummary]) -> list[tuple[str, list[str]]]:
    """The figures a run's workloads add (refusal rates, schema-valid JSON, the structured-output
    mode), as table rows (label, one plain-text cell per model), for every renderer."""
    def rate(m: ModelSummary, part: str, key: str) -> str:
        p = m.refusals.get(part)
        return f"{p[key] / p['jobs']:.0%} ({p[key]}/{p['jobs']})" if p and p["jobs"] else "–"
    rows = []
    if any(m.refusals for m in models):
        rows += [(label, [rate(m, part, key) for m in models]) for label, part, key in REFUSAL_ROWS]
    if any(m.schema_checked for m in models):
        rows.append(("schema-valid JSON", [f"{m.schema_valid / m.schema_checked:.0%} ({m.schema_valid}/"
                                           f"{m.schema_checked})" if m.schema_checked else "–" for m in models]))
    if any(m.structured_output != "off" for m in models):
        rows.append(("structured output", [m.structured_output for m in models]))
    rows += thinking_rows([m.thinking for m in models], [m.cost for m in models])
    return rows
