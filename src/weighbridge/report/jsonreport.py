"""Machine-readable figures of a run: the same numbers as the terminal table, plus definitions.

``dumps`` is the one way weighbridge writes JSON for people and programs to read: strict JSON
(never ``NaN`` or ``Infinity``, which most parsers refuse), a figure that was not a finite number
written as null and named under ``nonfinite_fields``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.files import write_atomic
from ..core.scrub import finite

if TYPE_CHECKING:
    from ..analysis.summary import RunSummary

NONFINITE_NOTE = "null: these figures were not finite numbers"


def dumps(obj: Any, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON of ``obj`` (a fresh copy is cleaned: ``obj`` itself is left alone)."""
    found: list[str] = []
    clean = finite(json.loads(json.dumps(obj, ensure_ascii=False, default=str)), found)
    if found and isinstance(clean, dict):
        clean["nonfinite_fields"] = {"note": NONFINITE_NOTE, "paths": sorted(found)}
    return json.dumps(clean, indent=indent, ensure_ascii=False, sort_keys=sort_keys, allow_nan=False)


def to_json(summary: RunSummary) -> str:
    return dumps(summary.to_dict())


def write_json(summary: RunSummary, path: str | Path) -> Path:
    return write_atomic(path, to_json(summary) + "\n")
