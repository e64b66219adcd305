"""The scorer interface, the registry of scorer types (entry points, built-ins included), and the
text clean-up every scorer shares.

Every scorer is reached the same way: ``await scorer.evaluate(case, generation, ctx)``. Most only
read the answer's text (``TextScorer``: write ``score(text, expected)``); others read the tool calls,
ask a judge through ``ctx``, or run code in a thread – the engine no longer tells them apart.

Scorer types are registered as entry points in the ``weighbridge.scorers`` group, the built-ins in
weighbridge's own ``pyproject.toml`` exactly like a plugin's: the name is the ``type:`` a suite
writes, the object a class (or factory) taking the validated settings, with a ``Spec`` attribute
(a ``ScorerSpec`` subclass; none means the scorer takes no settings).
"""

from __future__ import annotations

import asyncio
import re
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict
from ..core.errors import WeighbridgeError
from ..core.plugins import SCORERS, registered
from ..core.types import Score as Score

if TYPE_CHECKING:
    from ..core.types import Generation, Request

_THINK = re.compile(r"<think>.*?</think>\s*", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


class Target(Protocol):
    """What a scorer may read about what it judges: the expected answer and the conversation that
    was asked. A suite's ``Case`` is one; a gateway cascade's check builds one from the request."""

    @property
    def expected(self) -> Any: ...

    def rendered_messages(self) -> list[dict[str, Any]]: ...


class JudgeContext(Protocol):
    """How a scorer asks a judge model (by its name; None: the first judge) - through the run's
    response cache in a bakeoff, through the plan's judges in the gateway."""

    async def call(self, judge: str | None, request: Request) -> Generation: ...


class Scorer(Protocol):
    """One way to judge an answer: ``evaluate`` is the only call anyone makes on a scorer."""

    kind: str

    async def evaluate(self, case: Target, generation: Generation, ctx: JudgeContext) -> Score: ...


class TextScorer:
    """A scorer that reads only the answer's text: it writes ``score(text, expected)``."""

    kind = "text"

    def score(self, text: str, expected: Any) -> Score:  # pragma: no cover - each subclass has its own
        raise NotImplementedError

    async def evaluate(self, case: Target, generation: Generation, ctx: JudgeContext) -> Score:
        return self.score(generation.text, case.expected)


class ThreadedTextScorer(TextScorer):
    """A text scorer whose work blocks (running code in a sandbox): it runs in a worker thread."""

    async def evaluate(self, case: Target, generation: Generation, ctx: JudgeContext) -> Score:
        return await asyncio.to_thread(self.score, generation.text, case.expected)


class _Adapted:
    """A plugin scorer that wrote only ``score(text, expected)``, given the common interface."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.kind = getattr(inner, "kind", type(inner).__name__)

    async def evaluate(self, case: Target, generation: Generation, ctx: JudgeContext) -> Score:
        result = self.inner.score(generation.text, case.expected)
        if not isinstance(result, Score):
            raise TypeError(f"scorer '{self.kind}' returned {type(result).__name__}, not a Score")
        return result


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
            return str(body).strip()
    return str(blocks[0][1]).strip() if blocks else text.strip()




class ScorerPluginError(WeighbridgeError, ValueError):
    """A scorer entry point that cannot be loaded or used: named with the package it came from."""


@cache
def _load(kind: str) -> Any:
    ep = registered(SCORERS)[kind]
    where = f"{ep.value}" + (f" (package {ep.dist.name})" if ep.dist is not None else "")
    try:
        obj = ep.load()
    except Exception as e:  # noqa: BLE001 - a plugin may fail in any way; say which and how
        raise ScorerPluginError(f"scorer plugin '{kind}' from {where} failed to load: {type(e).__name__}: {e}") from None
    spec = getattr(obj, "Spec", ScorerSpec)
    if not (isinstance(spec, type) and issubclass(spec, BaseModel)) or not callable(obj):
        raise ScorerPluginError(f"scorer plugin '{kind}' from {where} is not a scorer: it needs to be callable with "
                                "its settings and have a Spec (a weighbridge.scorers.ScorerSpec subclass)")
    return obj


def scorer_types() -> list[str]:
    kinds = sorted(registered(SCORERS))
    if not kinds:
        raise ScorerPluginError("no scorer types are registered: weighbridge is not installed as a package "
                                "(pip install -e . registers its entry points)")
    return kinds


def build_scorer(spec: str | dict[str, Any], *, sandbox: str = "bubblewrap") -> Scorer:
    """Accepts ``"exact"`` or ``{"type": "regex", "pattern": ...}``; raises ValueError on bad specs.
    ``sandbox`` is the run's isolation for scorers that execute model output (they carry ``mode``)."""
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError("a scorer is a name like 'exact' or a mapping with 'type:'")
    kind = spec["type"]
    if kind not in registered(SCORERS):
        raise ValueError(f"unknown scorer type '{kind}' (known: {', '.join(scorer_types())})")
    factory = _load(kind)
    spec_cls = getattr(factory, "Spec", ScorerSpec)
    settings = spec_cls.model_validate({k: v for k, v in spec.items() if k != "type"})  # ValidationError names the field
    scorer = factory(settings)
    if hasattr(scorer, "mode"):
        scorer.mode = sandbox
    if not hasattr(scorer, "evaluate"):
        if not hasattr(scorer, "score"):
            raise ScorerPluginError(f"scorer '{kind}' has neither evaluate(case, generation, ctx) nor score(text, expected)")
        scorer = _Adapted(scorer)
    if not getattr(scorer, "kind", None):
        scorer.kind = kind
    built: Scorer = scorer
    return built
