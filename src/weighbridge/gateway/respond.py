"""How a call ends for the client: a whole answer (as JSON, or replayed as a stream), an upstream's
own refusal, every upstream failed, or a refusal of ours - each one audited before the client has
all of it, each in the OpenAI error shape where it is an error.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import JSONResponse, Response

from ..core.scrub import scrub, scrub_obj
from .auth import Denied
from .call import Call, ClientError, error, response_headers
from .caching import Caching
from .metrics import Metrics
from .record import AUDIT_UNAVAILABLE, Recorder
from .relay import Relay
from .screen import Screen, withheld
from .stream import DONE, answer_text, reasoning_text, replay, without_reasoning


class Responder:
    def __init__(self, screen: Screen, caching: Caching, recorder: Recorder, metrics: Metrics) -> None:
        self.screen, self.caching, self.recorder, self.metrics = screen, caching, recorder, metrics

    async def answer(self, call: Call, data: dict[str, Any], ckey: str | None) -> Response:
        """A whole answer (plain call, cascade, cache hit), as JSON or as a replayed stream."""
        call.answer = answer_text(data)
        call.reasoning = reasoning_text(data)  # apart: audited redacted as its own field, never cached
        passes = call.routed.reasoning == "pass"
        if self.screen.answer_blocked(call.answer, call.reasoning if passes else ""):
            call.events["block.response"] += 1
            data = withheld(data)
            ckey = None
        elif ckey is not None:
            await self.caching.store(call, ckey, without_reasoning(data))
        if not passes:
            data = without_reasoning(data)
        headers = response_headers(call)
        if call.stream:
            async def gen() -> AsyncIterator[bytes]:
                for ev in replay(data, call.include_usage):
                    yield ev
                if call.first_token_s is None:
                    call.first_token_s = time.perf_counter() - call.t0
                failed = await self.recorder.write(call)
                yield failed or DONE

            def ended() -> None:
                if not call.finished:  # the client went away before the record was made
                    call.status, call.code = 499, "client_closed"
                    self.recorder.abandon(call)
            return Relay(gen(), ended, media_type="text/event-stream", headers=headers)
        failed = await self.recorder.write(call)
        if failed:
            return error(503, AUDIT_UNAVAILABLE, "server_error", "audit_unavailable")
        return JSONResponse(data, headers=headers)

    async def all_failed(self, call: Call) -> Response:
        call.status, call.code = 502, "upstream_failed"
        msg = scrub(f"every upstream of route '{call.route_name}' failed: " + "; ".join(call.failures)) or ""
        await self.recorder.write(call)
        return error(502, msg, kind="upstream_error", code="upstream_failed")

    async def refused_upstream(self, call: Call, e: ClientError) -> Response:
        """The upstream refused the request itself (4xx): the client gets its error, nobody else is tried.
        Scrubbed first: an upstream that echoes the request would hand the client our upstream key."""
        body = scrub_obj(e.body)
        call.upstream, call.status = e.upstream, e.status
        call.code = (body.get("error") or {}).get("code") if isinstance(body, dict) and isinstance(
            body.get("error"), dict) else None
        await self.recorder.write(call)
        return JSONResponse(body, status_code=e.status, headers=response_headers(call))

    async def deny(self, call: Call, d: Denied) -> Response:
        call.status, call.code = d.status, d.code
        self.metrics.inc("weighbridge_denied_total", code=d.code)
        await self.recorder.write(call)
        headers = {"retry-after": str(max(1, round(d.retry_after)))} if d.retry_after else None
        kind = "invalid_request_error" if d.status == 400 else ("authentication_error" if d.status in (401, 403)
                                                                else "rate_limit_error" if d.code in ("rate_limit_exceeded", "too_many_in_flight")
                                                                else "insufficient_quota")
        return error(d.status, str(d), kind, d.code, headers=headers)
