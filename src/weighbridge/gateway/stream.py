"""Server-sent events through the gateway: relay upstream events one by one while keeping account
of the answer (text, tool calls, finish reason, usage), and replay a whole response as a stream.

The account is what lets a streamed request be settled against its budget, audited, checked by a
block list and cached exactly like a plain one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from ..core.scrub import scrub_obj, scrub_secrets
from ..wire.openai import REASONING_FIELDS, Accumulator, MalformedResponse, Usage, loads, parse_chunk
from ..wire.sse import MAX_LINE_BYTES, Event, SSEDecoder, SSEError


class StreamAccount:
    """Splits raw upstream bytes into SSE events (the one decoder), checks each against the one strict
    chunk model (``wire.openai``) and records what they carry. A malformed event or a line past the
    decoder's bound stops the account (``malformed``); usage that is not a bounded whole count is
    refused (``usage_error``) and never passed on to the client."""

    def __init__(self, chat: bool, forward_usage_only: bool, max_line_bytes: int = MAX_LINE_BYTES,
                 drop_reasoning: bool = False) -> None:
        self.chat = chat
        self.drop_reasoning = drop_reasoning  # the plan keeps thinking from the client: events are rewritten
        self.forward_usage_only = forward_usage_only
        self._sse = SSEDecoder(max_line_bytes)
        self.answer = Accumulator()  # the one stream reader: text, tool calls, usage, finish reason
        self.done = False
        self.error: str | None = None
        self.malformed: str | None = None
        self.first_content_ns: int | None = None

    @property
    def text(self) -> str:
        return self.answer.text

    @property
    def reasoning(self) -> str:
        return self.answer.reasoning

    @property
    def finish_reason(self) -> str | None:
        return self.answer.finish_reason

    @finish_reason.setter
    def finish_reason(self, reason: str) -> None:  # the gateway's own end (a blocked response: content_filter)
        self.answer.finish_reason = reason

    @property
    def usage(self) -> Usage | None:
        return self.answer.usage

    @property
    def usage_error(self) -> MalformedResponse | None:
        return self.answer.usage_error

    @property
    def stopped(self) -> bool:
        """Nothing more will be read: [DONE], an error event or a malformed one."""
        return self.done or self.error is not None or self.malformed is not None

    def feed(self, chunk: bytes) -> list[bytes]:
        """Complete events to forward to the client, in order; ``[DONE]`` is held back (see ``done``).
        Upstream line ends (CRLF, CR) are forwarded as LF. Nothing after a malformed event is read."""
        if self.malformed is not None:
            return []
        try:
            events = self._sse.feed(chunk)
        except SSEError as e:
            self.malformed = str(e)
            return []
        out = []
        for ev in events:
            forward = self._take(ev)
            if self.malformed is not None:
                break
            if forward is not None:
                out.append(forward)
        return out

    def _take(self, ev: Event) -> bytes | None:
        data = ev.data
        if data is None:
            return ev.encode()  # comments / keep-alives pass through
        if data.strip() == "[DONE]":
            self.done = True
            return None
        try:
            obj = loads(data, "event")
            chunk = parse_chunk(obj, chat=self.chat)
        except MalformedResponse as e:
            self.malformed = str(e)
            return None
        if chunk.error is not None:
            self.error = chunk.error
            return scrub_secrets(ev.encode())
        if self.answer.add(chunk):
            self._first()
        if not (chunk.choices or self.forward_usage_only):
            return None
        if chunk.usage_error is not None:  # the client never sees a count we refused
            obj.pop("usage", None)
            return event(scrub_obj(obj)) if chunk.choices else None
        if self.drop_reasoning and isinstance(obj, dict) and drop_reasoning_delta(obj):
            return event(scrub_obj(obj))
        return scrub_secrets(ev.encode())

    def _first(self) -> None:
        if self.first_content_ns is None:
            self.first_content_ns = time.perf_counter_ns()

    def response(self) -> dict[str, Any]:
        """The whole answer as a plain (non-streamed) response body."""
        meta = self.answer.meta
        base = {"id": meta.get("id", "wb-stream"), "created": meta.get("created", int(time.time())),
                "model": meta.get("model", "")}
        if self.chat:
            msg: dict[str, Any] = {"role": "assistant", "content": self.text}
            if self.answer.slots:
                msg["tool_calls"] = [{"id": s["id"] or None, "type": "function",
                                      "function": {"name": s["name"], "arguments": s["arguments"]}}
                                     for _, s in sorted(self.answer.slots.items())]
            choice = {"index": 0, "message": msg, "finish_reason": self.finish_reason}
            out = {**base, "object": "chat.completion", "choices": [choice]}
        else:
            out = {**base, "object": "text_completion",
                   "choices": [{"index": 0, "text": self.text, "finish_reason": self.finish_reason}]}
        if self.usage is not None:
            out["usage"] = usage_dict(self.usage)
        return out


def usage_dict(u: Usage) -> dict[str, int]:
    """A checked usage as the OpenAI object (only the counts that were given)."""
    out = {k: v for k, v in (("prompt_tokens", u.prompt_tokens), ("completion_tokens", u.completion_tokens))
           if v is not None}
    if u.prompt_tokens is not None and u.completion_tokens is not None:
        out["total_tokens"] = u.prompt_tokens + u.completion_tokens
    return out


def answer_text(response: dict[str, Any]) -> str:
    """The text of a plain response (chat message content, or completion text)."""
    try:
        ch = response["choices"][0]
    except (KeyError, IndexError, TypeError):
        return ""
    if "message" in ch:
        msg = ch["message"] or {}
        text = msg.get("content") or ""
        for tc in msg.get("tool_calls") or []:
            text += json.dumps(tc.get("function", {}), sort_keys=True)
        return text
    return ch.get("text") or ""


def reasoning_text(response: dict[str, Any]) -> str:
    """The thinking of a plain response (a reasoning model's own field), or ""."""
    try:
        msg = response["choices"][0].get("message") or {}
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""
    for f in REASONING_FIELDS:
        if isinstance(msg.get(f), str):
            return str(msg[f])
    return ""


def without_reasoning(response: dict[str, Any]) -> dict[str, Any]:
    """A plain response without its thinking: what the cache keeps, and what a plan that drops it sends."""
    choices = response.get("choices")
    if not isinstance(choices, list) or not any(isinstance(c, dict) and isinstance(c.get("message"), dict) and
                                                any(f in c["message"] for f in REASONING_FIELDS) for c in choices):
        return response
    out = []
    for c in choices:
        if isinstance(c, dict) and isinstance(c.get("message"), dict):
            c = {**c, "message": {k: v for k, v in c["message"].items() if k not in REASONING_FIELDS}}
        out.append(c)
    return {**response, "choices": out}


def drop_reasoning_delta(obj: dict[str, Any]) -> bool:
    """Remove the thinking from a stream chunk in place; True when something was removed."""
    dropped = False
    for c in obj.get("choices") or []:
        delta = c.get("delta") if isinstance(c, dict) else None
        if isinstance(delta, dict):
            for f in REASONING_FIELDS:
                if f in delta:
                    del delta[f]
                    dropped = True
    return dropped


def event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def replay(response: dict[str, Any], include_usage: bool) -> Iterator[bytes]:
    """A plain response as SSE events (cache hits and held cascade drafts), without the [DONE]."""
    base: dict[str, Any] = {k: response[k] for k in ("id", "created", "model") if k in response}
    ch = (response.get("choices") or [{}])[0]
    if "message" in ch:
        msg = ch.get("message") or {}
        delta: dict[str, Any] = {"role": "assistant", "content": msg.get("content") or ""}
        if isinstance(msg.get("reasoning_content"), str):  # only when the plan passes thinking on
            delta["reasoning_content"] = msg["reasoning_content"]
        if msg.get("tool_calls"):
            delta["tool_calls"] = [{**tc, "index": i} for i, tc in enumerate(msg["tool_calls"])]
        obj = "chat.completion.chunk"
        yield event({**base, "object": obj, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        yield event({**base, "object": obj, "choices": [{"index": 0, "delta": {},
                                                         "finish_reason": ch.get("finish_reason")}]})
    else:
        obj = "text_completion"
        yield event({**base, "object": obj, "choices": [{"index": 0, "text": ch.get("text") or "",
                                                         "finish_reason": None}]})
        yield event({**base, "object": obj, "choices": [{"index": 0, "text": "",
                                                         "finish_reason": ch.get("finish_reason")}]})
    if include_usage and response.get("usage"):
        yield event({**base, "object": obj, "choices": [], "usage": response["usage"]})
