"""How many requests the engine keeps in flight to a model: the config's number, the safe default of
the server's kind, or ``concurrency: auto`` (eval/adaptive.py) - and the facts about an answer that
the adaptive limit reads (its step time, the backend's push-backs) and its price counts (its seconds)."""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

from .adaptive import AdaptiveLimit

if TYPE_CHECKING:
    from ..core.config import ModelSpec
    from ..core.types import Generation


def step_seconds(gen: "Generation | None", agent: bool = False) -> float | None:
    """An answer's mean gap between tokens: the server's step time while it decoded this answer
    (None where it cannot be told: no answer, an agent's episode of several, fewer than two tokens,
    no decode time)."""
    if gen is None or agent or not gen.completion_tokens or gen.completion_tokens < 2 or not gen.decode_ms:
        return None
    step = gen.decode_ms / 1000 / (gen.completion_tokens - 1)
    return step if math.isfinite(step) and step > 0 else None


def answer_seconds(gen: "Generation | None") -> float:
    """What one job adds to the request-seconds the mean in flight is made of: its answer's own
    latency, the figure the hardware's price sums over that mean - not the job's whole span, which
    holds its retries' waits without a place and its refused attempts (counted, a start of 128 against
    a server that holds 16 priced its time at a twelfth of what it was). So the price is the time the
    run held the server. A failed job adds nothing, as it adds no latency to the sum."""
    return gen.latency_ms / 1000 if gen is not None and gen.timed and math.isfinite(gen.latency_ms) else 0.0


def _pushbacks(backend: Any) -> int:
    """How often a backend's server pushed back so far (429, 5xx, dropped connections; retried or not)."""
    return int(getattr(backend, "pushbacks", 0))


def choose_concurrency(name: str, spec: "ModelSpec", backend: Any) -> tuple[int, AdaptiveLimit | None, str | None]:
    """How many requests the engine keeps in flight to a model: the config's number, else the safe
    default of the server's kind (with the warning that says why), else auto - asked for, or the
    default of a server that batches - whose limiter is returned with the ceiling it may reach."""
    from ..backends.servers import KNOWN

    kind = KNOWN.get(backend.server_kind or "")
    slots = getattr(backend, "server_slots", None)  # llama-server says how many it decodes at once
    batches = kind is not None and (kind.batches or (slots or 0) > 1)
    if backend.max_parallel is None and (spec.concurrency == "auto" or (spec.concurrency is None and batches)):
        # past its slots requests only wait in the server; a few waiting refill a slot the moment it frees
        ceiling = min(spec.max_concurrency, 2 * slots) if slots else spec.max_concurrency
        limiter = AdaptiveLimit(start=min(4, ceiling), ceiling=ceiling, pressure=functools.partial(_pushbacks, backend))
        return ceiling, limiter, None
    if spec.concurrency is None and slots == 1:
        return 1, None, (f"model '{name}' is served by {kind.label if kind else 'a server'} with one slot: one request "
                         "at a time (more would only wait in its queue, and their latencies would count the wait; "
                         "start it with --parallel N, or set concurrency: on the model)")
    if spec.concurrency is None and kind is not None and kind.safe_concurrency is not None:
        return kind.safe_concurrency, None, f"model '{name}' is served by {kind.label}: {kind.note}"
    serial = backend.max_parallel  # in-process llama.cpp: its batch (auto: the most it may choose)
    return (min(spec.effective_concurrency, serial) if serial else spec.effective_concurrency), None, None
