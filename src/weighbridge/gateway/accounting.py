"""Accounting: what each upstream's part of a call used and cost, what the call costs its key, and
the figures that leave the process about it (metrics, the trace span).

Tokens come from the upstream's checked usage, else an estimate that says so; a usage outside the
bounds is refused and the call settles at its bound (the answer was generated; what it cost is
unknown). A reported usage above the bound is a lie, or an upstream that ignored ``max_tokens``: the
key pays at most the bound.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from ..core.scrub import scrub
from ..wire.openai import MalformedResponse, Usage
from .auth import Guard
from .call import Call
from .metrics import Metrics
from .plan import Upstream
from .redact import prompt_text
from .tracing import Tracing
from .writer import Writer

log = logging.getLogger("weighbridge.gateway")


@dataclass(frozen=True)
class Totals:
    prompt_tokens: int
    completion_tokens: int
    usd: float
    settled_tokens: int
    settled_usd: float
    latency_s: float


def tier(call: Call, up: Upstream, usage: Usage | None, usage_error: MalformedResponse | None,
         text: str, t: float, reasoning: str = "") -> dict[str, Any]:
    """One upstream's part of the call: tokens (the upstream's checked usage, else an estimate that
    says so, else - usage outside the bounds - the call's bound) and their price. Thinking is output
    too: estimated with the answer, and counted apart as ``reasoning_tokens`` (the upstream's count,
    else an estimate)."""
    if usage_error is not None:
        call.events["usage_invalid"] += 1
        pt, ct, source = 0, 0, "invalid"
    elif usage is not None and usage.prompt_tokens is not None and usage.completion_tokens is not None:  # complete
        pt, ct, source = usage.prompt_tokens, usage.completion_tokens, "upstream"
    else:
        pt, ct, source = len(prompt_text(call.body)) // 4 + 1, len(text + reasoning) // 4 + 1, "estimate"
    info: dict[str, Any] = {"upstream": up.name, "prompt_tokens": pt, "completion_tokens": ct, "usage_source": source,
                            "cost_usd": round(up.price.cost(pt, ct), 10), "ms": round((time.perf_counter() - t) * 1000, 2)}
    if source == "upstream" and usage is not None and usage.reasoning_tokens is not None:
        info["reasoning_tokens"] = min(usage.reasoning_tokens, ct)  # part of the output, never more than it
    elif reasoning:
        info["reasoning_tokens"], info["reasoning_source"] = min(len(reasoning) // 4 + 1, ct), "estimate"
    if usage_error is not None:
        info["usage_error"] = (scrub(str(usage_error)) or "")[:200]
    call.tiers.append(info)
    return info


def settled(call: Call, tokens: int, usd: float) -> tuple[int, float]:
    """What the call costs its key: the reported usage, never more than the call's bound; the bound
    itself when the usage was refused."""
    if call.bound_tokens is None or call.bound_usd is None:
        return tokens, usd
    if call.usage_invalid:
        return call.bound_tokens, call.bound_usd
    if tokens > call.bound_tokens or usd > call.bound_usd + 1e-12:
        call.events["usage_over_bound"] += 1
        return min(tokens, call.bound_tokens), min(usd, call.bound_usd)
    return tokens, usd


class Accounting:
    def __init__(self, guard: Guard, writer: Writer, metrics: Metrics, tracing: Tracing | None) -> None:
        self.guard, self.writer, self.metrics, self.tracing = guard, writer, metrics, tracing

    def close(self, call: Call) -> Totals:
        """Settle the call's budget (exactly once), emit its span and count its figures."""
        latency = time.perf_counter() - call.t0
        pt = sum(t["prompt_tokens"] for t in call.tiers)
        ct = sum(t["completion_tokens"] for t in call.tiers)
        usd = sum(t["cost_usd"] for t in call.tiers)
        tokens, dollars = settled(call, pt + ct, usd)
        call.finished = True
        if call.reservation is not None:
            self.guard.settle(call.reservation, tokens, dollars)
            if not self.guard.persists_spend:  # a shared guard has written it itself
                self.writer.spend(call.reservation.key_id, call.reservation.period, tokens, dollars)
            call.reservation = None
        if self.tracing is not None:
            try:
                self.tracing.request_span(call, prompt_tokens=pt, completion_tokens=ct, usd=usd, latency_s=latency)
            except Exception:  # noqa: BLE001 - a trace is never worth a failed request
                log.exception("recording the request's span failed")
        m = self.metrics
        m.inc("weighbridge_requests_total", route=call.route_name, upstream=call.upstream or "", status=str(call.status))
        m.observe("weighbridge_request_duration_seconds", latency, route=call.route_name)
        for t in call.tiers:
            m.inc("weighbridge_tokens_total", t["prompt_tokens"], route=call.route_name, upstream=t["upstream"], kind="prompt")
            m.inc("weighbridge_tokens_total", t["completion_tokens"], route=call.route_name, upstream=t["upstream"],
                  kind="completion")
            m.inc("weighbridge_cost_usd_total", t["cost_usd"], route=call.route_name, upstream=t["upstream"])
            if t.get("reasoning_tokens"):  # a part of the completion tokens above, counted apart
                m.inc("weighbridge_reasoning_tokens_total", t["reasoning_tokens"], route=call.route_name,
                      upstream=t["upstream"])
        for k, n in call.events.items():
            m.inc("weighbridge_safety_events_total", n, kind=k)
        m.writer_failures = self.writer.failures
        return Totals(pt, ct, usd, tokens, dollars, latency)
