"""The records every layer passes: what is asked of a model (``Request``), what it answered and how
fast (``Generation``, ``Timings``), and how an answer was judged (``Score``, which owns the pass rule).

Timings use ``time.perf_counter_ns()``; time to first token stops at the first piece of generated
content (text, reasoning or tool-call text), never at a role-only chunk.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypedDict

class ToolCall(TypedDict):
    """One tool call as every backend reports it (``backends/toolcalls.py`` makes them): ``arguments``
    is the parsed JSON object, None when it does not parse; ``raw`` the exact string the model wrote;
    ``error`` why it did not parse."""

    id: str | None
    name: str
    arguments: dict[str, Any] | None
    raw: str
    error: str | None


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
    thinking: Literal["on", "off"] | None = None  # a reasoning model asked to think or not; None: its default
    thinking_budget: int | None = None  # the most tokens of thinking before the answer

    def cache_fields(self) -> dict[str, Any]:
        """What identifies the request for the response cache; new fields count only when set, so
        requests made before they existed keep their keys."""
        return {k: v for k, v in self.__dict__.items()
                if v is not None or k not in ("tools", "tool_choice", "response_format", "thinking",
                                              "thinking_budget")}

    @property
    def applied_thinking_budget(self) -> int | None:
        """The thinking budget that applies: none when thinking is switched off."""
        return self.thinking_budget if self.thinking != "off" else None

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
    tool_calls: list[ToolCall] | None = None

    @classmethod
    def answer_only(cls, text: str, tool_calls: list[ToolCall] | None = None) -> "Generation":
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


@dataclass
class Score:
    passed: bool
    value: float
    reason: str

    @staticmethod
    def all_passed(scores: "Sequence[tuple[str, Score]]") -> bool:
        """The pass rule, decided here only: a job passes when it was scored and every scorer passed
        (an answer no scorer looked at is not a pass)."""
        return bool(scores) and all(s.passed for _, s in scores)
