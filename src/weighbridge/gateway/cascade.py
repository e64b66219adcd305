"""The cascade's check: the bakeoff's scorers, run on a draft answer to decide whether to escalate.

A check is the same scorer a suite uses (json_schema, regex, python_tests in the sandbox, judge
…), so a route's escalation rule can be tested offline with ``weighbridge bakeoff`` before it is
put in front of users. Judges are plan upstreams called through the bakeoff's OpenAI backend.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ..core.types import Generation, Request
from ..core.errors import BackendError
from ..scorers import Scorer, build_scorer
from .plan import Plan, Route


@dataclass
class CheckResult:
    passed: bool
    reasons: list[str]


class PlanJudges:
    """Lends the plan's ``judges:`` upstreams to judge scorers (the engine's JudgeContext protocol)."""

    def __init__(self, plan: Plan) -> None:
        from ..backends.openai import OpenAIBackend
        from ..core.config import ModelSpec

        self.backends = {n: OpenAIBackend(ModelSpec(name=n.replace(" ", "_"), backend="openai", base_url=u.base_url,
                                                    model=u.model, api_key_env=u.api_key_env, max_retries=1))
                         for n, u in plan.judges.items()}

    async def call(self, judge: str | None, request: Request) -> Generation:
        name = judge or next(iter(self.backends), None)
        if name not in self.backends:
            raise BackendError(f"no judge named '{name}' in the plan's judges:", kind="config")
        return await self.backends[name].generate(request)

    async def aclose(self) -> None:
        await asyncio.gather(*(b.aclose() for b in self.backends.values()), return_exceptions=True)


@dataclass
class CheckTarget:
    """What a cascade's check judges against: the client's conversation and the route's expected
    answer (a scorer ``Target``)."""

    messages: list[dict[str, Any]]
    expected: Any

    def rendered_messages(self) -> list[dict[str, Any]]:
        return self.messages


class Checker:
    def __init__(self, route: Route, judges: PlanJudges, sandbox: str = "bubblewrap") -> None:
        self.scorers: list[Scorer] = [build_scorer(s, sandbox=sandbox) for s in route.check]
        self.expected = route.expected
        self.judges = judges

    async def check(self, messages: list[dict[str, Any]], text: str) -> CheckResult:
        reasons, passed = [], True
        target, answer = CheckTarget(messages, self.expected), Generation.answer_only(text)
        for s in self.scorers:
            score = await s.evaluate(target, answer, self.judges)
            reasons.append(f"{s.kind}: {'pass' if score.passed else 'fail'} ({score.reason})")
            passed = passed and score.passed
        return CheckResult(passed, reasons)
