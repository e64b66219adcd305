"""The backend protocol and the records every backend returns.

Timings use ``time.perf_counter_ns()``; time to first token stops at the first piece of generated
content (text, reasoning or tool-call text), never at a role-only chunk.
"""

from __future__ import annotations

import abc
import functools
import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from ..config import ModelSpec

TokenSource = Literal["server", "engine", "tokenizer", "chunks", "none"]


@dataclass
class Request:
    """What to send: chat messages (chat mode) or a prompt (completion mode), plus decoding params."""

    messages: list[dict[str, Any]] | None = None  # may hold assistant tool calls and tool results
    prompt: str | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int = 42
    stop: list[str] = field(default_factory=list)
    json_schema: dict[str, Any] | None = None  # constrain the reply (grammar / response_format) where supported
    tools: list[dict[str, Any]] | None = None  # OpenAI function tools offered to the model
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None  # {"type": "json_object"} or {"type": "json_schema", ...}

    def cache_fields(self) -> dict[str, Any]:
        """What identifies the request for the response cache; new fields count only when set, so
        requests made before they existed keep their keys."""
        return {k: v for k, v in self.__dict__.items()
                if v is not None or k not in ("tools", "tool_choice", "response_format")}

    def schema(self) -> dict[str, Any] | None:
        """The JSON schema the reply must follow, from ``json_schema`` or a json_schema ``response_format``."""
        if self.json_schema is not None:
            return self.json_schema
        rf = self.response_format or {}
        if rf.get("type") == "json_schema":
            return (rf.get("json_schema") or {}).get("schema") or {}
        return None


@dataclass
class Timings:
    """Absolute perf_counter_ns stamps of one request's life; durations derive from them."""

    sent: int = 0
    first_token: int | None = None
    last_token: int | None = None
    done: int = 0

    def mark_token(self) -> None:
        now = time.perf_counter_ns()
        if self.first_token is None:
            self.first_token = now
        self.last_token = now

    @property
    def latency_ms(self) -> float:
        return (self.done - self.sent) / 1e6

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_token is None else (self.first_token - self.sent) / 1e6

    @property
    def decode_ms(self) -> float | None:
        if self.first_token is None or self.last_token is None:
            return None
        return (self.last_token - self.first_token) / 1e6


@dataclass
class Generation:
    """One model answer with its usage and timings; what the store keeps and the scorers read."""

    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    token_source: TokenSource
    latency_ms: float
    ttft_ms: float | None
    decode_ms: float | None
    reasoning: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    tool_calls: list[dict[str, Any]] | None = None  # see backends/toolcalls.py for the shape

    @classmethod
    def answer_only(cls, text: str, tool_calls: list[dict[str, Any]] | None = None) -> "Generation":
        """An answer known only by its content (a gateway answer a cascade checks): no usage, no timings."""
        return cls(text=text, finish_reason=None, prompt_tokens=None, completion_tokens=None, token_source="none",
                   latency_ms=0.0, ttft_ms=None, decode_ms=None, tool_calls=tool_calls)

    @classmethod
    def from_timings(cls, timings: Timings, **kw: Any) -> "Generation":
        return cls(latency_ms=timings.latency_ms, ttft_ms=timings.ttft_ms, decode_ms=timings.decode_ms, **kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Generation":
        """A stored or cached generation, its figures checked again: a store written by an older
        version may hold NaN, infinite or negative counts and times. A bad count becomes unknown (None);
        a bad time is dropped and named in ``raw["invalid_figures"]`` so no statistic uses it."""
        g = cls(**{k: d.get(k) for k in cls.__dataclass_fields__ if k in d})  # type: ignore[arg-type]  # checked below
        bad = []
        for name in ("prompt_tokens", "completion_tokens"):
            v = getattr(g, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 100_000_000):
                setattr(g, name, None)
                bad.append(name)
        for name in ("latency_ms", "ttft_ms", "decode_ms"):
            v = getattr(g, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0):
                setattr(g, name, 0.0 if name == "latency_ms" else None)
                bad.append(name)
        if not isinstance(g.raw, dict):
            g.raw = {}
        if bad:
            g.raw = {**g.raw, "invalid_figures": bad}
        return g

    @property
    def timed(self) -> bool:
        """Whether ``latency_ms`` is a real measurement (see ``from_dict``)."""
        return "latency_ms" not in (self.raw.get("invalid_figures") or ())


class Backend(Protocol):
    """What the engine needs from a model. ``generate`` is async and streams underneath.

    Besides the calls, a backend declares what it can do (``BackendBase`` gives the defaults of a
    backend that knows nothing special about itself); the engine reads these, never probes."""

    name: str
    max_parallel: int | None  # the most requests it can work on at once (in-process llama.cpp: 1); None: any
    server_kind: str | None  # what serves the model (vllm, llama-server, ...), known after preflight
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
    server_kind: str | None = None
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
        for attr in ("max_parallel", "server_kind", "n_threads"):
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


BACKEND_GROUP = "weighbridge.backends"


@functools.cache
def _backend_entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=BACKEND_GROUP)}


def backend_types() -> list[str]:
    """Every registered backend: the built-ins (llamacpp, openai) and any plugin's, by entry point."""
    return sorted(_backend_entry_points())


def build_backend(spec: "ModelSpec", base_dir: str = ".", expected_sha256: str | None = None) -> Backend:
    """Instantiate the backend a ModelSpec names, found by entry point (``weighbridge.backends``):
    the entry point is a class called as ``cls(spec, base_dir, expected_sha256)``; imported lazily,
    so the CLI starts fast and a broken plugin only matters to the models that use it."""
    from ..errors import BackendUnavailable

    ep = _backend_entry_points().get(spec.backend)
    if ep is None:
        raise BackendUnavailable(spec.name, f"no backend '{spec.backend}' is installed (known: {', '.join(backend_types())})",
                                 "the backend's package is installed in this environment")
    try:
        cls = ep.load()
    except Exception as e:  # noqa: BLE001 - a plugin may fail in any way; say which and how
        raise BackendUnavailable(spec.name, f"backend plugin '{spec.backend}' ({ep.value}) failed to load: "
                                            f"{type(e).__name__}: {e}", "the plugin's package and its dependencies") from None
    backend = cls(spec, base_dir, expected_sha256)
    return backend if isinstance(backend, BackendBase) else PluginBackend(backend)
