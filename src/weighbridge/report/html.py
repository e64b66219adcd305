"""A single-file HTML report: summary per model and every case side by side. Opens offline.

Inline CSS and a few lines of inline JS (filters, search); no CDN, no external request. The page is
``templates/run.html.j2``; this module only turns a ``RunSummary`` into the rows and cells it shows
(figures formatted by ``format.py``), so what a figure says is decided in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..core.files import write_atomic
from ..core.types import Generation, ToolCall
from ..suites.longcontext import parse_length
from ..analysis.agent import agent_rows
from ..analysis.definitions import DEFINITIONS
from ..analysis.summary import ModelSummary, RunSummary, workload_rows
from ..analysis.thinking import censored_lines
from ..eval.thinking import censored
from ..analysis.fidelity import RULES as FIDELITY_RULES
from ..analysis.fidelity import fidelity_rows, shown_items, stack_lines
from ..analysis.variants import RULE, pick_lines
from ..core.format import ms
from .svg import latency_distribution, quality_vs_cost
from .templating import render, safe
from .terminal import cost_notes, prompt_tokens_cell
from .trace import TraceView, trace_view

FOLD_AT = 600  # characters: longer answers fold behind a "show all" toggle
_QUOTE_KIND = {"transcribed": " (as transcribed by others; vendor file not read)",
               "paraphrase": " (paraphrase, not the license's words)"}


@dataclass
class Cell:
    """One model's figure in a summary row: its text, and what the page marks beside it."""

    text: str
    why: str | None = None  # a second, smaller line
    busy: str | None = None  # measured on a busy machine: the † and its reason
    approx: bool = False  # an estimate: the ≈
    lic: str | None = None  # a licence verdict, coloured


@dataclass
class Answer:
    """One model's answer to one (case, sample) in the side-by-side table."""

    missing: bool = False
    error: str | None = None
    passed: bool = False
    text: str = ""
    tool_calls: list[ToolCall] | None = None
    why: str = ""
    latency_ms: float | None = None
    tokens: int | None = None  # unknown: shown as '?', never as 0
    cached: bool = False
    flip: str | None = None  # "fixed" / "broken" against the baseline
    trace: TraceView | None = None  # an agent episode: its turns, steps, calls and end state
    reasoning: str | None = None  # the thinking, kept apart from the answer
    censored: str | None = None  # why it was not scored: the thinking was cut off


@dataclass
class CaseRow:
    label: str
    workload: str
    prompt: str
    cells: list[Answer] = field(default_factory=list)
    failed: bool = False
    disagree: bool = False
    flipped: bool = False
    unstable: bool = False


