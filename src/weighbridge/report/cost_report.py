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

from ..deploy_cost import OptionCost, ScenarioPricer
from .format import count_label, escape as escape_html, ms as _ms, usd_budget as _usd
from ..files import write_atomic
from .svg import COLORS, nice_max

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


def _source_link(source: str) -> str:
    """A price's source: a link only when it is a web address (a sheet may say "our contract, 2026-11")."""
    if source.startswith(("https://", "http://")):
        return f"<a href='{escape_html(source)}'>{escape_html(source)}</a>"
    return escape_html(source)


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




def cost_chart(pricer: ScenarioPricer, costs: list[OptionCost], width: int = 640, height: int = 320) -> str:
    """Monthly cost against monthly requests, from 0 to past the scenario and every break-even."""
    priced = [c for c in costs if c.monthly_usd is not None]
    marks = [pricer.volume] + [b.requests_per_month for c in priced for b in c.break_even if b.requests_per_month]
    xmax = nice_max(max(marks) * 1.6)
    xs = [xmax * i / 200 for i in range(1, 201)]
    series = {c.name: [(x, c.monthly_at(x) or 0.0) for x in xs] for c in priced}
    ymax = nice_max(max((y for pts in series.values() for _, y in pts), default=1.0) * 1.05)
    left, right, top, bottom = 70, 190, 24, 42
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + pw * x / xmax

    def py(y: float) -> float:
        return top + ph * (1 - min(y, ymax) / ymax)

    parts = [f'<svg class=plot role=img aria-label="monthly cost against volume" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="sans-serif">',
             '<text x="70" y="14" font-weight="bold">Monthly cost against volume</text>',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#d0d7de"/>']
    for i in range(6):
        parts.append(f'<text x="{left - 6}" y="{py(ymax * i / 5) + 4:.1f}" text-anchor="end">{_usd(ymax * i / 5)}</text>'
                     f'<text x="{px(xmax * i / 5):.1f}" y="{top + ph + 16}" text-anchor="middle">{count_label(xmax * i / 5)}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle">requests per month</text>')
    x0 = px(pricer.volume)
    parts.append(f'<line class=scenario x1="{x0:.1f}" x2="{x0:.1f}" y1="{top}" y2="{top + ph}" stroke="#57606a" '
                 f'stroke-dasharray="4 3"><title>this scenario: {count_label(pricer.volume)} requests/month</title></line>')
    for k, (name, pts) in enumerate(series.items()):
        col = COLORS[k % len(COLORS)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{col}" stroke-width="2"><title>{escape_html(name)}</title>'
                     f'</polyline><text x="{left + pw + 8}" y="{top + 12 + 14 * k}" fill="{col}">{escape_html(name)}</text>')
    for c in priced:
        for b in c.break_even:
            if b.requests_per_month:
                y = c.monthly_at(b.requests_per_month) or 0.0
                parts.append(f'<circle class=break-even cx="{px(b.requests_per_month):.1f}" cy="{py(y):.1f}" r="4" '
                             f'fill="none" stroke="#1b1f24"><title>{escape_html(b.text)}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def cost_section(pricer: ScenarioPricer, costs: list[OptionCost], bench_report: str | None = None) -> str:
    """The cost section: the table, the break-evens, the bench levels each self-hosted figure used,
    and the chart. Shared by `weighbridge cost --html` and the bakeoff report's --scenario."""
    s = pricer.scenario
    head = "".join(f"<th>{escape_html(c.name)}</th>" for c in costs)

    def row(label: str, cells: list[str]) -> str:
        return f"<tr><th>{escape_html(label)}</th>" + "".join(f"<td class=num>{x}</td>" for x in cells) + "</tr>"

    rows = [row("kind", [c.kind for c in costs]),
            row("bench level used", [escape_html(_level(c)) if c.kind != "api" else "–" for c in costs]),
            row("capacity / instance", [escape_html(_capacity(c)) if c.kind != "api" else "provider's" for c in costs]),
            row("instances for peak", [str(c.instances or "–") for c in costs]),
            row("$ / month", [_usd(c.monthly_usd) if not c.problem else "not priced" for c in costs]),
            row("$ / 1M tokens", [_usd(c.per_mtok_usd) for c in costs]),
            row("pass rate", [f"{c.pass_rate:.1%}" if c.pass_rate is not None else "–" for c in costs]),
            row("$ / success", [_usd(c.per_success_usd) for c in costs])]
    for key in ("hardware", "tokens", "ops", "storage", "egress"):
        if any(key in c.breakdown for c in costs):
            rows.append(row(f"· {key}", [_usd(c.breakdown.get(key)) if key in c.breakdown else "–" for c in costs]))
    out = [f"<h2 id=cost>Cost: {escape_html(s.name)}</h2><p class=meta>{count_label(pricer.volume)} requests/month · "
           f"{pricer.tokens_in:,.0f} in / {pricer.tokens_out:,.0f} out tokens per request ({escape_html(pricer.tokens_from)}) · "
           f"{s.hours_per_day:g} h/day × {s.days_per_month:g} days · peak ×{s.peak_to_average:g} · SLO "
           f"{escape_html(s.latency_slo.describe())} · price sheet {escape_html(pricer.prices.sheet_date)}</p>",
           f"<table class=cost><tr><th></th>{head}</tr>{''.join(rows)}</table>", "<ul class=break-even>"]
    out += [f"<li>{escape_html(b.text)}</li>" for c in costs for b in c.break_even]
    out += [f"<li class=problem><b>{escape_html(c.name)}</b>: {escape_html(c.problem)}" + (f"<div class=why>{escape_html(c.fix)}</div>" if c.fix else "")
            + "</li>" for c in costs if c.problem]
    out.append("</ul>" + cost_chart(pricer, costs))
    for c in costs:
        cap = c.capacity
        if cap is None:
            continue
        link = (lambda lv: f"<a href='{escape_html(bench_report)}#level-{lv:g}'>{lv:g}</a>") if bench_report else (lambda lv: f"{lv:g}")
        out.append(f"<h3>{escape_html(c.name)}: levels of {escape_html(cap.bench_id)}</h3><p class=meta>{escape_html(cap.target)}</p>"
                   f"<table class=levels><tr><th>level</th><th>req/s</th><th>out tok/s</th><th>TTFT</th><th>E2E</th>"
                   f"<th>TPOT</th><th>errors</th><th>SLO</th></tr>"
                   + "".join(f"<tr{' class=used' if lv.level == cap.level else ''}><td>{link(lv.level)}</td>"
                             f"<td class=num>{lv.rps:.2f}</td><td class=num>{lv.output_tps:.1f}</td>"
                             f"<td class=num>{_ms(lv.figures['ttft'])}</td><td class=num>{_ms(lv.figures['e2e'])}</td>"
                             f"<td class=num>{_ms(lv.figures['tpot'])}</td><td class=num>{lv.error_share:.0%}</td>"
                             f"<td>{'used · ' if lv.level == cap.level else ''}{escape_html(lv.why)}</td></tr>" for lv in cap.levels)
                   + f"</table><p class=meta>latencies at {s.latency_slo.percentile}</p>")
        if cap.shape_note:
            out.append(f"<p class=meta>{escape_html(cap.shape_note)}</p>")
    for c in costs:
        if c.price:
            out.append(f"<p class=meta>{escape_html(c.name)}: {escape_html(c.price['id'])} ${c.price['input_per_mtok']:g} in"
                       + (f" (${c.price['cached_input_per_mtok']:g} cached)" if c.price.get("cached_input_per_mtok") is not None else "")
                       + f" / ${c.price['output_per_mtok']:g} out per 1M tokens, as of {escape_html(c.price['as_of'])}: "
                       + _source_link(str(c.price['source']))
                       + (f" – {escape_html(c.price['note'])}" if c.price.get("note") else "") + "</p>")
    out.append("<ul class=definitions>" + "".join(f"<li><b>{escape_html(k)}</b>: {escape_html(v)}</li>" for k, v in DEFINITIONS.items())
               + "</ul>")
    return "\n".join(out)


_CSS = ("body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1b1f24}table{border-collapse:collapse}"
        "th,td{border:1px solid #d0d7de;padding:4px 8px;vertical-align:top}th{background:#f6f8fa;text-align:left}"
        "td.num{text-align:right;font-variant-numeric:tabular-nums}.meta,.why{color:#57606a}tr.used{background:#ddf4ff}"
        ".problem{color:#82071e}")


def write_cost_html(pricer: ScenarioPricer, costs: list[OptionCost], path: str | Path,
                    bench_report: str | None = None) -> Path:
    page = (f"<!doctype html><html lang=en><meta charset=utf-8><title>weighbridge cost · {escape_html(pricer.scenario.name)}"
            f"</title><style>{_CSS}</style><h1>weighbridge cost</h1>{cost_section(pricer, costs, bench_report)}</html>")
    return write_atomic(path, page)
