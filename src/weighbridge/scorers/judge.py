"""Model-graded scoring: an LLM judge with a rubric, its reply constrained to a JSON verdict.

The judge is any configured model (``judges:`` in weighbridge.yaml). Its reply is constrained where
the backend can (a llama.cpp grammar, or ``response_format`` with a JSON schema), then parsed
strictly; an unparseable reply gets one retry with a reminder, then counts as a failed check with
the reason recorded. Judge calls are cached like any model call, so a stored run can be re-scored
without calling its candidates, and a second re-score calls nobody.
Pairwise judging asks both orders and records a tie when the verdict follows the position.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from pydantic import Field

from ..core.types import Generation, Request
from ..core.errors import BackendError
from .base import JudgeContext, Score, ScorerSpec, Target, final_answer
from .schema import extract_json

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["reason", "verdict"],
    "properties": {"reason": {"type": "string", "maxLength": 600}, "verdict": {"type": "string", "enum": ["pass", "fail"]}},
}
PAIRWISE_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["reason", "winner"],
    "properties": {"reason": {"type": "string", "maxLength": 600}, "winner": {"type": "string", "enum": ["A", "B", "tie"]}},
}
_SYSTEM = ("You are a strict, fair grader. Judge only what the rubric asks. Reply with one JSON object and nothing "
           "else: {\"reason\": \"<one or two sentences>\", \"verdict\": \"pass\" or \"fail\"}.")
_PAIR_SYSTEM = ("You compare two answers to the same question against a rubric. Ignore their order and length. "
                "Reply with one JSON object and nothing else: {\"reason\": \"<one or two sentences>\", "
                "\"winner\": \"A\", \"B\" or \"tie\"}.")
_REMINDER = "Your reply was not a valid JSON object of the required form. Reply again with the JSON object only."


class JudgeSpec(ScorerSpec):
    rubric: str = Field(min_length=5)
    judge: str | None = Field(None, description="name of a model under judges: (default: the first judge)")
    max_tokens: int = Field(256, ge=16, le=4096)


def _question(messages: list[dict[str, str]]) -> str:
    return "\n\n".join(m["content"] for m in messages if m["role"] != "assistant")


async def ask_json(ctx: JudgeContext, judge: str | None, system: str, user: str, schema: dict[str, Any],
                   max_tokens: int) -> tuple[dict[str, Any] | None, str]:
    """One constrained call, strictly parsed, with one retry: (object or None, raw text or error)."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    validator = jsonschema.Draft202012Validator(schema)
    raw = ""
    for attempt in range(2):
        request = Request(messages=messages, temperature=0.0, max_tokens=max_tokens, json_schema=schema)
        try:
            raw = (await ctx.call(judge, request)).text
        except BackendError as e:
            return None, f"judge call failed: {e}"
        try:
            obj = extract_json(raw)
            validator.validate(obj)
            return obj, raw
        except (ValueError, jsonschema.ValidationError):
            if attempt == 0:
                messages = [*messages, {"role": "assistant", "content": raw}, {"role": "user", "content": _REMINDER}]
    return None, f"judge reply is not a valid verdict after one retry: {final_answer(raw)[:160]!r}"


class _Judge:
    kind = "judge"
    Spec = JudgeSpec

    def __init__(self, s: JudgeSpec) -> None:
        self.s = s

    async def evaluate(self, case: Target, generation: Generation, ctx: JudgeContext) -> Score:
        """Ask the judge (through the run's cached judge calls) about the answer's text."""
        return await self.ascore(case.rendered_messages(), generation.text, case.expected, ctx)

    async def ascore(self, messages: list[dict[str, str]], text: str, expected: Any, ctx: JudgeContext) -> Score:
        user = (f"RUBRIC:\n{self.s.rubric}\n\nQUESTION:\n{_question(messages)}\n\n"
                + (f"REFERENCE ANSWER:\n{expected}\n\n" if expected is not None else "")
                + f"ANSWER TO JUDGE:\n{final_answer(text)}")
        obj, raw = await ask_json(ctx, self.s.judge, _SYSTEM, user, VERDICT_SCHEMA, self.s.max_tokens)
        if obj is None:
            return Score(False, 0.0, raw)
        passed = obj["verdict"] == "pass"
        return Score(passed, 1.0 if passed else 0.0, f"judge: {obj['reason'][:300]}")




@dataclass
class PairwiseResult:
    case_id: str
    winner: str  # the model name, or "tie"
    order_ab: str
    order_ba: str
    reasons: list[str] = field(default_factory=list)

    @property
    def position_bias(self) -> bool:
        """The judge picked the same *position* both times: its verdict followed the order."""
        return self.order_ab in ("A", "B") and self.order_ab == self.order_ba


async def pairwise(ctx: JudgeContext, judge: str | None, case_id: str, messages: list[dict[str, str]],
                   rubric: str, model_a: str, answer_a: str, model_b: str, answer_b: str,
                   max_tokens: int = 256) -> PairwiseResult:
    """Judge A against B in both orders; disagreeing orders make a tie."""
    def prompt(first: str, second: str) -> str:
        return (f"RUBRIC:\n{rubric}\n\nQUESTION:\n{_question(messages)}\n\nANSWER A:\n{final_answer(first)}\n\n"
                f"ANSWER B:\n{final_answer(second)}")

    (ab, raw_ab), (ba, raw_ba) = await asyncio.gather(
        ask_json(ctx, judge, _PAIR_SYSTEM, prompt(answer_a, answer_b), PAIRWISE_SCHEMA, max_tokens),
        ask_json(ctx, judge, _PAIR_SYSTEM, prompt(answer_b, answer_a), PAIRWISE_SCHEMA, max_tokens))
    first = ab["winner"] if ab else "invalid"
    second_raw = ba["winner"] if ba else "invalid"
    second = {"A": "B", "B": "A"}.get(second_raw, second_raw)  # map the swapped order back
    if first == second and first in ("A", "B"):
        winner = model_a if first == "A" else model_b
    else:
        winner = "tie"
    reasons = [x["reason"] if x else r for x, r in ((ab, raw_ab), (ba, raw_ba))]
    return PairwiseResult(case_id, winner, first, second_raw, reasons)

