"""Inline SVG charts for every HTML page (the report, the bench and cost pages, the viewer): no
JavaScript charting library, nothing fetched. Every text put into a chart passes ``format.escape``;
the pages take the result as markup."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..analysis.stats import percentile
from ..analysis.summary import ModelSummary
from ..core.format import count_label, escape, usd_budget as _usd

if TYPE_CHECKING:
    from ..pricing.deploy_cost import OptionCost, ScenarioPricer

# the one palette: series k of any chart is COLORS[k]
COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#e16f24", "#57606a", "#bf3989"]




def nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10.0 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def quality_vs_cost(models: list[ModelSummary], width: int = 560, height: int = 300) -> str:
    """Pass rate (with its 95% interval) against the cost of running the suite (every model ran the same
    cases, so totals compare), or against mean latency when a model has no price."""
    priced = all(m.cost.total_usd is not None for m in models)
    xs = [m.cost.total_usd if priced and m.cost.total_usd is not None else (m.latency_mean_ms or 0) / 1000
          for m in models]
    x_label = "$ to run the whole suite" if priced else "mean latency (s) – not every model has a price"
    xmax = nice_max(max(xs) * 1.1 if xs else 1)
    left, right, top, bottom = 56, 16, 16, 40
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + pw * x / xmax

    def py(y: float) -> float:
        return top + ph * (1 - y)

    parts = [f'<svg class=plot role=img aria-label="quality versus cost" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="sans-serif">',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#d0d7de"/>']
    for i in range(6):
        y = i / 5
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#eaeef2"/>'
                     f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.0%}</text>')
        x = xmax * i / 5
        parts.append(f'<text x="{px(x):.1f}" y="{top + ph + 16}" text-anchor="middle">{x:.3g}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle">{escape(x_label)}</text>'
                 f'<text x="12" y="{top + ph / 2}" text-anchor="middle" transform="rotate(-90 12 {top + ph / 2})">pass rate</text>')
    for i, (m, x) in enumerate(zip(models, xs)):
        c = COLORS[i % len(COLORS)]
        parts.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{py(m.ci95[0]):.1f}" y2="{py(m.ci95[1]):.1f}" '
                     f'stroke="{c}" stroke-width="2"/><circle cx="{px(x):.1f}" cy="{py(m.pass_rate):.1f}" r="5" '
                     f'fill="{c}"><title>{escape(m.model)}: {m.pass_rate:.1%} (95% CI {m.ci95[0]:.1%}–{m.ci95[1]:.1%}), '
                     f'{escape(x_label)} {x:.4g}</title></circle>'
                     f'<text x="{px(x) + 8:.1f}" y="{py(m.pass_rate) - 6:.1f}" fill="{c}">{escape(m.model)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def latency_distribution(latencies: dict[str, list[float]], width: int = 560, row: int = 34) -> str:
    """Per model: every request's latency as a dot, with a box from p25 to p75, p50 and p95 marked."""
    names = list(latencies)
    height = 40 + row * max(1, len(names))
    left, right = 130, 16
    pw = width - left - right
    xmax = nice_max(max((max(v) for v in latencies.values() if v), default=1.0) / 1000 * 1.05)

    def px(ms: float) -> float:
        return left + pw * (ms / 1000) / xmax

    parts = [f'<svg class=plot role=img aria-label="latency distribution" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="sans-serif">']
    for i in range(6):
        x = xmax * i / 5
        parts.append(f'<line x1="{left + pw * i / 5:.1f}" x2="{left + pw * i / 5:.1f}" y1="8" y2="{height - 26}" '
                     f'stroke="#eaeef2"/><text x="{left + pw * i / 5:.1f}" y="{height - 12}" text-anchor="middle">{x:.3g} s</text>')
    for r, name in enumerate(names):
        vals = latencies[name]
        cy = 20 + r * row
        c = COLORS[r % len(COLORS)]
        parts.append(f'<text x="{left - 8}" y="{cy + 4}" text-anchor="end">{escape(name)}</text>')
        if not vals:
            continue
        step = max(1, len(vals) // 400)  # at most ~400 dots per model keeps the page light
        for j, v in enumerate(vals[::step]):
            parts.append(f'<circle cx="{px(v):.1f}" cy="{cy + ((j * 7) % 13) - 6}" r="1.6" fill="{c}" opacity=".45"/>')
        p25, p50, p75, p95 = (percentile(vals, q) or 0.0 for q in (25, 50, 75, 95))  # vals is not empty
        parts.append(f'<rect x="{px(p25):.1f}" y="{cy - 9}" width="{max(1.0, px(p75) - px(p25)):.1f}" height="18" '
                     f'fill="none" stroke="{c}"/><line x1="{px(p50):.1f}" x2="{px(p50):.1f}" y1="{cy - 9}" y2="{cy + 9}" '
                     f'stroke="{c}" stroke-width="2"/><line x1="{px(p95):.1f}" x2="{px(p95):.1f}" y1="{cy - 6}" '
                     f'y2="{cy + 6}" stroke="{c}" stroke-dasharray="2 2"><title>p95 {p95:,.0f} ms</title></line>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(title: str, x_label: str, series: dict[str, list[tuple[float, float]]], y_label: str,
               width: int = 460, height: int = 260) -> str:
    """A small multi-series line chart (x = load level)."""
    left, right, top, bottom = 60, 110, 24, 40
    pw, ph = width - left - right, height - top - bottom
    xs = [x for pts in series.values() for x, _ in pts] or [1.0]
    ys = [y for pts in series.values() for _, y in pts] or [1.0]
    xmax, ymax = nice_max(max(xs)), nice_max(max(ys) * 1.05)

    def px(x: float) -> float:
        return left + pw * x / xmax

    def py(y: float) -> float:
        return top + ph * (1 - y / ymax)

    parts = [f'<svg class=plot role=img aria-label="{escape(title)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="sans-serif">',
             f'<text x="{left}" y="14" font-weight="bold">{escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#d0d7de"/>']
    def fmt(v: float) -> str:
        return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"

    for i in range(6):
        parts.append(f'<text x="{left - 6}" y="{py(ymax * i / 5) + 4:.1f}" text-anchor="end">{fmt(ymax * i / 5)}</text>'
                     f'<text x="{px(xmax * i / 5):.1f}" y="{top + ph + 16}" text-anchor="middle">{fmt(xmax * i / 5)}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle">{escape(x_label)}</text>'
                 f'<text x="12" y="{top + ph / 2}" text-anchor="middle" transform="rotate(-90 12 {top + ph / 2})">'
                 f'{escape(y_label)}</text>')
    for k, (name, pts) in enumerate(series.items()):
        c = COLORS[k % len(COLORS)]
        if pts:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
            parts.extend(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{c}"><title>{escape(name)}: {y:.4g} at '
                         f'{x:g}</title></circle>' for x, y in pts)
        parts.append(f'<text x="{left + pw + 8}" y="{top + 12 + 14 * k}" fill="{c}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


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
        parts.append(f'<polyline points="{path}" fill="none" stroke="{col}" stroke-width="2"><title>{escape(name)}</title>'
                     f'</polyline><text x="{left + pw + 8}" y="{top + 12 + 14 * k}" fill="{col}">{escape(name)}</text>')
    for c in priced:
        for b in c.break_even:
            if b.requests_per_month:
                y = c.monthly_at(b.requests_per_month) or 0.0
                parts.append(f'<circle class=break-even cx="{px(b.requests_per_month):.1f}" cy="{py(y):.1f}" r="4" '
                             f'fill="none" stroke="#1b1f24"><title>{escape(b.text)}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def trend_chart(xs: list[int], points: list[tuple[float, float, float]], width: int = 460, height: int = 260) -> str:
    """Pass rate per run with its interval as a band: a real change moves the band, noise stays inside."""
    left, right, top, bottom = 50, 20, 24, 40
    pw, ph = width - left - right, height - top - bottom
    xmax = max(xs[-1], 2)

    def px(x: float) -> float:
        return left + pw * (x - 1) / (xmax - 1)

    def py(y: float) -> float:
        return top + ph * (1 - y)

    band = [f"{px(x):.1f},{py(hi):.1f}" for x, (_, _, hi) in zip(xs, points)] + \
           [f"{px(x):.1f},{py(lo):.1f}" for x, (_, lo, _) in reversed(list(zip(xs, points)))]
    line = " ".join(f"{px(x):.1f},{py(p):.1f}" for x, (p, _, _) in zip(xs, points))
    parts = [f'<svg class=plot role=img aria-label="pass rate over runs" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="sans-serif">',
             f'<text x="{left}" y="14" font-weight="bold">Pass rate over runs (95% CI)</text>',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#d0d7de"/>']
    for i in range(6):
        y = i / 5
        parts.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.0%}</text>')
    parts.append(f'<polygon class=band points="{" ".join(band)}" fill="{COLORS[0]}" fill-opacity="0.15"/>'
                 f'<polyline points="{line}" fill="none" stroke="{COLORS[0]}" stroke-width="2"/>')
    parts += [f'<circle cx="{px(x):.1f}" cy="{py(p):.1f}" r="3" fill="{COLORS[0]}"><title>run {x}: {p:.1%} '
              f'({lo:.1%}–{hi:.1%})</title></circle>' for x, (p, lo, hi) in zip(xs, points)]
    parts.append(f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle">run (oldest → newest)</text></svg>')
    return "".join(parts)
