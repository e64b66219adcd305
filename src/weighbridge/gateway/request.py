"""What a client may send: the types of the OpenAI fields the gateway reads (the body size limit,
``max_body_bytes`` in the plan, is checked before this, in ``Gateway.handle``).

A field of the wrong type (``"model": ["chat"]``, ``"max_tokens": "x"``, ``"stream_options": "x"``)
used to reach code that assumed its type and end in a 500 with a traceback. Each is now a 400
that names the field; fields the gateway does not read pass through untouched, as upstreams may
know them.
"""

from __future__ import annotations

from typing import Any

_INT_FIELDS = ("max_tokens", "max_completion_tokens", "n", "seed", "top_k", "logprobs", "top_logprobs")
_NUMBER_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "repetition_penalty", "min_p")
_OBJECT_FIELDS = ("stream_options", "metadata", "response_format", "logit_bias")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def problem(body: dict[str, Any], chat: bool) -> tuple[str, str] | None:
    """(field, what is wrong) for the first field of the wrong type, else None."""
    if "model" in body and not isinstance(body["model"], str):
        return "model", "must be a string (a route name)"
    for f in _INT_FIELDS:
        if body.get(f) is not None and (isinstance(body[f], bool) or not isinstance(body[f], int)):
            return f, "must be an integer"
    for f in ("max_tokens", "max_completion_tokens", "n"):
        if isinstance(body.get(f), int) and body[f] < 1:
            return f, "must be at least 1"
    for f in _NUMBER_FIELDS:
        if body.get(f) is not None and not _number(body[f]):
            return f, "must be a number"
    for f in _OBJECT_FIELDS:
        if body.get(f) is not None and not isinstance(body[f], dict):
            return f, "must be an object"
    if "stream" in body and not isinstance(body["stream"], bool):
        return "stream", "must be true or false"
    so = body.get("stream_options")
    if isinstance(so, dict) and "include_usage" in so and not isinstance(so["include_usage"], bool):
        return "stream_options.include_usage", "must be true or false"
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str) and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        return "stop", "must be a string or a list of strings"
    if body.get("user") is not None and not isinstance(body["user"], str):
        return "user", "must be a string"
    if body.get("tools") is not None and not (isinstance(body["tools"], list) and all(isinstance(t, dict) for t in body["tools"])):
        return "tools", "must be a list of objects"
    if chat:
        return _messages(body.get("messages"))
    prompt = body.get("prompt")
    if not isinstance(prompt, str) and not (isinstance(prompt, list) and all(isinstance(p, str) for p in prompt)):
        return "prompt", "must be a string or a list of strings"
    return None


def _messages(messages: Any) -> tuple[str, str] | None:
    if not isinstance(messages, list):  # an empty list is the upstream's to refuse
        return "messages", "must be a list of messages"
    for i, m in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(m, dict):
            return where, "must be an object with 'role' and 'content'"
        if not isinstance(m.get("role"), str):
            return f"{where}.role", "must be a string"
        content = m.get("content")
        if content is not None and not isinstance(content, str):
            if not isinstance(content, list) or not all(isinstance(p, dict) for p in content):
                return f"{where}.content", "must be a string, a list of content parts, or null"
            for j, part in enumerate(content):
                if "text" in part and not isinstance(part["text"], str):
                    return f"{where}.content.{j}.text", "must be a string"
        if m.get("name") is not None and not isinstance(m["name"], str):
            return f"{where}.name", "must be a string"
        calls = m.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
                return f"{where}.tool_calls", "must be a list of objects"
            for j, c in enumerate(calls):
                fn = c.get("function")
                if fn is not None and (not isinstance(fn, dict) or not isinstance(fn.get("arguments", ""), str)):
                    return f"{where}.tool_calls.{j}.function.arguments", "must be a string (JSON text)"
    return None
