"""The gateway's ASGI app: /v1/chat/completions, /v1/completions, /v1/models, /healthz, /readyz.

Streams are passed through chunk by chunk. A request whose upstream fails before the first byte
(connection error, timeout, 429, 5xx) moves to the next upstream of its route's fallback chain; a
stream that breaks after it started ends with an error event, never as a silently short answer.
The response names the upstream that answered in ``x-weighbridge-upstream``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from typing import Any, AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as HttpRoute

from .plan import Plan, Route, Upstream

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
ROUTE_HEADER = "x-weighbridge-route"


def error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None) -> JSONResponse:
    """An OpenAI-style error body."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}}, status_code=status)


def order(route: Route, rng: random.Random) -> list[Upstream]:
    """One weighted pick among the route's upstreams, then the rest of them, then the fallback chain."""
    pool = list(route.upstreams)
    first = rng.choices(pool, weights=[u.weight for u in pool])[0]
    return [first] + [u for u in pool if u is not first] + list(route.fallback)


def create_app(plan: Plan, *, seed: int | None = None) -> Starlette:
    rng = random.Random(seed)
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=512, max_keepalive_connections=128))

    def route_for(request: Request, body: dict[str, Any]) -> tuple[str, Route] | None:
        """The route named by the header, else by the body's model, else the plan's default."""
        name = request.headers.get(ROUTE_HEADER) or body.get("model")
        if name in plan.routes:
            return name, plan.routes[name]
        if plan.default_route:
            return plan.default_route, plan.routes[plan.default_route]
        return None

    async def proxy(request: Request, path: str) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return error(400, "the request body is not valid JSON")
        if not isinstance(body, dict):
            return error(400, "the request body must be a JSON object")
        found = route_for(request, body)
        if found is None:
            return error(404, f"no route '{body.get('model')}' (routes: {', '.join(plan.routes)})",
                         code="model_not_found")
        name, route = found
        if route.max_tokens is not None and (body.get("max_tokens") or 0) > route.max_tokens:
            body["max_tokens"] = route.max_tokens
        stream = bool(body.get("stream"))
        failures: list[str] = []
        for up in order(route, rng):
            upstream_body = {**body, "model": up.model}
            headers = {"content-type": "application/json"}
            if up.api_key_env and os.environ.get(up.api_key_env):
                headers["authorization"] = f"Bearer {os.environ[up.api_key_env]}"
            timeout = httpx.Timeout(route.total_timeout_s, connect=route.connect_timeout_s,
                                    read=route.first_token_timeout_s)
            req = client.build_request("POST", up.base_url + path, json=upstream_body, headers=headers, timeout=timeout)
            try:
                resp = await client.send(req, stream=True)
            except httpx.HTTPError as e:
                failures.append(f"{up.name}: {type(e).__name__}")
                continue
            if resp.status_code in _RETRY_STATUS:
                await resp.aclose()
                failures.append(f"{up.name}: HTTP {resp.status_code}")
                continue
            extra = {"x-weighbridge-upstream": up.name, "x-weighbridge-route": name}
            if not stream or resp.status_code != 200:
                content = await resp.aread()
                await resp.aclose()
                return Response(content, status_code=resp.status_code, headers=extra,
                                media_type=resp.headers.get("content-type", "application/json"))
            try:  # hold the stream until its first chunk: a failure before it can still fall over
                chunks = resp.aiter_raw()
                first = await chunks.__anext__()
            except (httpx.HTTPError, StopAsyncIteration) as e:
                await resp.aclose()
                failures.append(f"{up.name}: stream failed before its first byte ({type(e).__name__})")
                continue
            return StreamingResponse(_relay(first, chunks, resp), media_type="text/event-stream", headers=extra)
        return error(502, "every upstream of route '" + name + "' failed: " + "; ".join(failures),
                     kind="upstream_error", code="upstream_failed")

    async def chat(request: Request) -> Response:
        return await proxy(request, "/chat/completions")

    async def completions(request: Request) -> Response:
        return await proxy(request, "/completions")

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": n, "object": "model", "owned_by": "weighbridge"}
                                                        for n in plan.routes]})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(routes=[HttpRoute("/v1/chat/completions", chat, methods=["POST"]),
                             HttpRoute("/v1/completions", completions, methods=["POST"]),
                             HttpRoute("/v1/models", models, methods=["GET"]),
                             HttpRoute("/healthz", healthz, methods=["GET"]),
                             HttpRoute("/readyz", healthz, methods=["GET"])],
                     lifespan=lifespan)


async def _relay(first: bytes, chunks: AsyncIterator[bytes], resp: httpx.Response) -> AsyncIterator[bytes]:
    """Pass the stream through; if it stops before the upstream's [DONE], end it with an error event."""
    tail = first[-64:]
    problem = None
    try:
        yield first
        async for chunk in chunks:
            tail = (tail + chunk)[-64:]
            yield chunk
    except httpx.HTTPError as e:
        problem = f"upstream stream broke: {type(e).__name__}"
    finally:
        await resp.aclose()
    if problem is None and b"[DONE]" not in tail:
        problem = "upstream stream broke: it ended before [DONE]"
    if problem:  # never let a cut-off answer pass for a whole one
        yield ("data: " + json.dumps({"error": {"message": problem, "type": "upstream_error"}}) + "\n\n").encode()
