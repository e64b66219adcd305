"""``weighbridge serve`` as its own process on a free loopback port, for the tests that must hold
against the real command (its uvicorn config, HTTP limits, startup), not an in-thread app."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

from weighbridge.procs import stop

from .conftest import free_port
from .test_gateway_faults import _wait_ready


@contextlib.contextmanager
def serve(plan: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """(base URL without /v1, the process) while it runs; stopped afterwards."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "weighbridge", "serve", "--plan", str(plan), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env or dict(os.environ))
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc)
        yield base, proc
    finally:
        stop(proc)
