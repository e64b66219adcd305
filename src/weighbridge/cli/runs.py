"""Commands over stored runs: `rescore`, `pairwise`, `report`, `runs`, `suites`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from ..report.jsonreport import dumps as dumps_json
from ..report.safe import term
from ..core.errors import WeighbridgeError

from .bakeoff import _scenario_section
from ..report.tables import keep_ids_whole
from .common import _config, _fail, _open_run, _open_store_run, _scenario, _store_of, app, console, err_console


@app.command()
def rescore(run: Optional[str] = typer.Argument(None, help="Run id (default: the latest run)."),
            config: Optional[Path] = typer.Option(None, "-c", "--config", help="Config with the judges."),
            store: Optional[Path] = typer.Option(None, "--store", help="SQLite store (default from config)."),
            suite: Optional[str] = typer.Option(None, "--suite", metavar="FILE", help="Score with this suite file's "
                                                "scorers and expected values (cases matched by id)."),
            scorer: Optional[str] = typer.Option(None, "--scorer", metavar="SPEC", help="One scorer for every case: a "
                                                 "name (exact) or YAML ({type: regex, pattern: ...})."),
            no_cache: bool = typer.Option(False, "--no-cache", help="Ask the judges again even for cached verdicts.")) -> None:
    """Score a stored run again as a new scored version (the old scores are kept); calls no candidate model."""
    from ..eval.rescore import rescore_run
    from ..report.terminal import render
    from ..analysis.summary import summarise_run

    try:
        cfg = _config(config)
        st, run_id = _open_run(cfg, store, run)
        spec = _scorer_spec(scorer) if scorer else None
        result = asyncio.run(rescore_run(cfg, st, run_id, use_cache=not no_cache, suite=suite, scorer=spec))
    except WeighbridgeError as e:
        raise _fail(e) from None
    render(summarise_run(st, run_id), console)
    console.print(f"re-scored {result.done} answers of run {run_id} ({result.source}) as scored version "
                  f"{result.version}; version {result.version - 1} is kept · {len(result.changed)} changed pass/fail · "
                  f"judge calls {result.judges.calls}, from cache {result.judges.cache_hits} · no candidate model was "
                  "called", highlight=False, soft_wrap=True)
    for line in result.changed[:50]:
        console.print(f"  changed: {term(line)}", highlight=False)
    if result.not_in_file:
        console.print(f"[yellow]not in {suite}, scored with their stored scorers:[/] {term(', '.join(result.not_in_file))}",
                      highlight=False, soft_wrap=True)
    if result.not_in_run:
        console.print(f"[yellow]in {suite} but not in the run (no answer to score):[/] {term(', '.join(result.not_in_run))}",
                      highlight=False, soft_wrap=True)


def _scorer_spec(text: str) -> Any:
    """--scorer: a scorer's name, or its YAML mapping."""
    from ..core.yamlsource import load_yaml

    spec = load_yaml("--scorer", text).data  # the loader every config uses: duplicate keys and bombs refused
    if not isinstance(spec, (str, dict)):
        raise WeighbridgeError("--scorer: give a scorer name (exact) or a mapping ({type: contains, ...})")
    return spec


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

    from ..eval.rescore import pairwise_run
    from ..core.files import write_atomic

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
        t.add_row(term(r.case_id), term(r.order_ab), term(r.order_ba), term(r.winner))
    console.print(keep_ids_whole(t))
    console.print(f"{model_a} wins {wins_a} · {model_b} wins {wins_b} · ties {ties} ({biased} of them because the "
                  "verdict followed the order) · each case judged in both orders")
    if json_out:
        write_atomic(json_out, dumps_json([r.__dict__ for r in results]) + "\n")

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
    from ..report.html import write_html
    from ..report.jsonreport import write_json
    from ..report.terminal import render
    from ..analysis.summary import summarise_run

    try:
        st, run_id = _open_store_run(_store_of(config, store), run)
        summary = summarise_run(st, run_id)
        the_scenario = _scenario(scenario) if scenario else None
        base = None
        if baseline:
            from ..analysis.compare import outcomes_from_file, outcomes_from_run

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
    from ..storage.store import Store

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
    console.print(keep_ids_whole(t))

@app.command()
def suites(files: Optional[list[str]] = typer.Argument(None, help="Suite files or builtin:NAME to validate "
                                                                  "(default: the built-in suites).")) -> None:
    """Validate suites and count their cases per workload class."""
    from ..suites import load_suite
    from ..suites.loader import builtin_suites

    refs = files or [f"builtin:{n}" for n in builtin_suites()]
    t = Table("suite", "cases", "by workload", title_justify="left")
    try:
        for ref in refs:
            s = load_suite(ref)
            counts: dict[str, int] = {}
            for c in s.cases:
                counts[c.workload or "general"] = counts.get(c.workload or "general", 0) + 1
            t.add_row(term(ref), str(len(s.cases)), term(", ".join(f"{k} {v}" for k, v in counts.items())))
    except WeighbridgeError as e:
        raise _fail(e) from None
    console.print(keep_ids_whole(t))
