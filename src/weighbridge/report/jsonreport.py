"""Machine-readable figures of a run: the same numbers as the terminal table, plus definitions."""

from __future__ import annotations

import json
from pathlib import Path

from ..files import write_atomic
from ..summary import RunSummary


def to_json(summary: RunSummary) -> str:
    return json.dumps(summary.to_dict(), indent=2, ensure_ascii=False, default=str)


def write_json(summary: RunSummary, path: str | Path) -> Path:
    return write_atomic(path, to_json(summary) + "\n")
