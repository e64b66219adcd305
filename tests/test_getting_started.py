"""The docs site's getting-started path 2 ("my server, my prompts") runs as written: the block in
docs/getting-started.md is executed as a bash script in an empty folder with the venv first on
PATH (a free port instead of 8000), and the bakeoff it ends with must answer every prompt."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import free_port

DOC = Path(__file__).resolve().parent.parent / "docs" / "getting-started.md"


def path_two_script() -> str:
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"<!-- getting-started: path 2 -->\n```\n(.*?)\n```", text, re.S).group(1)
    lines = [line[2:] if line.startswith("$ ") else line for line in block.splitlines()]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_getting_started_path_two_works_as_written(tmp_path):
    port = str(free_port())
    script = path_two_script().replace("8000", port)
    assert "weighbridge bakeoff" in script and "prompts.csv" in script
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "COLUMNS": "100",
           "NO_COLOR": "1"}
    proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=240)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the server the script left running in the background
        except ProcessLookupError:
            pass
    subprocess.run(["pkill", "-f", f"--port {port}"], capture_output=True)
    if os.environ.get("WEIGHBRIDGE_WRITE_DOC_OUTPUT"):
        Path(os.environ["WEIGHBRIDGE_WRITE_DOC_OUTPUT"]).write_text(out)
    assert proc.returncode == 0, out[-3000:]
    assert "2 jobs: 2 model calls" in out and "errors · " in out and "0 errors" in out, out[-3000:]
    assert (tmp_path / "weighbridge.db").exists() and (tmp_path / "weighbridge-report.html").exists()
