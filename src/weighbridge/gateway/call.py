"""One client request as the gateway's stages pass it along: what it asked, what happened to it,
and what it costs. Each stage fills in its part; the audit stage turns the whole into the record.

Also the two outcomes a stage can report besides an answer - an upstream attempt that failed (the
next upstream may be tried) and an upstream that refused the request itself (the client's error) -
and the OpenAI error body every refusal uses.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse

from ..core.errors import WeighbridgeError
from .auth import Reservation
from .plan import Route

ROUTE_HEADER = "x-weighbridge-route"


class UpstreamFailed(WeighbridgeError):
    """One attempt failed before any answer reached the client: the next upstream may be tried."""


class ClientError(WeighbridgeError):
    """An upstream refused the request itself (a 4xx outside the retry set): the client gets its
    error and nobody else is tried."""

    def __init__(self, status: int, body: Any, upstream: str) -> None:
        super().__init__(f"HTTP {status} from {upstream}")
        self.status, self.body, self.upstream = status, body, upstream


@dataclass
class Call:
    """Everything known about one client request; it becomes the audit record."""

    path: str
    route_name: str
    route: Route | None  # None for a request refused before it named a route (malformed, too large)
    body: dict[str, Any]
    key_id: str | None
    t0: float = field(default_factory=time.perf_counter)
    traceparent: str | None = None  # the caller's W3C trace context, for the request's span
    stream: bool = False
    include_usage: bool = False
    events: Counter[str] = field(default_factory=Counter)
    audit_body: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    tiers: list[dict[str, Any]] = field(default_factory=list)
    upstream: str | None = None
    escalated: bool = False
    cache_hit: bool = False
    status: int = 200
    code: str | None = None
    answer: str = ""
    reservation: Reservation | None = None
    first_token_s: float | None = None
    param: str | None = None  # the field a malformed request got wrong
    size: int = 0  # bytes of the request body
    redacted_answer: str | None = None
    reasoning: str = ""  # a reasoning model's thinking, kept apart from the answer
    redacted_reasoning: str | None = None
    answer_pii: bool = False
    bound_tokens: int | None = None  # the most a legitimate answer can use: prompt bytes + overhead + max_tokens
    bound_usd: float | None = None
    finished: bool = False  # its audit record was made and its reservation settled (exactly once)
    counted_key: bool = False  # holds one of its key's in-flight slots

    @property
    def usage_invalid(self) -> bool:
        """An upstream answered with usage outside the bounds: the call settles at its bound."""
        return any(t["usage_source"] == "invalid" for t in self.tiers)

    @property
    def chat(self) -> bool:
        return self.path == "/chat/completions"

    @property
    def routed(self) -> Route:
        """The route of a call that got past intake (every stage after it may rely on one)."""
        assert self.route is not None, "a call without a route never leaves intake"
        return self.route


def error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
          headers: dict[str, str] | None = None, param: str | None = None) -> JSONResponse:
    """An OpenAI-style error body."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status, headers=headers)


def response_headers(call: Call) -> dict[str, str]:
    """What the client learns about how its request was served."""
    h = {ROUTE_HEADER: call.route_name, "x-weighbridge-cache": "hit" if call.cache_hit else "miss"}
    if call.upstream:
        h["x-weighbridge-upstream"] = call.upstream
    if call.route is not None and call.route.check:
        h["x-weighbridge-escalated"] = "true" if call.escalated else "false"
    return h
