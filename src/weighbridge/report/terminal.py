"""The side-by-side table printed at the end of a bakeoff (Rich)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..core.format import ms as _ms
from .safe import term
from .tables import keep_ids_whole

from ..suites.longcontext import parse_length
from ..analysis.agent import agent_rows
from ..analysis.summary import ModelSummary, RunSummary, workload_rows
from ..analysis.thinking import censored_lines
from ..analysis.fidelity import RULES, FidelityGroup, fidelity_rows, shown_items, stack_lines
from ..analysis.variants import VariantGroup, pick_lines


def render(summary: RunSummary, console: Console) -> None:
    models = summary.models
    console.print(f"[bold]Bakeoff {term(summary.run['id'])}[/] · {len(summary.cases)} cases × "
                  f"{summary.run['samples']} sample(s) · {summary.run['status']}"
                  + (f" · scored version {summary.run['score_version']}" if summary.run.get("score_version", 1) > 1 else ""))
    console.print(f"[dim]model code sandbox: {term(summary.isolation)}[/]", highlight=False)
    banner = summary.error_banner()
    if banner:
        console.print(f"[bold white on red] NOT A RESULT: too many errors (more than {summary.max_error_rate:.0%} "
                      "of a model's jobs) [/]")
        for line in banner:
            console.print(f"[red]{term(line)}[/]", highlight=False, soft_wrap=True)
    t = Table(show_lines=False)
    t.add_column("", style="bold")
    for m in models:
        t.add_column(term(m.model), justify="right")
    best = max((m.pass_rate for m in models), default=0)

    def row(label: str, values: list[str]) -> None:
        t.add_row(label, *values)

    flags = {"not_allowed": "[bold red]NOT ALLOWED[/]", "needs_review": "[magenta]needs review[/]",
             "allowed_with_duties": "[yellow]with duties[/]", "allowed": "[green]allowed[/]"}
    if any(m.license_verdict for m in models):
        row("license", [flags.get(m.license_verdict or "", "–") for m in models])
    row("pass rate", [f"[{'green' if m.pass_rate == best and best > 0 else 'default'}]{m.pass_rate:.0%}[/]"
                      f" ({m.passed}/{m.jobs})" if m.jobs else "not run" for m in models])
    row("95% CI (Wilson)", [f"{m.ci95[0]:.0%}–{m.ci95[1]:.0%}" if m.jobs else "–" for m in models])
    if any(m.errors for m in models):
        row("pass rate, answered", [f"{m.answered_pass_rate:.0%} ({m.passed}/{m.answered})"
                                    if m.answered_pass_rate is not None else "none answered" for m in models])
    workloads = sorted({w for m in models for w in m.by_workload} | {c["workload"] for c in summary.cases})
    for w in workloads:
        row(f"  {term(w)}", [f"{m.by_workload[w]['pass_rate']:.0%} ({m.by_workload[w]['passed']}/{m.by_workload[w]['jobs']})"
                       if w in m.by_workload else ("n/a" if m.not_run else "–") for m in models])
    if any(m.not_run for m in models):
        row("cases not run", [str(m.not_run) for m in models])
    for label, cells in workload_rows(models):
        row(label, cells)
    if any(m.samples > 1 for m in models):
        for key in sorted({k for m in models for k in m.pass_at_k}, key=lambda k: int(k.split("@")[1])):
            row(key, [f"{m.pass_at_k[key]:.0%}" if key in m.pass_at_k else "–" for m in models])
        row("unstable cases", [str(len(m.unstable_cases)) for m in models])
    def busy(m: ModelSummary, cell: str) -> str:
        return f"[yellow]†[/]{cell}" if m.busy and cell != "–" else cell
    row("latency mean", [busy(m, _ms(m.latency_mean_ms)) for m in models])
    row("latency p95", [busy(m, _ms(m.latency_p95_ms)) for m in models])
    row("TTFT mean", [busy(m, _ms(m.ttft_mean_ms)) for m in models])
    row("output tok/s", [busy(m, f"{m.output_tok_s:.1f}" if m.output_tok_s else "–") for m in models])
    row("tokens in / out", [f"{prompt_tokens_cell(m)} / {m.completion_tokens:,}" for m in models])
    row("token count from", [", ".join(m.token_sources) or "–" for m in models])
    row("cost basis", [m.cost.label for m in models])

    row("$ / 1M output tok", [m.cost.shown(m.cost.per_mtok_output_usd) for m in models])
    row("$ total", [m.cost.shown(m.cost.total_usd) for m in models])
    row("$ / successful case", ["no passes" if m.passed == 0 and m.cost.total_usd is not None
                                else m.cost.shown(m.cost.per_success_usd) for m in models])
    row("errors", [term(", ".join(f"{k}×{v}" for k, v in m.error_kinds.items())) or "0" for m in models])
    row("from cache", [f"{m.cached}/{m.jobs}" for m in models])
    console.print(keep_ids_whole(t, headers_whole=True))
    for m in models:
        if m.busy:
            console.print(f"[yellow]† {term(m.model)}: {term(m.busy)}[/]", highlight=False, soft_wrap=True)
    for line in censored_lines([(m.model, m.thinking) for m in models]):
        console.print(f"[yellow]{term(line)}[/]", highlight=False, soft_wrap=True)
    for line in cost_notes(models):
        console.print(f"[dim]{term(line)}[/]", highlight=False, soft_wrap=True)
    for m in models:
        for caveat in m.license_caveats:
            console.print(f"[dim]license of {term(m.model)}: {term(caveat)}[/]", highlight=False, soft_wrap=True)
    agent = agent_rows([m.agent for m in models])
    if agent:
        at = Table(title="Agent episodes", show_lines=False)
        at.add_column("", style="bold")
        for m in models:
            at.add_column(term(m.model), justify="right")
        for label, cells in agent:
            at.add_row(label, *[term(c) for c in cells])
        console.print(keep_ids_whole(at, headers_whole=True))
    if any(m.long_context for m in models):
        console.print(long_context_table(models))
    for g in summary.variants:
        console.print(variants_table(g))
        for line in pick_lines(g):
            console.print(f"[bold]{term(line)}[/]", highlight=False, soft_wrap=True)
        for note in g.notes:
            console.print(f"[dim]{term(note)}[/]", highlight=False, soft_wrap=True)
    for fg in summary.fidelity:
        render_fidelity(fg, console)


def prompt_tokens_cell(m: ModelSummary) -> str:
    """Prompt tokens, or '?' when the server reported none and nothing counted them (never a bare 0)."""
    if m.prompt_tokens_known:
        return f"{m.prompt_tokens:,}"
    return f"≥{m.prompt_tokens:,}?" if m.prompt_tokens else "?"


def cost_notes(models: list[ModelSummary]) -> list[str]:
    """How each priced model's cost was computed, and what makes it an estimate (the "≈")."""
    lines = []
    for m in models:
        if m.cost.basis == "none":
            continue
        lines.append(f"cost of {m.model}: {m.cost.formula}")
        lines += [f"  ≈ {mark}" for mark in m.cost.marks]
        if m.thinking is not None and m.thinking.reasoning_usd_note:
            lines.append(f"  $ on thinking: {m.thinking.reasoning_usd_note}")
    return lines