def _summary_rows(summary: RunSummary) -> list[tuple[str, list[Cell]]]:
    models = summary.models
    rows: list[tuple[str, list[Cell]]] = []

    def plain(label: str, texts: list[str]) -> None:
        rows.append((label, [Cell(t) for t in texts]))

    def busy(m: ModelSummary, text: str) -> Cell:
        return Cell(text, busy=m.busy if m.busy and text != "–" else None)

    if any(m.license_verdict for m in models):
        rows.append(("license", [Cell((m.license_verdict or "–").replace("_", " "), why=m.license or "unknown",
                                      lic=m.license_verdict or "") for m in models]))
    plain("pass rate", [f"{m.pass_rate:.1%} ({m.passed}/{m.jobs})" if m.jobs else "not run" for m in models])
    if any(m.errors for m in models):
        plain("pass rate, answered jobs", [f"{m.answered_pass_rate:.1%} ({m.passed}/{m.answered})"
                                           if m.answered_pass_rate is not None else "none answered" for m in models])
    plain("95% CI (Wilson)", [f"{m.ci95[0]:.1%} – {m.ci95[1]:.1%}" if m.jobs else "–" for m in models])
    for w in sorted({w for m in models for w in m.by_workload} | {c["workload"] for c in summary.cases}):
        plain(f"· {w}", [f"{m.by_workload[w]['pass_rate']:.0%} ({m.by_workload[w]['passed']}/{m.by_workload[w]['jobs']})"
                         if w in m.by_workload else ("n/a" if m.not_run else "–") for m in models])
    for label, texts in workload_rows(models):
        plain(label, texts)
    if any(m.not_run for m in models):
        rows.append(("cases not run", [Cell(str(m.not_run), why=m.not_run_reason or "") if m.not_run else Cell("0")
                                       for m in models]))
    if any(m.samples > 1 for m in models):
        for key in sorted({k for m in models for k in m.pass_at_k}, key=lambda k: int(k.split("@")[1])):
            plain(key, [f"{m.pass_at_k[key]:.1%}" if key in m.pass_at_k else "–" for m in models])
        plain("unstable cases", [f"{len(m.unstable_cases)}" for m in models])
    rows.append(("latency mean / p95", [busy(m, f"{ms(m.latency_mean_ms)} / {ms(m.latency_p95_ms)}") for m in models]))
    rows.append(("TTFT mean", [busy(m, ms(m.ttft_mean_ms)) for m in models]))
    rows.append(("output tok/s", [busy(m, f"{m.output_tok_s:.1f}" if m.output_tok_s else "–") for m in models]))
    plain("tokens in / out", [f"{prompt_tokens_cell(m)} / {m.completion_tokens:,} ({', '.join(m.token_sources)})"
                              for m in models])
    rows.append(("cost (basis)", [Cell(f"{'–' if m.cost.total_usd is None else f'${m.cost.total_usd:.4f}'} ({m.cost.label})",
                                       approx=m.cost.estimated and m.cost.total_usd is not None) for m in models]))
    rows.append(("$ / 1M output tokens", [Cell("–") if m.cost.per_mtok_output_usd is None else
                                          Cell(f"${m.cost.per_mtok_output_usd:.4f}", approx=m.cost.estimated)
                                          for m in models]))
    rows.append(("$ / successful case", [Cell("no passes") if m.passed == 0 and m.cost.total_usd is not None else
                                         Cell("–") if m.cost.per_success_usd is None else
                                         Cell(f"${m.cost.per_success_usd:.5f}", approx=m.cost.estimated) for m in models]))
    plain("errors", [", ".join(f"{k}×{v}" for k, v in m.error_kinds.items()) or "0" for m in models])
    return rows


def _turn(m: dict[str, Any]) -> str:
    """One message of a case's prompt as text: its content, or the calls an assistant turn made."""
    text = m.get("content")
    if m.get("tool_calls"):
        calls = "; ".join(f"{(c.get('function') or {}).get('name')}({(c.get('function') or {}).get('arguments')})"
                          for c in m["tool_calls"])
        text = f"{text + ' ' if text else ''}calls {calls}"
    return f"[{m['role']}] {text if text is not None else ''}"


def _messages(case: dict[str, Any]) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = case.get("messages") or [
        {"role": "user", "content": t} for t in case.get("turns") or []] or [
        {"role": "user", "content": case.get("prompt") or ""}]
    if case.get("system") and not any(m["role"] == "system" for m in msgs):
        msgs = [{"role": "system", "content": case["system"]}, *msgs]
    return msgs


