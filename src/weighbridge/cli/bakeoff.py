"""`init`, `bakeoff` and `check`: run the models on the suites and gate a candidate on a baseline."""

from __future__ import annotations

import asyncio
import shlex
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..report.jsonreport import dumps as dumps_json
from ..report.safe import term
from ..core.config import Config
from ..core.example_config import EXAMPLE_CONFIG
from ..core.errors import WeighbridgeError

from ..report.tables import keep_ids_whole
from .common import _bakeoff_command, _config, _fail, _scenario, _sigterm_as_interrupt, _store_path, app, console, err_console


@app.command()
def init(path: Path = typer.Argument(Path("weighbridge.yaml"), help="Where to write the example config."),
         force: bool = typer.Option(False, "--force", help="Overwrite an existing file.")) -> None:
    """Write a commented example weighbridge.yaml (bundled models, starter suite)."""
    from ..core.files import write_atomic

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
    from ..eval.engine import run_bakeoff
    from .progress import BakeoffProgress
    from ..report.html import write_html
    from ..report.terminal import render
    from ..storage.store import Store
    from ..analysis.summary import summarise_run

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
    reused = (f" ({stats.score_cache_timeouts} of them sandbox time-outs: `weighbridge rescore` runs them again)"
              if stats.score_cache_timeouts else "")
    console.print(f"[dim]{stats.jobs_total} jobs: {stats.model_calls} model calls, {stats.cache_hits} from cache, "
                  f"{stats.skipped_resumed} already done, {stats.errors} errors · {stats.score_cache_hits} scores from "
                  f"cache{reused} · {time.perf_counter() - t0:.1f}s · "
                  f"store {st.path}[/]")
    for w in summary.run["manifest"].get("warnings", []):
        err_console.print(f"[yellow]warning:[/] {term(w)}", highlight=False)
    for m in summary.models:
        if m.license_verdict == "not_allowed":
            err_console.print(f"[bold red]license:[/] {m.model} ({m.license}) is not allowed under the deployment "
                              "profile; see `weighbridge license check`")
    extra = _scenario_section(scenario, st, stats.run_id) if scenario is not None else ""
    console.print(f"report: {write_html(summary, report or cfg.resolve(cfg.report), extra=extra)}")
    return summary, stats

