"""Plugins through entry points: a tiny package (tests/data/plugin_pkg) installed into this venv
adds a backend and a scorer, used by a real bakeoff in a fresh process exactly like the built-ins
(which register through the same groups); a plugin that fails to load is named in the error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import write

PKG = Path(__file__).parent / "data" / "plugin_pkg"


@pytest.fixture()
def installed_plugin(tmp_path):
    src = tmp_path / "plugin_src"
    shutil.copytree(PKG, src)  # building writes build/ and *.egg-info: keep them out of the repository
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    r = subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        yield
    finally:
        subprocess.run([*pip, "uninstall", "-y", "weighbridge-echo-plugin"], capture_output=True, timeout=120)


def _wb(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "weighbridge"
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "120", "NO_COLOR": "1"})


@pytest.mark.slow
def test_a_plugin_backend_and_scorer_run_a_bakeoff(installed_plugin, tmp_path):
    write(tmp_path / "cases.yaml", "cases:\n"
          "  - {id: short, prompt: hello, scorers: [{type: word_count, at_least: 3}]}\n"
          "  - {id: long, prompt: hello there world, scorers: [{type: word_count, at_least: 3}]}\n"
          "  - {id: builtin, prompt: paris, scorers: [{type: contains, value: PARIS}]}\n")
    write(tmp_path / "weighbridge.yaml", "models:\n  - {name: echo1, backend: echo}\n"
          "  - {name: echo3, backend: echo, options: {times: 3}}\nsuites: [cases.yaml]\n")
    r = _wb("bakeoff", "--json", "out.json", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads((tmp_path / "out.json").read_text())
    outcomes = {m["model"]: m["outcomes"] for m in data["models"]}
    assert outcomes["echo1"] == {"short#0": False, "long#0": True, "builtin#0": True}
    assert outcomes["echo3"] == {"short#0": True, "long#0": True, "builtin#0": True}  # its options reached it
    assert data["manifest"]["models"]["echo3"] == {"backend": "echo", "times": 3}
    r = _wb("suites", "cases.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr

    write(tmp_path / "bad.yaml", "cases:\n  - {id: x, prompt: q, scorers: [broken]}\n")
    r = _wb("suites", "bad.yaml", cwd=tmp_path)
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 2 and "scorer plugin 'broken'" in out and "failed to load: ModuleNotFoundError" in out
    assert "package weighbridge-echo-plugin" in out
    write(tmp_path / "nope.yaml", "models:\n  - {name: x, backend: nosuch}\n")
    r = _wb("bakeoff", "-c", "nope.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "unknown backend 'nosuch' (installed: echo, llamacpp, openai)" in " ".join(r.stderr.split())
