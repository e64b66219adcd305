"""Tool calls as data: one shape for every backend, whether the server returned structured
``tool_calls`` or the model wrote its calls into the text.

A call is ``{"id", "name", "arguments", "raw", "error"}``: ``arguments`` is the parsed JSON object
(``None`` when it does not parse), ``raw`` the exact string the model produced, ``error`` why it
did not parse. Keeping the raw string means a scorer can say "arguments are not JSON: …" instead of
silently treating a broken call as no call.

Models that write calls into text (llama.cpp in-process, and servers without a tool parser, such
as llama-cpp-python's) use one of two forms, both read here when the request offered tools:
Hermes/Qwen ``<tool_call>{"name": …, "arguments": …}</tool_call>`` blocks, or — small models
often do this instead — an answer that is nothing but a JSON object (or list of them), fenced or
not, with ``name`` naming an offered function and ``arguments``. Anything else stays text.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

from ..core.schemas import check_schema
from ..core.types import ToolCall

_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)
_FENCED = re.compile(r"^```[A-Za-z]*\s*\n?(.*?)\n?```$", re.DOTALL)


def make_call(call_id: str | None, name: str, raw: Any) -> ToolCall:
    """One call from a name and its arguments (a JSON string as servers send them, or an object)."""
    if not isinstance(raw, str):
        raw = json.dumps(raw, ensure_ascii=False)
    args: Any = None
    error = None
    try:
        args = json.loads(raw) if raw.strip() else {}
        if not isinstance(args, dict):
            error, args = f"arguments are JSON but not an object ({type(args).__name__})", None
    except (ValueError, RecursionError) as e:
        error = f"arguments are not JSON: {e}"
    return {"id": call_id, "name": name, "arguments": args, "raw": raw, "error": error}


def calls_from_slots(slots: dict[int, dict[str, str]]) -> list[ToolCall]:
    """Streamed calls as the stream accumulator put them together (``wire.openai.Accumulator.slots``),
    in index order, in the one call shape."""
    return [make_call(s["id"] or f"call_{i}", s["name"], s["arguments"]) for i, s in sorted(slots.items())]


def _call_objects(value: Any, names: set[str]) -> list[ToolCall] | None:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(x, dict) and isinstance(x.get("name"), str) for x in items):
        return None
    if names and not all(x["name"] in names for x in items):
        return None
    return [make_call(f"call_{i}", x["name"], x.get("arguments", x.get("parameters", {}))) for i, x in enumerate(items)]


def from_text(text: str, offered: list[dict[str, Any]] | None) -> tuple[str, list[ToolCall]]:
    """(the text left once calls are taken out, the calls) from a model that writes calls as text."""
    names = {str((t.get("function") or {}).get("name")) for t in offered or [] if isinstance(t, dict)}
    blocks = _HERMES.findall(text)
    if blocks:
        calls: list[ToolCall] = []
        for i, block in enumerate(blocks):
            try:
                obj = json.loads(block)
            except (ValueError, RecursionError) as e:
                name = re.search(r'"name"\s*:\s*"([^"]+)"', block)
                calls.append({"id": f"call_{i}", "name": name.group(1) if name else "", "arguments": None,
                              "raw": block, "error": f"the call is not JSON: {e}"})
                continue
            found = _call_objects(obj, set())
            calls.extend(found or [{"id": f"call_{i}", "name": "", "arguments": None, "raw": block,
                                    "error": "the call has no 'name'"}])
        return _HERMES.sub("", text).strip(), calls
    stripped = text.strip()
    fenced = _FENCED.match(stripped)
    body = fenced.group(1).strip() if fenced else stripped
    if body.startswith(("{", "[")):
        try:
            found = _call_objects(json.loads(body), names)
        except (ValueError, RecursionError):
            found = None
        if found:
            return "", found
    return text, []


def has_tool_template(template: str | None) -> bool:
    """Whether a GGUF chat template renders a ``tools`` list at all (Qwen2.5's, Llama 3.1's, Hermes')."""
    return bool(template) and re.search(r"\btools\b", template or "") is not None


def tool_validators(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """A JSON-schema validator per offered tool, by name; a tool whose parameters are not a schema
    gets none (the agent loop then calls it unchecked, deployment fidelity counts its calls invalid)."""
    out = {}
    for t in tools:
        params = t["function"].get("parameters") or {"type": "object"}
        try:
            cls = check_schema(params)
        except jsonschema.SchemaError:
            continue
        out[t["function"]["name"]] = cls(params)
    return out
