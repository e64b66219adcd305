"""Server-sent events parsing for OpenAI-style streams: one JSON object per ``data:`` event."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

from ..errors import BackendError

DONE = object()


async def iter_events(lines: AsyncIterator[str]) -> AsyncIterator[Any]:
    """Yield each event's decoded JSON (or DONE); multi-line ``data:`` fields are joined per spec."""
    data: list[str] = []
    async for line in lines:
        if line == "":
            if data:
                payload = "\n".join(data)
                data = []
                if payload.strip() == "[DONE]":
                    yield DONE
                    async for _ in lines:  # read to the end so the connection goes back to the pool
                        pass
                    return
                try:
                    yield json.loads(payload)
                except ValueError:
                    raise BackendError(f"malformed SSE event: {payload[:120]!r}", kind="malformed_sse") from None
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:  # stream closed without the blank line after the last event
        payload = "\n".join(data)
        if payload.strip() == "[DONE]":
            yield DONE
        else:
            try:
                yield json.loads(payload)
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
