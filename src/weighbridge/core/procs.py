"""Starting and stopping child processes (local model servers, benchmark peers, test servers) the same
way everywhere."""

from __future__ import annotations

import ctypes
import signal
import subprocess
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for a server weighbridge starts: the kernel sends it SIGTERM when weighbridge
    dies, however it dies (``kill -9`` and SIGHUP included), so no model server is left orphaned."""
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop(proc: "subprocess.Popen[Any]", grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited after ``grace_s``: a hung child never outlives its parent's cleanup."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
