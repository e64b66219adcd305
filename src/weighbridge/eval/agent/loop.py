"""One agent episode: the conversation and the environment's tools go to the model; every call it
makes runs, in order, in the environment; each result comes back as a tool message; the turn ends
when the model answers without a call, the episode when the last scripted user turn has ended or a
limit is reached.

What the model gets wrong is the model's to see, never the run's end: an unknown tool, arguments that
are not JSON or not an object, or an exception in the tool come back as a tool error (counted). A
limit ends the episode with its reason - it is a failure with that reason, never a dropped case -
and so does an environment that cannot go on (a call past its time, a flood, a host that exited).
Every step is recorded: the model's text, its calls, their results, timings and tokens.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from ...core.errors import BackendError
from ...core.types import Generation, Request, ToolCall
from .sandboxed import EnvironmentFailed, ToolResult

Termination = Literal["answered", "cut_off", "step_limit", "episode_step_limit", "tool_error_budget", "token_limit",
                      "time_limit", "environment", "error"]
MAX_RESULT_CHARS = 16_000  # a tool result as the model reads it: longer ones are cut, and say so


@dataclass(frozen=True)
class Limits:
    """When an episode stops, whatever the model does (BFCL stops a turn at 20 steps)."""

    steps_per_turn: int = 20
    steps_per_episode: int = 60
    tool_errors: int = 10
    tokens: int = 32_000  # prompt + completion tokens over the episode
    wall_s: float = 300.0


class Environment(Protocol):
    """What the loop needs of an environment (``SandboxedEnvironment`` is one)."""

    tools: list[dict[str, Any]]

    def call(self, name: str, arguments: dict[str, Any]) -> ToolResult: ...


class Model(Protocol):
    async def generate(self, request: Request) -> Generation: ...


@dataclass
class Step:
    turn: int
    text: str
    calls: list[dict[str, Any]]  # each call with its result or error
    latency_ms: float
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None


@dataclass
class Episode:
    steps: list[Step] = field(default_factory=list)
    termination: Termination = "answered"
    reason: str = ""
    tool_calls: int = 0
    tool_errors: int = 0
    turns_done: int = 0
    final_text: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tool_message(call: ToolCall, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call["id"] or call["name"], "name": call["name"], "content": content}


def _bounded(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    if len(text) > MAX_RESULT_CHARS:
        return text[:MAX_RESULT_CHARS] + f"… [cut: the result is {len(text):,} characters]"
    return text


async def run_episode(model: Model, env: Environment, turns: list[str], *, system: str | None = None,
                      limits: Limits = Limits(), max_tokens: int = 512, temperature: float = 0.0,
                      seed: int = 42) -> Episode:
    """Run the scripted user ``turns`` against ``env``; never raises for what the model or the
    environment does (a backend that fails is the episode's ``error``)."""
    ep = Episode()
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    names = {t["function"]["name"] for t in env.tools}
    started = time.monotonic()
    tokens = 0
    for turn, user in enumerate(turns):
        messages.append({"role": "user", "content": user})
        for step_in_turn in range(limits.steps_per_turn + 1):
            stop = _limit_reached(ep, step_in_turn, tokens, started, limits)
            if stop is not None:
                ep.termination, ep.reason = stop
                ep.messages = messages
                return ep
            request = Request(messages=[dict(m) for m in messages], tools=env.tools, tool_choice="auto",
                              max_tokens=max_tokens, temperature=temperature, seed=seed)
            try:
                gen = await model.generate(request)
            except BackendError as e:
                ep.termination, ep.reason, ep.messages = "error", f"{e.kind}: {e}"[:500], messages
                return ep
            tokens += (gen.prompt_tokens or 0) + (gen.completion_tokens or 0)
            step = Step(turn, gen.text, [], gen.latency_ms, gen.prompt_tokens, gen.completion_tokens, gen.finish_reason)
            ep.steps.append(step)
            calls = gen.tool_calls or []
            if not calls and gen.finish_reason == "length":  # neither an answer nor a call: never counted as either
                messages.append({"role": "assistant", "content": gen.text})
                ep.termination, ep.final_text, ep.messages = "cut_off", gen.text, messages
                ep.reason = f"the reply reached max_tokens ({max_tokens}) before it ended"
                return ep
            if not calls:
                messages.append({"role": "assistant", "content": gen.text})
                ep.final_text = gen.text
                break
            messages.append({"role": "assistant", "content": gen.text or "",
                             "tool_calls": [{"id": c["id"] or c["name"], "type": "function",
                                             "function": {"name": c["name"], "arguments": c["raw"]}} for c in calls]})
            for call in calls:
                ep.tool_calls += 1
                record: dict[str, Any] = {"name": call["name"], "arguments": call["arguments"], "raw": call["raw"]}
                if call["error"] or call["arguments"] is None:
                    result = ToolResult(False, error=call["error"] or "arguments are not a JSON object")
                elif call["name"] not in names:
                    result = ToolResult(False, error=f"no tool named {call['name']!r} (tools: {', '.join(sorted(names))})")
                else:
                    try:
                        result = await asyncio.to_thread(env.call, call["name"], call["arguments"])
                    except EnvironmentFailed as e:
                        record["error"] = str(e)
                        step.calls.append(record)
                        ep.termination, ep.reason, ep.messages = "environment", f"{e.kind}: {e}", messages
                        return ep
                record.update({"ok": result.ok, "result": result.result, "error": result.error, "ms": result.ms})
                step.calls.append(record)
                if not result.ok:
                    ep.tool_errors += 1
                messages.append(_tool_message(call, _bounded(result.result) if result.ok
                                              else json.dumps({"error": result.error}, ensure_ascii=False)))
        ep.turns_done = turn + 1
    ep.messages = messages
    return ep


def _limit_reached(ep: Episode, step_in_turn: int, tokens: int, started: float,
                   limits: Limits) -> tuple[Termination, str] | None:
    if step_in_turn >= limits.steps_per_turn:
        return "step_limit", f"the turn took {limits.steps_per_turn} steps without an answer"
    if len(ep.steps) >= limits.steps_per_episode:
        return "episode_step_limit", f"the episode took {limits.steps_per_episode} steps"
    if ep.tool_errors >= limits.tool_errors:
        return "tool_error_budget", f"{ep.tool_errors} tool errors (the budget is {limits.tool_errors})"
    if tokens >= limits.tokens:
        return "token_limit", f"{tokens:,} tokens used (the limit is {limits.tokens:,})"
    if time.monotonic() - started >= limits.wall_s:
        return "time_limit", f"the episode ran past {limits.wall_s:g} s"
    return None
