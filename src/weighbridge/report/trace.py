"""An agent episode as a page shows it: each user turn, then each step - the model's text, its calls
with their arguments pretty-printed, what each call returned or why it failed - then why the episode
stopped and where its end state differs from the gold calls' state. Everything in a trace came from
a model or an environment: the template escapes it all, and long values are cut here, and say so."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..core.jsondiff import canonical, differences

MAX_SHOWN = 3000  # characters of one argument list or result
MAX_DIFFS = 20


def _pretty(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, indent=2, default=repr) if not isinstance(value, str) else value
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + f"… [{len(text):,} characters]"


@dataclass
class TraceCall:
    name: str
    arguments: str
    ok: bool
    valid: bool
    result: str


@dataclass
class TraceStep:
    text: str
    calls: list[TraceCall]
    latency_ms: float | None
    tokens: int | None


@dataclass
class TraceTurn:
    user: str
    steps: list[TraceStep] = field(default_factory=list)
    left_gold: str | None = None  # where the state after this turn first differs from the gold's


@dataclass
class TraceView:
    turns: list[TraceTurn]
    termination: str
    reason: str
    end_differences: list[str]
    more_differences: int
    environment: str


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def trace_view(trace: dict[str, Any], user_turns: list[str]) -> TraceView:
    """The page's view of one stored episode (``raw["agent"]``)."""
    gold = trace.get("gold_states") or []
    states = trace.get("turn_states") or []
    turns = [TraceTurn(user=t) for t in user_turns]
    for step in trace.get("steps") or []:
        at = step.get("turn") if isinstance(step.get("turn"), int) else 0
        if not 0 <= at < len(turns):
            continue
        calls = [TraceCall(name=str(c.get("name")), arguments=_pretty(c.get("arguments") if c.get("arguments") is not None
                                                                      else c.get("raw", "")),
                           ok=bool(c.get("ok")), valid=bool(c.get("valid", True)),
                           result=_pretty(c.get("result")) if c.get("ok") else str(c.get("error") or "")[:MAX_SHOWN])
                 for c in step.get("calls") or []]
        tokens = step.get("completion_tokens")
        turns[at].steps.append(TraceStep(text=str(step.get("text") or ""), calls=calls,
                                         latency_ms=_num(step.get("latency_ms")),
                                         tokens=tokens if isinstance(tokens, int) else None))
    for i, (expected, actual) in enumerate(zip(gold, states)):
        turns[i].left_gold = next(differences(expected, canonical(actual)), None) if i < len(turns) else None
    end = trace.get("end_state")
    diffs = list(differences(gold[-1], canonical(end))) if gold and end is not None else []
    env = trace.get("environment") or {}
    return TraceView(turns=turns, termination=str(trace.get("termination")), reason=str(trace.get("reason") or ""),
                     end_differences=diffs[:MAX_DIFFS], more_differences=max(0, len(diffs) - MAX_DIFFS),
                     environment=str(env.get("ref") or ""))
