"""The backend protocol, the base a backend writes, and the registry of backend types (entry points).

The records a backend takes and returns (``Request``, ``Generation``, ``Timings``) live in
``core.types`` and are re-exported here, where plugins have always imported them from.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Protocol

from ..core.plugins import BACKENDS, backend_types, registered
from ..core.types import Generation as Generation
from ..core.types import Request as Request
from ..core.types import Timings as Timings
from ..core.types import TokenSource as TokenSource
from ..core.types import ToolCall as ToolCall

__all__ = ["Backend", "BackendBase", "Generation", "PluginBackend", "Request", "Timings", "TokenSource", "ToolCall",
           "backend_types", "build_backend", "declared"]

if TYPE_CHECKING:
    from ..core.config import ModelSpec

class Backend(Protocol):
    """What the engine needs from a model. ``generate`` is async and streams underneath.

    Besides the calls, a backend declares what it can do (``BackendBase`` gives the defaults of a
    backend that knows nothing special about itself); the engine reads these, never probes."""

    name: str
    max_parallel: int | None  # the most requests it can work on at once (in-process llama.cpp: its batch); None: any
    batches: bool  # decodes several of its requests together in this process (cost reads its measured batch)
    server_kind: str | None  # what serves the model (vllm, llama-server, ...), known after preflight
    server_slots: int | None  # sequences its server decodes at once, where it says (llama-server's slots)
    n_threads: int | None  # CPU threads it decodes with inside this process (for the busy-machine check)

    def identity(self) -> dict[str, Any]:
        """What makes this model's answers this model's: file hash, or endpoint + model id."""

    def manifest(self) -> dict[str, Any]:
        """Facts for the run manifest (versions, template hash, params); cheap, no model load."""

    async def preflight(self) -> None:
        """Fail fast with BackendUnavailable if the model cannot be reached or loaded."""

    async def generate(self, request: Request) -> Generation: ...

    async def aclose(self) -> None: ...

    def tool_support(self) -> str | None:
        """Why tool calls cannot work with this model, or None when they can."""

    def context_window(self) -> int | None:
        """Tokens of prompt and answer the model can hold, when known before a call."""

    def count_tokens(self, text: str) -> int | None:
        """``text`` in the model's own tokens, when this backend has its tokenizer here."""

    def runtime_facts(self) -> dict[str, Any] | None:
        """What was measured while it ran (resident memory, load time), after the run."""


class BackendBase(abc.ABC):
    """A backend's calls to write, and the declared capabilities of one that knows nothing special
    about itself: no limit on parallel requests, no server kind, no threads in this process, tools
    allowed, no context window or tokenizer known here, nothing measured."""

    name: str
    max_parallel: int | None = None
    batches: bool = False
    server_kind: str | None = None
    server_slots: int | None = None
    n_threads: int | None = None

    @abc.abstractmethod
    def identity(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def manifest(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    async def preflight(self) -> None: ...

    @abc.abstractmethod
    async def generate(self, request: Request) -> Generation: ...

    @abc.abstractmethod
    async def aclose(self) -> None: ...

    def tool_support(self) -> str | None:
        return None

    def context_window(self) -> int | None:
        return None

    def count_tokens(self, text: str) -> int | None:
        return None

    def runtime_facts(self) -> dict[str, Any] | None:
        return None


class PluginBackend(BackendBase):
    """A plugin's backend that implements only the calls: the plugin contract asks for no more, so the
    capabilities it does not declare take ``BackendBase``'s defaults - read here, once, at the
    plugin boundary."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        for attr in ("max_parallel", "batches", "server_kind", "server_slots", "n_threads"):
            if hasattr(inner, attr):
                setattr(self, attr, getattr(inner, attr))

    def identity(self) -> dict[str, Any]:
        return dict(self.inner.identity())

    def manifest(self) -> dict[str, Any]:
        return dict(self.inner.manifest())

    async def preflight(self) -> None:
        await self.inner.preflight()
        self.server_kind = getattr(self.inner, "server_kind", self.server_kind)

    async def generate(self, request: Request) -> Generation:
        generation: Generation = await self.inner.generate(request)
        return generation

    async def aclose(self) -> None:
        await self.inner.aclose()

    def tool_support(self) -> str | None:
        fn = getattr(self.inner, "tool_support", None)
        return fn() if fn is not None else None

    def context_window(self) -> int | None:
        fn = getattr(self.inner, "context_window", None)
        return fn() if fn is not None else None

    def count_tokens(self, text: str) -> int | None:
        fn = getattr(self.inner, "count_tokens", None)
        return fn(text) if fn is not None else None

    def runtime_facts(self) -> dict[str, Any] | None:
        fn = getattr(self.inner, "runtime_facts", None)
        return fn() if fn is not None else None


def build_backend(spec: "ModelSpec", base_dir: str = ".", expected_sha256: str | None = None) -> Backend:
    """Instantiate the backend a ModelSpec names, found by entry point (``weighbridge.backends``):
    the entry point is a class called as ``cls(spec, base_dir, expected_sha256)``; imported lazily,
    so the CLI starts fast and a broken plugin only matters to the models that use it."""
    from ..core.errors import BackendUnavailable

    ep = registered(BACKENDS).get(spec.backend)
    if ep is None:
        raise BackendUnavailable(spec.name, f"no backend '{spec.backend}' is installed (known: {', '.join(backend_types())})",
                                 "the backend's package is installed in this environment")
    try:
        cls = ep.load()
    except Exception as e:  # noqa: BLE001 - a plugin may fail in any way; say which and how
        raise BackendUnavailable(spec.name, f"backend plugin '{spec.backend}' ({ep.value}) failed to load: "
                                            f"{type(e).__name__}: {e}", "the plugin's package and its dependencies") from None
    return declared(cls(spec, base_dir, expected_sha256))


def declared(backend: Any) -> Backend:
    """A backend with its capabilities declared: itself when it derives from ``BackendBase``, else
    adapted once (a plugin's, or one a caller hands the engine)."""
    return backend if isinstance(backend, BackendBase) else PluginBackend(backend)
