"""The app, its consoles and the helpers every command group shares (config, store, errors, signals)."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

from .. import __version__
from ..core.config import DEFAULT_STORE, Config, default_config, load_config
from ..core.errors import WeighbridgeError
from ..report.safe import SafeConsole, term


app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Choose, license-check, measure and serve open-weight models on your own hardware.")

console = SafeConsole()

err_console = SafeConsole(stderr=True)

def _version(value: bool) -> None:
    if value:
        console.print(f"weighbridge {__version__}")
        raise typer.Exit()

@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """weighbridge: bake off open-weight models side by side, then keep them honest."""

def _fail(e: Exception, code: int = 2) -> typer.Exit:
    from ..core.scrub import scrub

    err_console.print(f"[bold red]error:[/] {term(scrub(str(e)) or '')}", highlight=False, soft_wrap=True)
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
    from ..pricing.scenario import load_scenario

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

def _plan(path: Path) -> Any:
    from ..gateway.plan import load_plan

    try:
        return load_plan(path)
    except WeighbridgeError as e:
        raise _fail(e) from None

def _open_run(cfg: Config, store: Optional[Path], run: Optional[str]) -> tuple[Any, str]:
    """The store of a config and a run in it (default: the latest)."""
    return _open_store_run(_store_path(cfg, store), run)

def _open_store_run(path: Path, run: Optional[str]) -> tuple[Any, str]:
    """A store file and a run in it (default: the latest); clear errors when either is missing."""
    from ..storage.store import Store

    if not path.exists():
        raise WeighbridgeError(f"{path}: no store here (run a bakeoff first, or pass --store)")
    st = Store(path)
    run_id = run or st.latest_run()
    if run_id is None:
        raise WeighbridgeError(f"{path}: holds no runs yet")
    return st, run_id
