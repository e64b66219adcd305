"""`lock`, `verify`, `bom`: pin what runs and say what it is."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

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
           lockfile: Optional[Path] = typer.Option(None, "--lock", help="Lockfile (default: beside the config).")) -> None:
    """Re-hash every locked weight file; exit 1 if any changed or went missing."""
    from ..catalog.lock import lock_path, read_lock, verify as verify_lock

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
    console.print(keep_ids_whole(t))
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
