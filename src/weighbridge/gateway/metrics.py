"""Prometheus text exposition for the gateway, without a client library.

Safety, cache and escalation figures are first-class series beside latency and spend, so a
dashboard can show how often the cheap tier was enough and what the redactor caught.

With ``serve --workers N`` every worker writes a snapshot of its figures to a directory the
supervisor gives it (``WEIGHBRIDGE_METRICS_DIR``) once a second and when it stops, and any worker's
``/metrics`` answers for all of them: counters and histograms summed over every worker that ever
ran (a restarted worker's counts are not lost, as in Prometheus's own multiprocess mode), gauges
summed over the live ones.
"""

from __future__ import annotations

import bisect
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

_HELP = {
    "weighbridge_requests_total": ("counter", "Requests answered, by route, upstream that answered and HTTP status."),
    "weighbridge_request_duration_seconds": ("histogram", "Time from request read to last byte sent, by route."),
    "weighbridge_first_token_seconds": ("histogram", "Time to the first content event of streamed answers, by route."),
    "weighbridge_tokens_total": ("counter", "Tokens by route, upstream and kind (prompt/completion)."),
    "weighbridge_reasoning_tokens_total": ("counter", "Reasoning (thinking) tokens by route and upstream: a part of "
                                                      "the completion tokens, counted apart."),
    "weighbridge_cost_usd_total": ("counter", "Cost at the plan's prices, by route and upstream."),
    "weighbridge_cache_total": ("counter", "Cache lookups by route and result (hit/miss)."),
    "weighbridge_escalations_total": ("counter", "Cascade escalations by route and the tier escalated from."),
    "weighbridge_upstream_failures_total": ("counter", "Failed upstream attempts (each fell back), by upstream and reason."),
    "weighbridge_safety_events_total": ("counter", "Redactions and block-list hits, by kind."),
    "weighbridge_denied_total": ("counter", "Requests refused by auth, rate limits or budgets, by code."),
    "weighbridge_in_flight": ("gauge", "Requests being handled now."),
    "weighbridge_audit_write_failures": ("gauge", "Writes the background writer could not commit."),
}


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    esc = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in labels)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(labels, esc)) + "}"


class Metrics:
    def __init__(self) -> None:
        self.values: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(lambda: defaultdict(float))
        self.hist: dict[str, dict[tuple[tuple[str, str], ...], list[float]]] = defaultdict(dict)
        self.in_flight = 0
        self.writer_failures = 0

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self.values[name][tuple(sorted(labels.items()))] += amount

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        h = self.hist[name].get(key)
        if h is None:
            h = self.hist[name][key] = [0.0] * (len(_BUCKETS) + 2)  # buckets..., count, sum
        h[bisect.bisect_left(_BUCKETS, seconds)] += 1 if seconds <= _BUCKETS[-1] else 0
        h[-2] += 1
        h[-1] += seconds

    # -- several workers ---------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {"values": {n: [[list(map(list, k)), v] for k, v in series.items()] for n, series in self.values.items()},
                "hist": {n: [[list(map(list, k)), h] for k, h in series.items()] for n, series in self.hist.items()},
                "in_flight": self.in_flight, "writer_failures": self.writer_failures}

    def write_snapshot(self, folder: str, pid: int) -> None:
        """Atomically: a reader never sees half a file."""
        tmp = Path(folder) / f".{pid}.json.tmp"
        tmp.write_text(json.dumps(self.snapshot()))
        os.replace(tmp, Path(folder) / f"{pid}.json")

    def merged(self, folder: str, pid: int) -> "Metrics":
        """These figures plus every other worker's last snapshot in ``folder``."""
        out = Metrics()
        out.absorb(self.snapshot(), live=True)
        for f in sorted(Path(folder).glob("*.json")):
            other = int(f.stem) if f.stem.isdigit() else None
            if other is None or other == pid:
                continue
            try:
                snap = json.loads(f.read_text())
            except (OSError, ValueError):
                continue  # being replaced this instant: the next scrape has it
            out.absorb(snap, live=_alive(other))
        return out

    def absorb(self, snap: dict[str, Any], live: bool) -> None:
        for name, series in snap["values"].items():
            for key, v in series:
                self.values[name][tuple(map(tuple, key))] += v
        for name, series in snap["hist"].items():
            for key, h in series:
                k = tuple(map(tuple, key))
                mine = self.hist[name].setdefault(k, [0.0] * len(h))
                for i, n in enumerate(h):
                    mine[i] += n
        if live:
            self.in_flight += snap["in_flight"]
            self.writer_failures += snap["writer_failures"]

    def render(self) -> str:
        lines: list[str] = []
        self.values["weighbridge_in_flight"][()] = self.in_flight
        self.values["weighbridge_audit_write_failures"][()] = self.writer_failures
        for name, (kind, help_) in _HELP.items():
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
            if kind == "histogram":
                for key, h in sorted(self.hist.get(name, {}).items()):
                    running = 0.0
                    for le, n in zip(_BUCKETS, h):
                        running += n
                        lines.append(f"{name}_bucket{_labels(key + (('le', repr(le)),))} {running:g}")
                    lines.append(f"{name}_bucket{_labels(key + (('le', '+Inf'),))} {h[-2]:g}")
                    lines.append(f"{name}_count{_labels(key)} {h[-2]:g}")
                    lines.append(f"{name}_sum{_labels(key)} {h[-1]:.6f}")
            else:
                for key, v in sorted(self.values.get(name, {}).items()):
                    lines.append(f"{name}{_labels(key)} {v:.10g}")
        return "\n".join(lines) + "\n"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
