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

from ..sse import Event, SSEDecoder


class StreamAccount:
    """Splits raw upstream bytes into SSE events (the one decoder) and records what they carry."""

    def __init__(self, chat: bool, forward_usage_only: bool) -> None:
        self.chat = chat
        self.forward_usage_only = forward_usage_only
        self._sse = SSEDecoder()
        self._text: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.meta: dict[str, Any] = {}
        self.done = False
        self.error: str | None = None
        self.first_content_ns: int | None = None

    @property
    def text(self) -> str:
        return "".join(self._text)

    def feed(self, chunk: bytes) -> list[bytes]:
        """Complete events to forward to the client, in order; ``[DONE]`` is held back (see ``done``).
        Upstream line ends (CRLF, CR) are forwarded as LF."""
        return [ev.encode() for ev in self._sse.feed(chunk) if self._take(ev)]

    def _take(self, ev: Event) -> bool:
        data = ev.data
        if data is None:
            return True  # comments / keep-alives pass through
        if data.strip() == "[DONE]":
            self.done = True
            return False
        try:
            obj = json.loads(data)
        except ValueError:
            self.error = "upstream sent an event that is not JSON"
            return False
        if not isinstance(obj, dict):
            self.error = "upstream sent an event that is not a JSON object"
            return False
        if "error" in obj:
            err = obj["error"]
            self.error = str(err.get("message") if isinstance(err, dict) else err)
            return True
        for k in ("id", "created", "model", "system_fingerprint"):
            if k in obj and k not in self.meta:
                self.meta[k] = obj[k]
        if obj.get("usage"):
            self.usage = obj["usage"]
        choices = obj.get("choices") or []
        for ch in choices:
            if ch.get("finish_reason"):
                self.finish_reason = ch["finish_reason"]
            if self.chat:
                delta = ch.get("delta") or {}
                piece = delta.get("content")
                for tc in delta.get("tool_calls") or []:
                    slot = self.tool_calls.setdefault(tc.get("index", 0), {"id": None, "type": "function",
                                                                           "function": {"name": "", "arguments": ""}})
                    slot["id"] = tc.get("id") or slot["id"]
                    fn = tc.get("function") or {}
                    slot["function"]["name"] += fn.get("name") or ""
                    slot["function"]["arguments"] += fn.get("arguments") or ""
                    self._first()
            else:
                piece = ch.get("text")
            if piece:
                self._text.append(piece)
                self._first()
        return bool(choices) or self.forward_usage_only

    def _first(self) -> None:
        if self.first_content_ns is None:
            self.first_content_ns = time.perf_counter_ns()

    def response(self) -> dict[str, Any]:
        """The whole answer as a plain (non-streamed) response body."""
        base = {"id": self.meta.get("id", "wb-stream"), "created": self.meta.get("created", int(time.time())),
                "model": self.meta.get("model", "")}
        if self.chat:
            msg: dict[str, Any] = {"role": "assistant", "content": self.text}
            if self.tool_calls:
                msg["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
            choice = {"index": 0, "message": msg, "finish_reason": self.finish_reason}
            out = {**base, "object": "chat.completion", "choices": [choice]}
        else:
            out = {**base, "object": "text_completion",
                   "choices": [{"index": 0, "text": self.text, "finish_reason": self.finish_reason}]}
        if self.usage:
            out["usage"] = self.usage
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


def event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def replay(response: dict[str, Any], include_usage: bool) -> Iterator[bytes]:
    """A plain response as SSE events (cache hits and held cascade drafts), without the [DONE]."""
    base = {k: response[k] for k in ("id", "created", "model") if k in response}
    ch = (response.get("choices") or [{}])[0]
    if "message" in ch:
        msg = ch.get("message") or {}
        delta: dict[str, Any] = {"role": "assistant", "content": msg.get("content") or ""}
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
