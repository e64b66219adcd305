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

import atexit
import ctypes
import json
import os
import resource
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..errors import WeighbridgeError
from .checks import judge_steps

Mode = Literal["bubblewrap", "unsafe-local"]
MODES: tuple[str, ...] = ("bubblewrap", "unsafe-local")
SANDBOX_UID = 1000
_OUTSIDE_UID_BASE = 2_000_000_000
WORKDIR = "/sandbox"
TMPFS_BYTES = 64 * 1024 * 1024
FILE_BYTES = 16 * 1024 * 1024
OPEN_FILES = 64
PROCESSES = 16
_KEEP = 4000  # characters of stdout/stderr kept (the tail); the rest is read and dropped
_RECORD_MAX = 8 * 1024 * 1024  # every check carries its operands (each bounded by the harness)

_CLONE_NEWNS = 0x00020000
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 0x4000, 1 << 18


class SandboxUnavailable(WeighbridgeError):
    """The isolation a config asked for cannot be had on this machine; the message says how to get it."""


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
_cache: dict[str, Any] = {}
_live: set[subprocess.Popen] = set()


def _system_python() -> str | None:
    """The operating system's python3, the one its libseccomp binding is built for (not a pyenv shim)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def seccomp_program() -> bytes:
    """The BPF program, built once per process by the system python3 with libseccomp."""
    with _lock:
        if "bpf" in _cache:
            return _cache["bpf"]
    python = _system_python()
    hint = "install libseccomp's Python binding for the system python3: apt-get install python3-seccomp"
    if python is None:
        raise SandboxUnavailable(f"no system python3 to build the seccomp filter with; {hint}")
    script = resources.files("weighbridge.scorers") / "seccomp_filter.py"
    proc = subprocess.run([python, "-s", "-E", str(script)], capture_output=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin"})
    if proc.returncode != 0 or not proc.stdout or len(proc.stdout) % 8:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise SandboxUnavailable(f"the seccomp filter could not be built ({detail[0]}); {hint}")
    with _lock:
        _cache["bpf"] = proc.stdout
    return proc.stdout


def _bwrap() -> str:
    found = shutil.which("bwrap", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin", "/bin"]))
    if found is None:
        raise SandboxUnavailable("python_tests needs bubblewrap to run model code in isolation, and it is not "
                                 "installed: apt-get install bubblewrap (dnf/pacman: bubblewrap). To run model code "
                                 "with no isolation at all, set `sandbox: unsafe-local` in the config")
    return found


def _bwrap_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "bubblewrap"
    return out or "bubblewrap"


def _interpreter() -> tuple[str, str]:
    """(the real interpreter binary, its installation prefix): a venv's python is a link to these."""
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    return exe, os.path.realpath(sys.base_prefix)


def _stage_dir() -> str:
    """A world-reachable mount point for the interpreter's prefix (root only, see ``_prepare_root``)."""
    with _lock:
        if "stage" not in _cache:
            root = tempfile.mkdtemp(prefix="wb-sandbox-stage-")
            os.chmod(root, 0o711)
            os.mkdir(os.path.join(root, "prefix"), 0o755)
            atexit.register(shutil.rmtree, root, True)
            _cache["stage"] = os.path.join(root, "prefix")
        return _cache["stage"]


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
    tool = _bwrap_version(_bwrap())
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


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)  # close-on-exec here; passed on explicitly with pass_fds
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _harness_source() -> bytes:
    return (resources.files("weighbridge.scorers") / "harness.py").read_bytes()


def _job(code: str, tests: str, setup: str, record_fd: int) -> bytes:
    limits = {"RLIMIT_NPROC": PROCESSES}
    return json.dumps({"code": code, "tests": tests, "setup": setup, "record_fd": record_fd,
                       "limits": limits}).encode("utf-8")


def _rlimits(memory_mb: int, cpu_s: int) -> list[tuple[int, int]]:
    mem = memory_mb * 1024 * 1024
    return [(resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu_s), (resource.RLIMIT_FSIZE, FILE_BYTES),
            (resource.RLIMIT_NOFILE, OPEN_FILES), (resource.RLIMIT_CORE, 0)]


def _bind_args(prefix: str, stage: str | None) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    if os.path.exists("/etc/ld.so.cache"):
        args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    if not (prefix == "/usr" or prefix.startswith("/usr/")):
        args += ["--ro-bind", stage or prefix, prefix]
    return args


