"""MkDocs hooks: the CLI reference is generated from the Typer app at build time (so it cannot
drift from the code), a page can embed a cheap command's real output with
``<!-- wb: ARGS -->`` (run as ``weighbridge ARGS`` in a 100-column terminal while the site builds),
and every count a page states is written ``{{ count: WHAT }}`` and read from the code at build time
(``COUNTS`` says which): a count typed by hand goes stale with the next entry or test. The package
map (``<!-- layout -->``) is drawn from the source tree and each module's docstring likewise."""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

_RUN = re.compile(r"^<!-- wb: (?P<args>.+?) -->$", re.M)
_COUNT = re.compile(r"\{\{ count: (?P<what>[a-z-]+) \}\}")
_LAYOUT = "<!-- layout -->"
ROOT = Path(__file__).resolve().parent.parent


def _cli_reference() -> str:
    import typer
    from typer.cli import get_docs_for_click

    from weighbridge.cli import app

    command = typer.main.get_command(app)
    body = get_docs_for_click(obj=command, ctx=typer.Context(command), name="weighbridge", title="CLI reference")
    return ("<!-- generated from the Typer app by docs/hooks.py at build time; do not edit -->\n"
            + body.replace("\n# CLI reference", "# CLI reference", 1))


def _summary(path: Path) -> str:
    """The first sentence of a module's docstring: what it holds, in its author's words."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    end = re.search(r"(?<=[a-z0-9)`'])\. ", first)
    return first[: end.start() + 1] if end else first


def _layout() -> str:
    """Every package of src/weighbridge with its job and each module's, from the code itself."""
    src = ROOT / "src" / "weighbridge"
    lines = ["<!-- generated from the source tree by docs/hooks.py at build time; do not edit -->", "",
             "| package | module | what it holds |", "|---|---|---|"]
    packages = sorted(p.parent for p in src.rglob("__init__.py") if "__pycache__" not in p.parts)
    for pkg in packages:
        name = pkg.relative_to(src.parent).as_posix().replace("/", ".")
        lines.append(f"| **{name}** | | {_summary(pkg / '__init__.py')} |")
        for mod in sorted(pkg.glob("*.py")):
            if mod.name != "__init__.py":
                lines.append(f"| | `{mod.stem}` | {_summary(mod)} |")
    return "\n".join(lines)


def _run(args: str) -> str:
    exe = Path(sys.executable).parent / "weighbridge"
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}
    r = subprocess.run([str(exe), *shlex.split(args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"docs: `weighbridge {args}` exited {r.returncode}: {r.stderr[-500:]}")
    out = "\n".join(line.rstrip() for line in r.stdout.rstrip().splitlines())
    return f"```\n$ weighbridge {args}\n{out}\n```"


def count(what: str) -> int:
    """One of the counts the docs state, from the code (the README's are checked against these by a test)."""
    if what == "catalog-entries":
        from weighbridge.catalog.catalog import load_catalog

        return len(load_catalog().models)
    if what == "license-texts":
        from weighbridge.catalog.licenses import load_licenses

        return len(load_licenses().licenses)
    if what == "bundled-models":
        from weighbridge.backends.bundled import BUNDLED

        return len(BUNDLED)
    if what == "tests":
        r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
        found = re.search(r"^(\d+) tests? collected", r.stdout, re.M)
        if found is None:
            raise RuntimeError(f"docs: could not count the tests: {r.stdout[-500:]}{r.stderr[-500:]}")
        return int(found.group(1))
    raise RuntimeError(f"docs: no count named '{what}' (known: catalog-entries, license-texts, bundled-models, tests)")


def on_page_read_source(page, config):  # noqa: ANN001 - mkdocs hook signature
    if page.file.src_uri == "reference/cli.md":
        return _cli_reference()
    return None


def on_page_markdown(markdown, page, config, files):  # noqa: ANN001 - mkdocs hook signature
    markdown = _COUNT.sub(lambda m: str(count(m.group("what"))), markdown)
    if _LAYOUT in markdown:
        markdown = markdown.replace(_LAYOUT, _layout())
    return _RUN.sub(lambda m: _run(m.group("args")), markdown)
