"""What a case is: chat messages (or a single prompt, or an agent's scripted turns) with ``{{vars}}``,
what is expected, the scorers that check it and tags; its workload class (code, math, extraction,
...) groups the report. ``loader.py`` reads cases from files into this one shape."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from ..core.schemas import check_schema
from .agent_case import AgentLimits, EnvironmentSource, GoldCall, environment_label

_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class ToolCallSpec(BaseModel):
    """An earlier call in a multi-turn history: ``{id, function: {name, arguments}}`` (arguments as
    an object or as the JSON text the OpenAI API carries)."""

    model_config = ConfigDict(extra="forbid")
    id: str
    type: Literal["function"] = "function"
    function: dict[str, Any]

    @model_validator(mode="after")
    def _shape(self) -> "ToolCallSpec":
        if not isinstance(self.function.get("name"), str):
            raise ValueError("a tool call's function needs a 'name'")
        args = self.function.get("arguments", {})
        if isinstance(args, dict):
            self.function["arguments"] = json.dumps(args, ensure_ascii=False)
        elif not isinstance(args, str):
            raise ValueError("a tool call's 'arguments' is an object or a JSON string")
        return self


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    name: str | None = None
    tool_calls: list[ToolCallSpec] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> "Message":
        if self.content is None and not self.tool_calls:
            raise ValueError("a message needs 'content' (or, for an assistant, 'tool_calls')")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only an assistant message can hold 'tool_calls'")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs 'tool_call_id': the call it answers")
        return self


class FunctionTool(BaseModel):
    """An OpenAI function tool: ``{type: function, function: {name, description, parameters}}``."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["function"] = "function"
    function: dict[str, Any]

    @model_validator(mode="after")
    def _shape(self) -> "FunctionTool":
        fn = self.function
        if not isinstance(fn.get("name"), str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", fn["name"]):
            raise ValueError("a tool's function needs a 'name' of letters, digits, _ . - (at most 64)")
        unknown = set(fn) - {"name", "description", "parameters", "strict"}
        if unknown:
            raise ValueError(f"unknown key(s) in a tool's function: {', '.join(sorted(unknown))}")
        params = fn.get("parameters", {"type": "object", "properties": {}})
        try:
            check_schema(params)
        except jsonschema.SchemaError as e:
            raise ValueError(f"tool '{fn['name']}': 'parameters' is not a valid JSON schema: {e.message}") from None
        return self


class Case(BaseModel):
    """One thing to ask every model, and how to tell a good answer."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    messages: list[Message] | None = None
    prompt: str | None = None
    system: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    expected: Any = None
    scorers: list[str | dict[str, Any]] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    workload: str | None = None
    context_tokens: int | None = Field(None, ge=0, description="the prompt's length estimate (long-context cases)")
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    trials: int | None = Field(None, ge=1, le=100, description="repeats of this case (else the config's samples)")
    environment: str | None = None  # an agent case: the environment whose methods are its tools
    initial_state: dict[str, Any] = Field(default_factory=dict)
    turns: list[str] | None = None
    gold: list[list[GoldCall]] | None = None
    limits: AgentLimits | None = None
    held_back: dict[int, list[str]] = Field(default_factory=dict)  # turn -> tools first offered at that turn
    _environment: EnvironmentSource | None = PrivateAttr(None)
    _where: tuple[str, int | None] = PrivateAttr(("<suite>", None))  # the file and line it was read from

    @model_validator(mode="after")
    def _check(self) -> "Case":
        if self.environment is not None or self.turns is not None or self.gold is not None:
            return self._check_agent()
        if self.initial_state or self.limits is not None or self.held_back:
            raise ValueError("'initial_state', 'limits' and 'held_back' belong to an agent case: give it an 'environment'")
        if self.response_format is not None and self.response_format.get("type") not in ("json_object", "json_schema",
                                                                                          "text"):
            raise ValueError("response_format.type is json_object, json_schema or text")
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a case needs exactly one of 'messages' or 'prompt'")
        if not self.scorers:
            if self.expected is None:
                raise ValueError("a case needs 'scorers' or an 'expected' value (checked with 'exact')")
            self.scorers = ["exact"]
        if self.workload is None:
            self.workload = self.tags[0] if self.tags else "general"
        return self

    def _check_agent(self) -> "Case":
        if self.environment is None:
            raise ValueError("'turns' and 'gold' belong to an agent case: give it an 'environment'")
        if self.messages is not None or self.prompt is not None:
            raise ValueError("an agent case has 'turns' (the user's messages), not 'messages' or 'prompt'")
        if not self.turns or not all(isinstance(t, str) and t.strip() for t in self.turns):
            raise ValueError("an agent case needs 'turns': one or more user messages")
        if self.gold is None:
            raise ValueError("an agent case needs 'gold': the reference calls of each turn ([] where none is right)")
        if len(self.gold) > len(self.turns):
            raise ValueError(f"'gold' has {len(self.gold)} turns of calls but the case has {len(self.turns)} turns")
        self.gold = [*self.gold, *([[]] * (len(self.turns) - len(self.gold)))]
        late = [t for t in self.held_back if not 0 < t < len(self.turns)]
        if late:
            raise ValueError(f"'held_back' names turn {late[0]}: tools can be held back until turn 1 to "
                             f"{len(self.turns) - 1} (0 is the first)")
        if not self.scorers:
            self.scorers = ["agent"]
        if self.workload is None:  # by environment: agent-orders, agent-shop (from shop.py:Shop)
            self.workload = self.tags[0] if self.tags else f"agent-{environment_label(self.environment)}"
        return self

    @property
    def is_agent(self) -> bool:
        return self.environment is not None

    @property
    def environment_source(self) -> EnvironmentSource | None:
        """The environment's code, read when the suite was loaded (None for a case read back from a store)."""
        return self._environment

    def rendered_turns(self) -> list[str]:
        """An agent case's user turns with ``{{vars}}`` filled in."""
        return [_render(t, self.vars) for t in self.turns or []]

    def rendered_system(self) -> str | None:
        return _render(self.system, self.vars) if self.system else None

    @property
    def where(self) -> tuple[str, int | None]:
        """The suite file and line this case was read from (for errors found after loading)."""
        return self._where

    def episode_limits(self) -> AgentLimits:
        return self.limits or AgentLimits()

    def rendered_messages(self) -> list[dict[str, Any]]:
        """Chat messages with ``{{vars}}`` filled in (vars were checked at load time); a history's
        tool calls and tool results kept as the OpenAI API carries them."""
        msgs: list[dict[str, Any]] = [m.model_dump(exclude_none=True) for m in self.messages] if self.messages else [
            {"role": "user", "content": t} for t in self.turns] if self.turns else [
            {"role": "user", "content": self.prompt or ""}]
        if self.system and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": self.system})
        out = []
        for m in msgs:
            m = dict(m)
            if isinstance(m.get("content"), str):
                m["content"] = _render(m["content"], self.vars)
            elif m.get("tool_calls"):
                m["content"] = None
            out.append(m)
        return out

    def tool_dicts(self) -> list[dict[str, Any]] | None:
        return [t.model_dump() for t in self.tools] if self.tools else None


def _render(text: str, vars: dict[str, Any]) -> str:
    return _VAR.sub(lambda m: str(vars[m.group(1)]), text)


def _missing_vars(case: Case) -> list[str]:
    texts = [m.content or "" for m in case.messages or []] + [case.prompt or "", case.system or "", *(case.turns or [])]
    return sorted({v for t in texts for v in _VAR.findall(t) if v not in case.vars})
