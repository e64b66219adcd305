"""An agent case as one bakeoff job: a fresh sandboxed environment per episode, the loop against the
model, and the episode recorded as the job's answer - the final text as the answer's text, the steps'
tokens and time as its usage, and in ``raw["agent"]`` the whole trace with the environment's state
after every turn beside the gold calls' states (so the ``agent`` scorer, a rescore and the report read
the episode without running anything again).

The gold states are computed once per case before the run starts (``gold_states``): a gold call that
fails is a broken suite, said before any model is asked.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ...core.errors import ConfigError
from ...core.types import Generation, Request, TokenSource
from ...scorers.refusal import refusal_phrase
from ...suites import Case
from .loop import Model, result_digest, run_episode
from .outcome import canonical, replay_turns
from .sandboxed import EnvironmentFailed, SandboxedEnvironment


def episode_definition(case: Case) -> dict[str, Any]:
    """What identifies an episode for the response cache: the environment's code, where it starts,
    what the user says, the tools as offered and the limits."""
    env = case.environment_source
    return {"environment": env.sha256 if env else case.environment, "initial_state": case.initial_state,
            "turns": case.rendered_turns(), "system": case.rendered_system(), "tools": case.tool_dicts(),
            "limits": case.episode_limits().model_dump(),
            **({"held_back": {str(k): v for k, v in case.held_back.items()}} if case.held_back else {})}


async def gold_states(case: Case, mode: str) -> dict[str, list[Any]]:
    """The state after each turn's gold calls, and a digest of each gold call's result (BFCL checks
    that the episode's results hold the gold's); ConfigError naming the case when a gold call fails."""
    env = case.environment_source
    assert env is not None, "agent cases are loaded with their environment"
    gold = [[c.model_dump() for c in turn] for turn in case.gold or []]
    results: list[list[Any]] = []
    try:
        states = await asyncio.to_thread(replay_turns, env.source, env.class_name, case.initial_state, gold, mode=mode,
                                         libraries=env.library_dirs, results=results)
    except ValueError as e:
        raise ConfigError(f"case '{case.id}': {e} (the gold calls must reach a state the environment accepts)",
                          path=case.where[0], line=case.where[1], field="gold") from None
    except EnvironmentFailed as e:
        raise ConfigError(f"case '{case.id}': the environment {env.ref} failed on the gold calls: {e}",
                          path=case.where[0], line=case.where[1], field="environment") from None
    return {"states": states, "results": [[result_digest(r) for r in turn] for turn in results]}


def _offered(case: Case, derived: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tools as the model sees them: derived from the environment, a case's own schema replacing
    the derived one of the same name."""
    given = {t["function"]["name"]: t for t in case.tool_dicts() or []}
    return [given.get(t["function"]["name"], t) for t in derived]


async def run_agent_job(model: Model, case: Case, base: Request, gold: dict[str, list[Any]], mode: str) -> Generation:
    """One episode of ``case``; raises EnvironmentFailed only when the environment does not start."""
    src = case.environment_source
    assert src is not None, "agent cases are loaded with their environment"
    lim = case.episode_limits()
    env = SandboxedEnvironment(src.source, src.class_name, case.initial_state, filename=src.filename, mode=mode,
                               call_timeout_s=lim.call_timeout_s, libraries=src.library_dirs)
    t0 = time.perf_counter()
    try:
        derived = await asyncio.to_thread(env.start)
        env.tools = _offered(case, derived)
        ep = await run_episode(model, env, case.rendered_turns(), system=case.rendered_system(),
                               limits=lim,
                               max_tokens=base.max_tokens, temperature=base.temperature, seed=base.seed,
                               top_p=base.top_p, stop=base.stop, held_back=case.held_back)
        try:
            end_state = canonical(await asyncio.to_thread(env.state))
        except EnvironmentFailed:
            end_state = None  # the environment died: the termination says why
    finally:
        await asyncio.to_thread(env.close)
    wall_ms = (time.perf_counter() - t0) * 1000
    phrase = refusal_phrase(ep.final_text) if ep.termination == "answered" else None  # empty: not a refusal
    if phrase:  # a clean ending too (declining is right in some tasks), counted apart in the report
        ep.termination, ep.reason = "refused", f"the last reply refuses ({phrase[:60]!r})"
    prompt = [s.prompt_tokens for s in ep.steps]
    completion = [s.completion_tokens for s in ep.steps]
    sources = {s.token_source for s in ep.steps}
    source: TokenSource = next(iter(sources)) if len(sources) == 1 else "none"
    trace = ep.to_dict()
    trace.pop("messages")  # the steps hold the same, bounded
    return Generation(
        text=ep.final_text, finish_reason=ep.steps[-1].finish_reason if ep.steps else None,
        prompt_tokens=sum(p for p in prompt if p is not None) if all(p is not None for p in prompt) else None,
        completion_tokens=sum(c for c in completion if c is not None) if all(c is not None for c in completion)
        else None,
        token_source=source, latency_ms=wall_ms, ttft_ms=ep.steps[0].ttft_ms if ep.steps else None, decode_ms=None,
        raw={"agent": {**trace, "end_state": end_state, "gold_states": gold["states"],
                       "gold_results": gold["results"],
                       "environment": {"ref": src.ref, "sha256": src.sha256},
                       "model_ms": sum(s.latency_ms for s in ep.steps)}})
