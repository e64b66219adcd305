"""The ``agent`` scorer: did the episode leave the world as the gold calls leave it, and end well?

It reads what the episode recorded (``raw["agent"]``, written by ``eval/agent/job.py``) and runs
nothing: the environment's state after the episode against the gold calls' replay (canonical JSON;
``mode: subset`` lets the episode's state hold more, e.g. ids or notes a model may add; the first
differing path is the reason), optionally the state after every turn (``per_turn``, as BFCL checks
multi-turn tasks), the tools that must or must not have been called, and ``facts`` - any other
scorers, a judge included - on the final answer. The episode's termination comes first: a limit
reached, an environment cut off or a model error is a failure with that reason, never a dropped case;
an episode that ended with a reply passes on, whether it answered or refused (declining is the right
move in some tasks; facts and the state tell the two apart).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ..core.types import Generation, Score
from ..core.jsondiff import canonical, first_difference, first_divergence
from .base import JudgeContext, ScorerSpec, Target, build_scorer


class AgentSpec(ScorerSpec):
    rules: Literal["weighbridge", "bfcl"] = "weighbridge"  # bfcl: BFCL's multi-turn checker's verdict
    mode: Literal["exact", "subset"] = "exact"
    state: bool = Field(True, description="compare the end state with the gold replay's")
    per_turn: bool = Field(False, description="compare the state after every turn too")
    must_call: list[str] = Field(default_factory=list, description="tools the episode must call")
    must_not_call: list[str] = Field(default_factory=list, description="tools the episode must never call")
    facts: list[str | dict[str, Any]] = Field(default_factory=list,
                                              description="scorers the final answer must pass (contains, regex, judge, ...)")

    @field_validator("facts")
    @classmethod
    def _buildable(cls, v: list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        for spec in v:
            kind = spec if isinstance(spec, str) else spec.get("type")
            if kind == "agent":
                raise ValueError("facts are scorers of the final answer; 'agent' cannot be one")
            build_scorer(spec)
        return v


ENDED_WELL = ("answered", "refused")  # the episode's last turn ended with a reply (declining is one)


def _called(trace: dict[str, Any]) -> list[str]:
    """The tools the episode really ran (calls that reached the environment)."""
    return [c["name"] for s in trace.get("steps", []) for c in s.get("calls", []) if c.get("valid", True)]


def bfcl_multi_turn(trace: dict[str, Any]) -> str | None:
    """Why an episode fails BFCL's multi-turn check (None: it passes). At every turn whose gold makes
    calls: the episode made a call that turn, each environment's state equals the gold's, and the
    gold's call results are all among the episode's results so far (as a multiset, any order). A turn
    whose gold makes no call is not checked itself (BFCL v4's runner does not run its irrelevance
    check); what the episode did then shows in the next checked state. An episode that stopped early
    (a step limit: BFCL's force-termination) fails."""
    if trace.get("termination") not in ENDED_WELL:
        return f"stopped: {trace.get('termination')} - {trace.get('reason', '')}".rstrip(" -")
    gold_states, gold_results = trace.get("gold_states") or [], trace.get("gold_results") or []
    states = trace.get("turn_states") or []
    seen: list[str] = []
    for turn, (expected, results) in enumerate(zip(gold_states, gold_results)):
        made = [c for s in trace["steps"] if s.get("turn") == turn for c in s.get("calls", []) if c.get("valid", True)]
        seen += [str(c.get("result_sha")) for c in made]
        if not results:
            continue
        if not made:
            return f"no call in turn {turn + 1}, where the gold makes {len(results)}"
        diff = first_difference(expected, canonical(states[turn])) if turn < len(states) else "no state"
        if diff:
            return f"state after turn {turn + 1} differs at {diff}"
        pool = list(seen)
        for digest in results:
            if digest not in pool:
                return f"a result of the gold's calls in turn {turn + 1} is not among the episode's results"
            pool.remove(digest)
    return None


class _Agent:
    kind = "agent"
    Spec = AgentSpec

    def __init__(self, s: AgentSpec) -> None:
        self.s = s
        self.facts = [build_scorer(f) for f in s.facts]

    async def evaluate(self, case: Target, generation: Generation, ctx: JudgeContext) -> Score:
        trace = generation.raw.get("agent")
        if not isinstance(trace, dict) or not isinstance(trace.get("steps"), list):
            return Score(False, 0.0, "no episode recorded: the agent scorer judges agent cases (environment:, turns:)")
        if self.s.rules == "bfcl":
            why = bfcl_multi_turn(trace)
            steps = len(trace["steps"])
            return Score(why is None, float(why is None),
                         f"BFCL: {why or 'every turn as the gold'} ({steps} steps, {len(_called(trace))} tool calls)"[:1000])
        failures: list[str] = []
        checks = 0
        termination = trace.get("termination")
        checks += 1
        if termination not in ENDED_WELL:
            failures.append(f"stopped: {termination} - {trace.get('reason', '')}".rstrip(" -"))
        gold = trace.get("gold_states") or []
        subset = self.s.mode == "subset"
        if self.s.state:
            checks += 1
            end = trace.get("end_state")
            if end is None:
                failures.append("no end state: the environment did not survive the episode")
            elif gold:
                diff = first_difference(gold[-1], canonical(end), subset=subset)
                if diff:
                    failures.append(f"end state differs at {diff}")
        if self.s.per_turn:
            checks += 1
            turn = first_divergence(gold, trace.get("turn_states") or [], subset=subset)
            if turn is not None:
                failures.append(f"state departs from the gold after turn {turn}")
        called = _called(trace)
        for name in self.s.must_call:
            checks += 1
            if name not in called:
                failures.append(f"never called {name}")
        for name in self.s.must_not_call:
            checks += 1
            if name in called:
                failures.append(f"called {name}, which it must not")
        answer = Generation.answer_only(generation.text)
        for scorer in self.facts:
            checks += 1
            score = await scorer.evaluate(case, answer, ctx)
            if not score.passed:
                failures.append(f"final answer: {score.reason}")
        passed = not failures
        reason = ("answered; state as gold" if self.s.state else "answered") if passed else "; ".join(failures)
        steps, calls = len(trace["steps"]), len(called)
        return Score(passed, (checks - len(failures)) / checks, f"{reason} ({steps} steps, {calls} tool calls)"[:1000])
