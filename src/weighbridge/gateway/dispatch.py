"""Dispatch: a plain call (the first upstream that answers), a stream (the first upstream whose
stream reaches its first content event, then relayed), or a cascade (draft, check, escalate tier by
tier), each over the upstreams in the route's order with its fallback chain.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import Response

from ..wire.openai import Parsed
from .call import Call, ClientError, UpstreamFailed, response_headers
from .cascade import Checker
from .metrics import Metrics
from .redact import prompt_text
from .relay import StreamRelay
from .respond import Responder
from .stream import answer_text, reasoning_text
from .accounting import tier
from .upstreams import Upstreams


def _with_checked_usage(data: dict[str, Any], parsed: Parsed) -> dict[str, Any]:
    """The answer as the client gets it: a usage we refused is not passed on as if it were true."""
    if parsed.usage_error is not None:
        data = {k: v for k, v in data.items() if k != "usage"}
    return data


class Dispatch:
    def __init__(self, upstreams: Upstreams, respond: Responder, relay: StreamRelay,
                 checkers: dict[str, Checker], metrics: Metrics) -> None:
        self.upstreams, self.respond, self.relay = upstreams, respond, relay
        self.checkers, self.metrics = checkers, metrics

    async def __call__(self, call: Call, ckey: str | None) -> Response:
        try:
            if call.routed.check:
                return await self._cascade(call, ckey)
            if call.stream:
                return await self._stream(call, ckey)
            return await self._plain(call, ckey)
        except ClientError as e:
            return await self.respond.refused_upstream(call, e)

    async def _plain(self, call: Call, ckey: str | None) -> Response:
        got = await self.upstreams.first_answer(call, self.upstreams.order(call.routed))
        if got is None:
            return await self.respond.all_failed(call)
        up, data, parsed, t = got
        call.upstream = up.name
        tier(call, up, parsed.usage, parsed.usage_error, answer_text(data), t, reasoning_text(data))
        return await self.respond.answer(call, _with_checked_usage(data, parsed), ckey)

    async def _cascade(self, call: Call, ckey: str | None) -> Response:
        checker = self.checkers[call.route_name]
        tiers = call.routed.tiers()
        tiers[0] = self.upstreams.order(call.routed)
        data: dict[str, Any] | None = None
        for i, upstreams in enumerate(tiers):
            got = await self.upstreams.first_answer(call, upstreams)
            if got is not None:
                up, data, parsed, t = got
                data = _with_checked_usage(data, parsed)
                call.upstream = up.name
                info = tier(call, up, parsed.usage, parsed.usage_error, answer_text(data), t, reasoning_text(data))
                result = await checker.check(call.body.get("messages") or [{"role": "user", "content":
                                                                             prompt_text(call.body)}], answer_text(data))
                info["check"] = "pass" if result.passed else "fail"
                info["reasons"] = result.reasons
                if result.passed or i == len(tiers) - 1:
                    return await self.respond.answer(call, data, ckey if result.passed else None)
            if i < len(tiers) - 1:
                call.escalated = True
                self.metrics.inc("weighbridge_escalations_total", route=call.route_name, tier=str(i))
        if data is not None:
            return await self.respond.answer(call, data, None)
        return await self.respond.all_failed(call)

    async def _stream(self, call: Call, ckey: str | None) -> Response:
        deadline = call.t0 + call.routed.total_timeout_s
        for up in self.upstreams.order(call.routed):
            t = time.perf_counter()
            try:
                opened = await self.upstreams.open_stream(call, up, deadline)
            except UpstreamFailed as e:
                self.upstreams.fail(call, up, str(e))
                continue
            call.upstream = up.name
            call.first_token_s = time.perf_counter() - call.t0
            self.metrics.observe("weighbridge_first_token_seconds", call.first_token_s, route=call.route_name)
            return self.relay.response(call, up, opened, deadline, ckey, t, response_headers(call))
        return await self.respond.all_failed(call)
