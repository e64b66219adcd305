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
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from ...backends.toolcalls import tool_validators
from ...core.errors import BackendError
from ...core.types import Generation, Request, TokenSource, ToolCall
from ...suites.agent_case import AgentLimits
from .sandboxed import EnvironmentFailed, ToolResult

Termination = Literal["answered", "refused", "cut_off", "step_limit", "episode_step_limit", "tool_error_budget", "token_limit",
                      "context_full", "time_limit", "environment", "error"]
MAX_RESULT_CHARS = 16_000  # a tool result as the model reads it: longer ones are cut, and say so
MAX_KEPT_CHARS = 4_000  # a tool result as the trace keeps it


Limits = AgentLimits  # when an episode stops, whatever the model does: the case's ``limits:``


class Environment(Protocol):
    """What the loop needs of an environment (``SandboxedEnvironment`` is one)."""

    tools: list[dict[str, Any]]

    def call(self, name: str, arguments: dict[str, Any]) -> ToolResult: ...

    def state(self) -> Any: ...


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
    ttft_ms: float | None = None
    token_source: TokenSource = "none"


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
    turn_states: list[Any] = field(default_factory=list)  # the environment's state after each finished turn
    invalid_calls: int = 0  # calls that never reached a tool: not JSON, an unknown tool, arguments off the schema

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tool_message(call: ToolCall, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call["id"] or call["name"], "name": call["name"], "content": content}


def result_digest(value: Any) -> str:
    """A result's identity however long it is (the trace keeps only its start)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def _kept(value: Any) -> Any:
    """A result as the trace stores it: itself when small, else the start of its JSON."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return value if len(text) <= MAX_KEPT_CHARS else text[:MAX_KEPT_CHARS] + f"… [cut: {len(text):,} characters]"


def _offered(tools: list[dict[str, Any]], held_back: dict[int, list[str]], turn: int) -> list[dict[str, Any]]:
    """The tools of a turn: those never held back, then those released by this turn, in the order
    they arrived (as BFCL appends a missing function to the list when it comes)."""
    held = {n for ns in held_back.values() for n in ns}
    by_name = {t["function"]["name"]: t for t in tools}
    released = [by_name[n] for t in sorted(held_back) if t <= turn for n in held_back[t] if n in by_name]
    return [t for t in tools if t["function"]["name"] not in held] + released


def _refusal(call: ToolCall, names: set[str], validators: dict[str, Any]) -> str | None:
    """Why a call cannot reach its tool (the model's mistake, shown to it), or None."""
    if call["error"] or call["arguments"] is None:
        return call["error"] or "arguments are not a JSON object"
    if call["name"] not in names:
        return f"no tool named {call['name']!r} (tools: {', '.join(sorted(names))})"
    validator = validators.get(call["name"])
    if validator is not None:
        error = next(iter(sorted(validator.iter_errors(call["arguments"]), key=lambda e: list(e.path))), None)
        if error is not None:
            where = ".".join(map(str, error.path)) or "arguments"
            return f"{where}: {error.message[:300]} (the tool's schema)"
    return None


def _bounded(value: Any) -> str:
    """A result as the model reads it: a string as it is, anything else as JSON; cut when long."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=repr)
    if len(text) > MAX_RESULT_CHARS:
        return text[:MAX_RESULT_CHARS] + f"… [cut: the result is {len(text):,} characters]"
    return text


async def run_episode(model: Model, env: Environment, turns: list[str], *, system: str | None = None,
                      limits: Limits = Limits(), max_tokens: int = 512, temperature: float = 0.0,
                      seed: int = 42, top_p: float = 1.0, stop: list[str] | None = None,
                      held_back: dict[int, list[str]] | None = None) -> Episode:
    """Run the scripted user ``turns`` against ``env``; never raises for what the model or the
    environment does (a backend that fails is the episode's ``error``). ``held_back`` names tools
    first offered at a later turn (BFCL's missing-function tasks)."""
    ep = Episode()
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    validators = tool_validators(env.tools)
    started = time.monotonic()
    tokens = 0
    for turn, user in enumerate(turns):
        offered = _offered(env.tools, held_back or {}, turn)
        names = {t["function"]["name"] for t in offered}
        messages.append({"role": "user", "content": user})
        for step_in_turn in range(limits.steps_per_turn + 1):
            ended = _limit_reached(ep, step_in_turn, tokens, started, limits)
            if ended is not None:
                ep.termination, ep.reason = ended
                ep.messages = messages
                return ep
            request = Request(messages=[dict(m) for m in messages], tools=offered, tool_choice="auto",
                              max_tokens=max_tokens, temperature=temperature, seed=seed, top_p=top_p,
                              stop=list(stop or []))
            try:
                gen = await model.generate(request)
            except BackendError as e:
                ep.termination = "context_full" if e.kind == "context_length" else "error"
                ep.reason, ep.messages = f"{e.kind}: {e}"[:500], messages
                return ep
            tokens += (gen.prompt_tokens or 0) + (gen.completion_tokens or 0)
            step = Step(turn, gen.text, [], gen.latency_ms, gen.prompt_tokens, gen.completion_tokens, gen.finish_reason,
                        gen.ttft_ms, gen.token_source)
            ep.steps.append(step)
            calls = gen.tool_calls or []
            if not calls and gen.finish_reason == "length" and limits.cut_off_ends_episode:
                messages.append({"role": "assistant", "content": gen.text})  # neither an answer nor a call
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
                record: dict[str, Any] = {"name": call["name"], "arguments": call["arguments"], "raw": call["raw"][:2000],
                                          "valid": True}
                refused = _refusal(call, names, validators)
                if refused is not None:
                    result = ToolResult(False, error=refused)
                    record["valid"] = False
                    ep.invalid_calls += 1
                else:
                    try:
                        result = await asyncio.to_thread(env.call, call["name"], call["arguments"] or {})
                    except EnvironmentFailed as e:
                        record["error"] = str(e)
                        step.calls.append(record)
                        ep.termination, ep.reason, ep.messages = "environment", f"{e.kind}: {e}", messages
                        return ep
                record.update({"ok": result.ok, "result": _kept(result.result), "error": result.error, "ms": result.ms,
                               "result_sha": result_digest(result.result) if result.ok else None})
                step.calls.append(record)
                if not result.ok:
                    ep.tool_errors += 1
                messages.append(_tool_message(call, _bounded(result.result) if result.ok
                                              else _bounded({"error": result.error})))
        ep.turns_done = turn + 1
        try:
            ep.turn_states.append(await asyncio.to_thread(env.state))
        except EnvironmentFailed as e:
            ep.termination, ep.reason, ep.messages = "environment", f"{e.kind}: {e}", messages
            return ep
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
