"""The ``weighbridge`` command, one module per command group; each verb parses options and calls one
function elsewhere. Importing the modules registers their commands on the one app, in this order."""

from __future__ import annotations

from typing import Any

import typer

from .common import app
from . import bakeoff, bench, serve, runs, view, lockfile, deploy, catalog  # noqa: F401 - registers the commands


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
    """The console script: the Typer app with word metavars. A WeighbridgeError no command caught
    itself (a damaged store found deep in a report, say) is still one line and exit 2, never a
    traceback."""
    from ..core.errors import WeighbridgeError
    from .common import _fail

    try:
        _word_metavars(typer.main.get_command(app))()
    except WeighbridgeError as e:
        raise SystemExit(_fail(e).exit_code) from None


__all__ = ["app", "run"]
