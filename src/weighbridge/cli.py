"""The ``weighbridge`` command. Thin: each verb parses options and calls one function elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .config import DEFAULT_STORE, EXAMPLE_CONFIG, Config, default_config, load_config
from .errors import WeighbridgeError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Choose, license-check, measure and serve open-weight models on your own hardware.")
console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"weighbridge {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """weighbridge: bake off open-weight models side by side, then keep them honest."""


def _fail(e: Exception, code: int = 2) -> typer.Exit:
    from .scrub import scrub

    err_console.print(f"[bold red]error:[/] {escape(scrub(str(e)) or '')}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _config(path: Optional[Path]) -> Config:
    if path is None:
        if Path("weighbridge.yaml").exists():
            return load_config("weighbridge.yaml")
        err_console.print("[dim]no weighbridge.yaml here: using the embedded default (the three bundled models "
                          "on builtin:starter and builtin:tools[::4])[/]")
        return default_config()
    return load_config(path)


def _scenario(path: Path) -> Any:
    from .scenario import load_scenario

    return load_scenario(path)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI runner's cancel, ``kill``, a container stop) and SIGHUP (a closed terminal) take
    Ctrl-C's path: the run is marked interrupted, running sandboxes and servers are stopped, and
    --resume continues it."""
    previous = {sig: signal.signal(sig, lambda *_: signal.raise_signal(signal.SIGINT))
                for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _store_of(config: Optional[Path], store: Optional[Path]) -> Path:
    """For commands that only read a store: --store, else the config's store:, else ./weighbridge.yaml's,
    else ./weighbridge.db - the same file the bakeoff that made the runs wrote to."""
    if store is not None:
        return store
    if config is not None or Path("weighbridge.yaml").exists():
        cfg = load_config(config or Path("weighbridge.yaml"))
        return cfg.resolve(cfg.store)
    return Path(DEFAULT_STORE)


def _bakeoff_command(config: Optional[Path], store: Optional[Path], models: Optional[list[str]]) -> list[str]:
    """The options that pick this bakeoff's config, store and models, as a command to print back."""
    return ["weighbridge", "bakeoff", *(["-c", str(config)] if config else []),
            *(["--store", str(store)] if store else []), *[a for m in models or [] for a in ("-m", m)]]


def _store_path(cfg: Config, override: Optional[Path]) -> Path:
    return override if override is not None else cfg.resolve(cfg.store)


@app.command()
def init(path: Path = typer.Argument(Path("weighbridge.yaml"), help="Where to write the example config."),
         force: bool = typer.Option(False, "--force", help="Overwrite an existing file.")) -> None:
    """Write a commented example weighbridge.yaml (bundled models, starter suite)."""
    from .files import write_atomic

    if path.exists() and not force:
        raise _fail(WeighbridgeError(f"{path} exists; pass --force to overwrite it"))
    write_atomic(path, EXAMPLE_CONFIG)
    console.print(f"wrote {path} - edit the models, then run: weighbridge bakeoff -c {path}")


def _run_and_report(cfg: Config, *, store: Optional[Path], report: Optional[Path], resume: bool | str,
                    use_cache: bool, only_models: Optional[list[str]], command: list[str],
                    retry_errors: bool = False, scenario: Any = None) -> Any:
    """Run a bakeoff with live progress, print its table and write its HTML report; return the summary.
    ``command`` is how this bakeoff was asked for (``-c``, ``--store``, ``-m``): an interrupted run
    prints it back with ``--resume --run ID``, so following the hint continues this very run."""
    from .engine import run_bakeoff
    from .progress import BakeoffProgress
    from .report.html import write_html
    from .report.terminal import render
    from .store import Store
    from .summary import summarise_run

    store_path = _store_path(cfg, store)
    progress = BakeoffProgress(console)
    current_run: list[str] = []

    def on_run(run_id: str) -> None:
        current_run.append(run_id)
        if resume:
            err_console.print(f"[dim]resuming run {run_id} in {store_path}[/]", highlight=False)

    t0 = time.perf_counter()
    try:
        with progress, _sigterm_as_interrupt():
            stats = asyncio.run(run_bakeoff(cfg, store_path, resume=resume, use_cache=use_cache,
                                            only_models=only_models, progress=progress.update,
                                            on_run=on_run, retry_errors=retry_errors))
    except KeyboardInterrupt:
        if current_run:
            again = shlex.join([*command, "--resume", "--run", current_run[0]])
            err_console.print(f"[yellow]interrupted: run {current_run[0]} keeps every finished answer. "
                              f"Continue with: {escape(again)}[/]", highlight=False, soft_wrap=True)
        else:
            err_console.print("[yellow]interrupted before the run was created: nothing was stored[/]")
        raise typer.Exit(130) from None
    except WeighbridgeError as e:
        raise _fail(e) from None
    st = Store(store_path)
    summary = summarise_run(st, stats.run_id)
    render(summary, console)
    console.print(f"[dim]{stats.jobs_total} jobs: {stats.model_calls} model calls, {stats.cache_hits} from cache, "
                  f"{stats.skipped_resumed} already done, {stats.errors} errors · {time.perf_counter() - t0:.1f}s · "
                  f"store {st.path}[/]")
    for w in summary.run["manifest"].get("warnings", []):
        err_console.print(f"[yellow]warning:[/] {w}")
    for m in summary.models:
        if m.license_verdict == "not_allowed":
            err_console.print(f"[bold red]license:[/] {m.model} ({m.license}) is not allowed under the deployment "
                              "profile; see `weighbridge license check`")
    extra = _scenario_section(scenario, st, stats.run_id) if scenario is not None else ""
    console.print(f"report: {write_html(summary, report or cfg.resolve(cfg.report), extra=extra)}")
    return summary


def _scenario_section(scenario: Any, st: Any, run_id: str, prices: Optional[Path] = None) -> str:
    """The bakeoff report's cost section for a scenario; a problem pricing it is printed, not fatal:
    the run and its report stand without it."""
    from .deploy_cost import ScenarioPricer
    from .report.cost_report import cost_section
    from .scenario import load_prices, merged_prices

    try:
        pricer = ScenarioPricer(scenario, st, merged_prices(load_prices(prices), scenario), default_run=run_id)
        return cost_section(pricer, pricer.price_all())
    except WeighbridgeError as e:
        err_console.print(f"[red]cost section left out:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return ""


@app.command()
def bakeoff(
    config: Optional[Path] = typer.Option(None, "-c", "--config", help="Config file (default: ./weighbridge.yaml, "
                                          "else the embedded default)."),
    model: Optional[list[str]] = typer.Option(None, "-m", "--model", help="Run only this model (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the latest unfinished run (or --run ID)."),
    run_id: Optional[str] = typer.Option(None, "--run", metavar="RUN", help="With --resume: the run to continue."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="Call the model again for the errored jobs "
                                      "of the latest run (or --run ID), finished or not."),
    no_model_check: bool = typer.Option(False, "--no-model-check", help="Do not refuse a model id that the "
                                        "server's /v1/models does not list."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ignore the response cache (answers are still stored)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the figures as JSON to this file."),
    report: Optional[Path] = typer.Option(None, "--report", help="HTML report path (default from config)."),
    store: Optional[Path] = typer.Option(None, "--store", help="SQLite store (default from config)."),
    fail_under: Optional[float] = typer.Option(None, "--fail-under", min=0.0, max=1.0,
                                               help="Exit 1 if any model's pass rate is below this (0-1)."),
    scenario: Optional[Path] = typer.Option(None, "--scenario", metavar="FILE", help="Add the cost of this "
                                            "deployment scenario to the HTML report (see `weighbridge cost`)."),
) -> None:
    """Run every model on every case, score the answers, and print them side by side.

    Exits 3 when a model's errored jobs pass the config's max_error_rate (20%): such a run is not a result."""
    from .report.jsonreport import write_json

    try:
        cfg = _config(config)
        the_scenario = _scenario(scenario) if scenario else None  # a bad scenario fails before any model runs
    except WeighbridgeError as e:
        raise _fail(e) from None
    if no_model_check:
        cfg.models = [m.model_copy(update={"model_check": False}) for m in cfg.models]
    command = _bakeoff_command(config, store, model)
    resume = resume or retry_errors
    summary = _run_and_report(cfg, store=store, report=report, resume=(run_id or True) if resume else False,
                              use_cache=not no_cache, only_models=model or None, command=command,
                              retry_errors=retry_errors, scenario=the_scenario)
    if json_out:
        console.print(f"json: {write_json(summary, json_out)}")
    if summary.unreliable():
        bad = summary.unreliable()
        err_console.print(f"[bold red]exit 3:[/] {', '.join(m.model for m in bad)} errored on more than "
                          f"{summary.max_error_rate:.0%} of {'its' if len(bad) == 1 else 'their'} jobs; fix the cause, then "
                          f"{escape(shlex.join([*command, '--retry-errors', '--run', summary.run['id']]))}",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(3)
    if fail_under is not None:
        below = [m for m in summary.models if m.pass_rate < fail_under]
        if below:
            err_console.print("[bold red]fail-under:[/] " + ", ".join(f"{m.model} {m.pass_rate:.1%} < {fail_under:.1%}"
                                                                     for m in below))
            raise typer.Exit(1)


@app.command()
def check(
    baseline: str = typer.Option(..., "--baseline", help="Run id in the store, or a results JSON from "
                                                        "`weighbridge bakeoff --json`."),
    config: Optional[Path] = typer.Option(None, "-c", "--config", help="Config with the candidate model(s)."),
    model: Optional[list[str]] = typer.Option(None, "-m", "--model", help="Check only this model (repeatable)."),
    baseline_model: Optional[str] = typer.Option(None, "--baseline-model",
                                                 help="Compare every candidate with this baseline model."),
    alpha: float = typer.Option(0.05, "--alpha", min=0.0, max=1.0, help="Significance level of the paired test."),
    margin: float = typer.Option(0.0, "--margin", min=0.0, max=1.0,
                                 help="Ignore drops in pass rate up to this much (0.02 = 2 points)."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML here."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the comparison as JSON here."),
    store: Optional[Path] = typer.Option(None, "--store", help="SQLite store (default from config)."),
) -> None:
    """Re-run the pinned suite on the candidate model(s); exit 1 only on a significant regression."""
    import json as _json

    from .compare import compare, outcomes_from_file, outcomes_from_run, scores_from_file, scores_from_run
    from .files import write_atomic
    from .report.junit import write_junit
    from .store import Store

    try:
        cfg = _config(config)
        base_scores: dict[str, dict[str, float]] = {}
        if Path(baseline).is_file():
            base, label = outcomes_from_file(Path(baseline)), baseline
            base_scores = scores_from_file(Path(baseline))
        else:
            store_path = _store_path(cfg, store)
            if not store_path.exists():
                raise WeighbridgeError(f"{store_path}: no store, so '{baseline}' cannot be a run id; give a results file")
            base, label = outcomes_from_run(Store(store_path), baseline), f"run {baseline}"
            base_scores = scores_from_run(Store(store_path), baseline)
    except WeighbridgeError as e:
        raise _fail(e) from None
    command = _bakeoff_command(config, store, model)
    summary = _run_and_report(cfg, store=store, report=None, resume=False, use_cache=True, only_models=model or None,
                              command=command)
    comparisons = []
    try:
        for m in summary.models:
            name = baseline_model or (m.model if m.model in base else (next(iter(base)) if len(base) == 1 else None))
            if name is None or name not in base:
                raise WeighbridgeError(f"the baseline has no model '{baseline_model or m.model}' "
                                       f"(it has: {', '.join(base)}); pass --baseline-model")
            comparisons.append(compare(m.model, base[name], summary.outcomes(m.model), f"{label} · {name}",
                                       base_scores.get(name), summary.scores(m.model)))
    except WeighbridgeError as e:
        raise _fail(e) from None
    t = Table("model", "baseline", "now", "Δ pass rate (95% CI)", "p (McNemar)", "fixed", "broken", "Δ score", "verdict",
              title=f"check against {label} · α={alpha} · margin={margin:.1%}", title_justify="left")
    for c in comparisons:
        bad = c.regression(alpha, margin)
        t.add_row(c.model, f"{c.baseline_pass_rate:.1%}", f"{c.candidate_pass_rate:.1%}",
                  f"{c.delta:+.1%} ({c.delta_ci95[0]:+.1%} … {c.delta_ci95[1]:+.1%})", f"{c.p_value:.3g}",
                  str(len(c.fixed)), str(len(c.broken)),
                  f"{c.score_delta:+.3f}" if c.score_delta is not None else "–",
                  "[bold red]REGRESSION[/]" if bad else "[green]ok[/]")
    console.print(t)
    for c in comparisons:
        if c.broken:
            console.print(f"{c.model} broken (passed before, fail now): {', '.join(c.broken)}", highlight=False)
        if c.fixed:
            console.print(f"{c.model} fixed (failed before, pass now): {', '.join(c.fixed)}", highlight=False)
    console.print(f"[dim]{comparisons[0].test if comparisons else ''}[/]")
    if junit:
        console.print(f"junit: {write_junit(comparisons, alpha, margin, junit)}")
    if json_out:
        write_atomic(json_out, _json.dumps({"alpha": alpha, "margin": margin, "baseline": label,
                                            "comparisons": [c.to_dict() for c in comparisons]}, indent=2) + "\n")
    if any(c.regression(alpha, margin) for c in comparisons):
        raise typer.Exit(1)


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
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for a server weighbridge starts."),
    suite: Optional[str] = typer.Option(None, "--suite", help="Take prompts from a suite (e.g. builtin:starter) "
                                                             "instead of synthetic ones."),
    tokenizer_gguf: Optional[Path] = typer.Option(None, "--tokenizer-gguf", help="GGUF whose tokenizer counts tokens "
                                                                                 "when the server sends no usage."),
    timeout_s: float = typer.Option(120.0, "--timeout-s", min=0.1, help="Seconds one request may take before it "
                                    "counts as an error."),
    max_error_rate: float = typer.Option(0.1, "--max-error-rate", min=0.0, max=1.0, help="A level whose errored "
                                         "share passes this stops the sweep (after 10 answers)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write every level's figures as JSON."),
    report: Path = typer.Option(Path("weighbridge-bench.html"), "--report", help="HTML report with the curves."),
    store: Optional[Path] = typer.Option(None, "--store", help="SQLite store for the results (default: the "
                                                               "config's, else ./weighbridge.db)."),
) -> None:
    """Load-test an OpenAI-compatible endpoint: TTFT, ITL, TPOT, percentiles, goodput, cost."""
    import json as _json

    from .bench.loadgen import sweep
    from .bench.metrics import DEFINITIONS, parse_slo
    from .bench.target import resolve_target
    from .files import write_atomic

    if concurrency and rate:
        raise _fail(WeighbridgeError("give --concurrency (closed loop) or --rate (open loop), not both"))
    mode = "open" if rate else "closed"
    try:
        levels = [float(x) for x in (rate or concurrency or "1").split(",")]
        slo_spec = parse_slo(slo)
    except ValueError as e:
        raise _fail(WeighbridgeError(str(e))) from None
    if requests is None and duration is None:
        requests = 20
    try:
        cfg = load_config(config) if config else (load_config("weighbridge.yaml") if Path("weighbridge.yaml").exists() else None)
        suite_prompts = None
        if suite:
            from .suites import load_suite

            suite_prompts = ["\n\n".join(m["content"] for m in c.rendered_messages() if m["role"] != "assistant")
                             for c in load_suite(suite, cfg.base_dir if cfg else ".").cases]
        with resolve_target(target, model, cfg, threads) as (tgt, where):
            from .bench.target import gguf_token_counter

            gguf = tokenizer_gguf or tgt.gguf
            counter = gguf_token_counter(Path(gguf)) if gguf else None
            console.print(f"[dim]target: {where} · {mode} loop · levels {', '.join(f'{x:g}' for x in levels)} · "
                          f"{requests or f'{duration:g}s'} per level · prompts ≈{input_tokens} tokens, "
                          f"max_tokens {output_tokens} · timeout {timeout_s:g}s · a level stops past "
                          f"{max_error_rate:.0%} errors[/]")
            progress = Progress(TextColumn("[bold]{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("errors {task.fields[errors]}"), TimeElapsedColumn(), console=console,
                                disable=not console.is_terminal and os.environ.get("WEIGHBRIDGE_PROGRESS") != "1")
            bars: dict[float, int] = {}

            def on_level(r: Any) -> None:  # off a terminal the bars draw nothing: one line per level instead
                console.print(f"progress level {r.level:g}: {r.ok}/{r.requests} ok · {sum(r.errors.values())} errors · "
                              f"{r.rps:.2f} req/s", highlight=False, soft_wrap=True)

            def on_request(level: float, rec: Any) -> None:
                if level not in bars:
                    label = f"{'concurrency' if mode == 'closed' else 'rate'} {level:g}"
                    bars[level] = progress.add_task(label, total=requests, errors=0)
                task = progress.tasks[bars[level]]
                progress.update(bars[level], advance=1, errors=task.fields["errors"] + int(not rec.ok))

            with progress, _sigterm_as_interrupt():
                results, stop = asyncio.run(sweep(tgt, mode=mode, levels=levels, input_tokens=input_tokens,
                                                  output_tokens=output_tokens, requests=requests, duration_s=duration,
                                                  warmup=warmup, slo=slo_spec, poisson=poisson,
                                                  gpu_hour_usd=gpu_hour_usd, max_p50_ms=max_p50, on_request=on_request,
                                                  prompts=suite_prompts, count_tokens=counter,
                                                  timeout_s=timeout_s, max_error_rate=max_error_rate,
                                                  on_level=None if console.is_terminal else on_level))
    except WeighbridgeError as e:
        raise _fail(e) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted: the load test stopped; nothing was stored, and any server it "
                          "started was stopped[/]")
        raise typer.Exit(130) from None

    def ms(d: dict, key: str) -> str:
        v = d.get(key)
        return "–" if v is None else (f"{v / 1000:.2f}s" if v >= 1000 else f"{v:.0f}ms")

    t = Table("concurrency" if mode == "closed" else "rate/s", "ok/err", "req/s", "out tok/s", "TTFT p50/p99",
              "ITL p50/p99", "TPOT p50", "E2E p50/p99", "goodput/s", "client CPU",
              title=f"bench · {mode} loop", title_justify="left")
    for r in results:
        errs = sum(r.errors.values())
        t.add_row(f"{r.level:g}", f"{r.ok}/{errs}", f"{r.rps:.2f}", f"{r.output_tps:.1f}",
                  f"{ms(r.ttft_ms, 'p50')} / {ms(r.ttft_ms, 'p99')}", f"{ms(r.itl_ms, 'p50')} / {ms(r.itl_ms, 'p99')}",
                  ms(r.tpot_ms, "p50"), f"{ms(r.e2e_ms, 'p50')} / {ms(r.e2e_ms, 'p99')}",
                  "–" if r.goodput_rps is None else f"{r.goodput_rps:.2f}",
                  f"{r.client_cpu:.0%}" + (" [red]client-bound[/]" if r.client_bound else ""))
    console.print(t)
    from .summary import advice_for

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
        best = max(results, key=lambda r: r.output_tps)
        if best.cost_per_mtok_usd is not None:
            console.print(f"best operating point: {best.level:g} → ${best.cost_per_mtok_usd:.3f} per 1M output tokens, "
                          f"${best.cost_per_request_usd:.5f} per successful request at ${gpu_hour_usd:g}/h")
    if mode == "open":
        for r in results:
            console.print(f"rate {r.level:g}/s: offered {r.offered_rps:g}/s, achieved {r.rps:.2f}/s; "
                          f"E2E from intended send p50/p99 {ms(r.e2e_intended_ms or {}, 'p50')} / "
                          f"{ms(r.e2e_intended_ms or {}, 'p99')}")
    console.print(f"[dim]tokens from: {', '.join(sorted({s for r in results for s in r.token_sources})) or '–'}"
                  + (f" · stopped: {stop}" if stop else "") + "[/]")
    from .report.bench_html import write_bench_html
    from .store import Store

    settings = {"levels": levels, "poisson": poisson, "requests": requests, "duration_s": duration, "warmup": warmup,
                "timeout_s": timeout_s, "max_error_rate": max_error_rate,
                "input_tokens": None if suite else input_tokens, "prompts": suite or "synthetic",
                "output_tokens": output_tokens, "slo": slo, "gpu_hour_usd": gpu_hour_usd,
                # what `weighbridge cost` matches an option's model against: the name it was benched by
                "model": tgt.model if target.startswith(("http://", "https://")) else target}
    st = Store(store or (cfg.resolve(cfg.store) if cfg else Path("weighbridge.db")))
    bench_id = st.save_bench(target=where, mode=mode, settings=settings, levels=[r.to_dict() for r in results],
                             stopped=stop)
    console.print(f"stored as {bench_id} in {st.path} · report: {write_bench_html(st.bench(bench_id), report)}")
    if json_out:
        write_atomic(json_out, _json.dumps({"id": bench_id, "target": where, "mode": mode, "definitions": DEFINITIONS,
                                            "settings": settings, "stopped": stop,
                                            "levels": [r.to_dict() for r in results]}, indent=2) + "\n")
        console.print(f"json: {json_out}")


@app.command()
def serve(plan: Path = typer.Option(..., "--plan", help="Routing plan YAML."),
          host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
          port: int = typer.Option(8080, "--port", min=1, max=65535),
          threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per llama.cpp server started "
                                                                        "for bundled/path upstreams."),
          smoke: Optional[Path] = typer.Option(None, "--smoke", help="Send this YAML list of requests through the "
                                                                     "gateway, print what happened, verify the audit "
                                                                     "chain and stop."),
          api_key_env: str = typer.Option("WEIGHBRIDGE_API_KEY", "--api-key-env",
                                          help="With --smoke: env var holding a key, when the plan has keys.")) -> None:
    """Run the OpenAI-compatible gateway in front of the plan's upstreams."""
    import contextlib
    import ipaddress

    import uvicorn

    from .gateway.admin import has_keys
    from .gateway.app import create_app
    from .gateway.http_limits import uvicorn_config

    the_plan = _plan(plan)
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    keyed = has_keys(the_plan)
    if not loopback and not keyed:
        raise _fail(WeighbridgeError(f"refusing to bind {host}: no API keys in {the_plan.resolve(the_plan.state)}, "
                                     "so anyone who can reach it could use it. Create one with 'weighbridge keys "
                                     "create NAME --plan …', or serve loopback (127.0.0.1 or ::1) only"))
    from .gateway.local import start_local_upstreams
    from .gateway.smoke import load_requests

    try:  # a bad smoke file fails before any model server starts
        smoke_requests = load_requests(smoke) if smoke is not None else None
    except WeighbridgeError as e:
        raise _fail(e) from None
    with contextlib.ExitStack() as stack:
        try:
            for line in start_local_upstreams(the_plan, stack, threads):
                console.print(f"started llama.cpp server: {line}", highlight=False)
        except WeighbridgeError as e:
            raise _fail(e) from None
        if smoke_requests is not None:
            _smoke(the_plan, smoke_requests, os.environ.get(api_key_env))
            return
        app_ = create_app(the_plan)
        console.print(f"weighbridge gateway on http://{host}:{port}/v1 · routes: {', '.join(the_plan.routes)} · "
                      f"{'API keys required' if keyed else 'no API keys (loopback only)'} · audit: "
                      f"{app_.state.gateway.writer.sink.where} "
                      f"({'signed' if app_.state.gateway.audit_key else 'unsigned: set ' + the_plan.audit.hmac_key_env})"
                      f", head in {the_plan.audit_head()}", highlight=False)
        uvicorn.Server(uvicorn_config(app_, the_plan, host, port)).run()


def _smoke(the_plan: Any, requests: list[Any], api_key: Optional[str]) -> None:
    from .gateway.admin import audit_url, verify_audit
    from .gateway.smoke import run_smoke

    results = run_smoke(the_plan, requests, api_key)
    t = Table("route", "call", "status", "answered by", "escalated", "cache", "ms", "answer", show_lines=False)
    for r in results:
        answer = " ".join(r.answer.split())
        t.add_row(r.route, f"{r.endpoint}{' (stream)' if r.stream else ''}", str(r.status), r.upstream,
                  r.escalated or "-", r.cache, f"{r.ms:,.0f}", escape(answer[:70] + ("…" if len(answer) > 70 else "")))
    console.print(t)
    where, v = verify_audit(audit_url(the_plan, None), head=the_plan.audit_head(), key_env=the_plan.audit.hmac_key_env)
    console.print(f"audit: {v.records} records in {where}, chain {'intact' if v.ok else 'BROKEN'} · head {v.head[:16]}…",
                  highlight=False)
    if any(r.status >= 500 for r in results) or not v.ok:
        raise typer.Exit(1)


keys_app = typer.Typer(no_args_is_help=True, help="The gateway's API keys (stored hashed), limits and budgets.")
app.add_typer(keys_app, name="keys")
_PLAN_OPT = typer.Option(..., "--plan", help="Routing plan YAML (its 'state:' file holds the keys).")


def _plan(path: Path) -> Any:
    from .gateway.plan import load_plan

    try:
        return load_plan(path)
    except WeighbridgeError as e:
        raise _fail(e) from None


@keys_app.command("create")
def keys_create(name: str = typer.Argument(..., help="Who the key is for (shown in lists and audit)."),
                plan: Path = _PLAN_OPT,
                rpm: Optional[int] = typer.Option(None, "--rpm", min=1, help="Requests per minute."),
                max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Token budget per period."),
                max_usd: Optional[float] = typer.Option(None, "--max-usd", min=0, help="Dollar budget per period."),
                period: str = typer.Option("total", "--period", help="Budget period: total, day or month (UTC)."),
                route: Optional[list[str]] = typer.Option(None, "--route", help="Routes the key may use (default: all).")
                ) -> None:
    """Create an API key; it is printed once and only its sha256 is stored."""
    from .gateway.admin import create_key

    the_plan = _plan(plan)
    if period not in ("total", "day", "month"):
        raise _fail(WeighbridgeError(f"--period {period!r}: use total, day or month"))
    unknown = [r for r in route or [] if r not in the_plan.routes]
    if unknown:
        raise _fail(WeighbridgeError(f"--route {', '.join(unknown)}: not in the plan (routes: {', '.join(the_plan.routes)})"))
    token, row = create_key(the_plan, name, rpm=rpm, max_tokens=max_tokens, max_usd=max_usd, period=period,
                            routes=route or None)
    console.print(f"created {row.id} for {name}; the key (shown once, store it now):", highlight=False)
    print(token)


@keys_app.command("list")
def keys_list(plan: Path = _PLAN_OPT) -> None:
    """Keys with their limits and what they have spent this period."""
    from .gateway.admin import list_keys

    rows = list_keys(_plan(plan))
    t = Table("id", "name", "status", "rpm", "budget", "period", "spent", "requests", "routes")
    for k, (tokens, usd, n) in rows:
        budget = " · ".join(x for x in (f"{k.max_tokens:,} tok" if k.max_tokens else "",
                                        f"${k.max_usd:g}" if k.max_usd is not None else "") if x) or "-"
        t.add_row(k.id, escape(k.name), "revoked" if k.revoked else "active", str(k.rpm or "-"), budget, k.period,
                  f"{tokens:,} tok · ${usd:.4f}", str(n), ", ".join(k.routes) if k.routes else "all")
    console.print(t if rows else "no keys yet: the gateway serves loopback without keys")


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key's id (key_…), from 'keys list'."),
                plan: Path = _PLAN_OPT) -> None:
    """Revoke a key; a running gateway stops accepting it within two seconds."""
    from .gateway.admin import revoke

    if not revoke(_plan(plan), key_id):
        raise _fail(WeighbridgeError(f"no active key {key_id}"), code=1)
    console.print(f"revoked {key_id}")


audit_app = typer.Typer(no_args_is_help=True, help="The gateway's hash-chained audit log.")
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(plan: Optional[Path] = typer.Option(None, "--plan", help="Plan whose audit log to check."),
                 url: Optional[str] = typer.Option(None, "--url", help="Audit log: a SQLite path or postgresql://…"),
                 head: Optional[str] = typer.Option(None, "--head", help="Where its head is anchored (default: the "
                                                                         "plan's audit.head, or beside the log)."),
                 key_env: Optional[str] = typer.Option(None, "--key-env", help="Env var with the signing key "
                                                                               "(default: the plan's audit.hmac_key_env, "
                                                                               "else WEIGHBRIDGE_AUDIT_KEY)."),
                 expect_head: Optional[str] = typer.Option(None, "--expect-head",
                                                           help="Head hash kept from an earlier verify.")) -> None:
    """Re-hash the whole chain and hold it against its anchored head: exit 1 naming each deleted,
    edited, reordered or re-hashed record, and a log cut short."""
    from .gateway.admin import audit_url, verify_audit
    from .gateway.audit import DEFAULT_KEY_ENV

    if plan is None and url is None:
        raise _fail(WeighbridgeError("give --plan or --url"))
    the_plan = _plan(plan) if plan is not None else None
    where = audit_url(the_plan, url) if the_plan is not None else str(url)
    if head is None and the_plan is not None and url is None:
        head = the_plan.audit_head()
    env = key_env or (the_plan.audit.hmac_key_env if the_plan is not None else DEFAULT_KEY_ENV)
    if "://" not in where and not Path(where).exists():
        raise _fail(WeighbridgeError(f"{where}: no audit log here"))
    try:
        shown, v = verify_audit(where, expect_head, head, env)
    except Exception as e:  # noqa: BLE001 - a database that cannot be opened is the user's to fix
        raise _fail(WeighbridgeError(f"{where}: {e}")) from None
    for w in v.warnings:
        err_console.print(f"[yellow]![/] {w}", highlight=False)
    signed = "signed (HMAC-SHA256)" if v.signed else f"unsigned (set {env} to sign)"
    if v.ok:
        console.print(f"[green]ok[/]: {v.records:,} records in {shown}, chain intact, {signed}, head anchored in "
                      f"{v.anchored} · head {v.head}", highlight=False)
        return
    for p in v.problems[:50]:
        err_console.print(f"[red]✗[/] {p}", highlight=False)
    if len(v.problems) > 50:
        err_console.print(f"… and {len(v.problems) - 50} more")
    err_console.print(f"[bold red]broken[/]: {len(v.problems)} problem(s) in {v.records:,} records of {shown}",
                      highlight=False)
    raise typer.Exit(1)


@audit_app.command("show")
def audit_show(plan: Optional[Path] = typer.Option(None, "--plan", help="Plan whose audit log to read."),
               url: Optional[str] = typer.Option(None, "--url", help="Audit log: a SQLite path or postgresql://…"),
               last: int = typer.Option(10, "--last", min=1, help="How many of the newest records."),
               as_json: bool = typer.Option(False, "--json", help="One JSON record per line.")) -> None:
    """The newest audit records: who called which route, what answered, tokens, cost, safety events."""
    import json as _json

    from .gateway.admin import audit_url, last_records

    if plan is None and url is None:
        raise _fail(WeighbridgeError("give --plan or --url"))
    where = audit_url(_plan(plan), url) if plan is not None else str(url)
    rows = last_records(where, last)
    if as_json:
        for r in rows:
            print(_json.dumps(r, sort_keys=True))
        return
    t = Table("seq", "time (UTC)", "key", "route", "status", "answered by", "esc", "cache", "tokens", "cost $",
              "ms", "safety")
    for r in rows:
        t.add_row(str(r["seq"]), time.strftime("%H:%M:%S", time.gmtime(r["ts"])), r.get("key") or "-", r["route"],
                  str(r["status"]), r.get("upstream") or "-", "yes" if r.get("escalated") else "",
                  "hit" if r.get("cache_hit") else "", f"{r['prompt_tokens']}+{r['completion_tokens']}",
                  f"{r['cost_usd']:.6f}", f"{r['latency_ms']:.0f}",
                  ", ".join(f"{k}×{n}" for k, n in sorted(r.get("safety", {}).items())))
    console.print(t)


def _open_run(cfg: Config, store: Optional[Path], run: Optional[str]) -> tuple[Any, str]:
    """The store of a config and a run in it (default: the latest)."""
    return _open_store_run(_store_path(cfg, store), run)


def _open_store_run(path: Path, run: Optional[str]) -> tuple[Any, str]:
    """A store file and a run in it (default: the latest); clear errors when either is missing."""
    from .store import Store

    if not path.exists():
        raise WeighbridgeError(f"{path}: no store here (run a bakeoff first, or pass --store)")
    st = Store(path)
    run_id = run or st.latest_run()
    if run_id is None:
        raise WeighbridgeError(f"{path}: holds no runs yet")
    return st, run_id


@app.command()
def rescore(run: Optional[str] = typer.Argument(None, help="Run id (default: the latest run)."),
            config: Optional[Path] = typer.Option(None, "-c", "--config", help="Config with the judges."),
            store: Optional[Path] = typer.Option(None, "--store", help="SQLite store (default from config)."),
            no_cache: bool = typer.Option(False, "--no-cache", help="Ask the judges again even for cached verdicts.")) -> None:
    """Score a stored run again (judges included) without calling its candidate models."""
    from .engine import rescore_run
    from .report.terminal import render
    from .summary import summarise_run

    try:
        cfg = _config(config)
        st, run_id = _open_run(cfg, store, run)
        done, changed, judges = asyncio.run(rescore_run(cfg, st, run_id, use_cache=not no_cache))
    except WeighbridgeError as e:
        raise _fail(e) from None
    render(summarise_run(st, run_id), console)
    console.print(f"re-scored {done} answers of run {run_id}: {changed} changed pass/fail · judge calls "
                  f"{judges.calls}, from cache {judges.cache_hits} · no candidate model was called")


@app.command()
def pairwise(run: Optional[str] = typer.Argument(None, help="Run id (default: the latest run)."),
             model_a: str = typer.Option(..., "--model-a", "--a", metavar="MODEL", help="First model of the run."),
             model_b: str = typer.Option(..., "--model-b", "--b", metavar="MODEL", help="Second model of the run."),
             rubric: str = typer.Option("Which answer answers the question better: correct, complete and concise?",
                                        "--rubric", help="What the judge weighs."),
             judge: Optional[str] = typer.Option(None, "--judge", help="A model under judges: (default: the first)."),
             config: Optional[Path] = typer.Option(None, "-c", "--config", help="Config with the judges."),
             store: Optional[Path] = typer.Option(None, "--store", help="SQLite store (default from config)."),
             json_out: Optional[Path] = typer.Option(None, "--json", help="Write every verdict with its reasons.")) -> None:
    """Judge two models' stored answers case by case, in both orders; order-dependent verdicts are ties."""
    import json as _json

    from .engine import pairwise_run
    from .files import write_atomic

    try:
        cfg = _config(config)
        st, run_id = _open_run(cfg, store, run)
        results = asyncio.run(pairwise_run(cfg, st, run_id, model_a, model_b, rubric, judge))
    except WeighbridgeError as e:
        raise _fail(e) from None
    wins_a = sum(r.winner == model_a for r in results)
    wins_b = sum(r.winner == model_b for r in results)
    ties = len(results) - wins_a - wins_b
    biased = sum(r.position_bias for r in results)
    t = Table("case", "A first", "B first", "winner", title=f"pairwise: {model_a} (A) vs {model_b} (B)",
              title_justify="left")
    for r in results:
        t.add_row(r.case_id, r.order_ab, r.order_ba, r.winner)
    console.print(t)
    console.print(f"{model_a} wins {wins_a} · {model_b} wins {wins_b} · ties {ties} ({biased} of them because the "
                  "verdict followed the order) · each case judged in both orders")
    if json_out:
        write_atomic(json_out, _json.dumps([r.__dict__ for r in results], indent=2, ensure_ascii=False) + "\n")


@app.command()
def report(run: Optional[str] = typer.Argument(None, help="Run id (default: the latest run)."),
           output: Optional[Path] = typer.Option(None, "-o", "--output", "--report", metavar="FILE",
                                                 help="Write the HTML report here."),
           json_out: Optional[Path] = typer.Option(None, "--json", metavar="FILE", help="Write the figures as JSON here."),
           baseline: Optional[str] = typer.Option(None, "--baseline", metavar="RUN|FILE",
                                                  help="Run id or results JSON: mark cases that flipped against it."),
           config: Optional[Path] = typer.Option(None, "-c", "--config", metavar="FILE",
                                                 help="Read the store from this config's store:."),
           store: Optional[Path] = typer.Option(None, "--store", metavar="FILE",
                                                help="SQLite store (default: the config's, else ./weighbridge.db)."),
           scenario: Optional[Path] = typer.Option(None, "--scenario", metavar="FILE", help="Add the cost of this "
                                                   "deployment scenario to the HTML report (see `weighbridge cost`).")
           ) -> None:
    """Print a stored run's side-by-side table again; optionally write HTML/JSON. Calls no model."""
    from .report.html import write_html
    from .report.jsonreport import write_json
    from .report.terminal import render
    from .summary import summarise_run

    try:
        st, run_id = _open_store_run(_store_of(config, store), run)
        summary = summarise_run(st, run_id)
        the_scenario = _scenario(scenario) if scenario else None
        base = None
        if baseline:
            from .compare import outcomes_from_file, outcomes_from_run

            base = outcomes_from_file(Path(baseline)) if Path(baseline).is_file() else outcomes_from_run(st, baseline)
    except WeighbridgeError as e:
        raise _fail(e) from None
    render(summary, console)
    if output:
        extra = _scenario_section(the_scenario, st, run_id) if the_scenario is not None else ""
        console.print(f"report: {write_html(summary, output, base, baseline or '', extra=extra)}")
    elif the_scenario is not None:
        err_console.print("[yellow]--scenario adds a section to the HTML report: give -o FILE to write one[/]")
    if json_out:
        console.print(f"json: {write_json(summary, json_out)}")


@app.command()
def runs(config: Optional[Path] = typer.Option(None, "-c", "--config", metavar="FILE",
                                             help="Read the store from this config's store:."),
         store: Optional[Path] = typer.Option(None, "--store", metavar="FILE",
                                              help="SQLite store (default: the config's, else ./weighbridge.db)."),
         limit: int = typer.Option(20, "--limit", metavar="N", min=1)) -> None:
    """List the runs in a store, newest first."""
    from .store import Store

    try:
        store = _store_of(config, store)
    except WeighbridgeError as e:
        raise _fail(e) from None
    if not store.exists():
        raise _fail(WeighbridgeError(f"{store}: no store here (run a bakeoff first, or pass --store or -c)"))
    t = Table("run", "started", "status", "models", "cases", "answers", title=str(store), title_justify="left")
    for r in Store(store).runs(limit):
        t.add_row(r["id"], time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created_at"])), r["status"],
                  str(r["models"]), str(r["cases"]), f"{r['generations']}/{r['jobs']}")
    console.print(t)


@app.command()
def suites(files: Optional[list[str]] = typer.Argument(None, help="Suite files or builtin:NAME to validate "
                                                                  "(default: the built-in suites).")) -> None:
    """Validate suites and count their cases per workload class."""
    from .suites import load_suite
    from .suites.loader import builtin_suites

    refs = files or [f"builtin:{n}" for n in builtin_suites()]
    t = Table("suite", "cases", "by workload", title_justify="left")
    try:
        for ref in refs:
            s = load_suite(ref)
            counts: dict[str, int] = {}
            for c in s.cases:
                counts[c.workload or "general"] = counts.get(c.workload or "general", 0) + 1
            t.add_row(ref, str(len(s.cases)), ", ".join(f"{k} {v}" for k, v in counts.items()))
    except WeighbridgeError as e:
        raise _fail(e) from None
    console.print(t)


@app.command()
def lock(config: Optional[Path] = typer.Option(None, "-c", "--config", help="Config whose models to lock."),
         allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Also lock pickle-based weights "
                                                                        "(.bin/.pt/.pth/.ckpt), which can run code.")) -> None:
    """Write weighbridge.lock: sha256 and size of every weight file, and each model's license."""
    from .lock import write_lock

    try:
        cfg = _config(config)
        t0 = time.perf_counter()
        path = write_lock(cfg, allow_pickle=allow_pickle)
    except WeighbridgeError as e:
        raise _fail(e) from None
    import json as _json

    data = _json.loads(path.read_text())
    t = Table("model", "files", "size", "sha256", "license", title=str(path), title_justify="left")
    for name, e in data["models"].items():
        size = sum(f["size"] for f in e["files"])
        t.add_row(name, str(len(e["files"])), f"{size / 1e6:,.1f} MB" if e["files"] else "–",
                  e["files"][0]["sha256"][:16] + "…" if e["files"] else "–", e["license"]["id"] or "unknown")
    console.print(t)
    console.print(f"[dim]hashed in {time.perf_counter() - t0:.1f}s[/]")


