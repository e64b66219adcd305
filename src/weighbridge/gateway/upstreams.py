"""Calling upstreams over the wire layer: which upstream first (one weighted pick, then the rest,
then the fallback chain), the body each one gets (redacted as the route says), one plain call, and
one stream opened up to its first content event.

Every failure another upstream may fix raises ``UpstreamFailed`` - a connection or framing error,
a timeout, a status in the one retry set (``wire.retry``), a malformed or empty answer, an error
event before the first token. An upstream that refuses the request itself raises ``ClientError``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

from ..core.scrub import scrub, scrub_obj, secret_env
from ..wire.http import Pool, UpstreamError
from ..wire.http import Response as UpstreamResponse
from ..wire.openai import MalformedResponse, Parsed, loads, parse_response
from ..wire.retry import StreamOptions, retryable
from .call import Call, ClientError, UpstreamFailed
from .metrics import Metrics
from .plan import Plan, Route, Upstream
from .stream import StreamAccount


def order(route: Route, rng: random.Random) -> list[Upstream]:
    """One weighted pick among the route's upstreams, then the rest of them, then the fallback chain."""
    pool = list(route.upstreams)
    first = pool[0] if len(pool) == 1 else rng.choices(pool, weights=[u.weight for u in pool])[0]
    return [first] + [u for u in pool if u is not first] + list(route.fallback)


class OpenStream:
    """A stream whose first content event has arrived: the events held back so far, and the rest."""

    def __init__(self, resp: UpstreamResponse, chunks: Any, acct: StreamAccount, held: list[bytes]) -> None:
        self.resp, self.chunks, self.acct, self.held = resp, chunks, acct, held


