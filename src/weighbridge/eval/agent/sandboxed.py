"""An agent environment in its own sandboxed process: one per episode, holding the state and answering
the model's tool calls over a pipe.

Model-chosen arguments reach environment code, and the environment's code comes from a suite file,
so neither runs in weighbridge's process: the environment lives in the same bubblewrap confinement as
model-written code (``scorers/confine.py``: new namespaces, no network, the sandbox uid, seccomp,
rlimits, a size-capped tmpfs as its only writable place), started once per episode. Its host program
(``envhost.py``, standard library only) also derives the tools' schemas there, so importing the
environment never happens outside.

Bounds on everything that crosses: arguments over ``max_args_bytes`` are refused before they are
sent; an answer over ``max_result_bytes``, a call past ``call_timeout_s``, or a host that exits
ends the episode's environment (the process group is killed) with the reason, which the loop turns
into the episode's termination reason. What the environment prints is read apart and only its tail
is kept, so a flood can neither block the host nor reach a terminal.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ...core.errors import WeighbridgeError
from ...scorers.confine import (OUTSIDE_UID_BASE, SandboxUnavailable, bwrap, close_fd, confined_argv,
                                interpreter, library_stage, memfd, prepare_root, prepare_user, rlimits, seccomp_program,
                                stage_dir)

_KEEP = 4000  # characters of the environment's own output kept (its tail)
LIB = "/.wb/lib"  # where an environment's libraries appear inside the sandbox (read-only)


class EnvironmentFailed(WeighbridgeError):
    """The environment process cannot go on (did not start, timed out, flooded, exited): the episode ends."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.kind = kind  # "start", "timeout", "flood", "exited"


@dataclass
class ToolResult:
    """What one call returned: its JSON result, or the error the model is shown."""

    ok: bool
    result: Any = None
    error: str | None = None
    ms: float = 0.0


def _host_source() -> bytes:
    return (resources.files("weighbridge.eval.agent") / "envhost.py").read_bytes()