def _side_by_side(summary: RunSummary, baseline: dict[str, dict[str, bool]] | None) -> list[CaseRow]:
    names = [m.model for m in summary.models]
    by_key = {(r.model, r.case_id, r.sample): r for r in summary.rows}
    unstable = {cid for m in summary.models for cid in m.unstable_cases}
    out = []
    for c in summary.cases:
        samples = c["case"].get("trials") or summary.run["samples"]
        for s in range(samples):
            row = CaseRow(label=c["id"] + (f" #{s}" if samples > 1 else ""), workload=c["workload"],
                          prompt="\n".join(_turn(m) for m in _messages(c["case"])), unstable=c["id"] in unstable)
            verdicts = set()
            key = f"{c['id']}#{s}"
            for n in names:
                r = by_key.get((n, c["id"], s))
                if r is None:
                    row.cells.append(Answer(missing=True))
                    row.failed = True
                    continue
                if r.error:
                    row.cells.append(Answer(error=r.error))
                    row.failed = True
                    continue
                row.failed |= not r.passed
                verdicts.add(r.passed)
                g = r.generation
                flip = None
                if baseline and key in baseline.get(n, {}) and baseline[n][key] != r.passed:
                    row.flipped = True
                    flip = "fixed" if r.passed else "broken"
                row.cells.append(Answer(passed=r.passed, text=g.text if g else "", tool_calls=g.tool_calls if g else None,
                                        why="; ".join(f"{k}: {sc.reason}" for k, sc in r.scores),
                                        latency_ms=g.latency_ms if g else None,
                                        tokens=g.completion_tokens if g else 0, cached=r.cached, flip=flip,
                                        trace=_trace(g, c["case"]), reasoning=g.reasoning if g else None,
                                        censored=censored(g)))
            row.disagree = len(verdicts) > 1
            out.append(row)
    return out


def _trace(g: Generation | None, case: dict[str, Any]) -> TraceView | None:
    trace = g.raw.get("agent") if g is not None else None
    if not isinstance(trace, dict):
        return None
    turns = [m["content"] for m in _messages(case) if m["role"] == "user"]
    return trace_view(trace, [str(t) for t in turns])


def _long_context(models: list[ModelSummary]) -> dict[str, list[str]] | None:
    """Long-context accuracy by nominal length and needle depth (a cell says passed/jobs)."""
    if not any(m.long_context for m in models):
        return None
    return {"depths": sorted({d for m in models for row in m.long_context.values() for d in row}, key=int),
            "lengths": sorted({n for m in models for n in m.long_context}, key=parse_length)}


def _asset(name: str) -> str:
    return (resources.files("weighbridge.report") / "templates" / name).read_text(encoding="utf-8")


def render_html(summary: RunSummary, baseline: dict[str, dict[str, bool]] | None = None,
                baseline_label: str = "", extra: str = "") -> str:
    """``extra``: a section rendered elsewhere (the cost of a scenario, by its template) placed after
    the comparisons."""
    models = summary.models
    lat = {m.model: [r.generation.latency_ms for r in summary.rows if r.model == m.model and r.generation
                     and r.generation.timed] for m in models}
    return render("run.html.j2", summary=summary, run=summary.run, models=models, names=[m.model for m in models],
                  rows=_summary_rows(summary), long_context=_long_context(models),
                  agent_rows=agent_rows([m.agent for m in models]),
                  charts={"quality": safe(quality_vs_cost(models)), "latency": safe(latency_distribution(lat))},
                  pick_lines=pick_lines, variant_rule=RULE, extra=safe(extra), fidelity_rows=fidelity_rows,
                  stack_lines=stack_lines, shown_items=shown_items, fidelity_rule=FIDELITY_RULES,
                  workloads=sorted({c["workload"] for c in summary.cases}), side_by_side=_side_by_side(summary, baseline),
                  baseline=baseline, baseline_label=baseline_label, definitions=DEFINITIONS,
                  cost_notes=cost_notes(models), censored_lines=censored_lines([(m.model, m.thinking) for m in models]), licenses=summary.run["manifest"].get("licenses") or {},
                  quote_kinds=_QUOTE_KIND, manifest_json=json.dumps(summary.run["manifest"], indent=2, ensure_ascii=False),
                  css=safe(_asset("report.css")), js=safe(_asset("report.js")), fold_at=FOLD_AT)


def write_html(summary: RunSummary, path: str | Path, baseline: dict[str, dict[str, bool]] | None = None,
               baseline_label: str = "", extra: str = "") -> Path:
    return write_atomic(path, render_html(summary, baseline, baseline_label, extra))