def _mb(v: int | None) -> str:
    return "–" if v is None else f"{v / 1e6:,.1f} MB"


_VERDICT_STYLE = {"worse": "bold red", "within margin": "green", "not shown": "yellow", "reference": "bold"}


def variants_table(g: VariantGroup) -> Table:
    """Per variant (a column each, like the models above): memory, speed, quality and its paired
    difference to the reference, and the verdict."""
    t = Table(title=f"variants of {g.name} (reference {g.reference}, margin {g.margin * 100:g} pts, α {g.alpha:g})",
              title_justify="left")
    t.add_column("", style="bold")
    for r in g.rows:
        t.add_column(term(r.variant) + (" (ref)" if r.reference else ""), justify="right")
    cmp = [r.comparison for r in g.rows]
    t.add_row("file", *[_mb(r.file_bytes) for r in g.rows])
    t.add_row("resident, peak", *[_mb(r.resident_bytes) for r in g.rows])
    t.add_row("output tok/s", *[f"{r.output_tok_s:.1f}" if r.output_tok_s else "–" for r in g.rows])
    t.add_row("pass rate", *[f"{r.pass_rate:.0%} ({r.passed}/{r.jobs})" for r in g.rows])
    t.add_row("Δ vs reference", *[f"{c.delta * 100:+.1f} pts" if c else "–" for c in cmp])
    t.add_row("  95% CI", *[f"{c.delta_ci95[0] * 100:+.1f} … {c.delta_ci95[1] * 100:+.1f}" if c else "–" for c in cmp])
    t.add_row("McNemar p", *[f"{c.p_value:.2g}" if c else "–" for c in cmp])
    t.add_row("fixed / broken", *[f"{len(c.fixed)} / {len(c.broken)}" if c else "–" for c in cmp])
    t.add_row("verdict", *[f"[{_VERDICT_STYLE.get(r.verdict, 'default')}]{r.verdict}[/]" for r in g.rows])
    return keep_ids_whole(t, headers_whole=True)


