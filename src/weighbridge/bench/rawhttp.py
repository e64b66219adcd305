"""The load generator's client: a streaming POST to one origin over the one hot-path HTTP client
(``wire.http``), so what the gateway learned about hostile framing holds here too.

httpx costs ~1.3 ms of client CPU per request, which caps a 2-core load generator near 500 req/s;
``wire.http`` parses with llhttp and keeps connections alive, and reuses one only when its response
ended exactly where its framing said.
"""

from __future__ import annotations

from typing import AsyncIterator, Callable
from urllib.parse import urlsplit

from ..core.errors import WeighbridgeError
from ..wire.http import Pool


class HTTPStatusError(WeighbridgeError):
    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"HTTP {status}")


class RawClient:
    def __init__(self, base_url: str, headers: dict[str, str] | None = None, timeout_s: float = 120.0) -> None:
        u = urlsplit(base_url)
        self.base = base_url.rstrip("/")
        self.https = u.scheme == "https"
        self.timeout_s = timeout_s
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self._pool = Pool(max_body_bytes=1 << 30)  # a load test may ask for long answers; memory is not held
        self.count_tokens: Callable[[str], int] | None = None  # the model's tokenizer, when the caller has it

    async def post_stream(self, path: str, body: bytes) -> AsyncIterator[bytes]:
        """POST and yield body bytes as they arrive; raises HTTPStatusError for a non-200 status
        (``wire.http.UpstreamError`` for a connection or framing failure)."""
        resp = await self._pool.post(self.base + path, body, self._headers, self.timeout_s)
        if resp.status != 200:
            try:
                await resp.read()  # the body's end, so the connection can be reused
            finally:
                resp.close()
            raise HTTPStatusError(resp.status)
        async for chunk in resp.chunks():
            yield chunk

    async def aclose(self) -> None:
        await self._pool.aclose()
