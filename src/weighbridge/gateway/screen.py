"""Screening: the block lists on the prompt and on the answer, and PII redaction - of the audit copy
always, of what an upstream receives as the route says, and of an answer before the audit log or
the cache may keep it.

A big body is screened in a worker thread so that one large prompt does not stall every other
request on the event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from ..core.scrub import scrub
from .call import Call
from .plan import Plan
from .redact import BlockList, Redactor, prompt_text

_OFFLOAD_BYTES = 64 * 1024  # bodies above this are screened (block list, redaction) off the event loop


def found_pii(events: Counter[str]) -> bool:
    return any(k.startswith("pii.") for k in events)


class Screen:
    def __init__(self, plan: Plan) -> None:
        self.redactor = Redactor(plan.redaction.detectors, plan.redaction.patterns, plan.filters.allow,
                                 plan.redaction.regions)
        self.prompt_block = BlockList(plan.filters.prompt_block, plan.filters.allow)
        self.response_block = BlockList(plan.filters.response_block, plan.filters.allow)

    async def prompt(self, call: Call) -> bool:
        """Redact the call's audit copy; True when the prompt matches the block list."""
        if call.size > _OFFLOAD_BYTES:  # a big body is screened in a thread: other requests keep being served
            hit, call.audit_body = await asyncio.to_thread(self._screen, call.body, call.events)
        else:
            hit, call.audit_body = self._screen(call.body, call.events)
        if hit is not None:
            call.events["block.prompt"] += 1
        return hit is not None

    def _screen(self, body: dict[str, Any], events: Counter[str]) -> tuple[str | None, dict[str, Any]]:
        """The block list's hit in the prompt's text, and the body with every PII value masked."""
        return self.prompt_block.hit(prompt_text(body)), self.redactor.body(body, events)

    def answer_blocked(self, text: str, reasoning: str = "") -> bool:
        """Does the response block list hit the answer - with the thinking, when the client sees that too?"""
        return self.response_block.hit(text + "\n" + reasoning if reasoning else text) is not None

    def screens_answers(self) -> bool:
        """Whether a streamed answer must be checked as it grows."""
        return self.response_block.pattern is not None

    def redacted_answer(self, call: Call) -> str:
        """The answer as the audit log and the cache may keep it (once per call; its PII counted)."""
        if call.redacted_answer is None:
            found: Counter[str] = Counter()
            call.redacted_answer = self.redactor.text(scrub(call.answer) or "", found) if call.answer else ""
            call.answer_pii = bool(found)
            for k, n in found.items():
                call.events["response." + k] += n
        return call.redacted_answer


    def redacted_reasoning(self, call: Call) -> str:
        """The thinking as the audit log may keep it (its PII counted as reasoning.pii.*)."""
        if call.redacted_reasoning is None:
            found: Counter[str] = Counter()
            call.redacted_reasoning = self.redactor.text(scrub(call.reasoning) or "", found) if call.reasoning else ""
            for k, n in found.items():
                call.events["reasoning." + k] += n
        return call.redacted_reasoning


def withheld(data: dict[str, Any]) -> dict[str, Any]:
    """The answer withheld the way OpenAI reports it: empty content, finish_reason content_filter."""
    out: dict[str, Any] = json.loads(json.dumps(data))
    for ch in out.get("choices") or []:
        if "message" in ch:
            ch["message"] = {"role": "assistant", "content": ""}
        else:
            ch["text"] = ""
        ch["finish_reason"] = "content_filter"
    return out
