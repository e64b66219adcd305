"""OpenAI-style streams: one JSON object per ``data:`` event, over the one SSE decoder."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

from ..errors import BackendError
from ..wire.sse import SSEDecoder

DONE = object()


async def iter_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[Any]:
    """Yield each event's decoded JSON (or DONE), read with the one SSE decoder (``weighbridge.wire.sse``)."""
    decoder = SSEDecoder()
    async for chunk in chunks:
        for ev in decoder.feed(chunk):
            if ev.data is None:
                continue  # comment / keep-alive
            if ev.data.strip() == "[DONE]":
                yield DONE
                async for _ in chunks:  # read to the end so the connection goes back to the pool
                    pass
                return
            yield _json(ev.data)
    for ev in decoder.end():  # stream closed without the blank line after the last event
        if ev.data is None:
            continue
        yield DONE if ev.data.strip() == "[DONE]" else _json(ev.data)


def _json(payload: str) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        raise BackendError(f"malformed SSE event: {payload[:120]!r}", kind="malformed_sse") from None


def choice_pieces(choice: dict[str, Any]) -> tuple[str, str, str]:
    """(text, reasoning, tool-call text) of one streamed choice, chat or completions shape.

    Anything non-empty here is generated content: it is what stops the time-to-first-token clock.
    """
    delta = choice.get("delta") or {}
    text = choice.get("text") if "text" in choice else delta.get("content")
    reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
    tools = "".join((c.get("function") or {}).get("arguments") or "" for c in delta.get("tool_calls") or [])
    return text or "", reasoning, tools
