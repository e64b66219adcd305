"""When an OpenAI-compatible call is worth another try: one answer for the backends (which retry the
same server after a pause) and the gateway (which moves on to the next upstream at once).

The status set is the one the OpenAI clients use: a timeout (408), a conflict the server says may
clear (409), "too early" (425), rate limiting (429) and the server errors a restart or an overloaded
replica gives (500, 502, 503, 504). Anything else in 4xx is the request's own fault and another try
gets the same answer.

``Retry-After`` is read once, here: delta-seconds or an HTTP date, never negative, never longer than
``MAX_RETRY_AFTER_S`` (a hostile or confused server must not park a run for a day).

Older servers (vLLM before 0.5, some proxies) reject ``stream_options`` with a 400 or 422 that names
the field; both callers then ask once more without it and remember, per server, not to send it again.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import timezone

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 60.0
_BACKOFF_BASE_S, _BACKOFF_CAP_S = 0.5, 20.0


def retryable(status: int) -> bool:
    """Whether another try (the same server later, or the next upstream) may get a different answer."""
    return status in RETRY_STATUS


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for, bounded; None when absent or unreadable."""
    if not value or len(value) > 64:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
        seconds = max(seconds, 0.0)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_S)


PAUSE_HOOK: ContextVar[Callable[[float], Awaitable[None]] | None] = ContextVar("weighbridge_retry_pause", default=None)
"""Set by whatever limits the requests in flight for the current task (``concurrency: auto``): the
pause before another try then runs through it, so that it can give the request's place back."""


async def wait_before_retry(seconds: float) -> None:
    """The pause before another try of the same server. Under ``concurrency: auto`` a request pushed
    back gives its place back while it waits (parked for up to a few seconds, it would keep others
    from a server that has room again) and takes one again, ahead of requests not yet sent."""
    hook = PAUSE_HOOK.get()
    await (asyncio.sleep(seconds) if hook is None else hook(seconds))


def backoff(attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter for the ``attempt``-th retry (0-based), capped."""
    jitter = (rng or random).random()
    return float(min(_BACKOFF_BASE_S * 2 ** attempt, _BACKOFF_CAP_S) * (0.5 + jitter))


class StreamOptions:
    """Which servers refused ``stream_options``: the request is sent without it from then on."""

    def __init__(self) -> None:
        self._refused: set[str] = set()

    def wanted(self, server: str) -> bool:
        return server not in self._refused

    def refused(self, server: str, status: int, detail: str | bytes) -> bool:
        """True (and remembered) when this answer is a server rejecting the field: ask again without it."""
        if status not in (400, 422) or server in self._refused:
            return False
        text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else detail
        if "stream_options" not in text:
            return False
        self._refused.add(server)
        return True
