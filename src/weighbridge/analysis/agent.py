"""Per-model figures of agent episodes: success, reliability over repeated trials, effort, and what
a successful episode costs.

pass^k is tau-bench's estimator: for a task tried n times with c successes, C(c, k) / C(n, k) is the
chance that k trials drawn from them all succeed; averaged over tasks it says how often an agent can
be trusted k times in a row (pass@k, at least once in k, is the optimist's figure beside it). Its
interval is a percentile bootstrap over tasks (seeded, so a report rebuilt reads the same). A job
that errored is a failed episode, never a dropped one.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..core.config import ModelSpec
from ..core.jsondiff import first_divergence
from ..storage.store import StoredGeneration
from .cost import CostFigures, compute_cost
from .stats import mean, pass_at_k, wilson_interval


def pass_hat_k(n: int, c: int, k: int) -> float:
    """All of k trials succeed, from n trials of which c succeeded (tau-bench): C(c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass^{k} needs at least {k} trials, got {n}")
    return math.comb(c, k) / math.comb(n, k)


def _bootstrap(values: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (0.0, 0.0)
    import numpy as np  # here, not at the top: its import (50-80 ms) is paid only by runs with agent cases

    data = np.asarray(values, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(data), size=(resamples, len(data)))
    lo, hi = np.quantile(data[idx].mean(axis=1), [0.025, 0.975])
    return float(lo), float(hi)


@dataclass
class AgentFigures:
    episodes: int
    tasks: int
    passed: int
    success_rate: float
    ci95: tuple[float, float]
    trials: int  # the fewest trials any task had: pass^k is given for k up to it
    pass_hat_k: dict[str, float] = field(default_factory=dict)
    pass_hat_k_ci95: dict[str, tuple[float, float]] = field(default_factory=dict)
    pass_at_k: dict[str, float] = field(default_factory=dict)
    steps_mean: float | None = None
    tool_calls_mean: float | None = None
    tokens_mean: float | None = None
    latency_mean_ms: float | None = None
    tool_calls: int = 0
    tool_errors: int = 0
    invalid_calls: int = 0  # never reached a tool: not JSON, unknown tool, off the schema
    terminations: dict[str, int] = field(default_factory=dict)
    diverged_at_turn: dict[str, int] = field(default_factory=dict)  # first turn whose state left the gold's
    cost: CostFigures | None = None

    @property
    def validity_rate(self) -> float | None:
        return (self.tool_calls - self.invalid_calls) / self.tool_calls if self.tool_calls else None

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)
        d["validity_rate"] = self.validity_rate
        return d


def trace_of(row: StoredGeneration) -> dict[str, Any] | None:
    raw = row.generation.raw.get("agent") if row.generation is not None else None
    return raw if isinstance(raw, dict) else None


def agent_figures(rows: list[StoredGeneration], agent_cases: set[str], spec: ModelSpec, concurrency: float,
                  concurrency_note: str) -> AgentFigures | None:
    """The figures over this model's jobs on agent cases (None when the run has none)."""
    mine = [r for r in rows if r.case_id in agent_cases]
    if not mine:
        return None
    traces = [t for t in (trace_of(r) for r in mine) if t is not None]
    per_task: dict[str, list[bool]] = {}
    for r in mine:
        per_task.setdefault(r.case_id, []).append(r.passed)
    trials = min(len(v) for v in per_task.values())
    hat: dict[str, float] = {}
    hat_ci: dict[str, tuple[float, float]] = {}
    at: dict[str, float] = {}
    for k in sorted({1, trials}):
        values = [pass_hat_k(len(v), sum(v), k) for v in per_task.values()]
        hat[f"pass^{k}"] = sum(values) / len(values)
        hat_ci[f"pass^{k}"] = _bootstrap(values)
        at[f"pass@{k}"] = sum(pass_at_k(len(v), sum(v), k) for v in per_task.values()) / len(per_task)
    terminations = Counter(t.get("termination", "?") for t in traces)
    terminations.update({"error": len(mine) - len(traces)})
    diverged: Counter[str] = Counter()
    for t in traces:
        states = list(t.get("turn_states") or [])
        gold = t.get("gold_states") or []
        if len(states) < len(gold) and t.get("end_state") is not None:  # stopped mid-turn: where it stood then
            states.append(t["end_state"])
        turn = first_divergence(gold, states)
        if turn is not None:
            diverged[str(turn)] += 1
    gens = [r.generation for r in mine if r.generation is not None]
    passed = sum(1 for r in mine if r.passed)
    prompt = sum(g.prompt_tokens or 0 for g in gens)
    completion = sum(g.completion_tokens or 0 for g in gens)
    latencies = [g.latency_ms for g in gens if g.timed]
    return AgentFigures(
        episodes=len(mine), tasks=len(per_task), passed=passed, success_rate=passed / len(mine),
        ci95=wilson_interval(passed, len(mine)), trials=trials, pass_hat_k=hat, pass_hat_k_ci95=hat_ci, pass_at_k=at,
        steps_mean=mean([float(len(t.get("steps", []))) for t in traces]),
        tool_calls_mean=mean([float(t.get("tool_calls", 0)) for t in traces]),
        tokens_mean=(prompt + completion) / len(gens) if gens else None, latency_mean_ms=mean(latencies),
        tool_calls=sum(int(t.get("tool_calls", 0)) for t in traces),
        tool_errors=sum(int(t.get("tool_errors", 0)) for t in traces),
        invalid_calls=sum(int(t.get("invalid_calls", 0)) for t in traces),
        terminations={k: v for k, v in terminations.most_common() if v},
        diverged_at_turn=dict(sorted(diverged.items(), key=lambda kv: int(kv[0]))),
        cost=compute_cost(spec.price, prompt_tokens=prompt, completion_tokens=completion,
                          busy_seconds=sum(latencies) / 1000, concurrency=concurrency, passed=passed,
                          concurrency_note=concurrency_note,
                          prompt_tokens_known=all(g.prompt_tokens is not None for g in gens)))


def agent_rows(figures: list[AgentFigures | None]) -> list[tuple[str, list[str]]]:
    """The agent table (label, one plain-text cell per model), the same for every renderer."""
    if not any(figures):
        return []

    def cells(fn: Any) -> list[str]:
        return [fn(f) if f else "–" for f in figures]

    rows = [("episodes (tasks × trials)", cells(lambda f: f"{f.episodes} ({f.tasks} × {f.trials})")),
            ("success", cells(lambda f: f"{f.success_rate:.0%} ({f.passed}/{f.episodes}) "
                                        f"[{f.ci95[0]:.0%}–{f.ci95[1]:.0%}]"))]
    keys = sorted({k for f in figures if f for k in f.pass_hat_k}, key=lambda k: int(k.split("^")[1]))
    for key in keys:
        rows.append((key, cells(lambda f, key=key: f"{f.pass_hat_k[key]:.0%} [{f.pass_hat_k_ci95[key][0]:.0%}–"
                                                   f"{f.pass_hat_k_ci95[key][1]:.0%}]" if key in f.pass_hat_k else "–")))
    for key in sorted({k for f in figures if f for k in f.pass_at_k} - {"pass@1"}, key=lambda k: int(k.split("@")[1])):
        rows.append((key, cells(lambda f, key=key: f"{f.pass_at_k[key]:.0%}" if key in f.pass_at_k else "–")))
    rows += [
        ("steps / episode", cells(lambda f: f"{f.steps_mean:.1f}" if f.steps_mean is not None else "–")),
        ("tool calls / episode", cells(lambda f: f"{f.tool_calls_mean:.1f}" if f.tool_calls_mean is not None else "–")),
        ("tool-call validity", cells(lambda f: f"{f.validity_rate:.0%} ({f.tool_calls - f.invalid_calls}/"
                                               f"{f.tool_calls})" if f.validity_rate is not None else "no calls")),
        ("tool errors", cells(lambda f: str(f.tool_errors))),
        ("tokens / episode", cells(lambda f: f"{f.tokens_mean:,.0f}" if f.tokens_mean is not None else "–")),
        ("$ / successful episode", cells(lambda f: "–" if f.cost is None else "no successes"
                                         if f.passed == 0 and f.cost.total_usd is not None
                                         else f.cost.shown(f.cost.per_success_usd))),
        ("ended by", cells(lambda f: ", ".join(f"{k} {v}" for k, v in f.terminations.items()))),
        ("state left gold at turn", cells(lambda f: ", ".join(f"{k}: {v}" for k, v in f.diverged_at_turn.items())
                                          or "never")),
    ]
    return rows
