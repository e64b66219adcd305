"""Tables in an 80-column terminal keep the identifiers a user copies whole (no "deepseek…")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from weighbridge.catalog.catalog import load_catalog
from weighbridge.catalog.licenses import load_licenses


def _wb(*args: str, columns: int = 80) -> str:
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "dumb", "NO_COLOR": "1"}
    exe = Path(sys.executable).parent / "weighbridge"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=60).stdout


def test_model_and_license_ids_are_never_cut_in_80_columns():
    out = _wb("models")
    cells = {part.strip() for line in out.splitlines() for part in line.split("│")}
    missing = [m.id for m in load_catalog().models if m.id not in cells]
    assert not missing, f"cut or wrapped in an 80-column `weighbridge models`: {missing[:5]}"
    assert "…" not in out
    out = _wb("license", "list")
    cells = {part.strip() for line in out.splitlines() for part in line.split("│")}
    assert not [lic.id for lic in load_licenses().licenses if lic.id not in cells]
