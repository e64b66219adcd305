"""The gateway's ASGI app: /v1/chat/completions, /v1/completions, /v1/models, /healthz, /readyz, /metrics.

The app only routes. One request passes through the stages in order, each a module with one job:

    intake      the body within its limits, parsed and checked; the route it names
    admission   key, rate, in-flight share; the budget the request holds while it runs
    screen      prompt block list; PII redaction of the audit copy (and of what upstreams get)
    caching     lookup (and, once answered, the store)
    dispatch    plain, stream or cascade over ``upstreams`` with fallback; ``relay`` for streams
    respond     the answer or the error the client gets
    accounting  settlement from the reported usage, metrics, the trace span
    record      the audit record (committed before the answer's last byte when ``audit.sync``)

Streams pass through event by event. A failure before the first content event (connection error,
timeout, a status in the retry set, malformed or empty stream) moves to the next upstream; a stream
that breaks after it ends with an error event, never as a silently short answer. A streamed cascade
holds the draft until it passes its check.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute

from . import intake, state
from .accounting import Accounting
from .admission import Admission
from .audit import audit_key, open_sink
from .auth import Denied, Guard
from .cache import Cache, RedisCache, SqliteCache
from .caching import Caching
from .call import Call, error
from .cascade import Checker, PlanJudges
from .dispatch import Dispatch
from .metrics import Metrics
from .plan import Plan
from .record import Recorder
from .relay import Relay, StreamRelay
from .respond import Responder
from .screen import Screen
from .upstreams import Upstreams
from .writer import Writer


class Gateway:
    """The stages of one plan, wired together once."""

    def __init__(self, plan: Plan, *, seed: int | None = None) -> None:
        self.plan = plan
        from .shared import SharedGuard, is_postgres, open_keys

        missing = [u.name for r in plan.routes.values() for u in r.all_upstreams() if u.base_url is None]
        if missing:
            raise ValueError(f"upstreams {', '.join(missing)} are model files: 'weighbridge serve' starts their servers")
        state_path = plan.resolve(plan.state)
        local_path = ":memory:" if is_postgres(state_path) else state_path  # Postgres state: nothing local to keep
        self.read_db = state.connect(local_path)
        self.audit_key = audit_key(plan.audit.hmac_key_env)
        self.writer = Writer(state.connect(local_path), open_sink(plan.resolve(plan.audit.url), self.audit_key,
                                                                  plan.audit_head()))
        self.guard: Guard = SharedGuard(open_keys(state_path), plan.redis) if plan.redis else Guard(self.read_db)
        cache_url = plan.cache or plan.redis
        self.cache: Cache = RedisCache(cache_url) if cache_url else SqliteCache(self.read_db, self.writer, state_path)
        self.metrics = Metrics()
        from .tracing import from_env

        self.tracing = from_env()  # OpenTelemetry, when OTEL_TRACES_EXPORTER asks for it
        self.judges = PlanJudges(plan)
        checkers = {n: Checker(r, self.judges, plan.sandbox) for n, r in plan.routes.items() if r.check}
        self.admission = Admission(self.guard, plan)
        self.screen = Screen(plan)
        self.caching = Caching(self.cache, plan, self.metrics, self.screen)
        self.upstreams = Upstreams(plan, self.metrics, random.Random(seed))
        accounting = Accounting(self.guard, self.writer, self.metrics, self.tracing)
        self.recorder = Recorder(plan, self.writer, accounting, self.screen)
        self.respond = Responder(self.screen, self.caching, self.recorder, self.metrics)
        self.dispatch = Dispatch(self.upstreams, self.respond,
                                 StreamRelay(self.upstreams, self.screen, self.caching, self.recorder),
                                 checkers, self.metrics)
        self.draining = False  # set on SIGTERM: /readyz goes unready before the server stops accepting

    async def aclose(self) -> None:
        await self.upstreams.aclose()
        await self.cache.aclose()
        await self.judges.aclose()
        await asyncio.to_thread(self.writer.close)
        await asyncio.to_thread(self.guard.close)  # a shared guard flushes the spend it still has queued
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)

    async def handle(self, request: Request, path: str) -> Response:
        got = await intake.read(request, self.plan, chat=path == "/chat/completions")
        if isinstance(got, intake.Refused):
            return await self._refused(request, path, got)
        raw, body = got
        name = intake.route_name(self.plan, request, body)
        if isinstance(name, Response):
            return name
        call = Call(path, name, self.plan.routes[name], body, key_id=None, stream=bool(body.get("stream")),
                    include_usage=bool((body.get("stream_options") or {}).get("include_usage")))
        call.size = len(raw)
        call.traceparent = request.headers.get("traceparent")
        self.metrics.in_flight += 1
        resp: Response | None = None
        try:
            resp = await self._stages(call, request)
            return resp
        finally:
            if isinstance(resp, Relay):  # a stream is counted out when it ends
                resp.then(lambda: self._done(call))
            else:
                self._done(call)

    async def _stages(self, call: Call, request: Request) -> Response:
        try:
            key = self.admission.admit(call, request.headers.get("authorization"))
        except Denied as d:
            return await self.respond.deny(call, d)
        if await self.screen.prompt(call):
            return await self.respond.deny(call, Denied(400, "the prompt matches a blocked pattern", "content_blocked"))
        ckey = self.caching.key(call)
        if ckey is not None:
            cached = await self.caching.lookup(call, ckey)
            if cached is not None:
                return await self.respond.answer(call, cached, None)
        try:
            self.admission.reserve(call, key)
        except Denied as d:
            return await self.respond.deny(call, d)
        return await self.dispatch(call, ckey)

    def _done(self, call: Call) -> None:
        """The request is over: count it out and free what it held."""
        self.metrics.in_flight -= 1
        self.admission.release(call)

    async def _refused(self, request: Request, path: str, r: intake.Refused) -> Response:
        """A request refused before it reached a route: told what is wrong (after the key check, so a
        client without a key learns nothing about the API) and audited like any other."""
        call = Call(path, r.route[:200], None, {}, key_id=None)
        try:
            call.key_id = self.admission.key_id(request.headers.get("authorization"))
        except Denied as d:
            return await self.respond.deny(call, d)
        self.metrics.inc("weighbridge_invalid_requests_total", field=r.param or r.code or "body")
        call.status, call.param = r.status, r.param
        call.code = r.code or {413: "request_too_large", 408: "request_timeout"}.get(r.status, "invalid_field")
        await self.recorder.write(call)
        return error(r.status, r.message, code=call.code, param=r.param)


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

    async def publish(where: str) -> None:
        while True:  # every worker's figures where the others' /metrics can read them
            await asyncio.sleep(1.0)
            gw.metrics.write_snapshot(where, os.getpid())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(publish(shared_dir)) if shared_dir else None
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
