"""`view`: the local web app over the store (runs over time, comparisons, trends, load tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..core.errors import WeighbridgeError
from ..core.net import binds_loopback_only
from .common import _fail, _store_of, app, console


@app.command()
def view(config: Optional[Path] = typer.Option(None, "-c", "--config", help="Read the store from this config's store:."),
         store: Optional[Path] = typer.Option(None, "--store", help="SQLite store (default: the config's, else "
                                                                   "./weighbridge.db)."),
         host: str = typer.Option("127.0.0.1", "--host", help="Loopback address to bind (127.0.0.1 or ::1)."),
         port: int = typer.Option(8765, "--port", min=1, max=65535),
         allowed_host: list[str] = typer.Option([], "--allowed-host", help="Another name this viewer answers to "
                                                "(repeatable; localhost, 127.0.0.1 and ::1 always work).")) -> None:
    """Browse the store in a local web app: runs over time, a run, two runs compared, trends, load tests."""
    import uvicorn

    from ..view import create_view_app

    loopback = binds_loopback_only(host)
    try:
        if not loopback:
            raise WeighbridgeError(f"refusing to bind {host}: the viewer shows every stored answer and has no keys; it "
                                   "binds loopback only (reach it from elsewhere through an SSH tunnel)")
        path = _store_of(config, store)
        if not path.exists():
            raise WeighbridgeError(f"{path}: no such store; run `weighbridge bakeoff` first (or give --store)")
    except WeighbridgeError as e:
        raise _fail(e) from None
    console.print(f"weighbridge view of {path} on http://{host}:{port}/ (Ctrl-C stops it)", highlight=False)
    uvicorn.run(create_view_app(path, tuple(allowed_host)), host=host, port=port, log_level="warning")
