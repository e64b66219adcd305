"""``serve --smoke FILE``: start the gateway on a free loopback port, send a file of requests through it,
report what each got (status, which upstream answered, escalation, cache, time, answer), verify the
audit chain, and stop. A plan can be tried end to end before anyone depends on it."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from ..core.errors import ConfigError
from ..wire.openai import Accumulator, MalformedResponse, loads, parse_chunk
from ..wire.sse import SSEDecoder
from ..core.yamlsource import load_yaml, validation_error
from .plan import Plan


class SmokeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # everything else is the request body (messages, prompt, max_tokens…)
    route: str
    endpoint: Literal["chat", "completions"] = "chat"
    stream: bool = False


@dataclass
class SmokeResult:
    route: str
    endpoint: str
    stream: bool
    status: int
    upstream: str
    escalated: str
    cache: str
    ms: float
    answer: str


def load_requests(path: str | Path) -> list[SmokeRequest]:
    src = load_yaml(path)
    if not isinstance(src.data, list):
        raise ConfigError("a smoke file is a list of requests, each with 'route:'", path=str(path), line=1)
    out = []
    for i, item in enumerate(src.data):
        try:
            out.append(SmokeRequest.model_validate(item))
        except ValidationError as e:
            raise validation_error(e, src, str(path), prefix=(i,)) from None
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _send(client: httpx.Client, base: str, req: SmokeRequest) -> SmokeResult:
    body: dict[str, Any] = {**(req.model_extra or {}), "model": req.route, "stream": req.stream}
    path = "/chat/completions" if req.endpoint == "chat" else "/completions"
    t = time.perf_counter()
    if req.stream:
        acc, errors = Accumulator(), []
        decoder = SSEDecoder()
        with client.stream("POST", base + path, json=body) as r:
            for chunk in r.iter_bytes():
                for sse in decoder.feed(chunk):
                    if sse.data is None or not sse.data.startswith("{"):
                        continue
                    try:
                        parsed = parse_chunk(loads(sse.data, "event"), chat=req.endpoint == "chat")
                    except MalformedResponse as e:
                        errors.append(f"[malformed event: {e}]")
                        continue
                    if parsed.error is not None:
                        errors.append(f"[error: {parsed.error}]")
                    acc.add(parsed)
            answer, status, headers = acc.text + "".join(errors), r.status_code, r.headers
    else:
        r = client.post(base + path, json=body)
        status, headers = r.status_code, r.headers
        data = r.json()
        if "error" in data:
            answer = f"[{data['error'].get('code')}: {data['error']['message']}]"
        else:
            ch = data["choices"][0]
            answer = (ch.get("message") or {}).get("content") or ch.get("text") or ""
            if ch.get("finish_reason") == "content_filter":
                answer = "[withheld: content_filter]"
    return SmokeResult(req.route, req.endpoint, req.stream, status, headers.get("x-weighbridge-upstream", "-"),
                       headers.get("x-weighbridge-escalated", ""), headers.get("x-weighbridge-cache", ""),
                       (time.perf_counter() - t) * 1000, answer)


def run_smoke(plan: Plan, requests: list[SmokeRequest], api_key: str | None = None) -> list[SmokeResult]:
    import uvicorn

    from .app import create_app
    from .http_limits import uvicorn_config

    port = _free_port()
    server = uvicorn.Server(uvicorn_config(create_app(plan), plan, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline and thread.is_alive():
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}/v1"
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with httpx.Client(timeout=300, headers=headers) as client:
            return [_send(client, base, r) for r in requests]
    finally:
        server.should_exit = True
        thread.join(30)