class SandboxedEnvironment:
    def __init__(self, source: str, class_name: str, initial_state: dict[str, Any], *, filename: str = "environment.py",
                 mode: str = "bubblewrap", call_timeout_s: float = 10.0, start_timeout_s: float = 30.0,
                 max_args_bytes: int = 1 << 20, max_result_bytes: int = 1 << 18, memory_mb: int = 512,
                 libraries: dict[str, str] | None = None) -> None:
        self.source, self.class_name, self.initial_state, self.filename = source, class_name, initial_state, filename
        self.libraries = dict(libraries or {})  # import name -> installed package directory, bound read-only
        self.mode, self.call_timeout_s, self.start_timeout_s = mode, call_timeout_s, start_timeout_s
        self.max_args_bytes, self.max_result_bytes, self.memory_mb = max_args_bytes, max_result_bytes, memory_mb
        self.proc: subprocess.Popen[bytes] | None = None
        self._answers = -1
        self._buffer = bytearray()
        self._output = bytearray()
        self.tools: list[dict[str, Any]] = []
        self._tmp: str | None = None  # unsafe-local: the host's files

    # -- lifetime -----------------------------------------------------------------------------------
    def start(self) -> list[dict[str, Any]]:
        """Start the host; the tools it offers (OpenAI function tools). Raises EnvironmentFailed."""
        answer_r, answer_w = os.pipe()
        job = {"source": self.source, "filename": self.filename, "class": self.class_name,
               "initial_state": self.initial_state, "answer_fd": answer_w, "sys_path": [LIB] if self.libraries else []}
        fds = [answer_w]
        limits = rlimits(self.memory_mb, 3600)  # CPU seconds: the wall-clock bounds are per call, below
        try:
            exe, prefix = interpreter()
            if self.mode == "unsafe-local":
                tmp = self._tmp = tempfile.mkdtemp(prefix="wb-env-")
                Path(tmp, "envhost.py").write_bytes(_host_source())
                if self.libraries:
                    os.mkdir(os.path.join(tmp, "lib"))
                    for name, where in self.libraries.items():
                        os.symlink(where, os.path.join(tmp, "lib", name))
                    job["sys_path"] = [os.path.join(tmp, "lib")]
                Path(tmp, "job.json").write_text(json.dumps(job), encoding="utf-8")
                argv = [exe, "-I", "-S", os.path.join(tmp, "envhost.py"), os.path.join(tmp, "job.json")]
                prepare, env, cwd = prepare_user(limits), {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp}, tmp
            else:
                binary, bpf = bwrap(), seccomp_program()
                as_root = os.geteuid() == 0
                stage = stage_dir() if as_root else None
                host_fd = memfd("wb-envhost", _host_source())
                fds.append(host_fd)
                job_fd = memfd("wb-envjob", json.dumps(job).encode("utf-8"))
                fds.append(job_fd)
                seccomp_fd = memfd("wb-seccomp", bpf)
                fds.append(seccomp_fd)
                points = {name: library_stage(name) for name in self.libraries} if as_root else dict(self.libraries)
                argv = confined_argv(binary, prefix, stage, seccomp_fd, {"/.wb/envhost.py": host_fd, "/.wb/job.json": job_fd},
                                     [exe, "-I", "-S", "/.wb/envhost.py", "/.wb/job.json"],
                                     {f"{LIB}/{name}": point for name, point in points.items()})
                uid = OUTSIDE_UID_BASE + secrets.randbelow(1 << 24)
                prepare = prepare_root(prefix, stage, uid, limits,
                                       tuple((self.libraries[n], points[n]) for n in self.libraries)) \
                    if as_root and stage else prepare_user(limits)
                env, cwd = {}, None
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         pass_fds=tuple(fds), preexec_fn=prepare, start_new_session=True, env=env,
                                         cwd=cwd, close_fds=True)
        except SandboxUnavailable as e:
            close_fd(answer_r)
            raise EnvironmentFailed(f"not run: {e}", "start") from None
        except OSError as e:
            close_fd(answer_r)
            raise EnvironmentFailed(f"the environment's sandbox did not start: {e}", "start") from None
        finally:
            for fd in fds:
                close_fd(fd)
        self._answers = answer_r
        for fd in (answer_r, self.proc.stdout.fileno()):  # type: ignore[union-attr]
            os.set_blocking(fd, False)
        first = self._read_answer(self.start_timeout_s)
        if not first.get("ok"):
            self.close()
            raise EnvironmentFailed(str(first.get("error"))[:2000], "start")
        self.tools = list(first["result"]["tools"])
        return self.tools

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream:
                    stream.close()
        if self._answers >= 0:
            close_fd(self._answers)
            self._answers = -1
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "SandboxedEnvironment":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def output(self) -> str:
        """The tail of what the environment printed."""
        return self._output[-_KEEP:].decode("utf-8", "replace")

    # -- calls --------------------------------------------------------------------------------------
    def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        """One tool call. A tool's exception or a bad argument is a result the model sees (``ok`` false);
        a host that cannot go on raises EnvironmentFailed."""
        t = time.perf_counter()
        payload = json.dumps({"op": "call", "name": name, "arguments": arguments}).encode() + b"\n"
        if len(payload) > self.max_args_bytes:
            return ToolResult(False, error=f"the arguments are {len(payload):,} bytes; a call takes at most "
                                           f"{self.max_args_bytes:,}", ms=0.0)
        got = self._ask(payload, self.call_timeout_s)
        ms = (time.perf_counter() - t) * 1000
        if got.get("ok"):
            return ToolResult(True, result=got.get("result"), ms=ms)
        return ToolResult(False, error=str(got.get("error"))[:2000], ms=ms)

    def state(self) -> Any:
        """The environment's state as JSON (its ``state()`` hook, else its public attributes)."""
        got = self._ask(b'{"op": "state"}\n', self.call_timeout_s)
        if not got.get("ok"):
            raise EnvironmentFailed(f"the environment's state could not be read: {got.get('error')}", "exited")
        return got.get("result")

    def _ask(self, payload: bytes, timeout_s: float) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            raise EnvironmentFailed("the environment is not running", "exited")
        try:
            self.proc.stdin.write(payload)  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):
            self.close()
            raise EnvironmentFailed(f"the environment exited ({self.output[-200:]!r})", "exited") from None
        return self._read_answer(timeout_s)

    def _read_answer(self, timeout_s: float) -> dict[str, Any]:
        """One answer line within the deadline and the size bound, draining the host's output meanwhile."""
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        out_fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(self._answers, selectors.EVENT_READ)
            sel.register(out_fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.close()
                    raise EnvironmentFailed(f"a call ran past {timeout_s:g} s (the environment was stopped)", "timeout")
                for key, _ in sel.select(timeout=min(left, 0.5)):
                    try:
                        chunk = os.read(key.fd, 65536)
                    except BlockingIOError:
                        continue
                    if key.fd == out_fd:
                        self._output += chunk
                        del self._output[:-4 * _KEEP]
                        if not chunk:
                            sel.unregister(out_fd)
                        continue
                    if not chunk:
                        self.close()
                        raise EnvironmentFailed(f"the environment exited mid-call ({self.output[-200:]!r})", "exited")
                    self._buffer += chunk
                    if len(self._buffer) > self.max_result_bytes:
                        self.close()
                        raise EnvironmentFailed(f"an answer passed {self.max_result_bytes:,} bytes (the environment "
                                                "was stopped)", "flood")
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        try:
            answer = json.loads(line)
        except (ValueError, RecursionError):  # nested past what the parser follows: not an answer either
            self.close()
            raise EnvironmentFailed("the environment's answer was not JSON", "exited") from None
        if not isinstance(answer, dict):
            self.close()
            raise EnvironmentFailed("the environment's answer was not an object", "exited")
        return answer
