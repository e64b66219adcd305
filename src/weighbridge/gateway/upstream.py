"""A lean HTTP/1.1 client for the gateway's upstream calls: keep-alive connections per origin, a JSON
POST, the status and headers, then the body as it arrives.

httpx spent about 2.5 ms of CPU per proxied request in a profile of the gateway (its pool, its
anyio layers and header models), more than everything else the gateway does together; this client
does only what an OpenAI-compatible upstream needs (content-length, chunked or close-delimited
bodies, TLS) and is the reason the gateway's added latency is a fraction of a millisecond.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit


class UpstreamError(Exception):
    """The connection failed or the response was not valid HTTP; the next upstream may be tried."""


_SSL: ssl.SSLContext | None = None


def _ssl() -> ssl.SSLContext:
    global _SSL
    if _SSL is None:
        _SSL = ssl.create_default_context()
    return _SSL


class Response:
    def __init__(self, pool: Pool, key: tuple[str, int, bool], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, status: int, headers: dict[bytes, bytes]) -> None:
        self._pool, self._key, self._r, self._w = pool, key, reader, writer
        self.status = status
        self.headers = headers
        self._done = False
        self._reusable = headers.get(b"connection") != b"close"

    @property
    def content_type(self) -> str:
        return self.headers.get(b"content-type", b"application/json").decode("latin-1")

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; the connection goes back to the pool once the body is complete."""
        r = self._r
        try:
            if b"content-length" in self.headers:
                remaining = int(self.headers[b"content-length"])
                while remaining:
                    data = await r.read(min(remaining, 65536))
                    if not data:
                        raise UpstreamError("connection closed mid-body")
                    remaining -= len(data)
                    yield data
            elif self.headers.get(b"transfer-encoding", b"").endswith(b"chunked"):
                while True:
                    size = int((await r.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        await r.readuntil(b"\r\n")
                        break
                    data = await r.readexactly(size + 2)
                    yield data[:-2]
            else:
                self._reusable = False
                while data := await r.read(65536):
                    yield data
            self._done = True
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            raise UpstreamError(f"malformed or cut body: {type(e).__name__}") from None
        except OSError as e:
            raise UpstreamError(f"connection error mid-body: {type(e).__name__}") from None
        finally:
            self.close()

    async def read(self) -> bytes:
        return b"".join([c async for c in self.chunks()])

    def close(self) -> None:
        """Return the connection to the pool if its body was read to the end, else drop it."""
        if self._w is None:
            return
        if self._done and self._reusable:
            self._pool._idle.setdefault(self._key, []).append((self._r, self._w))
        else:
            self._w.close()
        self._w = None  # type: ignore[assignment]


class Pool:
    """Keep-alive connections, per (host, port, tls)."""

    def __init__(self, max_idle_per_origin: int = 256) -> None:
        self._idle: dict[tuple[str, int, bool], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}
        self.max_idle = max_idle_per_origin

    async def post(self, url: str, body: bytes, headers: dict[str, str], connect_timeout_s: float) -> Response:
        """Send the request and read the status line and headers (the caller bounds how long that may take)."""
        u = urlsplit(url)
        tls = u.scheme == "https"
        key = (u.hostname or "127.0.0.1", u.port or (443 if tls else 80), tls)
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = (f"POST {path} HTTP/1.1\r\nHost: {key[0]}:{key[1]}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
                .encode("latin-1"))
        for attempt in range(2):  # an idle connection the upstream already closed gets one fresh retry
            fresh = True
            idle = self._idle.get(key)
            reader = writer = None
            while idle:
                r, w = idle.pop()
                if not w.is_closing() and not r.at_eof():
                    reader, writer, fresh = r, w, False
                    break
                w.close()
            if writer is None:
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(key[0], key[1], ssl=_ssl() if tls else None, limit=1 << 20),
                        connect_timeout_s)
                except (OSError, asyncio.TimeoutError) as e:
                    raise UpstreamError(f"cannot connect: {type(e).__name__}") from None
            assert reader is not None and writer is not None
            try:
                writer.write(head + body)
                status_and_headers = await reader.readuntil(b"\r\n\r\n")
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
                writer.close()
                if not fresh and attempt == 0:
                    continue
                raise UpstreamError(f"connection failed before the response: {type(e).__name__}") from None
            except BaseException:
                writer.close()
                raise
            lines = status_and_headers.split(b"\r\n")
            try:
                status = int(lines[0].split(b" ", 2)[1])
            except (IndexError, ValueError):
                writer.close()
                raise UpstreamError("the upstream's response is not HTTP") from None
            hdrs: dict[bytes, bytes] = {}
            for line in lines[1:]:
                k, sep, v = line.partition(b":")
                if sep:
                    hdrs[k.strip().lower()] = v.strip().lower() if k.strip().lower() in (
                        b"connection", b"transfer-encoding") else v.strip()
            return Response(self, key, reader, writer, status, hdrs)
        raise UpstreamError("connection failed before the response")  # pragma: no cover

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for _, w in conns:
                w.close()
        self._idle.clear()
