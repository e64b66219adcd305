"""The pages of ``weighbridge view``, each rendered from the store on request (Starlette).

Every page is a static HTML document with inline CSS and SVG, like the report: nothing is fetched
from elsewhere, and every text from the store (model output included) is escaped. The app only
reads; it binds to loopback (the CLI refuses anything else)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..backends.fingerprint import from_manifest
from ..compare import compare
from ..errors import WeighbridgeError
from ..report.html import render_html
from ..report.svg import COLORS, line_chart
from ..store import Store
from ..summary import summarise_run
from ..report.format import escape

_CSS = ("body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1b1f24}table{border-collapse:collapse}"
        "th,td{border:1px solid #d0d7de;padding:4px 8px;vertical-align:top}th{background:#f6f8fa;text-align:left}"
        "td.num{text-align:right;font-variant-numeric:tabular-nums}.meta{color:#57606a}nav a{margin-right:14px}"
        ".plots{display:flex;gap:16px;flex-wrap:wrap}.fixed{color:#1a7f37}.broken{color:#cf222e}")




def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "–"


def _page(title: str, body: str) -> HTMLResponse:
    nav = "<nav><a href='/'>runs</a><a href='/bench'>load tests</a></nav>"
    return HTMLResponse(f"<!doctype html><html lang=en><meta charset=utf-8><title>{escape(title)} · weighbridge view</title>"
                        f"<style>{_CSS}</style>{nav}<h1>{escape(title)}</h1>{body}</html>")


def _error(status: int, message: str) -> HTMLResponse:
    r = _page("not found" if status == 404 else "error", f"<p>{escape(message)}</p>")
    r.status_code = status
    return r


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
        rows = []
        for r in st.runs(limit=500):
            run = st.run(r["id"])
            models = counts.get(r["id"], {})
            suites = ", ".join(run["manifest"].get("suites", {})) or "–"
            cells = " ".join(f"<div><a href='/trend?model={escape(m)}&amp;suite={escape(run['suite_hash'])}'>"
                             f"{escape(m)}</a> {p / j:.0%} <span class=meta>({p}/{j})</span></div>"
                             for m, (p, j) in sorted(models.items()) if j)
            rows.append(f"<tr class=run data-run='{escape(r['id'])}'><td><input type=checkbox name=pick value='{escape(r['id'])}'>"
                        f"</td><td><a href='/run/{escape(r['id'])}'>{escape(r['id'])}</a></td><td>{_when(r['created_at'])}</td>"
                        f"<td>{escape(r['status'])}</td><td>{escape(suites)}</td><td>{cells or '–'}</td></tr>")
        js = ("<script>document.getElementById('cmp').addEventListener('click',()=>{const p=[...document."
              "querySelectorAll('input[name=pick]:checked')].map(x=>x.value);if(p.length===2)location.href="
              "'/compare?a='+encodeURIComponent(p[1])+'&b='+encodeURIComponent(p[0]);});</script>")
        body = (f"<p class=meta>{escape(path)} · {len(rows)} run(s), newest first · tick two runs and compare them; a model's "
                "name shows its trend over runs of the same suite</p><p><button id=cmp>compare the two ticked runs</button></p>"
                "<table id=runs><tr><th></th><th>run</th><th>started</th><th>status</th><th>suites</th>"
                f"<th>pass rate per model</th></tr>{''.join(rows)}</table>{js}")
        return _page("runs", body)

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
        rows, flips, test = [], [], ""
        for m in common:
            try:
                c = compare(m, sa.outcomes(m), sb.outcomes(m), a, sa.scores(m), sb.scores(m))
            except WeighbridgeError as e:
                rows.append(f"<tr><td>{escape(m)}</td><td colspan=6>{escape(e)}</td></tr>")
                continue
            rows.append(f"<tr class=pair><td>{escape(m)}</td><td class=num>{c.baseline_pass_rate:.1%}</td>"
                        f"<td class=num>{c.candidate_pass_rate:.1%}</td><td class=num>{c.delta:+.1%} "
                        f"({c.delta_ci95[0]:+.1%} … {c.delta_ci95[1]:+.1%})</td><td class=num>{c.p_value:.3g}</td>"
                        f"<td class=num>{len(c.fixed)}</td><td class=num>{len(c.broken)}</td></tr>")
            flips += [f"<li class=fixed>{escape(m)}: {escape(k)} fixed</li>" for k in c.fixed]
            flips += [f"<li class=broken>{escape(m)}: {escape(k)} broken</li>" for k in c.broken]
            test = c.test
        if not common:
            return _page(f"{a} vs {b}", "<p>the two runs have no model in common</p>")
        body = (f"<p class=meta>before: <a href='/run/{escape(a)}'>{escape(a)}</a> ({_when(sa.run['created_at'])}) · after: "
                f"<a href='/run/{escape(b)}'>{escape(b)}</a> ({_when(sb.run['created_at'])}) · paired on the cases both ran</p>"
                "<table id=compare><tr><th>model</th><th>before</th><th>after</th><th>Δ pass rate (95% CI)</th>"
                f"<th>p (McNemar)</th><th>fixed</th><th>broken</th></tr>{''.join(rows)}</table>"
                f"<p class=meta>{escape(test)}</p><h2>Flipped cases</h2><ul id=flips>{''.join(flips) or '<li>none</li>'}</ul>")
        return _page(f"{a} vs {b}", body)

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
        chart = _trend_chart(xs, [(m.pass_rate, *m.ci95) for _, m in points])
        latency = line_chart("Latency", "run (oldest → newest)", {
            "mean": [(x, m.latency_mean_ms) for x, (_, m) in zip(xs, points) if m.latency_mean_ms is not None],
            "p95": [(x, m.latency_p95_ms) for x, (_, m) in zip(xs, points) if m.latency_p95_ms is not None]}, "ms")
        rows = "".join(
            f"<tr class=point><td class=num>{x}</td><td><a href='/run/{escape(run['id'])}'>{escape(run['id'])}</a></td>"
            f"<td>{_when(run['created_at'])}</td><td class=num>{m.pass_rate:.1%} ({m.passed}/{m.jobs})</td>"
            f"<td class=num>{m.ci95[0]:.1%} – {m.ci95[1]:.1%}</td><td class=num>"
            f"{'–' if m.latency_mean_ms is None else ('†' if m.busy else '') + f'{m.latency_mean_ms:,.0f} ms'}</td>"
            f"<td class=num>{'–' if m.cost.per_success_usd is None else ('≈' if m.cost.estimated else '') + f'${m.cost.per_success_usd:.5f}'}</td>"
            f"<td>{escape(str((from_manifest((run['manifest'].get('models') or {}).get(model)) or {}).get('sha256') or '')[:12])}</td></tr>"
            for x, (run, m) in zip(xs, points))
        body = (f"<p class=meta>{len(points)} run(s) of {escape(model)}" + (" on one suite (same cases)" if suite else "")
                + " · pass rate with its 95% Wilson interval · the fingerprint (the weights' sha256, or what the server "
                "says is behind the model id) shows where the checkpoint changed · † measured on a busy machine · ≈ an "
                "estimate</p>"
                f"<div class=plots>{chart}{latency}</div><table id=trend><tr><th>#</th><th>run</th><th>started</th>"
                "<th>pass rate</th><th>95% CI</th><th>latency mean</th><th>$ / success</th><th>weights</th></tr>"
                f"{rows}</table>")
        return _page(f"trend: {model}", body)

    async def bench_page(request: Request) -> Response:
        st = store()
        ids = [x for x in (request.query_params.get("ids") or "").split(",") if x]
        benches = st.benches(limit=500)
        rows = "".join(f"<tr><td><input type=checkbox name=b value='{escape(b['id'])}'></td><td>{escape(b['id'])}</td>"
                       f"<td>{_when(b['created_at'])}</td><td>{escape(b['target'])}</td><td>{escape(b['mode'])}</td></tr>"
                       for b in benches)
        js = ("<script>document.getElementById('show').addEventListener('click',()=>{const p=[...document."
              "querySelectorAll('input[name=b]:checked')].map(x=>x.value);if(p.length)location.href='/bench?ids='+"
              "p.map(encodeURIComponent).join(',');});</script>")
        charts = ""
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
            charts = ("<div class=plots id=curves>" + line_chart("E2E p50", "level", series("e2e_ms", "p50"), "ms")
                      + line_chart("TTFT p99", "level", series("ttft_ms", "p99"), "ms")
                      + line_chart("Output tokens/s", "level", series("output_tps", None), "tokens/s") + "</div>")
        body = (f"{charts}<p><button id=show>show the ticked load tests side by side</button></p><table id=benches>"
                f"<tr><th></th><th>load test</th><th>started</th><th>target</th><th>loop</th></tr>{rows}</table>{js}")
        return _page("load tests", body)

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)  # browsers ask for one; there is none, and that is not an error

    async def store_failed(request: Request, exc: Exception) -> Response:
        return _error(503, str(exc))  # a damaged, locked or unreadable store: its one-line error, not a 500

    app = Starlette(routes=[Route("/favicon.ico", no_icon), Route("/", runs_page), Route("/run/{run_id}", run_page),
                            Route("/compare", compare_page), Route("/trend", trend_page), Route("/bench", bench_page)],
                    exception_handlers={WeighbridgeError: store_failed})
    return _HostCheck(app, {h.lower().strip("[]") for h in (*LOOPBACK_HOSTS, *allowed_hosts)})


def _trend_chart(xs: list[int], points: list[tuple[float, float, float]], width: int = 460, height: int = 260) -> str:
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


__all__ = ["create_view_app"]
