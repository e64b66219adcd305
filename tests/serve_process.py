"""``weighbridge serve`` as its own process on a free loopback port, for the tests that must hold
against the real command (its uvicorn config, HTTP limits, startup), not an in-thread app."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

from weighbridge.core.procs import stop

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


@contextlib.contextmanager
def health_probe(base: str, pause_s: float = 0.02, min_probes: int = 3) -> Iterator[list[float]]:
    """Times GET /healthz over and over in a thread while the block runs: the latencies show whether
    the gateway's event loop kept answering (a failed probe fails the test when the block ends)."""
    import threading
    import time

    import httpx

    latencies: list[float] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def probe() -> None:
        # one kept-alive client: a fresh httpx.get costs ~20 ms of its own (a new client and TLS context
        # each time), which would hide the gateway's latency under the instrument's
        with httpx.Client(timeout=10) as client:
            while not done.is_set():
                t = time.monotonic()
                try:
                    assert client.get(base + "/healthz").status_code == 200
                except BaseException as e:  # noqa: BLE001 - reported to the test below
                    failures.append(e)
                    return
                latencies.append(time.monotonic() - t)
                time.sleep(pause_s)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        yield latencies
    finally:
        deadline = time.monotonic() + 10
        while len(latencies) < min_probes and not failures and time.monotonic() < deadline:
            time.sleep(0.01)
        done.set()
        thread.join()
    assert not failures, failures


def audit_records(folder) -> list[dict]:
    """The audit records a gateway wrote to ``folder``/gateway.db (the plans' default state file)."""
    import json
    import sqlite3

    db = sqlite3.connect(folder / "gateway.db")
    try:
        return [json.loads(r[0]) for r in db.execute("SELECT record FROM audit ORDER BY seq")]
    finally:
        db.close()
