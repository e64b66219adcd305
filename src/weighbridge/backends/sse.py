"""OpenAI-style streams: one JSON object per ``data:`` event, over the one SSE decoder."""

from __future__ import annotations

from typing import Any, AsyncIterator

from ..core.errors import BackendError
from ..wire.openai import MalformedResponse, loads
from ..wire.sse import SSEDecoder, SSEError

DONE = object()


async def iter_events(chunks: AsyncIterator[bytes], max_bytes: int = 64 << 20) -> AsyncIterator[Any]:
    """Yield each event's decoded JSON (or DONE), read with the one SSE decoder (``weighbridge.wire.sse``).
    A stream longer than ``max_bytes``, or a line past the decoder's bound, is a malformed answer."""
    decoder = SSEDecoder()
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > max_bytes:
            raise BackendError(f"the stream passed {max_bytes:,} bytes", kind="malformed_response")
        try:
            events = decoder.feed(chunk)
        except SSEError as e:
            raise BackendError(str(e), kind="malformed_response") from None
        for ev in events:
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
        return loads(payload, "event")
    except MalformedResponse as e:
        raise BackendError(f"{e} ({payload[:80]!r})", kind="malformed_response") from None
