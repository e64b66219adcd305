"""A single-file HTML report: summary per model and every case side by side. Opens offline.

Inline CSS and a few lines of inline JS (filters, search); no CDN, no external request.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..files import write_atomic
from ..suites.longcontext import parse_length
from ..summary import DEFINITIONS, ModelSummary, RunSummary, workload_rows
from .svg import latency_distribution, quality_vs_cost
from .terminal import cost_notes, prompt_tokens_cell
from .format import escape, ms as _ms

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1b1f24}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;width:100%}th,td{border:1px solid #d0d7de;padding:4px 8px;vertical-align:top}
th{background:#f6f8fa;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{background:#e6ffec}.fail{background:#ffebe9}.err{background:#fff8c5}
.banner{background:#ffebe9;border:2px solid #cf222e;color:#82071e;padding:8px 12px;margin:12px 0}
pre{white-space:pre-wrap;word-break:break-word;margin:0;max-height:12em;overflow:auto;font:12px/1.4 ui-monospace,monospace}
.why{color:#57606a;font-size:12px}.call{border-left:3px solid #0969da;padding-left:6px;margin:4px 0}.meta{color:#57606a}
#controls{margin:8px 0;display:flex;gap:12px;align-items:center}
details pre{max-height:none}
.lic.not_allowed{color:#cf222e;font-weight:bold}.lic.needs_review{color:#8250df}.lic.allowed_with_duties{color:#9a6700}
.lic.allowed{color:#1a7f37}
.plots{display:flex;gap:24px;flex-wrap:wrap}.plots figure{margin:0}.plots figcaption{color:#57606a;font-size:12px}
details.fold summary{cursor:pointer;color:#0969da;font-size:12px}
.flip{font-size:11px;padding:0 4px;border-radius:3px}.flip.fixed{background:#dafbe1}.flip.broken{background:#ffebe9}
"""

_JS = """
const q=document.getElementById('q'),wl=document.getElementById('wl'),ff=document.getElementById('failed'),
      dis=document.getElementById('disagree'),fl=document.getElementById('flipped'),
      un=document.getElementById('unstable');
function apply(){const t=q.value.toLowerCase();let n=0;
for(const r of document.querySelectorAll('tr.case')){
 const ok=(!wl.value||r.dataset.wl===wl.value)&&(!ff.checked||r.dataset.failed==='1')
   &&(!dis.checked||r.dataset.disagree==='1')&&(!fl||!fl.checked||r.dataset.flipped==='1')
   &&(!un||!un.checked||r.dataset.unstable==='1')
   &&(!t||r.textContent.toLowerCase().includes(t));
 r.style.display=ok?'':'none';if(ok)n++;}
document.getElementById('shown').textContent=n;}
[q,wl,ff,dis,fl,un].forEach(e=>e&&['input','change'].forEach(k=>e.addEventListener(k,apply)));apply();
"""


_QUOTE_KIND = {"transcribed": " (as transcribed by others; vendor file not read)",
               "paraphrase": " (paraphrase, not the license's words)"}



_FOLD_AT = 600  # characters: longer answers fold behind a "show all" toggle


def _answer(text: str) -> str:
    if len(text) <= _FOLD_AT:
        return f"<pre>{escape(text)}</pre>"
    return (f"<pre>{escape(text[:_FOLD_AT])}…</pre><details class=fold><summary>show all {len(text):,} characters"
            f"</summary><pre>{escape(text)}</pre></details>")


def _calls(calls: list[dict] | None) -> str:
    """Tool calls as calls: the function's name and its arguments pretty-printed (or the raw text and
    why it did not parse)."""
    out = []
    for c in calls or []:
        if c.get("error"):
            body = f"<pre>{escape(str(c.get('raw', '')))}</pre><div class=why>✘ {escape(c['error'])}</div>"
        else:
            body = f"<pre>{escape(json.dumps(c.get('arguments'), indent=2, ensure_ascii=False))}</pre>"
        out.append(f"<div class=call><b>→ {escape(str(c.get('name') or '?'))}(…)</b>{body}</div>")
    return "".join(out)