@app.command()
def quantize(model: str = typer.Argument(..., help="A llamacpp model of the config, a bundled alias, or a GGUF file."),
             to: str = typer.Option(..., "--to", help="Target types, comma-separated, e.g. Q4_K_M,Q3_K_M,Q2_K."),
             config: Optional[Path] = typer.Option(None, "-c", "--config", help="Config that names the model."),
             out: Path = typer.Option(Path("models"), "--out", help="Folder for the variants (relative paths start "
                                                                    "at the config's folder)."),
             allow_requantize: bool = typer.Option(False, "--allow-requantize", help="Quantise an already quantised "
                                                   "file (quality can then only go down)."),
             threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads (default: all)."),
             add: bool = typer.Option(True, "--add/--print-only", help="Add the variants to the config's entry "
                                      "(comments kept), or only print the YAML.")) -> None:
    """Write lower-precision variants of a GGUF with llama.cpp's quantiser, each with its provenance."""
    from .backends.bundled import BUNDLED, resolve_bundled
    from .gguf import read_metadata
    from .quantize import add_to_config, config_snippet, parse_types, type_name
    from .quantize import quantize as run_quantize

    try:
        types = parse_types(to)
        config_path = config if config is not None else (Path("weighbridge.yaml") if Path("weighbridge.yaml").exists()
                                                          else None)
        cfg = _config(config_path) if config_path is not None else None
        spec = next((m for m in cfg.models if m.name == model), None) if cfg else None
        group = next((m for m in cfg.models if m.variant_of == model and m.reference), None) if cfg else None
        spec = spec or group
        if spec is not None:
            if spec.backend != "llamacpp":
                raise WeighbridgeError(f"model '{model}' is served over HTTP: only a local GGUF can be quantised here")
            source = resolve_bundled(spec.bundled, spec.name) if spec.bundled else cfg.resolve(spec.path or "")  # type: ignore[union-attr]
            where = {"bundled": spec.bundled} if spec.bundled else {"path": spec.path or ""}
        elif model in BUNDLED:
            source = resolve_bundled(model, model)
            where = {"bundled": model}
        elif Path(model).is_file():
            source = Path(model)
            where = {"path": str(Path(model).resolve())}
        else:
            raise WeighbridgeError(f"'{model}' is not a llamacpp model of the config, a bundled alias "
                                   f"({', '.join(BUNDLED)}) or a GGUF file")
        base_dir = Path(cfg.base_dir) if cfg else Path.cwd()
        out_dir = out if out.is_absolute() else base_dir / out
        variants = run_quantize(Path(source), types, out_dir, threads=threads, allow_requantize=allow_requantize)
    except WeighbridgeError as e:
        raise _fail(e) from None
    src_size = Path(source).stat().st_size
    console.print(f"from {source}", highlight=False, soft_wrap=True)
    t = Table("type", "size", "vs source", "fallback tensors", "seconds")
    for v in variants:
        t.add_row(v.type, f"{v.size / 1e6:,.1f} MB", f"{v.size / src_size:.0%}",
                  f"{v.fallback_tensors}/{v.total_tensors}" if v.total_tensors else "0", f"{v.seconds:.2f}")
    console.print(t)
    if any(v.fallback_tensors for v in variants):
        console.print("[yellow]note:[/] llama.cpp quantised some tensors to a fallback type (K-quants need rows that "
                      "are multiples of 256); the file's type names what was asked, not what every tensor got")
    name = (group.variant_of if group else spec.name) if spec else (
        model if model in BUNDLED else Path(source).stem.split(".")[0].lower())
    source_type = type_name(read_metadata(Path(source)).get("general.file_type")) or "source"
    if add and config_path is not None:
        try:
            changes = add_to_config(config_path, name or model, where, source_type, variants)
        except (OSError, ValueError, AttributeError, TypeError) as e:
            raise _fail(WeighbridgeError(f"{config_path}: could not add the variants ({e}); add them by hand:\n"
                                         + config_snippet(variants, name or model, base_dir, where, source_type))) from None
        for line in changes:
            console.print(f"{config_path}: {line}", highlight=False, soft_wrap=True)
        console.print("next: `weighbridge lock` records each file with its provenance; `weighbridge bakeoff` compares "
                      "the variants with the reference")
        return
    console.print("add to weighbridge.yaml, then `weighbridge lock` records each file with its provenance:")
    print(config_snippet(variants, name or model, base_dir, where, source_type))  # plain: a terminal's width must not wrap YAML to paste


