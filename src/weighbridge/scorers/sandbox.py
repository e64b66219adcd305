"""Run model-written Python where it cannot reach the run, the machine or a secret: bubblewrap.

The boundary is bubblewrap (Debian ``bubblewrap``), a tool made for this, not Python-level guards:
- new user, pid, network, ipc, uts, cgroup and mount namespaces; user namespaces disabled inside;
- an unprivileged uid (1000) inside whoever runs weighbridge; run as root, bubblewrap itself is
  started under a throwaway uid (2,000,000,000 and up) so the sandbox is not root outside either
  and RLIMIT_NPROC binds (the kernel exempts uid 0 from it);
- every capability dropped, ``--new-session`` (no terminal), ``--die-with-parent``;
- a filesystem of the interpreter's prefix, ``/usr`` and ``/etc/ld.so.cache`` read-only, a
  size-capped tmpfs as the working directory, the sandbox's own ``/proc`` and a minimal ``/dev``:
  no other case's files, no store, no host ``/proc`` (so no parent environment);
- a seccomp filter (``seccomp_filter.py``, libseccomp) refusing tracing, namespaces, mounts,
  pidfds, BPF, io_uring, kernel modules, file handles and every socket family but AF_UNIX;
- rlimits on memory (address space), CPU seconds, file size, open files and processes;
- a wall-clock limit that kills bubblewrap, whose pid 1 inside takes every process of the
  namespace with it: no grandchild outlives its case, whatever it forks or ``setsid``s.

A pass is a record written by ``harness.py`` after the last test, carrying a nonce sent on stdin;
exit status 0 alone is never a pass. ``unsafe-local`` (only when a config asks for it by name)
runs the same harness as a plain child process with rlimits and a private temp dir: no isolation.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .checks import judge_steps
from .confine import (FILE_BYTES, OPEN_FILES, OUTSIDE_UID_BASE, PROCESSES, SANDBOX_UID, TMPFS_BYTES,
                      SandboxUnavailable, bwrap, bwrap_version, close_fd, confined_argv, interpreter, memfd,
                      prepare_root, prepare_user, rlimits, seccomp_program, stage_dir)

Mode = Literal["bubblewrap", "unsafe-local"]
MODES: tuple[str, ...] = ("bubblewrap", "unsafe-local")
_KEEP = 4000  # characters of stdout/stderr kept (the tail); the rest is read and dropped
_RECORD_MAX = 8 * 1024 * 1024  # every check carries its operands (each bounded by the harness)
__all__ = ["MODES", "SandboxResult", "SandboxUnavailable", "check", "describe", "kill_all", "run_python",
           "seccomp_program"]


@dataclass
class SandboxResult:
    passed: bool
    reason: str
    value: float = 0.0
    timed_out: bool = False
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    isolation: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)


# -- what this machine offers ---------------------------------------------------------------------
_lock = threading.Lock()
_cache: dict[str, Any] = {}  # the probe's answer, once per process
_live: set[subprocess.Popen[bytes]] = set()


def check(mode: str = "bubblewrap") -> None:
    """Raise SandboxUnavailable unless ``mode`` works here (probed once per process)."""
    if mode == "unsafe-local":
        return
    if mode not in MODES:
        raise SandboxUnavailable(f"unknown sandbox '{mode}' (use one of: {', '.join(MODES)})")
    with _lock:
        if "probe" in _cache:
            if _cache["probe"]:
                raise SandboxUnavailable(_cache["probe"])
            return
    problem = ""
    try:
        result = _run_bubblewrap("", tests="", setup="", timeout_s=20, memory_mb=256)
        if not result.passed:
            problem = ("bubblewrap is installed but could not start a sandbox here "
                       f"({result.reason}; {result.stderr.strip()[-200:]}). It needs unprivileged user "
                       "namespaces (sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1 "
                       "where that exists)")
    except SandboxUnavailable as e:
        problem = str(e)
    with _lock:
        _cache["probe"] = problem
    if problem:
        raise SandboxUnavailable(problem)


def describe(mode: str = "bubblewrap") -> dict[str, Any]:
    """What isolation runs of model code get here, for the run manifest and the reports."""
    if mode == "unsafe-local":
        return {"mode": "unsafe-local", "isolated": False,
                "summary": "unsafe-local: model code ran as a plain child process (rlimits only, no isolation)"}
    try:
        check(mode)
    except SandboxUnavailable as e:
        return {"mode": mode, "isolated": False, "available": False, "problem": str(e),
                "summary": "bubblewrap unavailable: python_tests cases not run"}
    tool = bwrap_version(bwrap())
    outside = "a throwaway uid outside (weighbridge runs as root)" if os.geteuid() == 0 else "the user's own uid outside"
    return {"mode": "bubblewrap", "isolated": True, "available": True, "tool": tool,
            "seccomp": "libseccomp filter (no ptrace, namespaces, mounts, pidfds, bpf, io_uring; AF_UNIX sockets only)",
            "uid": f"{SANDBOX_UID} inside, {outside}", "network": "none (own network namespace)",
            "limits": {"processes": PROCESSES, "open_files": OPEN_FILES, "file_bytes": FILE_BYTES,
                       "tmpfs_bytes": TMPFS_BYTES, "memory": "address space per process (case memory_mb)",
                       "cpu": "seconds per process (case timeout_s + 1)", "wall_clock": "case timeout_s, whole pid namespace"},
            "summary": f"{tool} + seccomp, uid {SANDBOX_UID}, no network"}


def kill_all() -> int:
    """Kill every sandbox still running (an interrupted run must not wait for its scorers)."""
    with _lock:
        live = list(_live)
    for proc in live:
        _kill(proc)
    return len(live)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass


# -- running one program --------------------------------------------------------------------------
def run_python(code: str, *, tests: str = "", setup: str = "", timeout_s: float = 10.0, memory_mb: int = 512,
               mode: str = "bubblewrap") -> SandboxResult:
    """Run setup, the model's ``code`` and the ``tests`` in the sandbox ``mode``; never raises for
    anything the code does. A missing sandbox is a failed case with the reason, not an exception."""
    try:
        if mode == "unsafe-local":
            return _run_local(code, tests=tests, setup=setup, timeout_s=timeout_s, memory_mb=memory_mb)
        check(mode)
        return _run_bubblewrap(code, tests=tests, setup=setup, timeout_s=timeout_s, memory_mb=memory_mb)
    except SandboxUnavailable as e:
        return SandboxResult(False, f"not run: {e}", isolation="unavailable")


def _harness_source() -> bytes:
    return (resources.files("weighbridge.scorers") / "harness.py").read_bytes()


def _job(code: str, tests: str, setup: str, record_fd: int) -> bytes:
    limits = {"RLIMIT_NPROC": PROCESSES}
    return json.dumps({"code": code, "tests": tests, "setup": setup, "record_fd": record_fd,
                       "limits": limits}).encode("utf-8")


def _run_bubblewrap(code: str, *, tests: str, setup: str, timeout_s: float, memory_mb: int) -> SandboxResult:
    binary = bwrap()
    bpf = seccomp_program()
    exe, prefix = interpreter()
    as_root = os.geteuid() == 0
    stage = stage_dir() if as_root else None
    record_r, record_w = os.pipe()
    fds = [record_w]
    try:
        harness_fd = memfd("wb-harness", _harness_source())
        fds.append(harness_fd)
        job_fd = memfd("wb-job", _job(code, tests, setup, record_fd=record_w))
        fds.append(job_fd)
        seccomp_fd = memfd("wb-seccomp", bpf)
        fds.append(seccomp_fd)
        argv = confined_argv(binary, prefix, stage, seccomp_fd,
                             {"/.wb/harness.py": harness_fd, "/.wb/job.json": job_fd},
                             [exe, "-I", "-S", "/.wb/harness.py", "/.wb/job.json"])
        limits = rlimits(memory_mb, int(timeout_s) + 1)
        uid = OUTSIDE_UID_BASE + secrets.randbelow(1 << 24)
        prepare = prepare_root(prefix, stage, uid, limits) if as_root and stage else prepare_user(limits)
    except BaseException:
        for fd in fds:
            close_fd(fd)
        close_fd(record_r)
        raise
    try:
        return _supervise(argv, fds, record_r, timeout_s, prepare, isolation="bubblewrap", env={})
    finally:
        close_fd(record_r)


def _run_local(code: str, *, tests: str, setup: str, timeout_s: float, memory_mb: int) -> SandboxResult:
    exe, _ = interpreter()
    record_r, record_w = os.pipe()
    with tempfile.TemporaryDirectory(prefix="wb-unsafe-") as tmp:
        Path(tmp, "harness.py").write_bytes(_harness_source())
        Path(tmp, "job.json").write_bytes(_job(code, tests, setup, record_fd=record_w))
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
               "PYTHONDONTWRITEBYTECODE": "1"}
        argv = [exe, "-I", "-S", os.path.join(tmp, "harness.py"), os.path.join(tmp, "job.json")]
        try:
            return _supervise(argv, [record_w], record_r, timeout_s,
                              prepare_user(rlimits(memory_mb, int(timeout_s) + 1)), isolation="unsafe-local",
                              env=env, cwd=tmp)
        finally:
            close_fd(record_r)


class _Tail:
    """Keeps the last ``_KEEP`` characters of a stream of any length."""

    def __init__(self) -> None:
        self.data = bytearray()

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > 4 * _KEEP:
            del self.data[:-_KEEP]

    def text(self) -> str:
        return self.data[-_KEEP:].decode("utf-8", "replace")


def _supervise(argv: list[str], pass_fds: list[int], record_r: int, timeout_s: float, prepare: Any,
               *, isolation: str, env: dict[str, str], cwd: str | None = None) -> SandboxResult:
    """Start the program, feed it the nonce, read its outputs within bounds until it ends or the
    wall clock runs out, and judge it by its record alone. Closes ``pass_fds`` once the child has
    them: the record pipe's write end must be held by the child alone, or its EOF never comes."""
    nonce = secrets.token_hex(16)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                pass_fds=tuple(pass_fds), preexec_fn=prepare, start_new_session=True, env=env,
                                cwd=cwd, close_fds=True)
    except (OSError, subprocess.SubprocessError) as e:
        return SandboxResult(False, f"the sandbox did not start: {e}", isolation=isolation)
    finally:
        for fd in pass_fds:
            close_fd(fd)
    with _lock:
        _live.add(proc)
    out, err, record = _Tail(), _Tail(), bytearray()
    timed_out = False
    try:
        try:
            proc.stdin.write(nonce.encode() + b"\n")  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        deadline = time.monotonic() + timeout_s
        sel = selectors.DefaultSelector()
        streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err, record_r: None}  # type: ignore[union-attr]
        for fd in streams:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        open_fds = set(streams)
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0 and not timed_out:
                timed_out = True
                _kill(proc)
                deadline = time.monotonic() + 5.0  # the namespace is gone; drain what is buffered
                continue
            if left <= 0:
                break
            for key, _ in sel.select(timeout=min(left, 0.5)):
                fd = key.fd
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    sel.unregister(fd)
                    open_fds.discard(fd)
                elif streams[fd] is None:
                    if len(record) < _RECORD_MAX:
                        record += chunk[: _RECORD_MAX - len(record)]
                else:
                    streams[fd].add(chunk)  # type: ignore[union-attr]
        sel.close()
        if not timed_out:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
        if timed_out:
            _kill(proc)
        proc.wait()
    finally:
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
        with _lock:
            _live.discard(proc)
    return _verdict(record, nonce, proc.returncode, timed_out, out.text(), err.text(), isolation, timeout_s)


