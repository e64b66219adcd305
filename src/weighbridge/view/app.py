"""The pages of ``weighbridge view``, each rendered from the store on request (Starlette).

Every page is a static HTML document with inline CSS and SVG, like the report: nothing is fetched
from elsewhere, and every text from the store (model output included) is escaped. The app only
reads; it binds to loopback (the CLI refuses anything else)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..backends.fingerprint import from_manifest
from ..analysis.compare import compare
from ..core.errors import WeighbridgeError
from ..report.html import render_html
from ..report.svg import line_chart, trend_chart
from ..report.templating import render, safe
from ..storage.store import Store
from ..analysis.summary import summarise_run


@dataclass
class PairError:
    """A model the two runs share but that cannot be compared (no case in common): its row says why."""

    model: str
    error: str


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "–"


def _page(template: str, title: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(render(template, title=title, **context), status_code=status)


def _error(status: int, message: str) -> HTMLResponse:
    return _page("view_error.html.j2", "not found" if status == 404 else "error", status, message=message)


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


class _HostCheck:
    """Answers only requests whose ``Host`` names this viewer (``LOOPBACK_HOSTS`` plus what
    ``--allowed-host`` adds): a web page elsewhere can point its own name at 127.0.0.1 (DNS
    rebinding) and read every stored prompt and answer through the browser, unless a foreign Host is
    refused. Starlette's TrustedHostMiddleware cuts "[::1]:8765" at its first colon, so the name is
    taken apart with urllib here."""

    def __init__(self, app: Any, allowed: set[str]) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raw = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            try:
                name = urlsplit("//" + raw).hostname or ""
            except ValueError:
                name = ""
            if name.lower() not in self.allowed:
                await PlainTextResponse(f"refused: Host {raw[:100]!r} is not this viewer's address "
                                        "(weighbridge view --allowed-host NAME adds one)", status_code=421)(
                    scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_view_app(store_path: str | Path, allowed_hosts: tuple[str, ...] = ()) -> Any:
    path = Path(store_path)

    def store() -> Store:
        if not path.exists():
            raise WeighbridgeError(f"{path}: no such store")
        return Store(path)

    async def runs_page(request: Request) -> Response:
        st = store()
        counts = st.pass_counts()
        runs = []
        for r in st.runs(limit=500):
            run = st.run(r["id"])
            runs.append({"id": r["id"], "when": _when(r["created_at"]), "status": r["status"],
                         "suites": ", ".join(run["manifest"].get("suites", {})) or "–", "suite_hash": run["suite_hash"],
                         "models": [(m, p, j) for m, (p, j) in sorted(counts.get(r["id"], {}).items()) if j]})
        return _page("view_runs.html.j2", "runs", store=str(path), runs=runs)

    async def run_page(request: Request) -> Response:
        st = store()
        run_id = request.path_params["run_id"]
        try:
            return HTMLResponse(render_html(summarise_run(st, run_id)))
        except WeighbridgeError as e:
            return _error(404, str(e))

    async def compare_page(request: Request) -> Response:
        st = store()
        a, b = request.query_params.get("a"), request.query_params.get("b")
        if not a or not b:
            return _error(400, "compare needs ?a=RUN&b=RUN (tick two runs on the runs page)")
        try:
            sa, sb = summarise_run(st, a), summarise_run(st, b)
        except WeighbridgeError as e:
            return _error(404, str(e))
        common = [m.model for m in sa.models if m.model in {x.model for x in sb.models}]
        if not common:
            return _page("view_error.html.j2", f"{a} vs {b}", message="the two runs have no model in common")
        comparisons: list[Any] = []
        for m in common:
            try:
                comparisons.append(compare(m, sa.outcomes(m), sb.outcomes(m), a, sa.scores(m), sb.scores(m)))
            except WeighbridgeError as e:
                comparisons.append(PairError(m, str(e)))
        done = [c for c in comparisons if not isinstance(c, PairError)]
        return _page("view_compare.html.j2", f"{a} vs {b}", a=a, b=b, a_when=_when(sa.run["created_at"]),
                     b_when=_when(sb.run["created_at"]), comparisons=comparisons, test=done[-1].test if done else "",
                     flips=any(c.fixed or c.broken for c in done))

    async def trend_page(request: Request) -> Response:
        st = store()
        model = request.query_params.get("model")
        suite = request.query_params.get("suite")
        if not model:
            return _error(400, "trend needs ?model=NAME (follow a model's name on the runs page)")
        points = []
        counts = st.pass_counts()
        for r in reversed(st.runs(limit=500)):  # oldest first
            if not counts.get(r["id"], {}).get(model):
                continue  # the model answered nothing in this run: no need to summarise it
            run = st.run(r["id"])
            if suite and run["suite_hash"] != suite:
                continue
            summary = summarise_run(st, r["id"])
            m = next((x for x in summary.models if x.model == model), None)
            if m is None or not m.jobs:
                continue
            points.append((run, m))
        if not points:
            return _error(404, f"no run of model '{model}'" + (" on that suite" if suite else ""))
        xs = list(range(1, len(points) + 1))
        chart = trend_chart(xs, [(m.pass_rate, *m.ci95) for _, m in points])
        latency = line_chart("Latency", "run (oldest → newest)", {
            "mean": [(x, m.latency_mean_ms) for x, (_, m) in zip(xs, points) if m.latency_mean_ms is not None],
            "p95": [(x, m.latency_p95_ms) for x, (_, m) in zip(xs, points) if m.latency_p95_ms is not None]}, "ms")
        rows = [{"x": x, "run": run, "when": _when(run["created_at"]), "model": m,
                 "weights": str((from_manifest((run["manifest"].get("models") or {}).get(model)) or {}).get("sha256")
                                or "")[:12]} for x, (run, m) in zip(xs, points)]
        return _page("view_trend.html.j2", f"trend: {model}", model=model, suite=suite, points=rows,
                     charts={"trend": safe(chart), "latency": safe(latency)})

    async def bench_page(request: Request) -> Response:
        st = store()
        ids = [x for x in (request.query_params.get("ids") or "").split(",") if x]
        benches = [{**b, "when": _when(b["created_at"])} for b in st.benches(limit=500)]
        charts = None
        if ids:
            try:
                chosen = [st.bench(i) for i in ids]
            except WeighbridgeError as e:
                return _error(404, str(e))

            def series(metric: str, key: str | None) -> dict[str, list[tuple[float, float]]]:
                out = {}
                for b in chosen:
                    pts = [(lv["level"], lv[metric][key] if key else lv[metric]) for lv in b["levels"]
                           if (lv[metric].get(key) if key else lv[metric]) is not None]
                    out[f"{b['id'][-6:]} {b['target'].split(' ')[0]}"] = pts
                return out
            charts = {"e2e": safe(line_chart("E2E p50", "level", series("e2e_ms", "p50"), "ms")),
                      "ttft": safe(line_chart("TTFT p99", "level", series("ttft_ms", "p99"), "ms")),
                      "tps": safe(line_chart("Output tokens/s", "level", series("output_tps", None), "tokens/s"))}
        return _page("view_bench.html.j2", "load tests", benches=benches, charts=charts)

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)  # browsers ask for one; there is none, and that is not an error

    async def store_failed(request: Request, exc: Exception) -> Response:
        return _error(503, str(exc))  # a damaged, locked or unreadable store: its one-line error, not a 500

    app = Starlette(routes=[Route("/favicon.ico", no_icon), Route("/", runs_page), Route("/run/{run_id}", run_page),
                            Route("/compare", compare_page), Route("/trend", trend_page), Route("/bench", bench_page)],
                    exception_handlers={WeighbridgeError: store_failed})
    return _HostCheck(app, {h.lower().strip("[]") for h in (*LOOPBACK_HOSTS, *allowed_hosts)})


__all__ = ["create_view_app"]
