"""The audit stage: the finished call as its audit record, written by the writer thread (awaited
before the answer's last byte when ``audit.sync``).

The record is built from redacted text only - the prompt's audit copy and the answer with its PII
masked and our secrets scrubbed - and keeps their hashes; the text itself only with
``audit.store_text``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from ..core.scrub import scrub
from .accounting import Accounting, Totals
from .call import Call
from .plan import Plan
from .redact import prompt_text
from .screen import Screen
from .stream import event
from .writer import Writer

AUDIT_UNAVAILABLE = "the audit log could not record this request"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def audit_record(call: Call, totals: Totals, redacted_prompt: str, redacted_answer: str,
                 store_text: bool, redacted_reasoning: str = "") -> dict[str, Any]:
    record: dict[str, Any] = {
        "ts": time.time(), "key": call.key_id, "route": call.route_name, "endpoint": call.path,
        "status": call.status, "code": call.code, "upstream": call.upstream, "escalated": call.escalated,
        "tiers": call.tiers, "failures": call.failures, "prompt_tokens": totals.prompt_tokens,
        "completion_tokens": totals.completion_tokens, "cost_usd": round(totals.usd, 10),
        "latency_ms": round(totals.latency_s * 1000, 3), "stream": call.stream,
        "first_token_ms": round(call.first_token_s * 1000, 3) if call.first_token_s is not None else None,
        "cache_hit": call.cache_hit, "safety": dict(call.events),
        "settled": {"tokens": totals.settled_tokens, "usd": round(totals.settled_usd, 10)},
        "prompt_sha256": _sha(redacted_prompt), "response_sha256": _sha(redacted_answer)}
    if call.param:
        record["param"] = call.param
    reasoning_tokens = [t["reasoning_tokens"] for t in call.tiers if isinstance(t.get("reasoning_tokens"), int)]
    if reasoning_tokens or redacted_reasoning:
        record["reasoning_tokens"] = sum(reasoning_tokens) if reasoning_tokens else None
        record["reasoning_sha256"] = _sha(redacted_reasoning)
    if store_text:
        record["prompt"], record["response"] = redacted_prompt, redacted_answer
        if redacted_reasoning:
            record["reasoning"] = redacted_reasoning
    return record


class Recorder:
    def __init__(self, plan: Plan, writer: Writer, accounting: Accounting, screen: Screen) -> None:
        self.plan, self.writer, self.accounting, self.screen = plan, writer, accounting, screen

    def make(self, call: Call) -> dict[str, Any]:
        """Close the call (settle, count) and build its audit record."""
        redacted_answer = self.screen.redacted_answer(call)  # first: the answer's PII counts among its events
        redacted_reasoning = self.screen.redacted_reasoning(call)  # and the thinking's, as its own
        totals = self.accounting.close(call)
        redacted_prompt = (scrub(prompt_text(call.audit_body)) or "") if call.audit_body else ""
        return audit_record(call, totals, redacted_prompt, redacted_answer, self.plan.audit.store_text,
                            redacted_reasoning)

    def abandon(self, call: Call) -> None:
        """Record a call from a callback that cannot await (a client that went away)."""
        self.writer.audit(self.make(call))

    async def write(self, call: Call) -> bytes | None:
        """Write the audit record (awaited when ``audit.sync``); an error event if it could not be written."""
        loop = asyncio.get_running_loop() if self.plan.audit.sync else None
        fut = self.writer.audit(self.make(call), loop)
        if fut is None:
            return None
        try:
            await asyncio.shield(fut)
            return None
        except Exception:  # noqa: BLE001 - counted in metrics; the client is told
            self.accounting.metrics.writer_failures = self.writer.failures
            return event({"error": {"message": AUDIT_UNAVAILABLE, "type": "server_error",
                                    "param": None, "code": "audit_unavailable"}})
