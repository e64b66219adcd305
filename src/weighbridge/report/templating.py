"""The one way HTML is made: Jinja2 templates (``report/templates``) with autoescaping, so every value
from a run, a model or a store is escaped without a call anyone has to remember.

Every value an expression prints passes ``format.escape`` (the one escape, also used by the SVG
charts) unless it is already markup - a chart, or a macro's output. The formats people read
(durations, dollars, percentages, sizes) are ``format.py``'s, registered as filters, so a figure
reads the same in the terminal, the report and the viewer.
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

from jinja2 import Environment, FileSystemBytecodeCache, PackageLoader, StrictUndefined
from markupsafe import Markup

from ..core import format as fmt
from ..core.filecache import cache_dir


def _finalize(value: Any) -> Any:
    """Escape with the project's one escape (html.escape, quotes included) before Jinja's own would."""
    if hasattr(value, "__html__"):
        return value
    return Markup(fmt.escape("" if value is None else value))


def _pct(v: float | None, digits: int = 1, signed: bool = False) -> str:
    if v is None:
        return "–"
    return f"{v:+.{digits}%}" if signed else f"{v:.{digits}%}"


def _mb(v: int | None) -> str:
    return "–" if v is None else f"{v / 1e6:,.1f} MB"


def _bytecode_cache() -> FileSystemBytecodeCache | None:
    """Compiled templates kept in weighbridge's cache folder: compiling the report's templates is a
    fifth of a second, most of a re-run from the cache. Jinja keys each by its source's checksum; the
    folder is used only when it is the user's own and no one else may write to it (its files are
    loaded as code, as Python's own ``__pycache__`` is), and not at all when it cannot be made."""
    folder = cache_dir() / "templates"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = folder.stat()
    except OSError:
        return None
    if st.st_uid != os.geteuid() or st.st_mode & 0o022 or not os.access(folder, os.W_OK):
        return None
    return FileSystemBytecodeCache(str(folder))


@cache
def environment() -> Environment:
    env = Environment(loader=PackageLoader("weighbridge.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, finalize=_finalize, trim_blocks=True, lstrip_blocks=True,
                      bytecode_cache=_bytecode_cache())
    env.filters.update(
        ms=fmt.ms, usd=fmt.usd, count_label=fmt.count_label, mb=_mb,
        pct0=lambda v: _pct(v, 0), pct1=lambda v: _pct(v, 1), spct1=lambda v: _pct(v, 1, signed=True),
        pretty_json=lambda v: json.dumps(v, indent=2, ensure_ascii=False))
    env.tests["link"] = lambda v: str(v).startswith(("https://", "http://"))  # a source worth a link
    return env


def render(template: str, **context: Any) -> str:
    """A template rendered with ``context``; charts passed in must be ``Markup`` (svg.py's are)."""
    return environment().get_template(template).render(**context)


def macro(template: str, name: str, *args: Any) -> Markup:
    """One macro of a template, called on its own (a piece a test or another page needs alone)."""
    fn = getattr(environment().get_template(template).module, name)
    return Markup(fn(*args))


def safe(svg: str) -> Markup:
    """Markup built by code that escapes every value it puts in (the SVG charts)."""
    return Markup(svg)