def _prepare_root(prefix: str, stage: str, uid: int, limits: list[tuple[int, int]]) -> Any:
    """Runs in the child between fork and exec when weighbridge is root. The interpreter may sit
    under a home only root can enter (pyenv in /root): bind it onto a world-reachable mount point
    in a private mount namespace of this child alone, then become a throwaway uid and start
    bubblewrap as that user. Only C calls here: this runs in a forked copy of a threaded process."""
    libc = ctypes.CDLL(None, use_errno=True)
    src, dst = prefix.encode(), stage.encode()

    def prepare() -> None:
        if libc.unshare(_CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
            raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
        if libc.mount(src, dst, None, _MS_BIND | _MS_REC, None) != 0:
            raise OSError(ctypes.get_errno(), "mount --bind prefix")
        for which, value in limits:
            resource.setrlimit(which, (value, value))
        resource.setrlimit(resource.RLIMIT_NPROC, (PROCESSES + 8, PROCESSES + 8))  # counted outside, per uid
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)

    return prepare


def _prepare_user(limits: list[tuple[int, int]]) -> Any:
    def prepare() -> None:
        for which, value in limits:
            resource.setrlimit(which, (value, value))
    return prepare


def _run_bubblewrap(code: str, *, tests: str, setup: str, timeout_s: float, memory_mb: int) -> SandboxResult:
    bwrap = _bwrap()
    bpf = seccomp_program()
    exe, prefix = _interpreter()
    as_root = os.geteuid() == 0
    stage = _stage_dir() if as_root else None
    record_r, record_w = os.pipe()
    fds = [record_w]
    try:
        harness_fd = _memfd("wb-harness", _harness_source())
        fds.append(harness_fd)
        job_fd = _memfd("wb-job", _job(code, tests, setup, record_fd=record_w))
        fds.append(job_fd)
        seccomp_fd = _memfd("wb-seccomp", bpf)
        fds.append(seccomp_fd)
        argv = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                "--cap-drop", "ALL", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox",
                *_bind_args(prefix, stage), "--proc", "/proc", "--dev", "/dev",
                "--perms", "0700", "--size", str(TMPFS_BYTES), "--tmpfs", WORKDIR,
                "--ro-bind-data", str(harness_fd), "/.wb/harness.py", "--ro-bind-data", str(job_fd), "/.wb/job.json",
                "--chdir", WORKDIR, "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", WORKDIR,
                "--setenv", "TMPDIR", WORKDIR, "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONHASHSEED", "0",
                "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--seccomp", str(seccomp_fd),
                "--", exe, "-I", "-S", "/.wb/harness.py", "/.wb/job.json"]
        limits = _rlimits(memory_mb, int(timeout_s) + 1)
        uid = _OUTSIDE_UID_BASE + secrets.randbelow(1 << 24)
        prepare = _prepare_root(prefix, stage, uid, limits) if as_root and stage else _prepare_user(limits)
    except BaseException:
        for fd in fds:
            _close(fd)
        _close(record_r)
        raise
    try:
        return _supervise(argv, fds, record_r, timeout_s, prepare, isolation="bubblewrap", env={})
    finally:
        _close(record_r)


def _run_local(code: str, *, tests: str, setup: str, timeout_s: float, memory_mb: int) -> SandboxResult:
    exe, _ = _interpreter()
    record_r, record_w = os.pipe()
    with tempfile.TemporaryDirectory(prefix="wb-unsafe-") as tmp:
        Path(tmp, "harness.py").write_bytes(_harness_source())
        Path(tmp, "job.json").write_bytes(_job(code, tests, setup, record_fd=record_w))
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
               "PYTHONDONTWRITEBYTECODE": "1"}
        argv = [exe, "-I", "-S", os.path.join(tmp, "harness.py"), os.path.join(tmp, "job.json")]
        try:
            return _supervise(argv, [record_w], record_r, timeout_s,
                              _prepare_user(_rlimits(memory_mb, int(timeout_s) + 1)), isolation="unsafe-local",
                              env=env, cwd=tmp)
        finally:
            _close(record_r)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


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
            _close(fd)
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


__all__ = ["MODES", "SandboxResult", "SandboxUnavailable", "check", "describe", "kill_all", "run_python",
           "seccomp_program"]
