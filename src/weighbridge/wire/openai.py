"""OpenAI responses and stream chunks, parsed once, strictly, with bounds.

Everything an upstream sends is written by somebody else: a server with a bug, a proxy, or an
attacker (the threat model in docs/gateway.md). Before this module, each consumer reached into the
decoded JSON with ``.get`` and trusted what it found, so ``choices: [1]`` or ``delta: "s"`` ended a
whole bakeoff with a traceback and a negative ``prompt_tokens`` gave a key negative spend. Here a
chunk or a response becomes typed values or one ``MalformedResponse`` naming the first field that
is wrong; the caller decides what that costs (a job's error in a bakeoff, the next upstream or an
error event in the gateway).

What is checked: JSON without NaN/Infinity and without nesting deeper than the decoder allows; the
types of every field a consumer reads; token counts as integers in ``[0, MAX_TOKENS]``; at most
``MAX_CHOICES`` choices and ``MAX_TOOL_CALLS`` tool calls, indices below ``MAX_TOOL_CALLS``.
Sizes are bounded before parsing, by the reader (the SSE decoder's line bound, the HTTP client's
body bound). Fields nobody reads (logprobs, ids of other kinds) are not inspected.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import WeighbridgeError

MAX_TOKENS = 100_000_000  # no request generates or reads more; a larger count is a lie
MAX_CHOICES = 128
MAX_TOOL_CALLS = 128
MAX_META_CHARS = 256


class MalformedResponse(WeighbridgeError):
    """An upstream answer that breaks the OpenAI shape or a bound; ``field`` is the first offender."""

    kind = "malformed_response"

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"malformed response: {field}: {problem}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)  # made once: json.loads(..., parse_constant=) builds one per call


def loads(data: str | bytes, what: str = "body") -> Any:
    """Strict JSON: NaN, Infinity and nesting past the decoder's depth are errors, not values."""
    try:
        return _DECODER.decode(data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data)
    except RecursionError:
        raise MalformedResponse(what, "JSON nested too deeply") from None
    except ValueError as e:  # includes UnicodeDecodeError and integers past Python's digit limit
        raise MalformedResponse(what, f"not JSON ({str(e)[:80]})") from None


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _str(value: Any, where: str, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise MalformedResponse(where, f"expected a string, got {_type(value)}")
    return value


def _count(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedResponse(where, f"expected a token count, got {_type(value)}")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise MalformedResponse(where, f"expected a whole token count, got {value!r}")
    count = int(value)
    if not 0 <= count <= MAX_TOKENS:
        raise MalformedResponse(where, f"token count {count} outside [0, {MAX_TOKENS:,}]")
    return count


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None

    @property
    def complete(self) -> bool:
        return self.prompt_tokens is not None and self.completion_tokens is not None


def parse_usage(obj: Any, where: str = "usage") -> Usage | None:
    """None when absent or empty; raises MalformedResponse for anything but bounded whole counts."""
    if obj is None or obj == {}:
        return None
    if not isinstance(obj, dict):
        raise MalformedResponse(where, f"expected an object, got {_type(obj)}")
    pt = _count(obj.get("prompt_tokens"), f"{where}.prompt_tokens")
    ct = _count(obj.get("completion_tokens"), f"{where}.completion_tokens")
    _count(obj.get("total_tokens"), f"{where}.total_tokens")
    details = obj.get("completion_tokens_details")
    rt = None
    if details is not None:
        if not isinstance(details, dict):
            raise MalformedResponse(f"{where}.completion_tokens_details", f"expected an object, got {_type(details)}")
        rt = _count(details.get("reasoning_tokens"), f"{where}.completion_tokens_details.reasoning_tokens")
    return Usage(pt, ct, rt)


# the fields a server may carry a reasoning model's thinking in, apart from its content; the first one set wins
REASONING_FIELDS = ("reasoning_content", "reasoning")


@dataclass(slots=True)
class ToolCallPiece:
    """One tool call, or one streamed piece of one (the first names it, later ones add arguments)."""

    index: int
    id: str | None
    name: str
    arguments: str


def _arguments(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # some servers send the arguments as an object, not a JSON string
        return json.dumps(value, ensure_ascii=False)
    raise MalformedResponse(where, f"expected a string, got {_type(value)}")


def _tool_calls(value: Any, where: str) -> list[ToolCallPiece]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedResponse(where, f"expected a list, got {_type(value)}")
    if len(value) > MAX_TOOL_CALLS:
        raise MalformedResponse(where, f"{len(value)} tool calls (at most {MAX_TOOL_CALLS})")
    out = []
    for i, tc in enumerate(value):
        w = f"{where}[{i}]"
        if not isinstance(tc, dict):
            raise MalformedResponse(w, f"expected an object, got {_type(tc)}")
        index = tc.get("index", i)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_TOOL_CALLS:
            raise MalformedResponse(f"{w}.index", f"expected an integer in [0, {MAX_TOOL_CALLS}), got {index!r:.40}")
        fn = tc.get("function")
        if fn is None:
            fn = {}
        if not isinstance(fn, dict):
            raise MalformedResponse(f"{w}.function", f"expected an object, got {_type(fn)}")
        out.append(ToolCallPiece(index, _str(tc.get("id"), f"{w}.id"), _str(fn.get("name"), f"{w}.function.name") or "",
                                 _arguments(fn.get("arguments"), f"{w}.function.arguments")))
    return out


@dataclass(slots=True)
class Choice:
    """A choice of a response, or the delta of a streamed one: its text, reasoning, tool calls, end."""

    index: int
    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCallPiece] = field(default_factory=list)
    finish_reason: str | None = None

    @property
    def generated(self) -> bool:
        """Anything here is generated content: what stops the time-to-first-token clock."""
        return bool(self.text or self.reasoning or any(tc.name or tc.arguments for tc in self.tool_calls))


def _choice(obj: Any, where: str, key: str) -> Choice:
    """One choice; ``key`` is "delta" (a chat chunk), "message" (a chat response) or "text" (completions)."""
    if not isinstance(obj, dict):
        raise MalformedResponse(where, f"expected an object, got {_type(obj)}")
    index = obj.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_CHOICES:
        index = 0
    finish = _str(obj.get("finish_reason"), f"{where}.finish_reason")
    if finish is not None and len(finish) > 64:
        raise MalformedResponse(f"{where}.finish_reason", "longer than 64 characters")
    if key == "text":
        return Choice(index, _str(obj.get("text"), f"{where}.text") or "", finish_reason=finish)
    body = obj.get(key)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise MalformedResponse(f"{where}.{key}", f"expected an object, got {_type(body)}")
    w = f"{where}.{key}"
    reasoning = next((r for f in REASONING_FIELDS if (r := _str(body.get(f), f"{w}.{f}"))), "")
    return Choice(index, _str(body.get("content"), f"{w}.content") or "", reasoning,
                  _tool_calls(body.get("tool_calls"), f"{w}.tool_calls"), finish)


@dataclass(slots=True)
class Parsed:
    """A response or a stream chunk: its choices, usage (or why the usage was refused), error, meta."""

    choices: list[Choice]
    usage: Usage | None = None
    usage_error: MalformedResponse | None = None
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    """id, model, created and system_fingerprint when they have the right type; dropped otherwise
    (nothing depends on them but what is shown back)."""
    out: dict[str, Any] = {}
    for k in ("id", "model", "system_fingerprint"):
        v = obj.get(k)
        if isinstance(v, str) and len(v) <= MAX_META_CHARS:
            out[k] = v
    c = obj.get("created")
    if isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 1 << 40:
        out["created"] = c
    return out


def _error(value: Any) -> str:
    if isinstance(value, dict):
        msg = value.get("message")
        return msg[:500] if isinstance(msg, str) else json.dumps(value)[:500]
    return str(value)[:500]


def _parse(obj: Any, chat: bool, stream: bool, where: str) -> Parsed:
    if not isinstance(obj, dict):
        raise MalformedResponse(where, f"expected a JSON object, got {_type(obj)}")
    if obj.get("error") is not None:
        return Parsed([], error=_error(obj["error"]), meta=_meta(obj))
    raw = obj.get("choices")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise MalformedResponse("choices", f"expected a list, got {_type(raw)}")
    if len(raw) > MAX_CHOICES:
        raise MalformedResponse("choices", f"{len(raw)} choices (at most {MAX_CHOICES})")
    key = ("delta" if stream else "message") if chat else "text"
    # a chat choice with "text" and no delta/message is read as text: some servers send that shape
    choices = [_choice(c, f"choices[{i}]", "text" if isinstance(c, dict) and key not in c and "text" in c else key)
               for i, c in enumerate(raw)]
    usage = usage_error = None
    try:
        usage = parse_usage(obj.get("usage"))
    except MalformedResponse as e:
        usage_error = e
    return Parsed(choices, usage, usage_error, None, _meta(obj))


def parse_chunk(obj: Any, *, chat: bool) -> Parsed:
    """One decoded stream event (not ``[DONE]``)."""
    return _parse(obj, chat, True, "event")


def parse_response(obj: Any, *, chat: bool) -> Parsed:
    """A whole (non-streamed) response body, already decoded."""
    return _parse(obj, chat, False, "body")


class Accumulator:
    """The one reader of a checked stream: what its chunks carry, accumulated the same way for every
    consumer (the openai backend, the gateway's stream account, the load generator). Tool-call deltas
    are put together by index – the first names a call, later ones append argument text; a server that
    resends a whole call in one delta gives it whole, one that repeats the name in every delta
    (llama-cpp-python) names it once – and the text, reasoning, usage (or why it was
    refused), finish reason and first metadata are kept. ``add`` says how many generated pieces a
    chunk held, so each consumer keeps its own clock (time to first token, inter-token gaps)."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self.slots: dict[int, dict[str, str]] = {}  # tool calls by index: id, name, arguments
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.usage_error: MalformedResponse | None = None
        self.meta: dict[str, Any] = {}
        self.pieces = 0  # generated pieces so far
        self.ended = False  # [DONE] or a finish reason: the stream was not cut short

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning)

    def done(self) -> None:
        """The stream's ``[DONE]``."""
        self.ended = True

    def add(self, chunk: Parsed) -> int:
        """Take one checked chunk; the number of its choices that carried generated content."""
        for k, v in chunk.meta.items():
            self.meta.setdefault(k, v)
        if chunk.usage_error is not None:
            self.usage_error = chunk.usage_error
        elif chunk.usage is not None:
            self.usage = chunk.usage
        generated = 0
        for ch in chunk.choices:
            if ch.generated:
                generated += 1
            if ch.text:
                self._text.append(ch.text)
            if ch.reasoning:
                self._reasoning.append(ch.reasoning)
            for piece in ch.tool_calls:
                slot = self.slots.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
                slot["id"] = piece.id or slot["id"]
                if piece.name != slot["name"]:  # llama-cpp-python resends the whole name with every delta
                    slot["name"] += piece.name
                slot["arguments"] += piece.arguments
            if ch.finish_reason:
                self.finish_reason = ch.finish_reason
                self.ended = True
        self.pieces += generated
        return generated

    def tool_call_text(self) -> str:
        """Every call's name and argument text, for counting the tokens they took."""
        return "".join(s["name"] + s["arguments"] for _, s in sorted(self.slots.items()))
