"""Run untrusted, model-written Python in a child process that cannot hurt the run or the machine.

Layers, each catching what the one before may miss:
1. a fresh process in its own session, killed as a group at a wall-clock limit;
2. rlimits: address space (memory), CPU seconds, file size, open files, no core dumps, and few
   processes (effective for non-root; as root the child also drops to ``nobody`` so it applies);
3. a private network namespace where the kernel allows one (root, or unprivileged user namespaces);
4. an audit hook installed before the model's code runs that refuses sockets, process creation,
   ctypes and writes outside the temporary working directory.
A fork bomb or an endless loop therefore fails the case, never the run.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_NOBODY = 65534

_GUARD = textwrap.dedent('''\
    import sys as _sys, os as _os
    def _wb_install_guard():
        root = _os.path.realpath(_os.getcwd())
        banned = ("socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
                  "os.forkpty", "os.system", "os.kill", "os.killpg", "ctypes.", "pty.", "winreg.")
        path_events = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown",
                       "os.truncate", "os.symlink", "os.link", "shutil.rmtree", "os.utime"}
        realpath, fspath = _os.path.realpath, _os.fspath
        def inside(p):
            try:
                p = realpath(fspath(p))
            except TypeError:
                return True  # a file descriptor: it was opened through this hook already
            return p == root or p.startswith(root + "/")
        def hook(event, args):
            if event.startswith(banned):
                raise PermissionError("sandbox: " + event + " is not allowed")
            if event == "open" and args[0] is not None:
                mode, flags = args[1] or "r", args[2] or 0
                writes = any(c in str(mode) for c in "wax+") or flags & (_os.O_WRONLY | _os.O_RDWR | _os.O_CREAT)
                if writes and not inside(args[0]):
                    raise PermissionError("sandbox: writing outside the sandbox directory is not allowed")
            elif event in path_events and args and not all(inside(a) for a in args[:2] if isinstance(a, (str, bytes, _os.PathLike))):
                raise PermissionError("sandbox: " + event + " outside the sandbox directory is not allowed")
        _sys.addaudithook(hook)
    _wb_install_guard()
    del _wb_install_guard
''')


@dataclass
class SandboxResult:
    passed: bool
    returncode: int | None
    timed_out: bool
    stdout: str
    stderr: str
    isolation: str

    @property
    def reason(self) -> str:
        if self.timed_out:
            return "timed out (wall-clock limit reached; killed)"
        if self.passed:
            return "all tests passed"
        tail = (self.stderr.strip().splitlines() or [""])[-1]
        if self.returncode is not None and self.returncode < 0:
            return f"killed by signal {-self.returncode} ({tail or 'resource limit'})"
        return tail or f"exit status {self.returncode}"


def _try_unshare_net() -> str:
    libc = ctypes.CDLL(None, use_errno=True)
    if os.geteuid() == 0 and libc.unshare(_CLONE_NEWNET) == 0:
        return "netns"
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0:
        return "userns+netns"
    return "none"


def _limits(memory_mb: int, cpu_s: int) -> None:
    mem = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024 * 1024,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (16, 16))


def _world_can_run(executable: str) -> bool:
    """Dropping to nobody only works if nobody can reach the interpreter (not so under /root)."""
    path = os.path.realpath(executable)
    parts = path.split("/")
    for i in range(2, len(parts)):
        if not os.stat("/".join(parts[:i]) or "/").st_mode & 0o001:
            return False
    return bool(os.stat(path).st_mode & 0o001)


def isolation_available() -> str:
    """Which network layer this machine grants a child (for the manifest and the tests)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        try:
            kind = _try_unshare_net()
        except Exception:
            kind = "none"
        os.write(w, kind.encode())
        os._exit(0)
    os.close(w)
    kind = os.read(r, 64).decode() or "none"
    os.close(r)
    os.waitpid(pid, 0)
    return kind


def run_python(source: str, *, timeout_s: float = 10.0, memory_mb: int = 512) -> SandboxResult:
    """Run ``source`` under the layers above; passed means exit status 0 within the limits."""
    with tempfile.TemporaryDirectory(prefix="wb-sandbox-") as tmp:
        os.chmod(tmp, 0o777)  # the child may run as nobody
        prog = os.path.join(tmp, "main.py")
        with open(prog, "w", encoding="utf-8") as f:
            f.write(_GUARD + "\n" + source + "\n")
        os.chmod(prog, 0o644)
        iso_r, iso_w = os.pipe()
        drop_to_nobody = os.geteuid() == 0 and _world_can_run(sys.executable)

        def _prepare() -> None:  # runs in the child between fork and exec
            try:
                kind = _try_unshare_net()
            except Exception:
                kind = "none"
            os.write(iso_w, kind.encode())
            os.close(iso_w)
            _limits(memory_mb, int(timeout_s) + 1)
            if drop_to_nobody:
                os.setgroups([])
                os.setgid(_NOBODY)
                os.setuid(_NOBODY)

        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONHASHSEED": "0", "LANG": "C.UTF-8"}
        proc = subprocess.Popen([sys.executable, "-I", "-S", "main.py"], cwd=tmp, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, preexec_fn=_prepare, pass_fds=(iso_w,))
        os.close(iso_w)
        timed_out = False
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
        isolation = os.read(iso_r, 64).decode() or "none"
        os.close(iso_r)
        return SandboxResult(passed=not timed_out and proc.returncode == 0, returncode=proc.returncode,
                             timed_out=timed_out, stdout=out.decode("utf-8", "replace")[-4000:],
                             stderr=err.decode("utf-8", "replace")[-4000:], isolation=isolation)
