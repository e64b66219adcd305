"""``weighbridge serve --workers N``: N gateway processes accepting on one listening socket.

The supervisor binds the socket once and starts N children that inherit it (the pre-fork model:
the kernel hands each new connection to one waiting process), so there is one port and no proxy.
Rate windows and budgets are shared through Redis (``redis:`` in the plan), which is why N > 1 is
refused without it. A child that dies is logged and started again; the others keep serving. On
SIGTERM or SIGINT the supervisor passes SIGTERM to every child, which drains (below) and exits,
and exits 0 itself once they have.

Each child drains the same way a single ``serve`` does: on SIGTERM its ``/readyz`` answers 503
first (``http.drain_s``, so a load balancer stops sending it new requests), then it stops accepting,
finishes the requests and streams in flight (up to ``http.shutdown_grace_s``), flushes the audit
writer and exits 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger("weighbridge.gateway")


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def supervise(plan_path: Path, host: str, port: int, workers: int, say: Callable[[str], None]) -> int:
    """Run ``workers`` children on one socket until SIGTERM/SIGINT; returns the exit code."""
    import os
    import shutil
    import tempfile

    sock = listen(host, port)
    stopping = False
    metrics_dir = tempfile.mkdtemp(prefix="weighbridge-metrics-")  # the workers' figures, merged by /metrics
    env = {**os.environ, "WEIGHBRIDGE_METRICS_DIR": metrics_dir}

    def start() -> subprocess.Popen[bytes]:
        from ..core.procs import die_with_parent

        # a worker never outlives its supervisor, even one killed with SIGKILL
        return subprocess.Popen([sys.executable, "-m", "weighbridge", "serve", "--plan", str(plan_path),
                                 "--host", host, "--port", str(port), "--fd", str(sock.fileno())],
                                pass_fds=[sock.fileno()], env=env, preexec_fn=die_with_parent)

    def stop_all(*_: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop_all) for s in (signal.SIGTERM, signal.SIGINT)}
    children = [start() for _ in range(workers)]
    say(f"{workers} workers on http://{host}:{port}/v1 · pids {' '.join(str(c.pid) for c in children)}")
    try:
        while not stopping:
            for i, child in enumerate(children):
                code = child.poll()
                if code is not None and not stopping:
                    say(f"worker {child.pid} exited ({code}); starting another")
                    children[i] = start()
                    say(f"worker {children[i].pid} started")
            time.sleep(0.2)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 120
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        return 0
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def inherited_socket(fd: int) -> socket.socket:
    """The listening socket a supervisor passed down (``--fd``)."""
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock


__all__ = ["inherited_socket", "listen", "supervise"]
