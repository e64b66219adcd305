"""The gateway's ASGI app: /v1/chat/completions, /v1/completions, /v1/models, /healthz, /readyz, /metrics.

One request goes: authenticate → rate limit → prompt block list → PII redaction (always for the
audit copy; for the upstream copy as the route says) → cache → budget reservation → upstream
(weighted pick, fallback chain; or the cascade: draft, check, escalate) → response block list →
settle the budget from the reported usage → audit record (committed before the answer's last byte
when ``audit.sync``) → metrics.

Streams pass through event by event. A failure before the first content event (connection error,
timeout, 429, 5xx, malformed or empty stream) moves to the next upstream; a stream that breaks
after it ends with an error event, never as a silently short answer. A streamed cascade holds the
draft until it passes its check.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as HttpRoute

from ..errors import WeighbridgeError
from ..scrub import scrub, scrub_obj, secret_env
from ..wire.openai import MalformedResponse, Parsed, Usage, loads, parse_response
from . import state
from .audit import audit_key, open_sink
from .auth import Denied, Guard, Reservation
from .cache import Cache, RedisCache, SqliteCache, cache_key, is_cacheable, route_fingerprint
from .cascade import Checker, PlanJudges
from .metrics import Metrics
from .plan import Plan, Route, Upstream
from .redact import BlockList, Redactor, prompt_text
from .request import Malformed
from .request import check as check_body
from .request import parse as parse_body
from .stream import DONE, StreamAccount, answer_text, event, replay
from ..wire.http import Pool, UpstreamError
from ..wire.http import Response as UpstreamResponse
from .writer import Writer

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_OFFLOAD_BYTES = 64 * 1024  # bodies above this are screened (block list, redaction) off the event loop


def _found_pii(events: Counter[str]) -> bool:
    return any(k.startswith("pii.") for k in events)
ROUTE_HEADER = "x-weighbridge-route"


def error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
          headers: dict[str, str] | None = None, param: str | None = None) -> JSONResponse:
    """An OpenAI-style error body."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status, headers=headers)


def order(route: Route, rng: random.Random) -> list[Upstream]:
    """One weighted pick among the route's upstreams, then the rest of them, then the fallback chain."""
    pool = list(route.upstreams)
    first = pool[0] if len(pool) == 1 else rng.choices(pool, weights=[u.weight for u in pool])[0]
    return [first] + [u for u in pool if u is not first] + list(route.fallback)

log = logging.getLogger("weighbridge.gateway")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class UpstreamFailed(Exception):
    """One attempt failed before any answer reached the client: the next upstream may be tried."""


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


