"""Stopping child processes (local model servers, benchmark peers, test servers) the same way everywhere."""

from __future__ import annotations

import subprocess


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited after ``grace_s``: a hung child never outlives its parent's cleanup."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