def _scenario_section(scenario: Any, st: Any, run_id: str, prices: Optional[Path] = None) -> str:
    """The bakeoff report's cost section for a scenario; a problem pricing it is printed, not fatal:
    the run and its report stand without it."""
    from ..pricing.deploy_cost import ScenarioPricer
    from ..report.cost_report import cost_section
    from ..pricing.scenario import load_prices, merged_prices

    try:
        pricer = ScenarioPricer(scenario, st, merged_prices(load_prices(prices), scenario), default_run=run_id)
        return cost_section(pricer, pricer.price_all())
    except WeighbridgeError as e:
        err_console.print(f"[red]cost section left out:[/] {term(str(e))}", highlight=False, soft_wrap=True)
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
    from ..report.jsonreport import write_json

    try:
        cfg = _config(config)
        the_scenario = _scenario(scenario) if scenario else None  # a bad scenario fails before any model runs
    except WeighbridgeError as e:
        raise _fail(e) from None
    if no_model_check:
        cfg.models = [m.model_copy(update={"model_check": False}) for m in cfg.models]
    command = _bakeoff_command(config, store, model)
    resume = resume or retry_errors
    summary, _ = _run_and_report(cfg, store=store, report=report, resume=(run_id or True) if resume else False,
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
    allow_cache: bool = typer.Option(False, "--allow-cache", help="Reuse stored answers from the response cache "
                                     "(by default the gate calls the models: a cached answer is old evidence)."),
) -> None:
    """Re-run the pinned suite on the candidate model(s); exit 1 only on a significant regression.

    Every answer comes from the model itself unless --allow-cache is given; the output says which it did,
    and names any model whose fingerprint (weights, or what its server says is behind the model id)
    differs from the baseline's."""

    from ..backends.fingerprint import Fingerprint, changed, from_manifest
    from ..analysis.compare import (compare, fingerprints_from_file, fingerprints_from_run, outcomes_from_file,
                           outcomes_from_run, scores_from_file, scores_from_run)
    from ..core.files import write_atomic
    from ..report.junit import write_junit
    from ..storage.store import Store

    try:
        cfg = _config(config)
        base_scores: dict[str, dict[str, float]] = {}
        if Path(baseline).is_file():
            base, label = outcomes_from_file(Path(baseline)), baseline
            base_scores = scores_from_file(Path(baseline))
            base_prints = fingerprints_from_file(Path(baseline))
        else:
            store_path = _store_path(cfg, store)
            if not store_path.exists():
                raise WeighbridgeError(f"{store_path}: no store, so '{baseline}' cannot be a run id; give a results file")
            base, label = outcomes_from_run(Store(store_path), baseline), f"run {baseline}"
            base_scores = scores_from_run(Store(store_path), baseline)
            base_prints = fingerprints_from_run(Store(store_path), baseline)
    except WeighbridgeError as e:
        raise _fail(e) from None
    command = _bakeoff_command(config, store, model)
    summary, stats = _run_and_report(cfg, store=store, report=None, resume=False, use_cache=allow_cache,
                                     only_models=model or None, command=command)
    comparisons = []
    prints: list[dict[str, Any]] = []
    try:
        for m in summary.models:
            name = baseline_model or (m.model if m.model in base else (next(iter(base)) if len(base) == 1 else None))
            if name is None or name not in base:
                raise WeighbridgeError(f"the baseline has no model '{baseline_model or m.model}' "
                                       f"(it has: {', '.join(base)}); pass --baseline-model")
            comparisons.append(compare(m.model, base[name], summary.outcomes(m.model), f"{label} · {name}",
                                       base_scores.get(name), summary.scores(m.model)))
            now = from_manifest(summary.run["manifest"].get("models", {}).get(m.model))
            prints.append({"model": m.model, "baseline_model": name, "baseline": base_prints.get(name), "now": now,
                           "changed": changed(base_prints.get(name), now)})
    except WeighbridgeError as e:
        raise _fail(e) from None
    t = Table("model", "baseline", "now", "Δ pass rate (95% CI)", "p (McNemar)", "fixed", "broken", "Δ score", "verdict",
              title=f"check against {label} · α={alpha} · margin={margin:.1%}", title_justify="left")
    for c in comparisons:
        bad = c.regression(alpha, margin)
        t.add_row(term(c.model), f"{c.baseline_pass_rate:.1%}", f"{c.candidate_pass_rate:.1%}",
                  f"{c.delta:+.1%} ({c.delta_ci95[0]:+.1%} … {c.delta_ci95[1]:+.1%})", f"{c.p_value:.3g}",
                  str(len(c.fixed)), str(len(c.broken)),
                  f"{c.score_delta:+.3f}" if c.score_delta is not None else "–",
                  "[bold red]REGRESSION[/]" if bad else "[green]ok[/]")
    console.print(keep_ids_whole(t))
    for c in comparisons:
        if c.broken:
            console.print(f"{term(c.model)} broken (passed before, fail now): {term(', '.join(c.broken))}", highlight=False)
        if c.fixed:
            console.print(f"{term(c.model)} fixed (failed before, pass now): {term(', '.join(c.fixed))}", highlight=False)
    console.print(f"[dim]{comparisons[0].test if comparisons else ''}[/]")
    for fp in prints:
        who = term(fp["model"])
        if fp["changed"]:
            console.print(f"[bold yellow]the model behind {who} changed since the baseline:[/] "
                          f"{term(Fingerprint.difference(fp['baseline'], fp['now']))}",
                          highlight=False, soft_wrap=True)
        elif fp["changed"] is None:
            side = "now" if not (fp["now"] or {}).get("sha256") else "baseline"
            console.print(f"[yellow]{who}: {term(Fingerprint.describe(fp[side]))} "
                          f"{'now' if side == 'now' else 'in the baseline'}: a change of weights behind the same "
                          "name cannot be ruled out[/]", highlight=False, soft_wrap=True)
    total = stats.model_calls + stats.cache_hits
    if allow_cache:
        console.print(f"[yellow]--allow-cache: {stats.cache_hits} of {total} answers came from the response cache, "
                      f"not from the model{'s' if len(comparisons) > 1 else ''}[/]", highlight=False)
    else:
        console.print(f"[dim]the gate called the model{'s' if len(comparisons) > 1 else ''} for all {total} answers "
                      "(no cache; --allow-cache reuses stored answers)[/]", highlight=False)
    if junit:
        console.print(f"junit: {write_junit(comparisons, alpha, margin, junit)}")
    if json_out:
        write_atomic(json_out, dumps_json({"alpha": alpha, "margin": margin, "baseline": label,
                                            "cache": {"allowed": allow_cache, "answers": total,
                                                      "from_cache": stats.cache_hits, "model_calls": stats.model_calls},
                                            "comparisons": [{**c.to_dict(), "fingerprint": fp}
                                                            for c, fp in zip(comparisons, prints)]}) + "\n")
    if any(c.regression(alpha, margin) for c in comparisons):
        raise typer.Exit(1)