def _verdict(record: bytes, nonce: str, returncode: int | None, timed_out: bool, stdout: str, stderr: str,
             isolation: str, timeout_s: float) -> SandboxResult:
    base = {"returncode": returncode, "stdout": stdout, "stderr": stderr, "isolation": isolation}
    if timed_out:
        return SandboxResult(False, f"timed out after {timeout_s:g}s (wall-clock limit; every process of the "
                                    "case was killed)", timed_out=True, **base)
    lines = [ln for ln in bytes(record).splitlines() if ln.strip()]
    rec: Any = None
    if len(lines) == 1:
        try:
            rec = json.loads(lines[0])
        except ValueError:
            rec = None
    if not isinstance(rec, dict) or rec.get("nonce") != nonce or not isinstance(rec.get("completed"), bool):
        if lines:
            return SandboxResult(False, "the completion record was not the harness's (forged or garbled): fails", **base)
        tail = (stderr.strip().splitlines() or [""])[-1][:200]
        if returncode is not None and returncode < 0:
            sig = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
            why = f"killed by {sig}"
        else:
            why = f"exit status {returncode}"
        return SandboxResult(False, f"exited before the tests ran ({why}, no completion record)"
                                    + (f": {tail}" if tail else ""), **base)
    steps = [s for s in rec.get("steps") or [] if isinstance(s, dict)][:10_000]
    if not rec["completed"]:
        return SandboxResult(False, str(rec.get("reason") or "")[:300], value=0.0, steps=steps[:200], **base)
    passed, value, reason = judge_steps(steps)  # the comparisons happen here, outside the model's process
    return SandboxResult(passed, reason[:300], value=value, steps=steps[:200], **base)