def _turn(m: dict) -> str:
    """One message of a case's prompt as text: its content, or the calls an assistant turn made."""
    text = m.get("content")
    if m.get("tool_calls"):
        calls = "; ".join(f"{(c.get('function') or {}).get('name')}({(c.get('function') or {}).get('arguments')})"
                          for c in m["tool_calls"])
        text = f"{text + ' ' if text else ''}calls {calls}"
    return f"[{m['role']}] {text if text is not None else ''}"


def _paired_section(summary: RunSummary) -> list[str]:
    """Every other model against the first, on the same (case, sample) items."""
    from ..compare import compare

    models = summary.models
    if len(models) < 2:
        return []
    ref = models[0].model
    out = [f"<h2>Paired comparison (against {escape(ref)})</h2><table><tr><th>model</th><th>Δ pass rate (95% CI)</th>"
           "<th>p (McNemar)</th><th>fixed</th><th>broken</th><th>Δ mean score (95% CI)</th></tr>"]
    test = ""
    for m in models[1:]:
        c = compare(m.model, summary.outcomes(ref), summary.outcomes(m.model), ref,
                    summary.scores(ref), summary.scores(m.model))
        test = c.test
        sd = (f"{c.score_delta:+.3f} ({c.score_delta_ci95[0]:+.3f} … {c.score_delta_ci95[1]:+.3f})"
              if c.score_delta is not None and c.score_delta_ci95 else "–")
        out.append(f"<tr><td>{escape(m.model)}</td><td class=num>{c.delta:+.1%} ({c.delta_ci95[0]:+.1%} … "
                   f"{c.delta_ci95[1]:+.1%})</td><td class=num>{c.p_value:.3g}</td><td class=num>{len(c.fixed)}</td>"
                   f"<td class=num>{len(c.broken)}</td><td class=num>{sd}</td></tr>")
    out.append(f"</table><p class=meta>{escape(test)}. Fixed: {escape(ref)} failed, this model passed; broken: the reverse. Mean score: each answer's mean scorer value (partial credit), compared by a paired bootstrap (10,000 resamples, seed 0).</p>")
    return out


def _variants_section(summary: RunSummary) -> list[str]:
    """Variants of one model against their reference: quality, its paired difference, memory, speed."""
    from ..variants import RULE, pick_lines

    def mb(v: int | None) -> str:
        return "–" if v is None else f"{v / 1e6:,.1f} MB"

    out = []
    for g in summary.variant_groups():
        out.append(f"<h2 id='variants-{escape(g.name)}'>Variants of {escape(g.name)}</h2><p class=meta>reference "
                   f"{escape(g.reference)} · margin {g.margin * 100:g} points · α {g.alpha:g}</p><table class=variants>"
                   "<tr><th>variant</th><th>file</th><th>resident (peak)</th><th>output tok/s</th>"
                   "<th>pass rate (95% CI)</th><th>Δ vs reference (95% CI)</th><th>McNemar p</th>"
                   "<th>fixed / broken</th><th>verdict</th></tr>")
        for r in g.rows:
            c = r.comparison
            out.append(f"<tr data-verdict='{escape(r.verdict)}'><td>{escape(r.variant)}</td><td class=num>{mb(r.file_bytes)}</td>"
                       f"<td class=num>{mb(r.resident_bytes)}</td>"
                       f"<td class=num>{f'{r.output_tok_s:.1f}' if r.output_tok_s else '–'}</td>"
                       f"<td class=num>{r.pass_rate:.1%} ({r.ci95[0]:.1%} – {r.ci95[1]:.1%})</td>"
                       + (f"<td class=num>{c.delta:+.1%} ({c.delta_ci95[0]:+.1%} … {c.delta_ci95[1]:+.1%})</td>"
                          f"<td class=num>{c.p_value:.3g}</td><td class=num>{len(c.fixed)} / {len(c.broken)}</td>"
                          if c else "<td>–</td><td>–</td><td>–</td>")
                       + f"<td>{escape(r.verdict)}</td></tr>")
        out.append("</table><ul class=pick>" + "".join(f"<li><b>{escape(x)}</b></li>" for x in pick_lines(g)) + "</ul>"
                   f"<p class=meta>{escape(RULE)} " + " ".join(escape(n) for n in g.notes) + "</p>")
    return out