class Gateway:
    def __init__(self, plan: Plan, *, seed: int | None = None) -> None:
        self.plan = plan
        self.rng = random.Random(seed)
        from .shared import SharedGuard, is_postgres, open_keys

        state_path = plan.resolve(plan.state)
        local_path = ":memory:" if is_postgres(state_path) else state_path  # Postgres state: nothing local to keep
        self.read_db = state.connect(local_path)
        self.audit_key = audit_key(plan.audit.hmac_key_env)
        self.writer = Writer(state.connect(local_path), open_sink(plan.resolve(plan.audit.url), self.audit_key,
                                                                  plan.audit_head()))
        self.guard: Guard = SharedGuard(open_keys(state_path), plan.redis) if plan.redis else Guard(self.read_db)
        cache_url = plan.cache or plan.redis
        self.cache: Cache = RedisCache(cache_url) if cache_url else SqliteCache(self.read_db, self.writer, state_path)
        self.redactor = Redactor(plan.redaction.detectors, plan.redaction.patterns, plan.filters.allow,
                                 plan.redaction.regions)
        self.prompt_block = BlockList(plan.filters.prompt_block, plan.filters.allow)
        self.response_block = BlockList(plan.filters.response_block, plan.filters.allow)
        self.judges = PlanJudges(plan)
        self.checkers = {n: Checker(r, self.judges, plan.sandbox) for n, r in plan.routes.items() if r.check}
        self.route_fingerprints = {n: route_fingerprint(r) for n, r in plan.routes.items()}
        self.metrics = Metrics()
        self.pool = Pool()
        missing = [u.name for r in plan.routes.values() for u in r.all_upstreams() if u.base_url is None]
        if missing:
            raise ValueError(f"upstreams {', '.join(missing)} are model files: 'weighbridge serve' starts their servers")
        self.no_stream_options: set[str] = set()  # upstreams that rejected stream_options
        self.key_in_flight: Counter[str] = Counter()
        self.draining = False  # set on SIGTERM: /readyz goes unready before the server stops accepting
        from .tracing import from_env

        self.tracing = from_env()  # OpenTelemetry, when OTEL_TRACES_EXPORTER asks for it

    async def aclose(self) -> None:
        await self.pool.aclose()
        await self.cache.aclose()
        await self.judges.aclose()
        await asyncio.to_thread(self.writer.close)
        if hasattr(self.guard, "close"):  # a shared guard flushes the spend it still has queued
            await asyncio.to_thread(self.guard.close)
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)

    # -- the request ------------------------------------------------------------------------
    async def handle(self, request: Request, path: str) -> Response:
        limit = self.plan.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:  # refused before a byte of the body is read
            return await self._malformed(request, path, 413, None, self._too_large(int(declared)))
        raw = bytearray()
        try:
            async with asyncio.timeout(self.plan.http.body_timeout_s):
                async for piece in request.stream():  # a chunked upload is counted as it arrives
                    raw += piece
                    if len(raw) > limit:
                        return await self._malformed(request, path, 413, None, self._too_large(len(raw)))
        except TimeoutError:
            return await self._malformed(request, path, 408, None, (
                f"the request body did not arrive within {self.plan.http.body_timeout_s:g} s "
                "(plan: http.body_timeout_s)"))
        body: dict[str, Any] | None = None
        try:
            body = parse_body(bytes(raw))
            check_body(body, chat=path == "/chat/completions")
        except Malformed as m:
            model = body.get("model") if body is not None else None
            return await self._malformed(request, path, 400, m.param, str(m), code=m.code,
                                         route=model if isinstance(model, str) else "")
        name = request.headers.get(ROUTE_HEADER) or body.get("model")
        if name not in self.plan.routes:
            named = isinstance(name, str) and name != ""
            if not self.plan.default_route or (named and self.plan.unknown_models == "refuse"):
                return error(404, f"no route '{name}' (routes: {', '.join(self.plan.routes)})"
                             + ("; the plan serves unknown names only with unknown_models: default_route"
                                if named and self.plan.default_route else ""), code="model_not_found")
            name = self.plan.default_route
        route = self.plan.routes[name]
        call = Call(path, name, route, body, key_id=None, stream=bool(body.get("stream")),
                    include_usage=bool((body.get("stream_options") or {}).get("include_usage")))
        call.size = len(raw)
        call.traceparent = request.headers.get("traceparent")
        self.metrics.in_flight += 1
        resp: Response | None = None
        try:
            resp = await self._handle(call, request)
            return resp
        finally:
            if isinstance(resp, _Relay):  # a stream is counted out when it ends
                resp.then(lambda: self._done(call))
            else:
                self._done(call)

    def _done(self, call: Call) -> None:
        """The request is over: count it out, free its key's slot, and release a reservation that an
        unexpected error left held."""
        self.metrics.in_flight -= 1
        if call.key_id is not None and call.counted_key:
            left = self.key_in_flight[call.key_id] - 1
            if left > 0:
                self.key_in_flight[call.key_id] = left
            else:
                del self.key_in_flight[call.key_id]
        if not call.finished and call.reservation is not None:
            self.guard.settle(call.reservation, 0, 0.0)
            call.reservation = None

    async def _malformed(self, request: Request, path: str, status: int, param: str | None, message: str,
                         route: str = "", code: str | None = None) -> Response:
        """A request refused before it reached a route: told what is wrong (after the key check, so a
        client without a key learns nothing about the API) and audited like any other."""
        call = Call(path, route[:200], None, {}, key_id=None)
        try:
            key = self.guard.authenticate(request.headers.get("authorization"), None)
            call.key_id = key.id if key else None
        except Denied as d:
            return await self._deny(call, d)
        self.metrics.inc("weighbridge_invalid_requests_total", field=param or code or "body")
        call.status, call.param = status, param
        call.code = code or {413: "request_too_large", 408: "request_timeout"}.get(status, "invalid_field")
        await self._record(call)
        return error(status, message, code=call.code, param=param)

    def _too_large(self, size: int) -> str:
        return (f"the request body is {size:,}+ bytes; this gateway accepts at most "
                f"{self.plan.max_body_bytes:,} (plan: max_body_bytes)")

    async def _handle(self, call: Call, request: Request) -> Response:
        body, route, name, path = call.body, call.route, call.route_name, call.path
        try:
            key = self.guard.authenticate(request.headers.get("authorization"), name)
            call.key_id = key.id if key else None
            if key is not None:
                self.guard.rate(key)
                self._hold_slot(call)
        except Denied as d:
            return await self._deny(call, d)
        if route.max_tokens is not None and not 0 < (body.get("max_tokens") or 0) <= route.max_tokens:
            body["max_tokens"] = route.max_tokens  # a cap, and the default when the client sets none
        if call.size > _OFFLOAD_BYTES:  # a big body is screened in a thread: other requests keep being served
            ptext, hit, call.audit_body = await asyncio.to_thread(self._screen, body, call.events)
        else:
            ptext, hit, call.audit_body = self._screen(body, call.events)
        if hit is not None:
            call.events["block.prompt"] += 1
            return await self._deny(call, Denied(400, "the prompt matches a blocked pattern", "content_blocked"))
        ckey = None
        if is_cacheable(body, route):
            if _found_pii(call.events):  # never store an answer to, or keyed on, text the audit copy masks
                self.metrics.inc("weighbridge_cache_total", route=name, result="skipped_pii")
            else:
                ckey = cache_key(path, name, self.route_fingerprints[name], body)
        if ckey is not None:
            cached = await self.cache.get(ckey)
            self.metrics.inc("weighbridge_cache_total", route=name, result="hit" if cached else "miss")
            if cached is not None:
                call.cache_hit, call.upstream = True, cached.get("upstream")
                return await self._answer(call, cached["response"], None)
        want = body.get("max_tokens") or route.max_tokens or self.plan.reserve_max_tokens
        # an upper bound: byte-level tokenizers never make more tokens than bytes (the whole body counts:
        # tools and earlier tool calls are prompt too), plus the template's own; the dearest upstream
        est_prompt = call.size + self.plan.reserve_prompt_overhead
        calls = len(route.tiers()) if route.check else 1  # a cascade may call one upstream per tier
        call.bound_tokens = (est_prompt + want) * calls
        call.bound_usd = max(u.price.cost(est_prompt, want) for u in route.all_upstreams()) * calls
        if key is not None:
            try:
                call.reservation = self.guard.reserve(key, call.bound_tokens, call.bound_usd)
            except Denied as d:
                return await self._deny(call, d)
        if route.check:
            return await self._cascade(call, ckey)
        if call.stream:
            return await self._stream(call, ckey)
        return await self._plain(call, ckey)

    def _hold_slot(self, call: Call) -> None:
        """One of the key's in-flight slots (``http.max_in_flight_per_key``): a key whose requests hang
        on a slow upstream uses up its own share of the gateway, not everyone's."""
        limit = self.plan.http.max_in_flight_per_key
        assert call.key_id is not None
        if limit and self.key_in_flight[call.key_id] >= limit:
            raise Denied(429, f"key {call.key_id} already has {limit} requests in flight (plan: "
                              "http.max_in_flight_per_key); retry when one has finished", "too_many_in_flight",
                         retry_after=1.0)
        self.key_in_flight[call.key_id] += 1
        call.counted_key = True

    def _screen(self, body: dict[str, Any], events: Counter[str]) -> tuple[str, str | None, dict[str, Any]]:
        """The prompt's text, the block list's hit in it, and the body with every PII value masked."""
        ptext = prompt_text(body)
        return ptext, self.prompt_block.hit(ptext), self.redactor.body(body, events)

    def _redact_answer(self, call: Call) -> str:
        """The answer as the audit log and the cache may keep it (once per call; its PII counted)."""
        if call.redacted_answer is None:
            found: Counter[str] = Counter()
            call.redacted_answer = self.redactor.text(scrub(call.answer) or "", found) if call.answer else ""
            call.answer_pii = bool(found)
            for k, n in found.items():
                call.events["response." + k] += n
        return call.redacted_answer

    async def _cache_put(self, call: Call, ckey: str, data: dict[str, Any]) -> None:
        self._redact_answer(call)
        if call.answer_pii:  # the model wrote PII: caching it would store what the audit copy masks
            self.metrics.inc("weighbridge_cache_total", route=call.route_name, result="skipped_pii")
            return
        await self.cache.put(ckey, {"response": data, "upstream": call.upstream}, call.route.cache.ttl_s)  # type: ignore[union-attr]

    def _upstream_body(self, call: Call, up: Upstream, *, stream: bool) -> dict[str, Any]:
        mode = call.route.redact_upstream
        redact = mode == "always" or (mode == "auto" and not up.is_local)
        b = dict(call.audit_body if redact else call.body)
        b.update(up.extra_body)
        b["model"] = up.model
        b["stream"] = stream
        b.pop("stream_options", None)
        if stream and up.name not in self.no_stream_options:
            b["stream_options"] = {"include_usage": True}
        return b

    def _headers(self, up: Upstream) -> dict[str, str]:
        h = {"content-type": "application/json"}
        key = secret_env(up.api_key_env)
        if key:
            h["authorization"] = f"Bearer {key}"
        return h

    def _fail(self, call: Call, up: Upstream, reason: str) -> None:
        call.failures.append(f"{up.name}: {scrub(reason)}")
        self.metrics.inc("weighbridge_upstream_failures_total", upstream=up.name, reason=reason.split(" ")[0])

    async def _fetch(self, call: Call, up: Upstream) -> tuple[dict[str, Any], Parsed]:
        """One non-streamed upstream call: its body, checked against the one response model and
        scrubbed of our secrets (keys included), and what it says. Raises UpstreamFailed for anything
        the next upstream may fix, a malformed answer included."""
        r = call.route
        payload = json.dumps(self._upstream_body(call, up, stream=False)).encode()
        resp: UpstreamResponse | None = None
        try:
            async with asyncio.timeout(r.total_timeout_s):
                resp = await self.pool.post(f"{up.base_url}{call.path}", payload, self._headers(up), r.connect_timeout_s,
                                            max_body_bytes=self.plan.http.upstream_body_bytes)
                content = await resp.read()
        except (UpstreamError, TimeoutError) as e:
            if resp is not None:
                resp.close()
            raise UpstreamFailed(str(e) if isinstance(e, UpstreamError) else "TimeoutError") from None
        if resp.status in _RETRY_STATUS:
            raise UpstreamFailed(f"HTTP {resp.status}")
        try:
            data = loads(content)
            if resp.status != 200:
                raise _ClientError(resp.status, data)
            parsed = parse_response(data, chat=call.chat)
        except MalformedResponse as e:
            raise UpstreamFailed(str(e) if resp.status == 200 else f"HTTP {resp.status} with a body that is not JSON"
                                 ) from None
        if parsed.error is not None:
            raise UpstreamFailed(f"an error in a 200 answer ({scrub(parsed.error[:80])})")
        if not parsed.choices:
            raise UpstreamFailed("malformed response: choices: no choice")
        return scrub_obj(data), parsed

    def _tier(self, call: Call, up: Upstream, usage: Usage | None, usage_error: MalformedResponse | None,
              text: str, t: float) -> dict[str, Any]:
        """One upstream's part of the call: tokens (the upstream's checked usage, else an estimate that
        says so, else - usage outside the bounds - the call's bound) and their price."""
        if usage_error is not None:
            call.events["usage_invalid"] += 1
            pt, ct, source = 0, 0, "invalid"
        elif usage is not None and usage.complete:
            pt, ct, source = usage.prompt_tokens, usage.completion_tokens, "upstream"
        else:
            pt, ct, source = len(prompt_text(call.body)) // 4 + 1, len(text) // 4 + 1, "estimate"
        tier = {"upstream": up.name, "prompt_tokens": pt, "completion_tokens": ct, "usage_source": source,
                "cost_usd": round(up.price.cost(pt, ct), 10), "ms": round((time.perf_counter() - t) * 1000, 2)}
        if usage_error is not None:
            tier["usage_error"] = scrub(str(usage_error))[:200]  # type: ignore[index]
        call.tiers.append(tier)
        return tier

    async def _first_answer(self, call: Call, upstreams: list[Upstream]
                            ) -> tuple[Upstream, dict[str, Any], Parsed, float] | Response | None:
        """Try upstreams in order: the first answer (with its start time), the client's own error
        response when an upstream refuses the request itself, or None when every one failed."""
        for up in upstreams:
            t = time.perf_counter()
            try:
                data, parsed = await self._fetch(call, up)
                return up, data, parsed, t
            except UpstreamFailed as e:
                self._fail(call, up, str(e))
            except _ClientError as e:
                call.upstream, call.status = up.name, e.status
                return await self._finish_error(call, e.status, e.body)
        return None

    async def _plain(self, call: Call, ckey: str | None) -> Response:
        got = await self._first_answer(call, order(call.route, self.rng))
        if got is None:
            return await self._all_failed(call)
        if isinstance(got, Response):
            return got
        up, data, parsed, t = got
        call.upstream = up.name
        self._tier(call, up, parsed.usage, parsed.usage_error, answer_text(data), t)
        return await self._answer(call, _with_checked_usage(data, parsed), ckey)

    async def _cascade(self, call: Call, ckey: str | None) -> Response:
        checker = self.checkers[call.route_name]
        tiers = call.route.tiers()
        tiers[0] = order(call.route, self.rng)
        data: dict[str, Any] | None = None
        for i, tier in enumerate(tiers):
            got = await self._first_answer(call, tier)
            if isinstance(got, Response):
                return got
            if got is not None:
                up, data, parsed, t = got
                data = _with_checked_usage(data, parsed)
                call.upstream = up.name
                info = self._tier(call, up, parsed.usage, parsed.usage_error, answer_text(data), t)
                result = await checker.check(call.body.get("messages") or [{"role": "user", "content":
                                                                             prompt_text(call.body)}], answer_text(data))
                info["check"] = "pass" if result.passed else "fail"
                info["reasons"] = result.reasons
                if result.passed or i == len(tiers) - 1:
                    return await self._answer(call, data, ckey if result.passed else None)
            if i < len(tiers) - 1:
                call.escalated = True
                self.metrics.inc("weighbridge_escalations_total", route=call.route_name, tier=str(i))
        if data is not None:
            return await self._answer(call, data, None)
        return await self._all_failed(call)

    async def _answer(self, call: Call, data: dict[str, Any], ckey: str | None) -> Response:
        """A whole answer (plain call, cascade, cache hit), as JSON or as a replayed stream."""
        call.answer = answer_text(data)
        blocked = self.response_block.hit(call.answer)
        if blocked is not None:
            call.events["block.response"] += 1
            data = _filtered(data)
            ckey = None
        elif ckey is not None:
            await self._cache_put(call, ckey, data)
        headers = self._response_headers(call)
        if call.stream:
            async def gen() -> AsyncIterator[bytes]:
                for ev in replay(data, call.include_usage):
                    yield ev
                if call.first_token_s is None:
                    call.first_token_s = time.perf_counter() - call.t0
                failed = await self._record(call)
                yield failed or DONE

            def ended() -> None:
                if not call.finished:  # the client went away before the record was made
                    call.status, call.code = 499, "client_closed"
                    self.writer.audit(self._make_record(call))
            return _Relay(gen(), ended, media_type="text/event-stream", headers=headers)
        failed = await self._record(call)
        if failed:
            return error(503, "the audit log could not record this request", "server_error", "audit_unavailable")
        return JSONResponse(data, headers=headers)

    async def _stream(self, call: Call, ckey: str | None) -> Response:
        r = call.route
        deadline = call.t0 + r.total_timeout_s
        limit = self.plan.http.upstream_stream_bytes
        for up in order(r, self.rng):
            t = time.perf_counter()
            body = self._upstream_body(call, up, stream=True)
            acct = StreamAccount(call.chat, forward_usage_only=call.include_usage,
                                 max_line_bytes=self.plan.http.upstream_line_bytes)
            held: list[bytes] = []
            resp: UpstreamResponse | None = None
            try:
                async with asyncio.timeout(min(r.first_token_timeout_s, max(deadline - time.perf_counter(), 0.001))):
                    resp = await self.pool.post(f"{up.base_url}{call.path}", json.dumps(body).encode(),
                                                self._headers(up), r.connect_timeout_s, max_body_bytes=limit)
                    if resp.status in (400, 422) and "stream_options" in body and up.name not in self.no_stream_options:
                        await resp.read()  # an older server that rejects stream_options: once more without
                        self.no_stream_options.add(up.name)
                        body.pop("stream_options")
                        resp = await self.pool.post(f"{up.base_url}{call.path}", json.dumps(body).encode(),
                                                    self._headers(up), r.connect_timeout_s, max_body_bytes=limit)
                    if resp.status in _RETRY_STATUS:
                        raise UpstreamFailed(f"HTTP {resp.status}")
                    if resp.status != 200:
                        content = await resp.read()
                        call.upstream, call.status = up.name, resp.status
                        try:
                            err = loads(content)
                        except MalformedResponse:
                            err = {"error": {"message": content.decode(errors="replace")[:500], "type": "upstream_error"}}
                        return await self._finish_error(call, resp.status, err)
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
                reason = str(e) if isinstance(e, (UpstreamFailed, UpstreamError)) else (
                    "stream ended before its first token" if isinstance(e, StopAsyncIteration) else type(e).__name__)
                self._fail(call, up, reason)
                continue
            call.upstream = up.name
            call.first_token_s = time.perf_counter() - call.t0
            self.metrics.observe("weighbridge_first_token_seconds", call.first_token_s, route=call.route_name)
            return _Relay(self._relay(call, up, resp, chunks, acct, held, deadline, ckey, t),
                          lambda: self._abandoned(call, up, resp, acct, t),
                          media_type="text/event-stream", headers=self._response_headers(call))
        return await self._all_failed(call)

    async def _relay(self, call: Call, up: Upstream, resp: UpstreamResponse, chunks: AsyncIterator[bytes],
                     acct: StreamAccount, held: list[bytes], deadline: float, ckey: str | None, t: float
                     ) -> AsyncIterator[bytes]:
        """The stream, event by event; its audit record and settlement once it ends, however it ends
        (a client that goes away is handled by ``_abandoned``, which ``_Relay`` always calls)."""
        problem: str | None = None
        for ev in held:
            yield ev
        try:
            silence = call.route.first_token_timeout_s
            while not acct.stopped:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise TimeoutError
                try:
                    async with asyncio.timeout(min(remaining, silence)):
                        chunk = await chunks.__anext__()
                except TimeoutError:
                    if remaining > silence:
                        problem = f"the upstream went silent for {silence:g} s mid-stream"
                    raise
                for ev in acct.feed(chunk):
                    yield ev
                if self.response_block.pattern is not None and self.response_block.hit(acct.text):
                    call.events["block.response"] += 1
                    acct.finish_reason = "content_filter"
                    yield event({"choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}]})
                    acct.done = True
        except StopAsyncIteration:
            pass
        except TimeoutError:
            problem = problem or "the route's total timeout passed mid-stream"
        except UpstreamError as e:
            problem = f"upstream stream broke: {e}"
        if acct.done and problem is None and acct.error is None:  # read the body's end so the connection can be reused
            try:
                async with asyncio.timeout(0.5):
                    async for _ in chunks:
                        pass
            except (TimeoutError, UpstreamError):
                pass
        resp.close()
        if problem is None and acct.malformed is not None:
            problem = f"upstream sent a malformed event mid-stream: {acct.malformed[:200]}"
        if problem is None and acct.error is not None:
            problem = f"upstream sent an error mid-stream: {acct.error[:200]}"
        if problem is None and not acct.done:
            problem = "upstream stream broke: it ended before [DONE]"
        data = scrub_obj(acct.response())  # what the cache may keep: our secrets masked, as the client got it
        call.answer = answer_text(data)  # text and tool calls: both are audited and checked
        self._tier(call, up, acct.usage, acct.usage_error, call.answer, t)
        if problem:  # never let a cut-off answer pass for a whole one
            call.status, call.code = 502, "upstream_stream_broken"
            self._fail(call, up, "broke mid-stream")
            await self._record(call)
            yield event({"error": {"message": scrub(problem), "type": "upstream_error", "param": None,
                                   "code": "upstream_stream_broken"}})
            return
        if ckey is not None and acct.finish_reason not in (None, "content_filter") and not call.usage_invalid:
            await self._cache_put(call, ckey, data)
        failed = await self._record(call)
        yield failed or DONE

    def _abandoned(self, call: Call, up: Upstream, resp: UpstreamResponse, acct: StreamAccount, t: float) -> None:
        """The relay is over: count it out, and if it never reached its record (the client went away,
        or the response was never started) account for what was generated, without awaiting."""
        resp.close()
        if call.finished:
            return
        data = acct.response()
        call.status, call.code, call.answer = 499, "client_closed", answer_text(data)
        if not any(tier["upstream"] == up.name for tier in call.tiers):
            self._tier(call, up, acct.usage, acct.usage_error, call.answer, t)
        self.writer.audit(self._make_record(call))

    # -- endings ------------------------------------------------------------------------------
    async def _all_failed(self, call: Call) -> Response:
        call.status, call.code = 502, "upstream_failed"
        msg = scrub(f"every upstream of route '{call.route_name}' failed: " + "; ".join(call.failures)) or ""
        await self._record(call)
        return error(502, msg, kind="upstream_error", code="upstream_failed")

    async def _finish_error(self, call: Call, status: int, body: Any) -> Response:
        """The upstream refused the request itself (4xx): the client gets its error, nobody else is tried.
        Scrubbed first: an upstream that echoes the request would hand the client our upstream key."""
        body = scrub_obj(body)
        call.status = status
        call.code = (body.get("error") or {}).get("code") if isinstance(body, dict) and isinstance(
            body.get("error"), dict) else None
        await self._record(call)
        return JSONResponse(body, status_code=status, headers=self._response_headers(call))

    async def _deny(self, call: Call, d: Denied) -> Response:
        call.status, call.code = d.status, d.code
        self.metrics.inc("weighbridge_denied_total", code=d.code)
        await self._record(call)
        headers = {"retry-after": str(max(1, round(d.retry_after)))} if d.retry_after else None
        kind = "invalid_request_error" if d.status == 400 else ("authentication_error" if d.status in (401, 403)
                                                                else "rate_limit_error" if d.code in ("rate_limit_exceeded", "too_many_in_flight")
                                                                else "insufficient_quota")
        return error(d.status, str(d), kind, d.code, headers=headers)

    def _response_headers(self, call: Call) -> dict[str, str]:
        h = {"x-weighbridge-route": call.route_name, "x-weighbridge-cache": "hit" if call.cache_hit else "miss"}
        if call.upstream:
            h["x-weighbridge-upstream"] = call.upstream
        if call.route is not None and call.route.check:
            h["x-weighbridge-escalated"] = "true" if call.escalated else "false"
        return h

    async def _record(self, call: Call) -> bytes | None:
        """Write the audit record (awaited when ``audit.sync``); an error event if it could not be written."""
        loop = asyncio.get_running_loop() if self.plan.audit.sync else None
        fut = self.writer.audit(self._make_record(call), loop)
        if fut is None:
            return None
        try:
            await asyncio.shield(fut)
            return None
        except Exception:  # noqa: BLE001 - counted in metrics; the client is told
            self.metrics.writer_failures = self.writer.failures
            return event({"error": {"message": "the audit log could not record this request", "type": "server_error",
                                    "param": None, "code": "audit_unavailable"}})

    @staticmethod
    def _settled(call: Call, tokens: int, usd: float) -> tuple[int, float]:
        """What the call costs its key: the reported usage, never more than the call's bound (a larger
        count is a lie, or an upstream that ignored max_tokens); the bound itself when the usage was
        refused (the answer was generated; what it cost is unknown)."""
        if call.bound_tokens is None or call.bound_usd is None:
            return tokens, usd
        if call.usage_invalid:
            return call.bound_tokens, call.bound_usd
        if tokens > call.bound_tokens or usd > call.bound_usd + 1e-12:
            call.events["usage_over_bound"] += 1
            return min(tokens, call.bound_tokens), min(usd, call.bound_usd)
        return tokens, usd

    def _make_record(self, call: Call) -> dict[str, Any]:
        """Settle the budget and count metrics; the audit record of the finished call."""
        latency = time.perf_counter() - call.t0
        pt = sum(t["prompt_tokens"] for t in call.tiers)
        ct = sum(t["completion_tokens"] for t in call.tiers)
        usd = sum(t["cost_usd"] for t in call.tiers)
        settled = self._settled(call, pt + ct, usd)
        call.finished = True
        if call.reservation is not None:
            self.guard.settle(call.reservation, *settled)
            if not getattr(self.guard, "persists_spend", False):  # a shared guard has written it itself
                self.writer.spend(call.reservation.key_id, call.reservation.period, *settled)
            call.reservation = None
        if self.tracing is not None:
            try:
                self.tracing.request_span(call, prompt_tokens=pt, completion_tokens=ct, usd=usd, latency_s=latency)
            except Exception:  # noqa: BLE001 - a trace is never worth a failed request
                log.exception("recording the request's span failed")
        m = self.metrics
        m.inc("weighbridge_requests_total", route=call.route_name, upstream=call.upstream or "", status=str(call.status))
        m.observe("weighbridge_request_duration_seconds", latency, route=call.route_name)
        for t in call.tiers:
            m.inc("weighbridge_tokens_total", t["prompt_tokens"], route=call.route_name, upstream=t["upstream"], kind="prompt")
            m.inc("weighbridge_tokens_total", t["completion_tokens"], route=call.route_name, upstream=t["upstream"],
                  kind="completion")
            m.inc("weighbridge_cost_usd_total", t["cost_usd"], route=call.route_name, upstream=t["upstream"])
        redacted_answer = self._redact_answer(call)
        for k, n in call.events.items():
            m.inc("weighbridge_safety_events_total", n, kind=k)
        m.writer_failures = self.writer.failures
        redacted_prompt = (scrub(prompt_text(call.audit_body)) or "") if call.audit_body else ""
        record: dict[str, Any] = {
            "ts": time.time(), "key": call.key_id, "route": call.route_name, "endpoint": call.path,
            "status": call.status, "code": call.code, "upstream": call.upstream, "escalated": call.escalated,
            "tiers": call.tiers, "failures": call.failures, "prompt_tokens": pt, "completion_tokens": ct,
            "cost_usd": round(usd, 10), "latency_ms": round(latency * 1000, 3), "stream": call.stream,
            "first_token_ms": round(call.first_token_s * 1000, 3) if call.first_token_s is not None else None,
            "cache_hit": call.cache_hit, "safety": dict(call.events),
            "settled": {"tokens": settled[0], "usd": round(settled[1], 10)},
            "prompt_sha256": _sha(redacted_prompt), "response_sha256": _sha(redacted_answer)}
        if call.param:
            record["param"] = call.param
        if self.plan.audit.store_text:
            record["prompt"], record["response"] = redacted_prompt, redacted_answer
        return record


class _ClientError(WeighbridgeError):
    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body


class _Relay(StreamingResponse):
    """A streamed answer whose ending is always accounted for: ``on_end`` runs once the response is
    over, whether the stream ended, broke, the client went away, or the body was never started (an
    async generator that never started never runs its ``finally``)."""

    def __init__(self, content: AsyncIterator[bytes], on_end: Any, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_end = [on_end]

    def then(self, fn: Any) -> None:
        self._on_end.append(fn)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
            for fn in self._on_end:
                try:
                    fn()
                except Exception:  # noqa: BLE001 - one failed ending must not skip the others
                    log.exception("finishing a streamed response failed")


def _with_checked_usage(data: dict[str, Any], parsed: Parsed) -> dict[str, Any]:
    """The answer as the client gets it: a usage we refused is not passed on as if it were true."""
    if parsed.usage_error is not None:
        data = {k: v for k, v in data.items() if k != "usage"}
    return data


def _filtered(data: dict[str, Any]) -> dict[str, Any]:
    """The answer withheld the way OpenAI reports it: empty content, finish_reason content_filter."""
    out = json.loads(json.dumps(data))
    for ch in out.get("choices") or []:
        if "message" in ch:
            ch["message"] = {"role": "assistant", "content": ""}
        else:
            ch["text"] = ""
        ch["finish_reason"] = "content_filter"
    return out


def create_app(plan: Plan, *, seed: int | None = None) -> Starlette:
    gw = Gateway(plan, seed=seed)

    async def chat(request: Request) -> Response:
        return await gw.handle(request, "/chat/completions")

    async def completions(request: Request) -> Response:
        return await gw.handle(request, "/completions")

    async def models(request: Request) -> Response:
        try:
            gw.guard.authenticate(request.headers.get("authorization"), route="")
        except Denied as d:
            if d.status == 401:
                return error(401, str(d), "authentication_error", d.code)
        return JSONResponse({"object": "list", "data": [{"id": n, "object": "model", "owned_by": "weighbridge"}
                                                        for n in plan.routes]})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if gw.draining:
            return error(503, "shutting down: finishing the requests in flight", "server_error", "draining")
        if not gw.writer.alive:
            return error(503, "the audit writer is not running", "server_error", "not_ready")
        return JSONResponse({"status": "ready", "routes": list(plan.routes)})

    shared_dir = os.environ.get("WEIGHBRIDGE_METRICS_DIR")  # set by the --workers supervisor

    async def metrics(request: Request) -> Response:
        figures = gw.metrics.merged(shared_dir, os.getpid()) if shared_dir else gw.metrics
        return Response(figures.render(), media_type="text/plain; version=0.0.4")

    async def publish() -> None:
        while True:  # every worker's figures where the others' /metrics can read them
            await asyncio.sleep(1.0)
            gw.metrics.write_snapshot(shared_dir, os.getpid())  # type: ignore[arg-type]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(publish()) if shared_dir else None
        gc.freeze()  # everything alive now lives as long as the process: full collections need not walk it
        yield
        if task is not None:
            task.cancel()
        await gw.aclose()
        if shared_dir:
            gw.metrics.write_snapshot(shared_dir, os.getpid())

    app = Starlette(routes=[HttpRoute("/v1/chat/completions", chat, methods=["POST"]),
                            HttpRoute("/v1/completions", completions, methods=["POST"]),
                            HttpRoute("/v1/models", models, methods=["GET"]),
                            HttpRoute("/healthz", healthz, methods=["GET"]),
                            HttpRoute("/readyz", readyz, methods=["GET"]),
                            HttpRoute("/metrics", metrics, methods=["GET"])],
                    lifespan=lifespan)
    app.state.gateway = gw
    return app
