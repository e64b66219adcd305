"""Scorer protocol, the registry of scorer types, and the text clean-up every scorer shares."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from pydantic import BaseModel, ConfigDict

_THINK = re.compile(r"<think>.*?</think>\s*", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


@dataclass
class Score:
    passed: bool
    value: float
    reason: str


class Scorer(Protocol):
    kind: str

    def score(self, text: str, expected: Any) -> Score: ...


class ScorerSpec(BaseModel):
    """Base for each scorer's settings; unknown keys are errors so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")


def final_answer(text: str) -> str:
    """Drop reasoning blocks (``<think>…</think>``): scorers judge the answer, not the thinking."""
    return _THINK.sub("", text).strip()


def code_block(text: str, prefer: tuple[str, ...] = ()) -> str:
    """The first fenced block in a preferred language, else the first block, else the text itself."""
    blocks = _FENCE.findall(text)
    for lang, body in blocks:
        if lang.lower() in prefer:
            return body.strip()
    return blocks[0][1].strip() if blocks else text.strip()


_REGISTRY: dict[str, tuple[type[ScorerSpec], Callable[[Any], Scorer]]] = {}


def register(kind: str, spec: type[ScorerSpec]) -> Callable[[Callable[[Any], Scorer]], Callable[[Any], Scorer]]:
    def deco(factory: Callable[[Any], Scorer]) -> Callable[[Any], Scorer]:
        _REGISTRY[kind] = (spec, factory)
        return factory
    return deco


def scorer_types() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    from . import basic, code, judge, refusal, schema, tools  # noqa: F401  (registration side effect)


def build_scorer(spec: str | dict[str, Any], *, sandbox: str = "bubblewrap") -> Scorer:
    """Accepts ``"exact"`` or ``{"type": "regex", "pattern": ...}``; raises ValueError on bad specs.
    ``sandbox`` is the run's isolation for scorers that execute model output (they carry ``mode``)."""
    _load_builtin()
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError("a scorer is a name like 'exact' or a mapping with 'type:'")
    kind = spec["type"]
    if kind not in _REGISTRY:
        raise ValueError(f"unknown scorer type '{kind}' (known: {', '.join(sorted(_REGISTRY))})")
    spec_cls, factory = _REGISTRY[kind]
    settings = spec_cls.model_validate({k: v for k, v in spec.items() if k != "type"})
    scorer = factory(settings)
    if hasattr(scorer, "mode"):
        scorer.mode = sandbox  # type: ignore[attr-defined]
    return scorer
