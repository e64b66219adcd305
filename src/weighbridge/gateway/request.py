"""What a client may send: the request body parsed strictly and checked against the OpenAI chat and
completions shapes (Pydantic models; fields the gateway does not know pass through untouched, as
upstreams may know them).

Every way a body can be wrong becomes one ``Malformed`` with the field's dotted path
(``messages.0.content``), which the gateway turns into a 400 naming it: a value of the wrong type
(``"model": ["chat"]``, ``"max_tokens": "x"``), a number JSON cannot carry on (``NaN``,
``1e400``, a 30-digit token count), a duplicate key (the last one would silently win), a lone
UTF-16 surrogate (``"\\ud800"``, which no UTF-8 store can hold), nesting deeper than the limit.
These used to reach code that assumed their type and end in a 500 with a traceback.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..core.errors import WeighbridgeError
from ..core.inputs import MAX_DEPTH, depth_of, no_duplicate_keys

_MAX_INT = 2**31 - 1
Count = Annotated[int, Field(ge=1, le=_MAX_INT)]
Int = Annotated[int, Field(ge=-(2**53), le=2**53)]
Number = Annotated[float, Field(allow_inf_nan=False)]


class Malformed(WeighbridgeError):
    """A request body that is not what the API takes: which field (``param``) and why."""

    def __init__(self, param: str | None, message: str, code: str = "invalid_field") -> None:
        super().__init__(message)
        self.param, self.code = param, code


class _Open(BaseModel):
    """Strict types for the fields named; any other field is allowed and left as it is."""

    model_config = ConfigDict(extra="allow", strict=True)


class ContentPart(_Open):
    type: str
    text: str | None = None

    @model_validator(mode="after")
    def _text_part(self) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("needs 'text' (a part of type text)")
        return self


class FunctionCall(_Open):
    name: str | None = None
    arguments: str | None = Field(None, description="JSON text, as the OpenAI API sends it")


class ToolCall(_Open):
    id: str | None = None
    type: str | None = None
    function: FunctionCall


class Message(_Open):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDef(_Open):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Open):
    type: str
    function: FunctionDef | None = None

    @model_validator(mode="after")
    def _function_tool(self) -> Tool:
        if self.type == "function" and self.function is None:
            raise ValueError("needs 'function' (a tool of type function)")
        return self


class StreamOptions(_Open):
    include_usage: bool | None = None


class ResponseFormat(_Open):
    type: str


class _Common(_Open):
    model: str | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: Count | None = None
    max_completion_tokens: Count | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    seed: Int | None = None
    top_k: Int | None = None
    logprobs: bool | Int | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    min_p: Number | None = None
    presence_penalty: Number | None = None
    frequency_penalty: Number | None = None
    repetition_penalty: Number | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None
    logit_bias: dict[str, Number] | None = None
    response_format: ResponseFormat | None = None


class ChatRequest(_Common):
    messages: list[Message]
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None


class CompletionRequest(_Common):
    prompt: str | list[str] | list[Int] | list[list[Int]]
    suffix: str | None = None
    echo: bool | None = None


# -- parsing --------------------------------------------------------------------------------------
def _no_constants(name: str) -> Any:
    raise Malformed(None, f"the request body is not valid JSON: {name} is not a JSON number", "invalid_json")


_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")


def parse(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or ``Malformed``: not UTF-8, not JSON, NaN/Infinity, duplicate
    keys, deeper than the nesting limit, a string holding a lone surrogate."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Malformed(None, f"the request body is not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})",
                        "invalid_json") from None
    try:
        body = json.loads(text, object_pairs_hook=no_duplicate_keys, parse_constant=_no_constants)
    except RecursionError:
        raise Malformed(None, f"the request body is nested deeper than {MAX_DEPTH} levels", "invalid_json") from None
    except json.JSONDecodeError as e:
        raise Malformed(None, f"the request body is not valid JSON: {e.msg} (offset {e.pos})", "invalid_json") from None
    except ValueError as e:  # a key twice in one object (no_duplicate_keys), an integer of 4,300+ digits
        raise Malformed(None, f"the request body is not valid JSON: {e}", "invalid_json") from None
    if not isinstance(body, dict):
        raise Malformed(None, "the request body must be a JSON object", "invalid_json")
    if depth_of(body) > MAX_DEPTH:
        raise Malformed(None, f"the request body is nested deeper than {MAX_DEPTH} levels", "invalid_json")
    if _SURROGATE_ESCAPE.search(raw):  # rare: only then walk the strings for one without its pair
        where = _lone_surrogate(body)
        if where is not None:
            raise Malformed(where or None, f"field '{where}' holds a lone UTF-16 surrogate (\\ud800-\\udfff), "
                                           "which is not text")
    return body


def _lone_surrogate(value: Any, path: str = "") -> str | None:
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        v, p = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return p
        elif isinstance(v, dict):
            for k, x in v.items():
                stack.append((k, p))
                stack.append((x, f"{p}.{k}" if p else str(k)))
        elif isinstance(v, list):
            stack.extend((x, f"{p}.{i}" if p else str(i)) for i, x in enumerate(v))
    return None


# -- the schema -------------------------------------------------------------------------------------
_TYPE_TAG = re.compile(r"[A-Z\[\-]|^(?:str|int|float|bool|none|list|dict|literal)$")


def _where(loc: tuple[int | str, ...]) -> str:
    """Pydantic's location without its union-branch tags (``str``, ``list[ContentPart]``, class names)."""
    return ".".join(str(p) for p in loc if isinstance(p, int) or not _TYPE_TAG.search(p))


def _phrase(msg: str) -> str:
    msg = re.sub(r" or instance of \w+", "", msg.replace("Value error, ", ""))
    return re.sub(r"^Input should be", "must be", msg.replace("a valid dictionary", "an object"))


def check(body: dict[str, Any], chat: bool) -> None:
    """Raise ``Malformed`` for the first field that does not fit the OpenAI shape (the body is not changed)."""
    try:
        (ChatRequest if chat else CompletionRequest).model_validate(body)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        # of a union's branches, the one that got furthest into the value says most
        first = max(errors, key=lambda err: len(_where(err["loc"]).split(".")))
        where = _where(first["loc"])
        same = [err for err in errors if _where(err["loc"]) == where]
        phrases = list(dict.fromkeys(_phrase(err["msg"]) for err in same))
        text = phrases[0] + "".join(" or " + re.sub(r"^must be ", "", p) for p in phrases[1:])
        if first["type"] == "missing":
            raise Malformed(where, f"field '{where}' is required") from None
        raise Malformed(where or None, f"field '{where}' {text}") from None