def long_context_table(models: list[ModelSummary]) -> Table:
    """Long-context accuracy by nominal length (rows) and needle depth (columns), per model."""
    depths = sorted({d for m in models for row in m.long_context.values() for d in row}, key=int)
    lengths = sorted({n for m in models for n in m.long_context}, key=parse_length)
    t = Table(title="long context: passed by length × depth", title_justify="left")
    t.add_column("model")
    t.add_column("length")
    for d in depths:
        t.add_column(f"depth {d}%", justify="right")
    for m in models:
        for n in lengths:
            cells = m.long_context.get(n)
            t.add_row(term(m.model), term(n), *[(f"{cells[d]['passed']}/{cells[d]['jobs']}" if cells and d in cells and cells[d]["jobs"]
                                     else "not run")
                                    for d in depths])
    return keep_ids_whole(t, headers_whole=True)


_FIDELITY_STYLE = {"faithful": "green", "drifts": "yellow", "broken": "bold red"}


def render_fidelity(g: FidelityGroup, console: Console) -> None:
    """Each candidate deployment against the reference, answer by answer: the table, then per
    candidate its verdict with the reasons, the stack facts that differ and the disagreeing items."""
    t = Table(title=f"fidelity of {g.name}: each deployment against {g.reference}, answer by answer",
              title_justify="left")
    t.add_column("", style="bold")
    for r in g.rows:
        t.add_column(term(r.candidate), justify="right")
    for label, cells in fidelity_rows(g):
        if label == "verdict":
            cells = [f"[{_FIDELITY_STYLE.get(c, 'default')}]{c}[/]" for c in cells]
        else:
            cells = [term(c) for c in cells]
        t.add_row(label, *cells)
    console.print(keep_ids_whole(t, headers_whole=True))
    for r in g.rows:
        head = f"[{_FIDELITY_STYLE.get(r.verdict, 'default')}]{r.verdict}[/]"
        console.print(f"{term(r.candidate)}: {head}" + (f": {term('; '.join(r.reasons))}" if r.reasons else ""),
                      highlight=False, soft_wrap=True)
        for line in stack_lines(r):
            console.print(f"  [dim]stack: {term(line)}[/]", highlight=False, soft_wrap=True)
        for hint in r.hints:
            console.print(f"  [yellow]hint: {term(hint)}[/]", highlight=False, soft_wrap=True)
        if r.disagreeing:
            console.print(f"  [dim]disagree: {term(shown_items(r))}[/]", highlight=False, soft_wrap=True)
    for note in g.notes:
        console.print(f"[dim]{term(note)}[/]", highlight=False, soft_wrap=True)
    console.print(f"[dim]{term(RULES.format(**g.thresholds.to_dict()))}[/]", highlight=False, soft_wrap=True)