@app.command()
def cost(scenario: Path = typer.Argument(..., help="Scenario YAML: traffic, SLO, overheads, options."),
         config: Optional[Path] = typer.Option(None, "-c", "--config", metavar="FILE",
                                               help="Read the store from this config's store:."),
         store: Optional[Path] = typer.Option(None, "--store", metavar="FILE",
                                              help="SQLite store with the bench and bakeoff runs (default: the "
                                                   "config's, else ./weighbridge.db)."),
         prices: Optional[Path] = typer.Option(None, "--prices", metavar="FILE", help="Your own API price sheet "
                                               "(default: the sourced, dated one shipped with weighbridge)."),
         json_out: Optional[Path] = typer.Option(None, "--json", metavar="FILE", help="Write the figures as JSON."),
         html_out: Path = typer.Option(Path("weighbridge-cost.html"), "--html", metavar="FILE",
                                       help="HTML page with the table and the cost-against-volume chart."),
         bench_report: Optional[str] = typer.Option(None, "--bench-report", metavar="FILE",
                                                    help="Link each bench level to this bench report's rows.")) -> None:
    """Price a deployment scenario self-hosted and on managed APIs, from stored bench and bakeoff runs.

    Exits 1 when an option could not be priced (no bench, no level meeting the SLO, an unknown price line; the output says which and what to run), 2 on a bad scenario, store, run or model name."""
    import json as _json

    from .deploy_cost import ScenarioPricer
    from .files import write_atomic
    from .report.cost_report import render_terminal, to_json, write_cost_html
    from .scenario import load_prices, merged_prices
    from .store import Store

    try:
        the_scenario = _scenario(scenario)
        sheet = merged_prices(load_prices(prices), the_scenario)
        path = _store_of(config, store)
        if not path.exists():
            raise WeighbridgeError(f"{path}: no such store; run `weighbridge bench` and `weighbridge bakeoff` first "
                                   "(or give --store)")
        pricer = ScenarioPricer(the_scenario, Store(path), sheet)
        costs = pricer.price_all()
    except WeighbridgeError as e:
        raise _fail(e) from None
    render_terminal(pricer, costs, console)
    if json_out:
        write_atomic(json_out, _json.dumps(to_json(pricer, costs), indent=2, ensure_ascii=False) + "\n")
        console.print(f"json: {json_out}")
    console.print(f"html: {write_cost_html(pricer, costs, html_out, bench_report)}")
    if any(c.problem for c in costs):
        raise typer.Exit(1)


