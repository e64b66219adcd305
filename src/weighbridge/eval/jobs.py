"""One job of a bakeoff (a model, a case, a repeat) and the request it sends: the same request for
every backend, so the same case is asked the same way of every model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backends import Request
from ..core.config import ModelSpec
from ..suites import Case


@dataclass
class Job:
    model: str
    case: Case
    sample: int


def build_request(spec: ModelSpec, case: Case, sample: int = 0) -> Request:
    """The request for one job. Repeats get seed + sample index, so with temperature > 0 they differ
    (and stay reproducible); at temperature 0 the seed changes nothing."""
    p = spec.params
    messages = case.rendered_messages()
    seed = p.seed + sample
    if spec.mode == "completion":
        from ..backends.chat_template import render_completion_prompt

        return Request(prompt=render_completion_prompt(spec.prompt_template, messages), temperature=p.temperature,
                       top_p=p.top_p, max_tokens=p.max_tokens, seed=seed, stop=list(p.stop), tools=case.tool_dicts(),
                       response_format=case.response_format)
    return Request(messages=messages, temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_tokens,
                   seed=seed, stop=list(p.stop), tools=case.tool_dicts(), tool_choice=case.tool_choice,
                   response_format=case.response_format or structured_format(spec, case), thinking=spec.thinking,
                   thinking_budget=spec.thinking_budget if spec.thinking != "off" else None)


def structured_format(spec: ModelSpec, case: Case) -> dict[str, Any] | None:
    """The response_format a model's ``structured_output`` mode asks for on a case checked by
    json_schema: the scorer's own schema, or any JSON object. Other cases are left free."""
    if spec.structured_output == "off":
        return None
    schemas = [sp.get("schema") for sp in case.scorers if isinstance(sp, dict) and sp.get("type") == "json_schema"]
    if not schemas and "json_schema" not in case.scorers:
        return None
    if spec.structured_output == "json_schema" and schemas and schemas[0]:
        return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schemas[0], "strict": True}}
    return {"type": "json_object"}
