"""`lock`, `verify`, `bom`: pin what runs and say what it is."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from ..core.errors import WeighbridgeError

from ..report.tables import keep_ids_whole
from .common import _config, _fail, app, console, err_console


@app.command()
def lock(config: Optional[Path] = typer.Option(None, "-c", "--config", help="Config whose models to lock."),
         allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Also lock pickle-based weights "
                                                                        "(.bin/.pt/.pth/.ckpt), which can run code.")) -> None:
    """Write weighbridge.lock: sha256 and size of every weight file, and each model's license."""
    from ..catalog.lock import write_lock

    try:
        cfg = _config(config)
        t0 = time.perf_counter()
        path = write_lock(cfg, allow_pickle=allow_pickle)
    except WeighbridgeError as e:
        raise _fail(e) from None
    import json as _json

    data = _json.loads(path.read_text())
    t = Table("model", "files", "size", "sha256", "license", title=str(path), title_justify="left")
    for name, entry in data["models"].items():
        size = sum(f["size"] for f in entry["files"])
        t.add_row(name, str(len(entry["files"])), f"{size / 1e6:,.1f} MB" if entry["files"] else "–",
                  entry["files"][0]["sha256"][:16] + "…" if entry["files"] else "–", entry["license"]["id"] or "unknown")
    console.print(keep_ids_whole(t))
    console.print(f"[dim]hashed in {time.perf_counter() - t0:.1f}s[/]")

@app.command()
def verify(config: Optional[Path] = typer.Option(None, "-c", "--config", help="Config beside the lockfile."),
           lockfile: Optional[Path] = typer.Option(None, "--lock", help="Lockfile (default: beside the config)."),
           files_only: bool = typer.Option(False, "--files-only", help="Only re-hash the locked files; run no "
                                           "deployment."),
           run_id: Optional[str] = typer.Option(None, "--run", metavar="RUN", help="Judge the deployments from this "
                                                "stored run instead of calling them."),
           allow_cache: bool = typer.Option(False, "--allow-cache", help="Reuse stored answers from the response "
                                            "cache (by default every deployment is called: a cached answer is old "
                                            "evidence)."),
           fail_on_drift: bool = typer.Option(False, "--fail-on-drift", help="Exit 1 when a deployment drifts, not "
                                              "only when one is broken."),
           json_out: Optional[Path] = typer.Option(None, "--json", help="Write the run's figures, fidelity included, "
                                                   "as JSON here."),
           report: Optional[Path] = typer.Option(None, "--report", help="HTML report path (default from config)."),
           store: Optional[Path] = typer.Option(None, "--store", help="SQLite store (default from config).")) -> None:
    """Is what runs what was evaluated? Re-hash the locked weights, then check each deployment's fidelity.

    Each deployment of a model (its variants: other quantisations, engines, servers) is held against the
    reference answer by answer. Exits 1 if a locked file changed or went missing, or a deployment is broken (or drifts, with
    --fail-on-drift). A config without variants checks the lockfile alone; --files-only skips the models."""
    from ..catalog.lock import lock_path, read_lock, verify as verify_lock

    try:
        cfg = _config(config)
        path = lockfile or lock_path(cfg)
        deployments = any(m.variant_of for m in cfg.models) and not files_only
        checks = verify_lock(read_lock(path), cfg) if (path.exists() or not deployments or lockfile) else None
    except WeighbridgeError as e:
        raise _fail(e) from None
    if checks is not None:
        t = Table("model", "file", "status", title=str(path), title_justify="left")
        for c in checks:
            style = "green" if c.status == "ok" else "bold red"
            t.add_row(c.model, Path(c.path).name, f"[{style}]{c.status}[/]" + (f" ({c.actual})" if c.status == "size" else ""))
        console.print(keep_ids_whole(t))
        bad = [c for c in checks if c.status != "ok"]
        if bad:
            err_console.print(f"[bold red]{len(bad)} file(s) differ from {path}[/]")
            raise typer.Exit(1)
        console.print(f"all {len(checks)} file(s) match {path}")
    elif deployments:
        console.print(f"[dim]no lockfile at {path}: weights not checked against a pin (`weighbridge lock` writes "
                      "one)[/]", highlight=False)
    if deployments:
        _verify_deployments(cfg, run_id=run_id, allow_cache=allow_cache, fail_on_drift=fail_on_drift,
                            json_out=json_out, report=report, store=store, config=config)


def _verify_deployments(cfg: Any, *, run_id: Optional[str], allow_cache: bool, fail_on_drift: bool,
                        json_out: Optional[Path], report: Optional[Path], store: Optional[Path],
                        config: Optional[Path]) -> None:
    """Run (or read) the variants on the suites and judge each against its reference (the bakeoff's
    fidelity section), then decide the exit code from the verdicts."""
    from ..analysis.summary import summarise_run
    from ..report.jsonreport import write_json
    from ..report.terminal import render
    from ..storage.store import Store
    from .bakeoff import _run_and_report
    from .common import _bakeoff_command, _store_path

    if run_id is not None:
        try:
            summary = summarise_run(Store(_store_path(cfg, store)), run_id)
        except WeighbridgeError as e:
            raise _fail(e) from None
        render(summary, console)
        calls = None
    else:
        summary, stats = _run_and_report(cfg, store=store, report=report, resume=False, use_cache=allow_cache,
                                         only_models=None, command=_bakeoff_command(config, store, None))
        calls = (stats.model_calls, stats.cache_hits)
    if json_out:
        console.print(f"json: {write_json(summary, json_out)}")
    rows = [r for g in summary.fidelity for r in g.rows]
    if not rows:
        raise _fail(WeighbridgeError("no deployment to verify: the run has no variants of one model that answered"))
    if calls is not None:
        made, cached = calls
        console.print(f"[yellow]--allow-cache: {cached} of {made + cached} answers came from the response cache[/]"
                      if allow_cache else f"[dim]every deployment was called for all {made + cached} answers (no "
                      "cache)[/]", highlight=False)
    counts = {v: sum(r.verdict == v for r in rows) for v in ("faithful", "drifts", "broken")}
    console.print(f"verify: {len(rows)} deployment(s) against their reference: {counts['faithful']} faithful, "
                  f"{counts['drifts']} drift, {counts['broken']} broken")
    failing = [r for r in rows if r.verdict == "broken" or (fail_on_drift and r.verdict == "drifts")]
    if failing:
        err_console.print(f"[bold red]exit 1:[/] {', '.join(r.candidate for r in failing)} "
                          f"{'is' if len(failing) == 1 else 'are'} {'broken' if not fail_on_drift else 'not faithful'}",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def bom(config: Optional[Path] = typer.Option(None, "-c", "--config", help="Config whose models to list."),
        output: Path = typer.Option(Path("bom.cdx.json"), "-o", "--output", help="Where to write the BOM."),
        profile: Optional[Path] = typer.Option(None, "-p", "--profile", help="Profile for the license verdicts.")) -> None:
    """Write a CycloneDX 1.6 AI bill of materials (validated against the schema before writing)."""
    import json as _json

    from ..catalog.bom import build_bom, validate_bom
    from ..catalog import load_profile
    from ..core.files import write_atomic

    try:
        cfg = _config(config)
        doc = build_bom(cfg, load_profile(profile) if profile else None, str(profile) if profile else None)
        validate_bom(doc)
    except WeighbridgeError as e:
        raise _fail(e) from None
    write_atomic(output, _json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    console.print(f"wrote {output}: CycloneDX 1.6, {len(doc['components'])} model component(s), schema-valid")
