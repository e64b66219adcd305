"""A lean HTTP/1.1 streaming client for the load generator.

httpx costs ~1.3 ms of client CPU per request, which caps a 2-core load generator near 500 req/s.
This client does only what a streaming completion needs - keep-alive connections to one origin,
a JSON POST, a status line, headers, and a body framed by content-length, chunked encoding or
connection close - and yields the raw body as it arrives.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import AsyncIterator, Callable
from urllib.parse import urlsplit


class HTTPStatusError(Exception):
    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"HTTP {status}")


class RawClient:
    def __init__(self, base_url: str, headers: dict[str, str] | None = None, timeout_s: float = 120.0) -> None:
        u = urlsplit(base_url)
        self.https = u.scheme == "https"
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if self.https else 80)
        self.prefix = u.path.rstrip("/")
        self.timeout_s = timeout_s
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head = f"Host: {self.host}:{self.port}\r\nContent-Type: application/json\r\n{extra}"
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.count_tokens: Callable[[str], int] | None = None  # the model's tokenizer, when the caller has it

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self._idle:
            r, w = self._idle.pop()
            if not w.is_closing() and not r.at_eof():
                return r, w
            w.close()
        return await asyncio.open_connection(self.host, self.port, ssl=ssl.create_default_context() if self.https else None,
                                             limit=1 << 20)

    async def post_stream(self, path: str, body: bytes) -> AsyncIterator[bytes]:
        """POST and yield body bytes as they arrive; raises HTTPStatusError for a non-200 status."""
        reader, writer = await self._connect()
        reusable = False
        try:
            writer.write(f"POST {self.prefix}{path} HTTP/1.1\r\n{self._head}Content-Length: {len(body)}\r\n\r\n"
                         .encode() + body)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            headers = {}
            for line in lines[1:]:
                if b":" in line:
                    k, v = line.split(b":", 1)
                    headers[k.strip().lower()] = v.strip().lower()
            keep_alive = headers.get(b"connection") != b"close"
            if b"content-length" in headers:
                remaining = int(headers[b"content-length"])
                if status != 200:
                    await reader.readexactly(remaining)
                    reusable = keep_alive
                    raise HTTPStatusError(status)
                while remaining:
                    data = await reader.read(min(remaining, 65536))
                    if not data:
                        raise asyncio.IncompleteReadError(b"", remaining)
                    remaining -= len(data)
                    yield data
                reusable = keep_alive
            elif headers.get(b"transfer-encoding") == b"chunked":
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        await reader.readuntil(b"\r\n")
                        break
                    data = await reader.readexactly(size + 2)
                    if status == 200:
                        yield data[:-2]
                if status != 200:
                    reusable = keep_alive
                    raise HTTPStatusError(status)
                reusable = keep_alive
            else:  # delimited by the connection closing
                if status != 200:
                    raise HTTPStatusError(status)
                while data := await reader.read(65536):
                    yield data
        finally:
            if reusable:
                self._idle.append((reader, writer))
            else:
                writer.close()

    async def aclose(self) -> None:
        for _, w in self._idle:
            w.close()
        self._idle.clear()
