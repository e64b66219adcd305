"""A single-file HTML report of a load test: settings, a table per level, latency and throughput
curves (inline SVG) and the metric definitions exactly as computed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..bench.metrics import DEFINITIONS
from ..files import write_atomic
from .svg import line_chart
from .format import escape, ms




def _at(d: dict[str, Any] | None, key: str) -> str:
    """One percentile of a level's latency distribution, formatted like every other duration."""
    return ms((d or {}).get(key))


def _rate(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def render_bench_html(bench: dict[str, Any]) -> str:
    levels = bench["levels"]
    x_label = "concurrency" if bench["mode"] == "closed" else "offered requests/s"

    def pts(metric: str, key: str) -> list[tuple[float, float]]:
        return [(lv["level"], lv[metric][key]) for lv in levels if lv[metric].get(key) is not None]

    latency = line_chart("Latency", x_label, {"TTFT p50": pts("ttft_ms", "p50"), "TTFT p99": pts("ttft_ms", "p99"),
                                              "E2E p50": pts("e2e_ms", "p50"), "E2E p99": pts("e2e_ms", "p99")}, "ms")
    throughput = line_chart("Throughput", x_label, {"output tok/s": [(lv["level"], lv["output_tps"]) for lv in levels]},
                            "tokens/s")
    rps = line_chart("Requests", x_label, {"req/s": [(lv["level"], lv["rps"]) for lv in levels],
                                           **({"goodput/s": [(lv["level"], lv["goodput_rps"]) for lv in levels]}
                                              if levels and levels[0].get("goodput_rps") is not None else {})}, "per second")
    rows = "".join(
        f"<tr id='level-{lv['level']:g}'><td>{lv['level']:g}{_busy(lv)}</td><td>{lv['ok']}/{lv['requests']}</td><td>{lv['rps']:.2f}</td>"
        f"<td>{lv['output_tps']:.1f}</td><td>{_at(lv['ttft_ms'], 'p50')} / {_at(lv['ttft_ms'], 'p99')}</td>"
        f"<td>{_at(lv['itl_ms'], 'p50')} / {_at(lv['itl_ms'], 'p99')}</td><td>{_at(lv['tpot_ms'], 'p50')}</td>"
        f"<td>{_at(lv['e2e_ms'], 'p50')} / {_at(lv['e2e_ms'], 'p99')}</td>"
        f"<td>{_rate(lv['goodput_rps'])}</td>"
        f"<td>{escape(', '.join(f'{k}×{v}' for k, v in lv['errors'].items()) or '0')}</td>"
        f"<td>{lv['client_cpu']:.0%}{' client-bound' if lv['client_bound'] else ''}</td></tr>" for lv in levels)
    return (f"<!doctype html><html lang=en><meta charset=utf-8><title>weighbridge bench {escape(bench['id'])}</title>"
            "<style>body{font:14px/1.45 system-ui,sans-serif;margin:24px}table{border-collapse:collapse}"
            "th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:right}th{background:#f6f8fa}"
            ".plots{display:flex;gap:16px;flex-wrap:wrap}.meta{color:#57606a}</style>"
            f"<h1>Load test {escape(bench['id'])}</h1><p class=meta>target {escape(bench['target'])} · {escape(bench['mode'])} loop"
            f"{' · stopped: ' + escape(bench['stopped']) if bench.get('stopped') else ''}</p>"
            f"<div class=plots>{latency}{throughput}{rps}</div>"
            "<h2>Per level</h2><table><tr><th>level</th><th>ok/sent</th><th>req/s</th>"
            "<th>out tok/s</th><th>TTFT p50/p99</th><th>ITL p50/p99</th><th>TPOT p50</th><th>E2E p50/p99</th>"
            f"<th>goodput/s</th><th>errors</th><th>client CPU</th></tr>{rows}</table>"
            + "".join(f"<p class=meta>† level {lv['level']:g}: {escape(lv['busy'])}</p>" for lv in levels if lv.get("busy"))
            +
            "<h2>Definitions</h2><ul>" + "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in DEFINITIONS.items())
            + "</ul><h2>Settings</h2><pre>" + escape(json.dumps(bench["settings"], indent=2)) + "</pre></html>")


def _busy(lv: dict[str, Any]) -> str:
    """The mark of a level measured while the machine was oversubscribed (its note below the table)."""
    return f" <span class=busy title='{escape(lv['busy'])}'>†</span>" if lv.get("busy") else ""


def write_bench_html(bench: dict[str, Any], path: str | Path) -> Path:
    return write_atomic(path, render_bench_html(bench))