class Upstreams:
    def __init__(self, plan: Plan, metrics: Metrics, rng: random.Random) -> None:
        self.plan, self.metrics, self.rng = plan, metrics, rng
        self.pool = Pool()
        self.stream_options = StreamOptions()  # upstreams that rejected stream_options

    async def aclose(self) -> None:
        await self.pool.aclose()

    def order(self, route: Route) -> list[Upstream]:
        return order(route, self.rng)

    def body(self, call: Call, up: Upstream, *, stream: bool) -> dict[str, Any]:
        mode = call.routed.redact_upstream
        redact = mode == "always" or (mode == "auto" and not up.is_local)
        b = dict(call.audit_body if redact else call.body)
        b.update(up.extra_body)
        b["model"] = up.model
        b["stream"] = stream
        b.pop("stream_options", None)
        if stream and self.stream_options.wanted(up.name):
            b["stream_options"] = {"include_usage": True}
        return b

    @staticmethod
    def headers(up: Upstream) -> dict[str, str]:
        h = {"content-type": "application/json"}
        key = secret_env(up.api_key_env)
        if key:
            h["authorization"] = f"Bearer {key}"
        return h

    def fail(self, call: Call, up: Upstream, reason: str) -> None:
        call.failures.append(f"{up.name}: {scrub(reason)}")
        self.metrics.inc("weighbridge_upstream_failures_total", upstream=up.name, reason=reason.split(" ")[0])

    async def fetch(self, call: Call, up: Upstream) -> tuple[dict[str, Any], Parsed]:
        """One non-streamed upstream call: its body, checked against the one response model and
        scrubbed of our secrets (keys included), and what it says."""
        r = call.routed
        payload = json.dumps(self.body(call, up, stream=False)).encode()
        resp: UpstreamResponse | None = None
        try:
            async with asyncio.timeout(r.total_timeout_s):
                resp = await self.pool.post(f"{up.base_url}{call.path}", payload, self.headers(up), r.connect_timeout_s,
                                            max_body_bytes=self.plan.http.upstream_body_bytes)
                content = await resp.read()
        except (UpstreamError, TimeoutError) as e:
            if resp is not None:
                resp.close()
            raise UpstreamFailed(str(e) if isinstance(e, UpstreamError) else "TimeoutError") from None
        if retryable(resp.status):
            raise UpstreamFailed(f"HTTP {resp.status}")
        try:
            data = loads(content)
            if resp.status != 200:
                raise ClientError(resp.status, data, up.name)
            parsed = parse_response(data, chat=call.chat)
        except MalformedResponse as e:
            raise UpstreamFailed(str(e) if resp.status == 200 else f"HTTP {resp.status} with a body that is not JSON"
                                 ) from None
        if parsed.error is not None:
            raise UpstreamFailed(f"an error in a 200 answer ({scrub(parsed.error[:80])})")
        if not parsed.choices:
            raise UpstreamFailed("malformed response: choices: no choice")
        return scrub_obj(data), parsed

    async def first_answer(self, call: Call, upstreams: list[Upstream]
                           ) -> tuple[Upstream, dict[str, Any], Parsed, float] | None:
        """Try upstreams in order: the first answer (with its start time), or None when every one
        failed; raises ClientError when an upstream refuses the request itself."""
        for up in upstreams:
            t = time.perf_counter()
            try:
                data, parsed = await self.fetch(call, up)
                return up, data, parsed, t
            except UpstreamFailed as e:
                self.fail(call, up, str(e))
        return None

    async def _post(self, call: Call, up: Upstream, body: dict[str, Any]) -> UpstreamResponse:
        return await self.pool.post(f"{up.base_url}{call.path}", json.dumps(body).encode(), self.headers(up),
                                    call.routed.connect_timeout_s, max_body_bytes=self.plan.http.upstream_stream_bytes)

    async def open_stream(self, call: Call, up: Upstream, deadline: float) -> OpenStream:
        """A stream from ``up`` up to its first content event (or its end, for an empty answer)."""
        r = call.routed
        body = self.body(call, up, stream=True)
        acct = StreamAccount(call.chat, forward_usage_only=call.include_usage, drop_reasoning=r.reasoning == "drop",
                             max_line_bytes=self.plan.http.upstream_line_bytes)
        held: list[bytes] = []
        resp: UpstreamResponse | None = None
        try:
            async with asyncio.timeout(min(r.first_token_timeout_s, max(deadline - time.perf_counter(), 0.001))):
                resp = await self._post(call, up, body)
                if resp.status != 200 and "stream_options" in body and not retryable(resp.status):
                    content = await resp.read()
                    if self.stream_options.refused(up.name, resp.status, content):  # an older server: once more without
                        body.pop("stream_options")
                        resp = await self._post(call, up, body)
                    else:
                        raise ClientError(resp.status, _error_body(content), up.name)
                if retryable(resp.status):
                    raise UpstreamFailed(f"HTTP {resp.status}")
                if resp.status != 200:
                    raise ClientError(resp.status, _error_body(await resp.read()), up.name)
                chunks = resp.chunks()
                while acct.first_content_ns is None and not acct.stopped:
                    held += acct.feed(await chunks.__anext__())
            if acct.malformed is not None:
                raise UpstreamFailed(acct.malformed)
            if acct.error is not None:
                raise UpstreamFailed(f"error event before the first token ({acct.error[:80]})")
            if acct.first_content_ns is None and acct.finish_reason is None:
                raise UpstreamFailed("empty stream ([DONE] with no answer and no finish reason)")
        except (UpstreamError, TimeoutError, StopAsyncIteration, UpstreamFailed) as e:
            if resp is not None:
                resp.close()
            raise UpstreamFailed(str(e) if isinstance(e, (UpstreamFailed, UpstreamError)) else (
                "stream ended before its first token" if isinstance(e, StopAsyncIteration) else type(e).__name__)
            ) from None
        return OpenStream(resp, chunks, acct, held)


def _error_body(content: bytes) -> Any:
    """An upstream's refusal as the client will get it: its JSON, or its text inside an error body."""
    try:
        return loads(content)
    except MalformedResponse:
        return {"error": {"message": content.decode(errors="replace")[:500], "type": "upstream_error"}}
