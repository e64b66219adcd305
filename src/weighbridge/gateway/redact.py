"""Masking PII in everything a request carries: the fields the upstream, the cache or the audit log
will see, not only the message text.

The detectors live in ``pii``; this module decides *where* they look. A chat body's messages
(string content, text parts, ``name``, the arguments of earlier tool calls), its tool definitions
(descriptions and every string in the parameter schemas), ``user``, ``metadata``, a completion's
``prompt`` and ``suffix``, the schema of ``response_format``, and any field the gateway does not
know (an upstream may read it) are masked. Left alone are the fields that steer the call and that
no person writes: ``model``, sampling numbers, ``stop``, ``tool_choice``, ids, roles and types, and
function names (the upstream's answer must name the same function). Masks are stable labels such
as ``[EMAIL]`` so that a reader of the audit log sees what kind of data was there without seeing it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from .pii import DEFAULT_REGIONS, Detector, Hit, builtin_detectors, has_digit, regex_finder, resolve

# top-level fields that steer the call: never text a person wrote
_CONTROL = {"model", "stream", "stream_options", "n", "max_tokens", "max_completion_tokens", "temperature", "top_p",
            "top_k", "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty", "seed", "stop",
            "logit_bias", "logprobs", "top_logprobs", "echo", "best_of", "tool_choice", "parallel_tool_calls",
            "function_call", "modalities", "service_tier", "reasoning_effort", "store"}
_MESSAGE_CONTROL = {"role", "tool_call_id", "id", "type"}


class Redactor:
    """Masks the configured detectors' hits in text, skipping strings on the allow list."""

    def __init__(self, detectors: list[str], patterns: dict[str, str] | None = None,
                 allow: list[str] | None = None, regions: list[str] | None = None) -> None:
        builtin = builtin_detectors(regions or DEFAULT_REGIONS)
        self.detectors: list[Detector] = [d for name, d in builtin.items() if name in detectors]
        for name, p in (patterns or {}).items():
            self.detectors.append(Detector(name, f"[{name.upper()}]", regex_finder(name, p)))
        self.priority = {d.name: i for i, d in enumerate(self.detectors)}
        self.masks = {d.name: d.mask for d in self.detectors}
        self.allow = set(allow or ())

    def find(self, s: str) -> list[Hit]:
        """Every detected value in ``s``, non-overlapping, in order."""
        digit = has_digit(s)
        hits = [Hit(a, b, d.name, sub) for d in self.detectors if digit or not d.needs_digit for a, b, sub in d.find(s)]
        if self.allow:
            hits = [h for h in hits if s[h.start:h.end] not in self.allow]
        return resolve(hits, self.priority) if hits else []

    def text(self, s: str, events: Counter[str]) -> str:
        hits = self.find(s)
        if not hits:
            return s
        out, pos = [], 0
        for h in hits:
            out += [s[pos:h.start], self.masks[h.kind]]
            events[f"pii.{h.kind}"] += 1
            pos = h.end
        out.append(s[pos:])
        return "".join(out)

    def value(self, v: Any, events: Counter[str]) -> Any:
        """Every string in a JSON value (object keys are names, not text: left alone)."""
        if isinstance(v, str):
            return self.text(v, events)
        if isinstance(v, list):
            return [self.value(x, events) for x in v]
        if isinstance(v, dict):
            return {k: self.value(x, events) for k, x in v.items()}
        return v

    def arguments(self, raw: str, events: Counter[str]) -> str:
        """Tool-call arguments: JSON text whose strings, and numbers that are PII ({"phone": 4155552671}),
        are masked with the JSON kept valid; text that is not JSON is masked as text."""
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):
            return self.text(raw, events)

        def walk(v: Any) -> Any:
            if isinstance(v, str):
                return self.text(v, events)
            if isinstance(v, int) and not isinstance(v, bool):
                masked = self.text(str(v), events)
                return v if masked == str(v) else masked
            if isinstance(v, list):
                return [walk(x) for x in v]
            if isinstance(v, dict):
                return {k: walk(x) for k, x in v.items()}
            return v
        out = walk(parsed)
        return raw if out == parsed else json.dumps(out, ensure_ascii=False)

    def _tool_calls(self, calls: Any, events: Counter[str]) -> Any:
        if not isinstance(calls, list):
            return calls
        out = []
        for c in calls:
            fn = c.get("function") if isinstance(c, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                c = {**c, "function": {**fn, "arguments": self.arguments(fn["arguments"], events)}}
            out.append(c)
        return out

    def message(self, m: Any, events: Counter[str]) -> Any:
        if not isinstance(m, dict):
            return m
        out = {}
        for k, v in m.items():
            if k in _MESSAGE_CONTROL:
                out[k] = v
            elif k == "content" and isinstance(v, list):
                out[k] = [{**p, "text": self.text(p["text"], events)}
                          if isinstance(p, dict) and isinstance(p.get("text"), str) else p for p in v]
            elif k == "tool_calls":
                out[k] = self._tool_calls(v, events)
            elif k == "function_call" and isinstance(v, dict) and isinstance(v.get("arguments"), str):
                out[k] = {**v, "arguments": self.arguments(v["arguments"], events)}
            else:
                out[k] = self.value(v, events)
        return out

    def messages(self, messages: Any, events: Counter[str]) -> Any:
        """A copy of chat messages with every text a person or a tool wrote masked."""
        if not isinstance(messages, list):
            return messages
        return [self.message(m, events) for m in messages]

    def _tools(self, tools: Any, events: Counter[str]) -> Any:
        if not isinstance(tools, list):
            return tools
        out = []
        for t in tools:
            if isinstance(t, dict) and isinstance(t.get("function"), dict):
                fn = t["function"]
                t = {**t, "function": {k: (v if k == "name" else self.value(v, events)) for k, v in fn.items()}}
            elif isinstance(t, dict):
                t = {k: (v if k in ("name", "type") else self.value(v, events)) for k, v in t.items()}
            out.append(t)
        return out

    def body(self, body: dict[str, Any], events: Counter[str]) -> dict[str, Any]:
        """The request body with every field a person may have written masked (see the module's doc)."""
        out: dict[str, Any] = {}
        for k, v in body.items():
            if k in _CONTROL:
                out[k] = v
            elif k == "messages":
                out[k] = self.messages(v, events)
            elif k in ("tools", "functions"):
                out[k] = self._tools(v, events)
            elif k == "response_format" and isinstance(v, dict):
                out[k] = {f: (x if f == "type" else self.value(x, events)) for f, x in v.items()}
            else:  # prompt, suffix, user, metadata, and fields this gateway does not know
                out[k] = self.value(v, events)
        return out

    def response(self, data: dict[str, Any], events: Counter[str]) -> dict[str, Any]:
        """A whole response with its answer text and tool-call arguments masked (for what is stored)."""
        out = dict(data)
        choices = []
        for ch in data.get("choices") or []:
            if not isinstance(ch, dict):
                choices.append(ch)
                continue
            ch = dict(ch)
            if isinstance(ch.get("message"), dict):
                ch["message"] = self.message(ch["message"], events)
            if isinstance(ch.get("text"), str):
                ch["text"] = self.text(ch["text"], events)
            choices.append(ch)
        out["choices"] = choices
        return out


class BlockList:
    """Case-insensitive regexes; a hit blocks the prompt or the response and counts as a safety event."""

    def __init__(self, patterns: list[str], allow: list[str] | None = None) -> None:
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None
        self.allow = list(allow or ())

    def hit(self, text: str) -> str | None:
        if self.pattern is None:
            return None
        for a in self.allow:
            text = text.replace(a, " ")
        m = self.pattern.search(text)
        return m.group(0) if m else None


def prompt_text(body: dict[str, Any]) -> str:
    """All prompt text of a chat or completion request, for block lists and hashing."""
    parts: list[str] = []
    for m in body.get("messages") or []:
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, list):
            parts.extend(p["text"] for p in c if isinstance(p, dict) and isinstance(p.get("text"), str))
    p = body.get("prompt")
    if isinstance(p, str):
        parts.append(p)
    elif isinstance(p, list):
        parts.extend(x for x in p if isinstance(x, str))
    return "\n".join(parts)
