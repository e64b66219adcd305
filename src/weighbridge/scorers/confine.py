"""How a process is confined: bubblewrap's command line, the seccomp filter, the rlimits, and the
uid and mounts it starts under. ``sandbox.py`` runs model-written Python checks inside this; anything
else that must run model-driven code (an agent's environment) builds on the same confinement.

Why each piece is there is told in ``sandbox.py``'s docstring; this module holds the mechanics so the
runner stays about running a check and judging its record.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
from importlib import resources
from typing import Any, Callable

from ..core.errors import WeighbridgeError

SANDBOX_UID = 1000
OUTSIDE_UID_BASE = 2_000_000_000
WORKDIR = "/sandbox"
TMPFS_BYTES = 64 * 1024 * 1024
FILE_BYTES = 16 * 1024 * 1024
OPEN_FILES = 64
PROCESSES = 16

_CLONE_NEWNS = 0x00020000
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 0x4000, 1 << 18


class SandboxUnavailable(WeighbridgeError):
    """The isolation a config asked for cannot be had on this machine; the message says how to get it."""


_lock = threading.Lock()
_cache: dict[str, Any] = {}


def system_python() -> str | None:
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
    python = system_python()
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


def bwrap() -> str:
    found = shutil.which("bwrap", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin", "/bin"]))
    if found is None:
        raise SandboxUnavailable("python_tests needs bubblewrap to run model code in isolation, and it is not "
                                 "installed: apt-get install bubblewrap (dnf/pacman: bubblewrap). To run model code "
                                 "with no isolation at all, set `sandbox: unsafe-local` in the config")
    return found


def bwrap_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "bubblewrap"
    return out or "bubblewrap"


def interpreter() -> tuple[str, str]:
    """(the real interpreter binary, its installation prefix): a venv's python is a link to these."""
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    return exe, os.path.realpath(sys.base_prefix)


def stage_dir() -> str:
    """A world-reachable mount point for the interpreter's prefix (root only, see ``prepare_root``)."""
    with _lock:
        if "stage" not in _cache:
            root = tempfile.mkdtemp(prefix="wb-sandbox-stage-")
            os.chmod(root, 0o711)
            os.mkdir(os.path.join(root, "prefix"), 0o755)
            atexit.register(shutil.rmtree, root, True)
            _cache["stage"] = os.path.join(root, "prefix")
        return _cache["stage"]


def library_stage(name: str) -> str:
    """A world-reachable mount point for one library directory an environment reads (root only)."""
    base = os.path.join(os.path.dirname(stage_dir()), "lib")
    with _lock:
        os.makedirs(base, 0o755, exist_ok=True)
        point = os.path.join(base, name)
        os.makedirs(point, 0o755, exist_ok=True)
    return point


def memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)  # close-on-exec here; passed on explicitly with pass_fds
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def rlimits(memory_mb: int, cpu_s: int) -> list[tuple[int, int]]:
    mem = memory_mb * 1024 * 1024
    return [(resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu_s), (resource.RLIMIT_FSIZE, FILE_BYTES),
            (resource.RLIMIT_NOFILE, OPEN_FILES), (resource.RLIMIT_CORE, 0)]


def bind_args(prefix: str, stage: str | None) -> list[str]:
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


def prepare_root(prefix: str, stage: str, uid: int, limits: list[tuple[int, int]],
                 libraries: tuple[tuple[str, str], ...] = ()) -> Callable[[], None]:
    """Runs in the child between fork and exec when weighbridge is root. The interpreter may sit
    under a home only root can enter (pyenv in /root): bind it onto a world-reachable mount point
    in a private mount namespace of this child alone, then become a throwaway uid and start
    bubblewrap as that user; ``libraries`` (host directory, mount point) the same way. Only C calls
    here: this runs in a forked copy of a threaded process."""
    libc = ctypes.CDLL(None, use_errno=True)
    src, dst = prefix.encode(), stage.encode()
    more = [(a.encode(), b.encode()) for a, b in libraries]

    def prepare() -> None:
        if libc.unshare(_CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
            raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
        if libc.mount(src, dst, None, _MS_BIND | _MS_REC, None) != 0:
            raise OSError(ctypes.get_errno(), "mount --bind prefix")
        for lib_src, lib_dst in more:
            if libc.mount(lib_src, lib_dst, None, _MS_BIND | _MS_REC, None) != 0:
                raise OSError(ctypes.get_errno(), "mount --bind library")
        for which, value in limits:
            resource.setrlimit(which, (value, value))
        resource.setrlimit(resource.RLIMIT_NPROC, (PROCESSES + 8, PROCESSES + 8))  # counted outside, per uid
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)

    return prepare


def prepare_user(limits: list[tuple[int, int]]) -> Callable[[], None]:
    def prepare() -> None:
        for which, value in limits:
            resource.setrlimit(which, (value, value))
    return prepare


def close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def confined_argv(binary: str, prefix: str, stage: str | None, seccomp_fd: int, files: dict[str, int],
                  program: list[str], dirs: dict[str, str] | None = None) -> list[str]:
    """bubblewrap's command line for one confined program: every namespace new, no capabilities, the
    sandbox uid, the interpreter read-only, a size-capped tmpfs as the working directory, ``files``
    (path inside -> a memfd) and ``dirs`` (path inside -> directory outside) bound read-only, the
    seccomp filter, and a clean environment."""
    bound = [a for path, fd in files.items() for a in ("--ro-bind-data", str(fd), path)]
    bound += [a for path, outside in (dirs or {}).items() for a in ("--ro-bind", outside, path)]
    return [binary, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox",
            *bind_args(prefix, stage), "--proc", "/proc", "--dev", "/dev",
            "--perms", "0700", "--size", str(TMPFS_BYTES), "--tmpfs", WORKDIR, *bound,
            "--chdir", WORKDIR, "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", WORKDIR,
            "--setenv", "TMPDIR", WORKDIR, "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONHASHSEED", "0",
            "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--seccomp", str(seccomp_fd), "--", *program]
