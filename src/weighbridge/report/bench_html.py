"""A single-file HTML report of a load test: settings, a table per level, latency and throughput
curves (inline SVG) and the metric definitions exactly as computed. The page is
``templates/bench.html.j2``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..bench.metrics import DEFINITIONS
from ..core.files import write_atomic
from .svg import line_chart
from .templating import render, safe


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
    return render("bench.html.j2", bench=bench, levels=levels, definitions=DEFINITIONS,
                  charts={"latency": safe(latency), "throughput": safe(throughput), "rps": safe(rps)},
                  settings_json=json.dumps(bench["settings"], indent=2))


def write_bench_html(bench: dict[str, Any], path: str | Path) -> Path:
    return write_atomic(path, render_bench_html(bench))
