"""MkDocs hooks: the CLI reference is generated from the Typer app at build time (so it cannot
drift from the code), and a page can embed a cheap command's real output with
``<!-- wb: ARGS -->`` (run as ``weighbridge ARGS`` in a 100-column terminal while the site builds)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

_RUN = re.compile(r"^<!-- wb: (?P<args>.+?) -->$", re.M)
ROOT = Path(__file__).resolve().parent.parent


def _cli_reference() -> str:
    import typer
    from typer.cli import get_docs_for_click

    from weighbridge.cli import app

    command = typer.main.get_command(app)
    body = get_docs_for_click(obj=command, ctx=typer.Context(command), name="weighbridge", title="CLI reference")
    return ("<!-- generated from the Typer app by docs/hooks.py at build time; do not edit -->\n"
            + body.replace("\n# CLI reference", "# CLI reference", 1))


def _run(args: str) -> str:
    exe = Path(sys.executable).parent / "weighbridge"
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}
    r = subprocess.run([str(exe), *shlex.split(args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"docs: `weighbridge {args}` exited {r.returncode}: {r.stderr[-500:]}")
    out = "\n".join(line.rstrip() for line in r.stdout.rstrip().splitlines())
    return f"```\n$ weighbridge {args}\n{out}\n```"


def on_page_read_source(page, config):  # noqa: ANN001 - mkdocs hook signature
    if page.file.src_uri == "reference/cli.md":
        return _cli_reference()
    return None


def on_page_markdown(markdown, page, config, files):  # noqa: ANN001 - mkdocs hook signature
    return _RUN.sub(lambda m: _run(m.group("args")), markdown)
