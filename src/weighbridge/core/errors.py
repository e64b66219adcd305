"""One family for every exception weighbridge raises on purpose: each derives from WeighbridgeError, so
callers catch one family. The shared ones live here; a module's own (LockError, GGUFError,
UpstreamError, Denied, …) sits beside its module and derives from these.

Every message is written for the person at the terminal: it names the file, line and field (for
config and suites) or the model and what to check (for backends).
"""

from __future__ import annotations


class WeighbridgeError(Exception):
    """Base class: the CLI prints these without a traceback and exits 2."""


class MissingDependency(WeighbridgeError):
    """An optional package a setting needs is not installed (the message says which extra to install)."""


class ConfigError(WeighbridgeError):
    """A config, suite or profile file is malformed. Carries where, so the message can point at it."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.path, self.line, self.field, self.detail = path, line, field, message
        where = path or "<config>"
        if line is not None:
            where += f":{line}"
        if field:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")


class BackendUnavailable(WeighbridgeError):
    """A model cannot be reached or loaded at all (missing file, refused connection, bad key).

    Raised before a run starts whenever possible, so no half-written run is left behind.
    """

    def __init__(self, model: str, problem: str, hint: str) -> None:
        self.model, self.problem, self.hint = model, problem, hint
        super().__init__(f"model '{model}': {problem}. Check: {hint}")


class BackendError(WeighbridgeError):
    """One request failed after its retries. The engine records it against the case and moves on."""

    def __init__(self, message: str, *, kind: str = "error", retryable: bool = False,
                 retry_after: float | None = None) -> None:
        self.kind, self.retryable = kind, retryable
        self.retry_after = retry_after  # seconds the server asked for before another try (wire.retry)
        super().__init__(message)
