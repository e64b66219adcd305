"""Request intake: the body read within its size and time limits, parsed and checked once, and the
route it names. Nothing after this stage sees bytes from the client, only a checked body.

The size limit is applied twice on purpose: to the declared ``Content-Length`` before a byte is
read, and to the bytes as they arrive (a chunked upload declares nothing).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from .call import ROUTE_HEADER, error
from .plan import Plan
from .request import Malformed
from .request import check as check_body
from .request import parse as parse_body


@dataclass
class Refused:
    """A request refused before it reached a route; it is still authenticated and audited."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    route: str = ""


def too_large(plan: Plan, size: int) -> str:
    return (f"the request body is {size:,}+ bytes; this gateway accepts at most "
            f"{plan.max_body_bytes:,} (plan: max_body_bytes)")


async def read(request: Request, plan: Plan, chat: bool) -> tuple[bytes, dict[str, Any]] | Refused:
    """The raw body and its checked form, or why it was refused."""
    limit = plan.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:  # refused before a byte of the body is read
        return Refused(413, too_large(plan, int(declared)))
    raw = bytearray()
    try:
        async with asyncio.timeout(plan.http.body_timeout_s):
            async for piece in request.stream():  # a chunked upload is counted as it arrives
                raw += piece
                if len(raw) > limit:
                    return Refused(413, too_large(plan, len(raw)))
    except TimeoutError:
        return Refused(408, f"the request body did not arrive within {plan.http.body_timeout_s:g} s "
                            "(plan: http.body_timeout_s)")
    body: dict[str, Any] | None = None
    try:
        body = parse_body(bytes(raw))
        check_body(body, chat=chat)
    except Malformed as m:
        model = body.get("model") if body is not None else None
        return Refused(400, str(m), m.param, m.code, model if isinstance(model, str) else "")
    return bytes(raw), body


def route_name(plan: Plan, request: Request, body: dict[str, Any]) -> str | JSONResponse:
    """The route the request names (header first, then ``model``), the default route where the plan
    allows one, or a 404 that lists the routes."""
    name = request.headers.get(ROUTE_HEADER) or body.get("model")
    if isinstance(name, str) and name in plan.routes:
        return name
    named = isinstance(name, str) and name != ""
    if not plan.default_route or (named and plan.unknown_models == "refuse"):
        return error(404, f"no route '{name}' (routes: {', '.join(plan.routes)})"
                     + ("; the plan serves unknown names only with unknown_models: default_route"
                        if named and plan.default_route else ""), code="model_not_found")
    return plan.default_route
