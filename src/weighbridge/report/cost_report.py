"""`weighbridge cost` rendered: the terminal table, the JSON document, and a single-file HTML page
with monthly cost against volume as an inline SVG chart (self-hosted steps, API lines, the
scenario's volume and each break-even marked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .tables import keep_ids_whole

from ..pricing.deploy_cost import OptionCost, ScenarioPricer
from markupsafe import Markup

from ..core.files import write_atomic
from ..core.format import count_label, usd_budget as _usd
from .svg import cost_chart
from .templating import render, safe

DEFINITIONS = {
    "monthly": "self-hosted: instances × per-instance cost + ops hours × rate + storage + egress; "
               "API: requests × (input tokens × input price + output tokens × output price) ÷ 1e6 (+ ops the option names)",
    "instances": "⌈peak rate ÷ capacity⌉, peak rate = requests/month ÷ operating seconds × peak_to_average; capacity = "
                 "req/s of the best stored bench level meeting the SLO with ≤ 1% errors",
    "$/1M tokens": "monthly ÷ (requests × (input + output tokens) ÷ 1e6)",
    "capacity / instance": "the bench level's req/s, scaled by the bench's mean output tokens per request ÷ the "
                           "scenario's (answers of another length take another time)",
    "cost per success": "monthly ÷ (requests × pass rate of the named bakeoff run)",
    "break-even": "the volume from which self-hosting stays cheaper than the API (instances added in steps as volume grows)",
}


def _capacity(c: OptionCost) -> str:
    cap = c.capacity
    return "–" if cap is None or cap.capacity_rps is None else f"{cap.capacity_rps:.2f} req/s"


def _level(c: OptionCost) -> str:
    cap = c.capacity
    if cap is None or cap.level is None:
        return "–"
    word = "concurrency" if cap.mode == "closed" else "rate"
    return f"{word} {cap.level:g}: {cap.measured_rps:.2f} req/s"


def render_terminal(pricer: ScenarioPricer, costs: list[OptionCost], console: Console) -> None:
    s = pricer.scenario
    console.print(f"[bold]Cost of '{escape(s.name)}'[/] · {count_label(pricer.volume)} requests/month · "
                  f"{pricer.tokens_in:,.0f} in / {pricer.tokens_out:,.0f} out tokens each ({escape(pricer.tokens_from)}) · "
                  f"{s.hours_per_day:g} h/day × {s.days_per_month:g} days · peak ×{s.peak_to_average:g} · "
                  f"SLO {escape(s.latency_slo.describe())}", highlight=False, soft_wrap=True)
    t = Table()
    t.add_column("", style="bold")
    for c in costs:
        t.add_column(c.name, justify="right")
    t.add_row("kind", *[c.kind for c in costs])
    t.add_row("bench level used", *[_level(c) if c.kind != "api" else "–" for c in costs])
    t.add_row("capacity / instance", *[_capacity(c) if c.kind != "api" else "provider's" for c in costs])
    t.add_row("instances for peak", *[str(c.instances) if c.instances else "–" for c in costs])
    t.add_row("$ / month", *[_usd(c.monthly_usd) if c.problem is None else "[red]not priced[/]" for c in costs])
    t.add_row("$ / 1M tokens", *[_usd(c.per_mtok_usd) for c in costs])
    t.add_row("pass rate", *[f"{c.pass_rate:.0%}" if c.pass_rate is not None else "–" for c in costs])
    t.add_row("$ / success", *[_usd(c.per_success_usd) for c in costs])
    console.print(keep_ids_whole(t, headers_whole=True))
    for c in costs:
        for b in c.break_even:
            console.print(f"break-even: {escape(b.text)}", highlight=False, soft_wrap=True)
    for c in costs:
        if c.problem:
            console.print(f"[red]{escape(c.name)}: {escape(c.problem)}[/]", highlight=False, soft_wrap=True)
            if c.fix:
                console.print(f"  {escape(c.fix)}", highlight=False, soft_wrap=True)
        for n in c.notes:
            console.print(f"[dim]{escape(c.name)}: {escape(n)}[/]", highlight=False, soft_wrap=True)
        if c.capacity and c.capacity.level is not None:
            console.print(f"[dim]{escape(c.name)}: throughput from {c.capacity.bench_id} level {c.capacity.level:g}"
                          f" ({c.capacity.target})[/]", highlight=False, soft_wrap=True)
        if c.price:
            console.print(f"[dim]{escape(c.name)}: {c.price['id']} ${c.price['input_per_mtok']:g} in / "
                          f"${c.price['output_per_mtok']:g} out per 1M, as of {c.price['as_of']} ({c.price['source']})[/]",
                          highlight=False, soft_wrap=True)


def to_json(pricer: ScenarioPricer, costs: list[OptionCost]) -> dict[str, Any]:
    return {"scenario": pricer.scenario.model_dump(mode="json"), "monthly_requests": pricer.volume,
            "tokens": {"input": pricer.tokens_in, "output": pricer.tokens_out, "from": pricer.tokens_from},
            "price_sheet_date": pricer.prices.sheet_date, "definitions": DEFINITIONS,
            "options": [c.to_dict() for c in costs]}




def cost_section(pricer: ScenarioPricer, costs: list[OptionCost], bench_report: str | None = None) -> Markup:
    """The cost section (``templates/cost_section.html.j2``): shared by `weighbridge cost --html` and the
    bakeoff report's --scenario."""
    def priced(c: OptionCost) -> str:
        return _usd(c.monthly_usd) if not c.problem else "not priced"

    rows = [("kind", [c.kind for c in costs]),
            ("bench level used", [_level(c) if c.kind != "api" else "–" for c in costs]),
            ("capacity / instance", [_capacity(c) if c.kind != "api" else "provider's" for c in costs]),
            ("instances for peak", [str(c.instances or "–") for c in costs]),
            ("$ / month", [priced(c) for c in costs]),
            ("$ / 1M tokens", [_usd(c.per_mtok_usd) for c in costs]),
            ("pass rate", [f"{c.pass_rate:.1%}" if c.pass_rate is not None else "–" for c in costs]),
            ("$ / success", [_usd(c.per_success_usd) for c in costs])]
    for key in ("hardware", "tokens", "ops", "storage", "egress"):
        if any(key in c.breakdown for c in costs):
            rows.append((f"· {key}", [_usd(c.breakdown.get(key)) if key in c.breakdown else "–" for c in costs]))
    return safe(render("cost_section.html.j2", s=pricer.scenario, pricer=pricer, costs=costs, rows=rows,
                       chart=safe(cost_chart(pricer, costs)), bench_report=bench_report, definitions=DEFINITIONS))


def write_cost_html(pricer: ScenarioPricer, costs: list[OptionCost], path: str | Path,
                    bench_report: str | None = None) -> Path:
    return write_atomic(path, render("cost_page.html.j2", pricer=pricer, section=cost_section(pricer, costs, bench_report)))
