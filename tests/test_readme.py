"""The README's and the docs site's shown commands still print what they show.

A code block preceded by ``<!-- readme-test -->`` (or ``<!-- readme-test: tmp -->`` to run in an
empty temporary folder instead of the repository root) is run command by command: each ``$ ``
line runs in bash with the project's venv first on PATH and a 100-column terminal, and every line
the README shows under it must appear in what the command printed (trailing spaces aside; a line
that is only ``…`` marks an elision). Blocks whose output depends on time, a model or a peer tool
are not marked; the tests of those features check their behaviour instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARK = re.compile(r"<!-- readme-test(?::\s*(?P<where>\w+))? -->\s*\n```[a-z]*\n(?P<body>.*?)\n```", re.DOTALL)


def blocks() -> list[tuple[str, str, list[tuple[str, list[str]]]]]:
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        found += _blocks_of(page)
    return found


def _blocks_of(page: Path) -> list[tuple[str, str, list[tuple[str, list[str]]]]]:
    text = page.read_text(encoding="utf-8")
    name = page.relative_to(ROOT).as_posix()
    found = []
    for m in MARK.finditer(text):
        line_no = text.count("\n", 0, m.start()) + 1
        steps: list[tuple[str, list[str]]] = []
        command: list[str] = []
        for line in m.group("body").splitlines():
            if line.startswith("$ ") or (command and command[-1].endswith("\\")):
                command.append(line[2:] if line.startswith("$ ") else line)
                if not line.endswith("\\"):
                    steps.append(("\n".join(command), []))
                    command = []
            elif steps:
                steps[-1][1].append(line.rstrip())
        found.append((f"{name}:{line_no}", m.group("where") or "root", steps))
    return found


def test_the_readme_marks_blocks_to_check():
    assert len(blocks()) >= 5


@pytest.mark.parametrize("where,kind,steps", blocks(), ids=[b[0] for b in blocks()])
def test_readme_block_prints_what_it_shows(where, kind, steps, tmp_path):
    cwd = tmp_path if kind == "tmp" else ROOT
    env = {**os.environ, "COLUMNS": "100", "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "TERM": "dumb", "NO_COLOR": "1"}
    for command, expected in steps:
        command = command.split("  #")[0].strip()  # a shell comment after the command explains it
        r = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        got = {line.rstrip() for line in (r.stdout + r.stderr).splitlines()}
        missing = [line for line in expected if line.strip() not in ("", "…") and line not in got]
        assert not missing, f"{where}: `{command}` no longer prints:\n" + "\n".join(missing[:10]) + \
            f"\n--- it printed:\n{r.stdout[-3000:]}{r.stderr[-2000:]}"


def test_every_example_file_the_readme_uses_loads():
    """The README points at these files; each must load as what it is (config, plan, profile, suite)."""
    import yaml

    from weighbridge.catalog import load_profile
    from weighbridge.core.config import load_config
    from weighbridge.gateway.plan import load_plan
    from weighbridge.suites import load_suite, load_suites

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for page in pages:
        for name in re.findall(r"examples/[\w./-]+\.(?:yaml|csv|yml)", page.read_text(encoding="utf-8")):
            assert (ROOT / name).exists(), f"{page.name} names {name}, which is not in the repository"
    checked = 0
    for path in sorted((ROOT / "examples").rglob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "models" in data:
            cfg = load_config(path)
            load_suites(cfg.suites, cfg.base_dir)
        elif isinstance(data, dict) and "routes" in data:
            load_plan(path)
        elif isinstance(data, dict) and "deployment" in data:
            load_profile(path)
        elif path.name.endswith("requests.yaml"):
            from weighbridge.gateway.smoke import load_requests

            load_requests(path)
        elif path.parent.name == "suites" or isinstance(data, list):
            load_suite(path)
        else:
            continue
        checked += 1
    assert checked >= 8


def test_the_readmes_counts_are_the_codes():
    """The docs site reads its counts from the code as it builds (docs/hooks.py); the README, shown as it
    is, is held to the same counts here."""
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from hooks import count
    finally:
        sys.path.pop(0)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tests = re.search(r"(\d+) tests – one skipped", readme)
    assert tests and int(tests.group(1)) == count("tests"), "update the README's test count"
    words = {2: "two", 3: "three", 4: "four", 5: "five"}
    assert f"the {words[count('bundled-models')]} bundled models" in readme
