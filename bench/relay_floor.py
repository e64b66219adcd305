"""The least a Python gateway on weighbridge's stack can spend on a request: a bare relay.

uvicorn (uvloop, httptools) serving a plain ASGI function that reads the client's body, posts it to the
upstream through weighbridge's own HTTP client (``wire.http.Pool``, keep-alive) and sends the answer
back, streamed or whole - no routing framework, no key check, no screening, no audit, no accounting.
``bench/gateway_overhead.py --floor`` measures it as one more target beside the gateway: the CPU a
request costs the gateway above this floor is what its own work costs; below it nothing written in
Python on this stack can go.

Usage (normally started by gateway_overhead.py): python bench/relay_floor.py --upstream URL --port N
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from weighbridge.wire.http import Pool  # noqa: E402

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def relay(upstream: str) -> Callable[[dict[str, Any], Receive, Send], Awaitable[None]]:
    pool = Pool()

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/readyz":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"].removeprefix("/v1")
        resp = await pool.post(f"{upstream}{path}", body, {"content-type": "application/json"}, 5.0)
        kind = resp.headers.get(b"content-type", b"application/json")
        await send({"type": "http.response.start", "status": resp.status, "headers": [(b"content-type", kind)]})
        async for chunk in resp.chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, help="the upstream's /v1 base URL")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    uvicorn.run(relay(args.upstream), host="127.0.0.1", port=args.port, log_level="warning", http="httptools",
                loop="uvloop", lifespan="off")


if __name__ == "__main__":
    main()