def _banner(summary: RunSummary) -> list[str]:
    lines = summary.error_banner()
    if not lines:
        return []
    return [f"<div id=error-banner class=banner><b>Not a result: too many errors (more than "
            f"{summary.max_error_rate:.0%} of a model's jobs).</b><ul>"
            + "".join(f"<li>{escape(line.strip())}</li>" for line in lines) + "</ul></div>"]


def render_html(summary: RunSummary, baseline: dict[str, dict[str, bool]] | None = None,
                baseline_label: str = "", extra: str = "") -> str:
    """``extra``: a section rendered elsewhere (the cost of a scenario) placed after the comparisons."""
    models = summary.models
    run = summary.run
    names = [m.model for m in models]
    out = [f"<!doctype html><html lang=en><meta charset=utf-8><title>weighbridge run {escape(run['id'])}</title>",
           f"<style>{_CSS}</style><h1>weighbridge bakeoff · run {escape(run['id'])}</h1>",
           f"<p class=meta>{len(summary.cases)} cases × {run['samples']} sample(s) · status {escape(run['status'])}"
           f" · model code sandbox: <span id=isolation>{escape(summary.isolation)}</span></p>",
           *_banner(summary),
           "<h2>Summary</h2><table><tr><th></th>" + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr>"]

    def row(label: str, cells: list[str]) -> None:
        out.append(f"<tr><th>{escape(label)}</th>" + "".join(f"<td class=num>{c}</td>" for c in cells) + "</tr>")

    if any(m.license_verdict for m in models):
        row("license", [f"<span class='lic {escape(m.license_verdict)}'>{escape((m.license_verdict or '–').replace('_', ' '))}"
                        f"</span><div class=why>{escape(m.license or 'unknown')}</div>" for m in models])
    row("pass rate", [f"{m.pass_rate:.1%} ({m.passed}/{m.jobs})" for m in models])
    if any(m.errors for m in models):
        row("pass rate, answered jobs", [f"{m.answered_pass_rate:.1%} ({m.passed}/{m.answered})"
                                         if m.answered_pass_rate is not None else "none answered" for m in models])
    row("95% CI (Wilson)", [f"{m.ci95[0]:.1%} – {m.ci95[1]:.1%}" for m in models])
    for w in sorted({w for m in models for w in m.by_workload} | {c["workload"] for c in summary.cases}):
        row(f"· {w}", [f"{m.by_workload[w]['pass_rate']:.0%} ({m.by_workload[w]['passed']}/{m.by_workload[w]['jobs']})"
                       if w in m.by_workload else ("n/a" if m.not_run else "–") for m in models])
    for label, cells in workload_rows(models):
        row(label, [escape(c) for c in cells])
    if any(m.not_run for m in models):
        row("cases not run", [f"{m.not_run}<div class=why>{escape(m.not_run_reason or '')}</div>" if m.not_run else "0"
                              for m in models])
    if any(m.samples > 1 for m in models):
        for key in sorted({k for m in models for k in m.pass_at_k}, key=lambda k: int(k.split("@")[1])):
            row(key, [f"{m.pass_at_k[key]:.1%}" if key in m.pass_at_k else "–" for m in models])
        row("unstable cases", [f"{len(m.unstable_cases)}" for m in models])
    def busy(m: ModelSummary, cell: str) -> str:
        return (f"<span class=busy title='{escape(m.busy)}'>†</span>{cell}" if m.busy and cell != "–" else cell)
    row("latency mean / p95", [busy(m, f"{_ms(m.latency_mean_ms)} / {_ms(m.latency_p95_ms)}") for m in models])
    row("TTFT mean", [busy(m, _ms(m.ttft_mean_ms)) for m in models])
    row("output tok/s", [busy(m, f"{m.output_tok_s:.1f}" if m.output_tok_s else "–") for m in models])
    row("tokens in / out", [f"{escape(prompt_tokens_cell(m))} / {m.completion_tokens:,} "
                            f"({', '.join(m.token_sources)})" for m in models])

    def approx(m: ModelSummary) -> str:
        return "<span class=est title='an estimate: see the cost notes'>≈</span>" if m.cost.estimated else ""
    row("cost (basis)", [f"{'–' if m.cost.total_usd is None else f'{approx(m)}${m.cost.total_usd:.4f}'} ({escape(m.cost.label)})" for m in models])
    row("$ / 1M output tokens", ["–" if m.cost.per_mtok_output_usd is None else f"{approx(m)}${m.cost.per_mtok_output_usd:.4f}" for m in models])
    row("$ / successful case", ["no passes" if m.passed == 0 and m.cost.total_usd is not None else
                                "–" if m.cost.per_success_usd is None else f"{approx(m)}${m.cost.per_success_usd:.5f}" for m in models])
    row("errors", [escape(", ".join(f"{k}×{v}" for k, v in m.error_kinds.items()) or "0") for m in models])
    out.append("</table>")
    out.extend(f"<p class='meta busy-note'>† {escape(m.model)}: {escape(m.busy)}</p>" for m in models if m.busy)
    if any(m.long_context for m in models):
        out.append(_long_context_grid(models))
    lat = {m.model: [r.generation.latency_ms for r in summary.rows if r.model == m.model and r.generation
                   and r.generation.timed] for m in models}
    out.append("<div class=plots><figure>" + quality_vs_cost(models) + "<figcaption>Quality against cost: the bar is "
               "the 95% Wilson interval of the pass rate.</figcaption></figure><figure>" + latency_distribution(lat)
               + "<figcaption>Latency per request: box p25–p75, solid line p50, dashed p95.</figcaption></figure></div>")
    out.extend(_paired_section(summary))
    out.extend(_variants_section(summary))
    if extra:
        out.append(extra)

    by_key = {(r.model, r.case_id, r.sample): r for r in summary.rows}
    unstable = {cid for m in models for cid in m.unstable_cases}
    workloads = sorted({c["workload"] for c in summary.cases})
    out.append("<h2>Side by side</h2><div id=controls><input id=q placeholder='search text'>"
               "<select id=wl><option value=''>all workloads</option>"
               + "".join(f"<option>{escape(w)}</option>" for w in workloads)
               + "</select><label><input type=checkbox id=failed> failed anywhere</label>"
               "<label><input type=checkbox id=disagree> models disagree</label>"
               + ("<label><input type=checkbox id=unstable> unstable across samples</label>" if run["samples"] > 1 else "")
               + (f"<label><input type=checkbox id=flipped> flipped vs baseline ({escape(baseline_label)})</label>"
                  if baseline else "")
               + "<span><span id=shown></span> shown</span></div>")
    out.append("<table><tr><th>case</th>" + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr>")
    for c in summary.cases:
        for s in range(run["samples"]):
            cells, failed, verdicts, flipped = [], False, set(), False
            key = f"{c['id']}#{s}"
            for n in names:
                r = by_key.get((n, c["id"], s))
                if r is None:
                    cells.append("<td class=err>not run</td>")
                    failed = True
                    continue
                if r.error:
                    cells.append(f"<td class=err><span class=why>{escape(r.error)}</span></td>")
                    failed = True
                    continue
                failed |= not r.passed
                verdicts.add(r.passed)
                g = r.generation
                why = "; ".join(f"{k}: {sc.reason}" for k, sc in r.scores)
                flip = ""
                if baseline and key in baseline.get(n, {}) and baseline[n][key] != r.passed:
                    flipped = True
                    flip = (" <span class='flip fixed'>fixed</span>" if r.passed else
                            " <span class='flip broken'>broken</span>")
                cells.append(f"<td class={'pass' if r.passed else 'fail'}>{_answer(g.text if g else '')}"
                             f"{_calls(g.tool_calls if g else None)}"
                             f"<div class=why>{'✔' if r.passed else '✘'} {escape(why)}<br>{_ms(g.latency_ms if g else None)}"
                             f" · {g.completion_tokens if g else 0} tok{' · cached' if r.cached else ''}{flip}</div></td>")
            prompt = "\n".join(_turn(m) for m in _messages(c["case"]))
            label = c["id"] + (f" #{s}" if run["samples"] > 1 else "")
            out.append(f"<tr class=case data-wl='{escape(c['workload'])}' data-failed='{int(failed)}' "
                       f"data-disagree='{int(len(verdicts) > 1)}' data-flipped='{int(flipped)}' "
                       f"data-unstable='{int(c['id'] in unstable)}'><td><b>{escape(label)}</b>"
                       f"<div class=why>{escape(c['workload'])}</div><details><summary>prompt</summary><pre>{escape(prompt)}</pre>"
                       f"</details></td>{''.join(cells)}</tr>")
    out.append("</table><h2>Definitions</h2><ul>" + "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in DEFINITIONS.items())
               + "</ul>" + "".join(f"<p class=meta>{escape(line)}</p>" for line in cost_notes(models)))
    lic = run["manifest"].get("licenses") or {}
    if lic:
        out.append(f"<h2>License check</h2><p class=meta>profile: {escape(lic.get('profile'))}</p><ul>")
        for name in names:
            v = lic.get(name) or {}
            items = "".join(f"<li>[{escape(f['outcome'].replace('_', ' '))}] {escape(f['why'])}<div class=why>§ {escape(f['section'])}: "
                            f"“{escape(f['quote'])}”{escape(_QUOTE_KIND.get(f.get('quote_kind', ''), ''))}</div></li>"
                            for f in v.get("findings", []) if f["outcome"] != "info")
            review = f"<li>! {escape(v['review'])}</li>" if v.get("review") and v["review"] != v.get("reason") else ""
            review += "".join(f"<li class=caveat>≈ {escape(c)}</li>" for c in v.get("caveats") or [])
            out.append(f"<li><b>{escape(name)}</b>: <span class='lic {escape(v.get('verdict'))}'>"
                       f"{escape(str(v.get('verdict', '–')).replace('_', ' '))}</span> · {escape(v.get('license_name') or v.get('note') or '')}"
                       f"<div class=why>{escape(v.get('reason') or '')}</div><ul>{review}{items}</ul></li>")
        out.append("</ul>")
    out.append("<h2>Run manifest</h2><pre>" + escape(json.dumps(run["manifest"], indent=2, ensure_ascii=False)) + "</pre>")
    out.append(f"<script>{_JS}</script></html>")
    return "\n".join(out)


def _messages(case: dict) -> list[dict[str, str]]:
    msgs = case.get("messages") or [{"role": "user", "content": case.get("prompt") or ""}]
    if case.get("system") and not any(m["role"] == "system" for m in msgs):
        msgs = [{"role": "system", "content": case["system"]}, *msgs]
    return msgs


def write_html(summary: RunSummary, path: str | Path, baseline: dict[str, dict[str, bool]] | None = None,
               baseline_label: str = "", extra: str = "") -> Path:
    return write_atomic(path, render_html(summary, baseline, baseline_label, extra))


def _long_context_grid(models: list[ModelSummary]) -> str:
    """Long-context accuracy by nominal length and needle depth, per model (a cell says passed/jobs)."""
    depths = sorted({d for m in models for row in m.long_context.values() for d in row}, key=int)
    lengths = sorted({n for m in models for n in m.long_context},
                     key=parse_length)
    head = "".join(f"<th>depth {escape(d)}%</th>" for d in depths)
    rows = []
    for m in models:
        for n in lengths:
            cells = m.long_context.get(n) or {}
            rows.append(f"<tr><th>{escape(m.model)}</th><th>{escape(n)}</th>" + "".join(
                f"<td class=num>{cells[d]['passed']}/{cells[d]['jobs']}</td>" if d in cells and cells[d]["jobs"]
                else "<td>not run</td>"
                for d in depths) + "</tr>")
    return ("<h2>Long context: passed by length × depth</h2><table class=grid><tr><th>model</th><th>length</th>"
            + head + "</tr>" + "".join(rows) + "</table>")
