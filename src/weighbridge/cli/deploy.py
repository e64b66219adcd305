"""`quantize` and `cost`: the deployment decisions."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..report.jsonreport import dumps as dumps_json
from ..core.errors import WeighbridgeError

from ..report.tables import keep_ids_whole
from .common import _config, _fail, _scenario, _store_of, app, console


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
    from ..backends.bundled import BUNDLED, resolve_bundled
    from ..core.gguf import read_metadata
    from ..backends.quantize import add_to_config, config_snippet, parse_types, type_name
    from ..backends.quantize import quantize as run_quantize

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
    console.print(keep_ids_whole(t))
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

    from ..pricing.deploy_cost import ScenarioPricer
    from ..core.files import write_atomic
    from ..report.cost_report import render_terminal, to_json, write_cost_html
    from ..pricing.scenario import load_prices, merged_prices
    from ..storage.store import Store

    try:
        the_scenario = _scenario(scenario)
        sheet = merged_prices(load_prices(prices), the_scenario)
        path = _store_of(config, store)
        if not path.exists():
            raise WeighbridgeError(f"{path}: no such store; run `weighbridge bench` and `weighbridge bakeoff` first "
                                   "(or give --store)")
        cfg_path = config if config is not None else (Path("weighbridge.yaml") if Path("weighbridge.yaml").is_file()
                                                      else None)
        pricer = ScenarioPricer(the_scenario, Store(path), sheet, config=cfg_path)
        costs = pricer.price_all()
    except WeighbridgeError as e:
        raise _fail(e) from None
    render_terminal(pricer, costs, console)
    if json_out:
        write_atomic(json_out, dumps_json(to_json(pricer, costs)) + "\n")
        console.print(f"json: {json_out}")
    console.print(f"html: {write_cost_html(pricer, costs, html_out, bench_report)}")
    if any(c.problem for c in costs):
        raise typer.Exit(1)
