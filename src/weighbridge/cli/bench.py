"""`bench`: load-test an OpenAI-compatible endpoint."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..report.jsonreport import dumps as dumps_json
from ..core.config import load_config
from ..core.errors import WeighbridgeError

from ..report.tables import keep_ids_whole
from .common import _fail, _sigterm_as_interrupt, app, console, err_console


@app.command("bench")
def bench_cmd(
    target: str = typer.Argument(..., help="http(s)://host:port/v1 (with --server-model), a model in the config, a bundled "
                                           "alias or a GGUF file (served by llama_cpp.server for the test)."),
    model: Optional[str] = typer.Option(None, "--server-model", "--model", metavar="ID",
                                        help="Model id on the server (URL targets)."),
    config: Optional[Path] = typer.Option(None, "-c", "--config", help="Config whose model to test."),
    concurrency: Optional[str] = typer.Option(None, "--concurrency", help="Closed loop levels, e.g. 1,2,4,8."),
    rate: Optional[str] = typer.Option(None, "--rate", help="Open loop arrival rates (req/s), e.g. 1,2,4."),
    poisson: bool = typer.Option(False, "--poisson", help="Open loop: Poisson arrivals instead of constant."),
    requests: Optional[int] = typer.Option(None, "--requests", min=1, help="Requests per level (default 20)."),
    duration: Optional[float] = typer.Option(None, "--duration", min=0.1, help="Seconds per level instead."),
    warmup: int = typer.Option(2, "--warmup", min=0, help="Requests per level sent first and not counted."),
    input_tokens: int = typer.Option(128, "--input-tokens", min=1, help="Synthetic prompt length (≈ tokens)."),
    output_tokens: int = typer.Option(64, "--output-tokens", min=1, help="max_tokens per request."),
    slo: Optional[str] = typer.Option(None, "--slo", help="Goodput SLOs, e.g. ttft=500ms,tpot=50ms,e2e=5s."),
    gpu_hour_usd: Optional[float] = typer.Option(None, "--gpu-hour-usd", min=0, help="Hardware price for cost figures."),
    max_p50: Optional[float] = typer.Option(None, "--stop-p50-ms", help="Stop the sweep when p50 latency passes this."),
    auto: bool = typer.Option(False, "--auto", help="Search for the highest concurrency (or, with --rate, rate) that "
                              "meets --slo (its p95s, errors ≤ 1%: the rule `weighbridge cost` applies) instead of "
                              "a fixed list; --concurrency/--rate give the level it starts from."),
    auto_max: float = typer.Option(256, "--auto-max", min=1, help="With --auto: the highest level it may try."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for a server weighbridge starts."),
    suite: Optional[str] = typer.Option(None, "--suite", help="Take prompts from a suite (e.g. builtin:starter) "
                                                             "instead of synthetic ones."),
    tokenizer_gguf: Optional[Path] = typer.Option(None, "--tokenizer-gguf", help="GGUF whose tokenizer counts tokens "
                                                                                 "when the server sends no usage."),
    timeout_s: float = typer.Option(120.0, "--timeout-s", min=0.1, help="Seconds one request may take before it "
                                    "counts as an error."),
    max_error_rate: float = typer.Option(0.1, "--max-error-rate", min=0.0, max=1.0, help="A level whose errored "
                                         "share passes this stops the sweep (after 10 answers)."),
    name: Optional[str] = typer.Option(None, "--name", help="Store the figures under this model name (what "
                                       "`weighbridge cost` matches a scenario option's model: with it)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write every level's figures as JSON."),
    report: Path = typer.Option(Path("weighbridge-bench.html"), "--report", help="HTML report with the curves."),
    store: Optional[Path] = typer.Option(None, "--store", help="SQLite store for the results (default: the "
                                                               "config's, else ./weighbridge.db)."),
) -> None:
    """Load-test an OpenAI-compatible endpoint: TTFT, ITL, TPOT, percentiles, goodput, cost."""

    from ..bench.loadgen import sweep
    from ..bench.metrics import DEFINITIONS, parse_slo
    from ..bench.target import resolve_target
    from ..core.files import write_atomic

    if concurrency and rate:
        raise _fail(WeighbridgeError("give --concurrency (closed loop) or --rate (open loop), not both"))
    mode = "open" if rate else "closed"
    try:
        levels = [float(x) for x in (rate or concurrency or "1").split(",")]
        slo_spec = parse_slo(slo)
    except ValueError as e:
        raise _fail(WeighbridgeError(str(e))) from None
    tune = None
    if auto:
        if not slo_spec.given:
            raise _fail(WeighbridgeError("--auto searches for the highest level that meets an SLO: give --slo, e.g. "
                                         "--slo ttft=500ms,e2e=5s"))
        if len(levels) != 1 or levels[0] <= 0:
            raise _fail(WeighbridgeError("--auto starts from one level: give at most one --concurrency or --rate"))
        tune = auto_tune(slo_spec, start=levels[0], ceiling=auto_max)
    if requests is None and duration is None:
        requests = 20
    try:
        cfg = load_config(config) if config else (load_config("weighbridge.yaml") if Path("weighbridge.yaml").exists() else None)
        suite_prompts = None
        if suite:
            from ..suites import load_suite

            suite_prompts = ["\n\n".join(m["content"] for m in c.rendered_messages() if m["role"] != "assistant")
                             for c in load_suite(suite, cfg.base_dir if cfg else ".").cases]
        with resolve_target(target, model, cfg, threads) as (tgt, where):
            from ..bench.target import gguf_token_counter

            gguf = tokenizer_gguf or tgt.gguf
            counter = gguf_token_counter(Path(gguf)) if gguf else None
            shown = (f"auto from {levels[0]:g} up to {auto_max:g}" if tune is not None
                     else f"levels {', '.join(f'{x:g}' for x in levels)}")
            console.print(f"[dim]target: {where} · {mode} loop · {shown} · "
                          f"{requests or f'{duration:g}s'} per level · prompts ≈{input_tokens} tokens, "
                          f"max_tokens {output_tokens} · timeout {timeout_s:g}s · a level stops past "
                          f"{max_error_rate:.0%} errors[/]")
            progress = Progress(TextColumn("[bold]{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("errors {task.fields[errors]}"), TimeElapsedColumn(), console=console,
                                disable=not console.is_terminal and os.environ.get("WEIGHBRIDGE_PROGRESS") != "1")
            bars: dict[float, TaskID] = {}

            def on_level(r: Any) -> None:  # off a terminal the bars draw nothing: one line per level instead
                console.print(f"progress level {r.level:g}: {r.ok}/{r.requests} ok · {sum(r.errors.values())} errors · "
                              f"{r.rps:.2f} req/s", highlight=False, soft_wrap=True)

            def on_request(level: float, rec: Any) -> None:
                if level not in bars:
                    label = f"{'concurrency' if mode == 'closed' else 'rate'} {level:g}"
                    bars[level] = progress.add_task(label, total=requests, errors=0)
                task = next(t for t in progress.tasks if t.id == bars[level])
                progress.update(bars[level], advance=1, errors=task.fields["errors"] + int(not rec.ok))

            with progress, _sigterm_as_interrupt():
                results, stop = asyncio.run(sweep(tgt, mode=mode, levels=levels, input_tokens=input_tokens,
                                                  output_tokens=output_tokens, requests=requests, duration_s=duration,
                                                  warmup=warmup, slo=slo_spec, poisson=poisson,
                                                  gpu_hour_usd=gpu_hour_usd, max_p50_ms=max_p50, on_request=on_request,
                                                  prompts=suite_prompts, count_tokens=counter,
                                                  timeout_s=timeout_s, max_error_rate=max_error_rate,
                                                  on_level=None if console.is_terminal else on_level, auto=tune))
    except WeighbridgeError as e:
        raise _fail(e) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted: the load test stopped; nothing was stored, and any server it "
                          "started was stopped[/]")
        raise typer.Exit(130) from None

    def ms(d: dict[str, Any], key: str) -> str:
        v = d.get(key)
        return "–" if v is None else (f"{v / 1000:.2f}s" if v >= 1000 else f"{v:.0f}ms")

    if tune is not None:  # the levels in order, the one found marked
        results = sorted(results, key=lambda r: r.level)
    t = Table("concurrency" if mode == "closed" else "rate/s", "ok/err", "req/s", "out tok/s", "TTFT p50/p99",
              "ITL p50/p99", "TPOT p50", "E2E p50/p99", "goodput/s", "client CPU",
              title=f"bench · {mode} loop", title_justify="left")
    for r in results:
        errs = sum(r.errors.values())
        mark = (" [bold green]← knee[/]" if tune is not None and r.level == tune.found else "")
        t.add_row(f"{r.level:g}" + (" [yellow]†[/]" if r.busy else "") + mark, f"{r.ok}/{errs}", f"{r.rps:.2f}", f"{r.output_tps:.1f}",
                  f"{ms(r.ttft_ms, 'p50')} / {ms(r.ttft_ms, 'p99')}", f"{ms(r.itl_ms, 'p50')} / {ms(r.itl_ms, 'p99')}",
                  ms(r.tpot_ms, "p50"), f"{ms(r.e2e_ms, 'p50')} / {ms(r.e2e_ms, 'p99')}",
                  "–" if r.goodput_rps is None else f"{r.goodput_rps:.2f}",
                  f"{r.client_cpu:.0%}" + (" [red]client-bound[/]" if r.client_bound else ""))
    console.print(keep_ids_whole(t))
    for r in results:
        if r.busy:
            console.print(f"[yellow]† level {r.level:g}: {r.busy}[/]: its latencies and throughput measure the "
                          "contention as much as the server", highlight=False, soft_wrap=True)
    from ..analysis.summary import advice_for

    for r in results:
        if r.errors:
            console.print(f"level {r.level:g} errors: " + ", ".join(f"{k}×{v}" for k, v in r.errors.items())
                          + f" ({sum(r.errors.values())}/{r.requests}, allowed {max_error_rate:.0%})")
            tip = advice_for(max(r.errors, key=lambda k: r.errors[k]))
            if tip:
                console.print(f"  fix: {tip}", highlight=False, soft_wrap=True)
        if r.short_outputs:
            console.print(f"level {r.level:g}: {r.short_outputs} response(s) shorter than max_tokens "
                          f"(the server stopped early; output tok/s counts what it sent)")
    if gpu_hour_usd is not None and results:
        for line in operating_point(results, slo_spec, gpu_hour_usd):
            console.print(line, highlight=False, soft_wrap=True)
    if mode == "open":
        for r in results:
            console.print(f"rate {r.level:g}/s: offered {r.offered_rps:g}/s, achieved {r.rps:.2f}/s; "
                          f"E2E from intended send p50/p99 {ms(r.e2e_intended_ms or {}, 'p50')} / "
                          f"{ms(r.e2e_intended_ms or {}, 'p99')}")
    console.print(f"[dim]tokens from: {', '.join(sorted({s for r in results for s in r.token_sources})) or '–'}"
                  + (f" · stopped: {stop}" if stop and tune is None else "") + "[/]")
    if tune is not None:
        for line in tune_lines(tune, mode, results):
            console.print(line, highlight=False, soft_wrap=True)
    from ..report.bench_html import write_bench_html
    from ..storage.store import Store

    settings = {"levels": levels, "poisson": poisson, "requests": requests, "duration_s": duration, "warmup": warmup,
                "timeout_s": timeout_s, "max_error_rate": max_error_rate,
                "input_tokens": None if suite else input_tokens, "prompts": suite or "synthetic",
                "output_tokens": output_tokens, "slo": slo, "gpu_hour_usd": gpu_hour_usd,
                "auto": None if tune is None else {"found": tune.found, "why": tune.why, "ceiling": tune.ceiling,
                                                   "probes": [{"level": lv, "meets": ok, "why": w}
                                                              for lv, ok, w in tune.trail]},
                # what `weighbridge cost` matches an option's model against: the name it was benched by
                "model": name or (tgt.model if target.startswith(("http://", "https://")) else target)}
    st = Store(store or (cfg.resolve(cfg.store) if cfg else Path("weighbridge.db")))
    bench_id = st.save_bench(target=where, mode=mode, settings=settings, levels=[r.to_dict() for r in results],
                             stopped=stop)
    console.print(f"stored as {bench_id} in {st.path} · report: {write_bench_html(st.bench(bench_id), report)}")
    if json_out:
        write_atomic(json_out, dumps_json({"id": bench_id, "target": where, "mode": mode, "definitions": DEFINITIONS,
                                            "settings": settings, "stopped": stop,
                                            "levels": [r.to_dict() for r in results]}) + "\n")
        console.print(f"json: {json_out}")


def auto_tune(slo: Any, start: float, ceiling: float) -> Any:
    """The search ``--auto`` runs: a level meets the SLO by the rule `weighbridge cost` applies to a
    stored level (the SLO's p95s, errors ≤ 1%), so the knee found is the level cost will use."""
    from ..bench.loadgen import AutoTune
    from ..pricing.deploy_cost import check_levels
    from ..pricing.scenario import LatencySLO

    rule = LatencySLO(ttft=slo.ttft_ms, e2e=slo.e2e_ms, tpot=slo.tpot_ms)

    def meets(r: Any) -> tuple[bool, str]:
        check = check_levels([r.to_dict()], rule)[0]
        return check.meets, check.why

    return AutoTune(meets=meets, ceiling=ceiling, start=start, rule=rule.describe(), slo=rule)


def tune_lines(tune: Any, mode: str, results: list[Any]) -> list[str]:
    """The search in words, and the level `weighbridge cost` will price this bench at for the same SLO
    (computed by cost's own rule, not assumed to be the knee)."""
    from ..pricing.deploy_cost import best_level, check_levels
    from ..pricing.scenario import LatencySLO

    what = "concurrency" if mode == "closed" else "rate"
    probes = " → ".join(f"{lv:g} {'✓' if ok else '✗'}" for lv, ok, _ in tune.trail)
    if tune.found is None:
        return [f"auto: no {what} meets the SLO ({tune.rule}): {tune.why}", f"  probed: {probes}"]
    lines = [f"auto: the highest {what} meeting the SLO ({tune.rule}, errors ≤ 1%) is [bold]{tune.found:g}[/]; "
             f"{tune.why}", f"  probed: {probes} ({len(tune.trail)} levels)"]
    best = best_level(check_levels([r.to_dict() for r in results], tune.slo or LatencySLO()))
    if best is not None and best.level == tune.found:
        lines.append(f"  `weighbridge cost` prices this bench at {best.level:g} for this SLO (the most req/s among "
                     f"the levels that meet it: {best.rps:.2f})")
    elif best is not None:
        knee = next(r for r in results if r.level == tune.found)
        lines.append(f"  `weighbridge cost` prices this bench at {best.level:g} for this SLO, not {tune.found:g}: "
                     f"{best.level:g} served the most req/s of the levels that meet it ({best.rps:.2f} against "
                     f"{knee.rps:.2f}) - more in flight did not add throughput here, only waiting; "
                     f"`bench_level: {tune.found:g}` on a scenario option prices it at the knee instead")
    return lines


def operating_point(results: list[Any], slo: Any, gpu_hour_usd: float) -> list[str]:
    """The level that serves output tokens cheapest, chosen only among the levels that meet the SLO
    given (its p95 of each latency at or under the limit, errors at most 1%: the rule `weighbridge cost`
    applies to a stored bench); without an SLO, among the levels that answered."""
    from ..pricing.deploy_cost import check_levels
    from ..pricing.scenario import LatencySLO

    priced = [r for r in results if r.cost_per_mtok_usd is not None]
    if not slo.given:
        if not priced:
            return []
        best = max(priced, key=lambda r: r.output_tps)
        return [f"best operating point (no --slo given: the highest throughput): {best.level:g} → "
                f"${best.cost_per_mtok_usd:.3f} per 1M output tokens, ${best.cost_per_request_usd:.5f} per "
                f"successful request at ${gpu_hour_usd:g}/h"]
    rule = LatencySLO(ttft=slo.ttft_ms, e2e=slo.e2e_ms, tpot=slo.tpot_ms)
    checks = {c.level: c for c in check_levels([r.to_dict() for r in results], rule)}
    meeting = [r for r in priced if checks[r.level].meets]
    if not meeting:
        return [f"no level meets the SLO ({rule.describe()}): "
                + "; ".join(f"{c.level:g}: {c.why}" for c in checks.values())]
    best = max(meeting, key=lambda r: r.output_tps)
    return [f"best operating point meeting the SLO ({rule.describe()}): {best.level:g} → "
            f"${best.cost_per_mtok_usd:.3f} per 1M output tokens, ${best.cost_per_request_usd:.5f} per successful "
            f"request at ${gpu_hour_usd:g}/h"]