@app.command()
def verify(config: Optional[Path] = typer.Option(None, "-c", "--config", help="Config beside the lockfile."),
           lockfile: Optional[Path] = typer.Option(None, "--lock", help="Lockfile (default: beside the config).")) -> None:
    """Re-hash every locked weight file; exit 1 if any changed or went missing."""
    from .lock import lock_path, read_lock, verify as verify_lock

    try:
        cfg = _config(config)
        path = lockfile or lock_path(cfg)
        checks = verify_lock(read_lock(path), cfg)
    except WeighbridgeError as e:
        raise _fail(e) from None
    t = Table("model", "file", "status", title=str(path), title_justify="left")
    for c in checks:
        style = "green" if c.status == "ok" else "bold red"
        t.add_row(c.model, Path(c.path).name, f"[{style}]{c.status}[/]" + (f" ({c.actual})" if c.status == "size" else ""))
    console.print(t)
    bad = [c for c in checks if c.status != "ok"]
    if bad:
        err_console.print(f"[bold red]{len(bad)} file(s) differ from {path}[/]")
        raise typer.Exit(1)
    console.print(f"all {len(checks)} file(s) match {path}")


@app.command()
def bom(config: Optional[Path] = typer.Option(None, "-c", "--config", help="Config whose models to list."),
        output: Path = typer.Option(Path("bom.cdx.json"), "-o", "--output", help="Where to write the BOM."),
        profile: Optional[Path] = typer.Option(None, "-p", "--profile", help="Profile for the license verdicts.")) -> None:
    """Write a CycloneDX 1.6 AI bill of materials (validated against the schema before writing)."""
    import json as _json

    from .bom import build_bom, validate_bom
    from .catalog import load_profile
    from .files import write_atomic

    try:
        cfg = _config(config)
        doc = build_bom(cfg, load_profile(profile) if profile else None)
        validate_bom(doc)
    except WeighbridgeError as e:
        raise _fail(e) from None
    write_atomic(output, _json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    console.print(f"wrote {output}: CycloneDX 1.6, {len(doc['components'])} model component(s), schema-valid")


models_app = typer.Typer(help="The sourced catalog of open-weight models.", invoke_without_command=True)
app.add_typer(models_app, name="models")


@models_app.callback()
def models_list(
    ctx: typer.Context,
    family: Optional[str] = typer.Option(None, "--family", help="deepseek, qwen, glm, kimi, minimax, yi, llama, ..."),
    profile: Optional[Path] = typer.Option(None, "-p", "--profile", help="Deployment profile for the verdict column."),
    verdict: Optional[str] = typer.Option(None, "--verdict", help="Keep models with this verdict "
                                                                 "(allowed, allowed_with_duties, needs_review, not_allowed)."),
    open_: Optional[str] = typer.Option(None, "--open", help="Keep models that publish this: weights, code, training, data."),
    min_params: Optional[float] = typer.Option(None, "--min-params", help="Total parameters, billions."),
    max_params: Optional[float] = typer.Option(None, "--max-params", help="Total parameters, billions."),
    min_context: Optional[str] = typer.Option(None, "--min-context", help="e.g. 32k"),
    fits: Optional[str] = typer.Option(None, "--fits", help="Keep models whose estimate fits this memory, e.g. 24GiB."),
    quant: str = typer.Option("q4_k_m", "--quant", help="Quantization for --fits (q4_k_m, q8_0, f16, ...)."),
    context: str = typer.Option("8k", "--context", help="Context for --fits, e.g. 32k."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the listed entries as JSON."),
) -> None:
    """List and filter the catalog; with --fits, estimate memory (the formula is printed)."""
    if ctx.invoked_subcommand is not None:
        return
    import json as _json

    from .catalog import Profile, load_profile
    from .catalog.catalog import entry_dict, load_catalog
    from .catalog.licenses import load_licenses, verdict_for
    from .catalog.memory import FORMULA, estimate, parse_context, parse_size
    from .files import write_atomic

    try:
        cat, book = load_catalog(), load_licenses()
        prof = load_profile(profile) if profile else Profile()
        budget = parse_size(fits) if fits else None
        ctx_tokens = parse_context(context)
        min_ctx = parse_context(min_context) if min_context else None
        rows = []
        for m in cat.models:
            if family and m.family != family.lower():
                continue
            pub = {"weights": m.published.weights, "code": m.published.inference_code,
                   "training": m.published.training_code, "data": m.published.data}
            if open_ and not pub.get(open_.lower(), False):
                continue
            if (min_params and m.params_total_b < min_params) or (max_params and m.params_total_b > max_params):
                continue
            if min_ctx and m.context_length < min_ctx:
                continue
            lic = book.get(m.license)
            v = verdict_for(lic, prof, f"license '{m.license}' is not yet structured in the catalog")
            if verdict and v.verdict != verdict:
                continue
            est = estimate(m, quant, ctx_tokens)
            if budget is not None and (est.total_gib is None or est.total_gib * 1024**3 > budget):
                continue
            rows.append((m, v, est))
    except WeighbridgeError as e:
        raise _fail(e) from None
    t = Table("id", "params (B)", "arch", "context", "license", "verdict",
              f"GiB @{quant},{context}", title=f"catalog as of {cat.as_of} · {len(rows)} of {len(cat.models)} models",
              title_justify="left")
    for m, v, est in rows:
        params = f"{m.params_total_b:g}" + (f"/{m.params_active_b:g}" if m.params_active_b else "")
        t.add_row(m.id, params, m.architecture, f"{m.context_length // 1024}k", m.license,
                  f"[{_VERDICT_STYLE[v.verdict]}]{v.verdict.replace('_', ' ')}[/]",
                  f"{est.total_gib:,.1f}" if est.total_gib is not None else f"{est.weights_gib:,.1f}+KV?")
    console.print(t)
    if fits or budget is not None:
        console.print(f"[dim]{FORMULA}[/]", highlight=False)
    if json_out:
        write_atomic(json_out, _json.dumps([{**entry_dict(m), "verdict": v.verdict, "estimate_gib": est.total_gib}
                                            for m, v, est in rows], indent=2, ensure_ascii=False) + "\n")


@models_app.command("show")
def models_show(model_id: str = typer.Argument(..., help="Catalog id, Hugging Face repo id or name.")) -> None:
    """Every fact of one catalog entry, with its sources and what is not yet verified."""
    from .catalog.catalog import load_catalog

    m = load_catalog().get(model_id)
    if m is None:
        raise _fail(WeighbridgeError(f"no catalog entry '{model_id}' (see `weighbridge models`)"))
    for key, value in m.model_dump(exclude_none=True).items():
        if key in ("sources", "unverified"):
            continue
        flag = " [magenta](unverified)[/]" if key in m.unverified else ""
        console.print(f"[bold]{key}[/]: {escape(str(value))}{flag}", highlight=False)
    for key, url in m.sources.items():
        console.print(f"[dim]source ({key}): {escape(url)}[/]", highlight=False)


license_app = typer.Typer(no_args_is_help=True, help="License terms and verdicts for a deployment profile.")
app.add_typer(license_app, name="license")

_VERDICT_STYLE = {"allowed": "green", "allowed_with_duties": "yellow", "needs_review": "magenta",
                  "not_allowed": "bold red"}


def _quote_kind(kind: str) -> str:
    """Say when a quote was not read in the license file itself."""
    return {"verbatim": "", "transcribed": " (as transcribed by others; vendor file not read)",
            "paraphrase": " (paraphrase, not the license's words)"}[kind]


@license_app.command("check")
def license_check(
    targets: Optional[list[str]] = typer.Argument(None, help="Config model names, bundled aliases, GGUF files or "
                                                             "model folders (default: every model in the config)."),
    config: Optional[Path] = typer.Option(None, "-c", "--config", help="Config whose models to check."),
    profile: Optional[Path] = typer.Option(None, "-p", "--profile", help="Deployment profile YAML (default: internal "
                                                                         "commercial use, user numbers unknown)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the verdicts as JSON here."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 on 'needs review' too, not only on 'not allowed'."),
) -> None:
    """Say whether each model's license allows the deployment, with the clause behind each duty."""
    import json as _json

    from .catalog import Profile, load_profile
    from .catalog.check import check
    from .files import write_atomic

    try:
        cfg = _config(config) if (config or not targets) else (load_config("weighbridge.yaml")
                                                               if Path("weighbridge.yaml").exists() else None)
        prof = load_profile(profile) if profile else Profile()
        results = check(targets or [], cfg, prof)
    except WeighbridgeError as e:
        raise _fail(e) from None
    console.print(f"[dim]profile: {profile or 'default'} · " + ", ".join(
        f"{k}={v}" for k, v in prof.model_dump().items() if v not in (None, [], False)) + "[/]")
    t = Table("model", "catalog entry", "license", "from", "verdict", "what it takes", title_justify="left")
    for r in results:
        v = r.verdict
        lic = v.license.name if v.license else (r.identity.license_key or "unknown")
        todo = "; ".join(f.rule.id for f in v.findings if f.outcome != "info") or v.reason
        t.add_row(r.name, r.identity.facts.get("catalog_id", "–"), lic, r.identity.kind,
                  f"[{_VERDICT_STYLE[v.verdict]}]{v.verdict.replace('_', ' ')}[/]", todo)
    console.print(t)
    for r in results:
        shown = [f for f in r.verdict.findings if f.outcome != "info"]
        if not shown and r.verdict.license is not None and not r.identity.review:
            continue
        console.print(f"[bold]{r.name}[/] – {r.verdict.verdict.replace('_', ' ')}: {r.verdict.reason}")
        if r.verdict.license is None:
            console.print(f"  {r.identity.note}")
        if r.identity.review and r.identity.review != r.verdict.reason:
            console.print(escape(f"  ! {r.identity.review}"), highlight=False)
        for f in shown:
            console.print(escape(f"  • [{f.outcome.replace('_', ' ')}] {f.why}\n    § {f.rule.section}: “{f.rule.quote}”"
                                 + _quote_kind(f.rule.quote_kind)), highlight=False)
        if r.verdict.license is not None:
            console.print(f"    source: {r.verdict.license.source}", highlight=False)
    if json_out:
        write_atomic(json_out, _json.dumps({"profile": prof.model_dump(), "results": [r.to_dict() for r in results]},
                                           indent=2, ensure_ascii=False) + "\n")
        console.print(f"json: {json_out}")
    worst = {r.verdict.verdict for r in results}
    if "not_allowed" in worst or (strict and "needs_review" in worst):
        raise typer.Exit(1)


@license_app.command("list")
def license_list() -> None:
    """The license texts weighbridge knows, with what they allow commercially."""
    from .catalog import load_licenses

    book = load_licenses()
    t = Table("id", "name", "SPDX / ref", "commercial", "rules", title=f"licenses (as of {book.as_of})",
              title_justify="left")
    for lic in book.licenses:
        t.add_row(lic.id, lic.name, lic.spdx, lic.commercial, str(len(lic.rules)))
    console.print(t)


@license_app.command("show")
def license_show(license_id: str = typer.Argument(..., help="License id or alias (see `weighbridge license list`).")) -> None:
    """Every rule of one license, with the clause it quotes."""
    from .catalog import load_licenses

    lic = load_licenses().get(license_id)
    if lic is None:
        raise _fail(WeighbridgeError(f"no license '{license_id}' (see `weighbridge license list`)"))
    console.print(f"[bold]{lic.name}[/] ({lic.spdx}) · commercial use: {lic.commercial}\nsource: {lic.source}",
                  highlight=False)
    if lic.text:
        console.print(f"text: shipped with weighbridge, sha256 {lic.text_sha256}")
    elif lic.text_note:
        console.print(f"text: {lic.text_note}", highlight=False)
    if lic.fingerprint:
        console.print(f"text fingerprint: {lic.fingerprint}"
                      + (f"\n  hashed from: {lic.text_hashed_from}" if lic.text_hashed_from else ""), highlight=False)
    else:
        console.print("text fingerprint: none recorded (no copy of the full text was available to hash)")
    for rule in lic.rules:
        when = ", ".join(c if isinstance(c, str) else str(c) for c in rule.when)
        console.print(escape(f"• {rule.id} [{rule.effect}] when {when}: {rule.duty}\n  § {rule.section}: “{rule.quote}”"
                             + _quote_kind(rule.quote_kind)), highlight=False)


@license_app.command("verify-text")
def license_verify_text(
    files: list[Path] = typer.Argument(..., help="License files to compare (LICENSE, LICENSE-MODEL, an HTML terms page)."),
    expect: Optional[str] = typer.Option(None, "--license", "-l", help="Fail unless every file is this license's text."),
) -> None:
    """Say which catalog license a license file is, word for word, so its structured terms can be trusted.

    Layout, markup, quote style, case and copyright lines are ignored (the same agreement ships as
    markdown on GitHub and plain text on the Hub); any changed word is a different text.
    """
    from .catalog import load_licenses

    book = load_licenses()
    want = book.get(expect) if expect else None
    if expect and want is None:
        raise _fail(WeighbridgeError(f"no license '{expect}' (see `weighbridge license list`)"))
    if want is not None and not want.fingerprint:
        raise _fail(WeighbridgeError(f"the catalog records no text fingerprint for '{want.id}', so a copy cannot be "
                                     f"compared; read it at {want.source}"))
    failed = False
    for f in files:
        try:
            text = f.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise _fail(WeighbridgeError(f"cannot read {f}: {e.strerror}")) from None
        html = f.suffix.lower() in (".html", ".htm")
        lic = book.match_text(text, html=html)
        if lic is not None and (want is None or lic is want):
            console.print(f"[green]match[/] {f}: the text of {lic.id} ({lic.name}), fingerprint {lic.fingerprint}",
                          highlight=False)
            continue
        failed = True
        if lic is not None:
            console.print(f"[bold red]differs[/] {f}: this is the text of {lic.id}, not {want.id}", highlight=False)  # type: ignore[union-attr]
        elif want is not None:
            console.print(f"[bold red]differs[/] {f}: not word for word the {want.id} text the catalog structured "
                          f"(fingerprint {want.fingerprint_of(text, html=html)}, expected {want.fingerprint}); "
                          "its terms may differ from those `license check` applies", highlight=False)
        else:
            console.print(f"[bold red]unknown[/] {f}: not word for word any license text the catalog records; "
                          "a model under it gets 'needs review'", highlight=False)
    if failed:
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    app()


_WORDS = {"Path": "FILE", "int": "N", "float": "NUMBER", "str": "TEXT", "list[str]": "NAME", "list[Path]": "FILE"}


def _word_metavars(command: Any) -> Any:
    """Help shows what to type (FILE, N, NUMBER, a name), not Python types (``<path>``,
    ``<list[str]>``, ``<bool>`` for a flag); an option that sets its own metavar keeps it."""
    subcommands = getattr(command, "commands", None) or {}
    for sub in subcommands.values():
        _word_metavars(sub)
    make_help = command.get_help_option

    def help_option(ctx: Any) -> Any:  # --help is made per invocation, outside .params
        opt = make_help(ctx)
        if opt is not None and opt.metavar is None:
            opt.metavar = ""
        return opt

    command.get_help_option = help_option
    for p in getattr(command, "params", []):
        if p.metavar is not None or not hasattr(p, "bare_type"):
            continue
        if getattr(p, "is_flag", False):
            p.metavar = ""
        elif p.param_type_name == "argument":
            p.metavar = (p.name or "arg").upper().replace("_", "-") + ("..." if p.nargs != 1 else "")
            p.display_type_rich = lambda ctx: None  # the name says it; no Python type beside it
        elif p.param_type_name == "option":
            word = _WORDS.get(p.bare_type())
            p.metavar = word if word not in (None, "TEXT", "NAME") else (p.name or "text").upper().replace("_", "-")
    return command


def run() -> None:
    """The console script: the Typer app with word metavars."""
    _word_metavars(typer.main.get_command(app))()
