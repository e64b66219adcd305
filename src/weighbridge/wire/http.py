"""The HTTP/1.1 client for hot paths (the gateway's upstream calls): keep-alive connections per
origin, a POST, the status and headers, then the body as it arrives.

Why not httpx here: httpx spent about 2.5 ms of CPU per proxied request in a profile of the gateway
(its pool, its anyio layers and header models), more than everything else the gateway does together.
Why not hand-written framing: an upstream is hostile. The previous parser returned a connection to
the pool without checking that nothing followed the response, so a server that sent one response too
many shifted every later answer onto the next client (issue 22). Framing is now llhttp's (through
``httptools``, the parser uvicorn uses), fed from an asyncio protocol, and a connection is reused only
when

- its response was framed (Content-Length or chunked) and read completely and exactly,
- no byte arrived after it - not in the same read, not while the connection sat idle (a byte
  received while idle closes the connection on the spot), and
- the server did not ask to close it.

Any framing or parse error, a body over ``max_body_bytes``, a header block over ``max_header_bytes``
or an early exit by the reader closes the connection. What remains possible: stray bytes still in
flight when a reused connection sends its next request are read as that request's response; the
response after them then arrives as extra bytes, is detected, and the connection closes - one
answer, not every later one. A server that wants to send wrong answers can do so with any client.

Reading applies back-pressure (the socket is paused while more than ``_HIGH_WATER`` bytes wait for
the reader), so a fast upstream and a slow client never buffer a body in memory.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools

from ..core.errors import WeighbridgeError

_HIGH_WATER = 1 << 20  # bytes waiting for the reader before the socket is paused
_LOW_WATER = 1 << 18
_NO_BODY = (204, 304)
Origin = tuple[str, int, bool]


class UpstreamError(WeighbridgeError):
    """The connection failed or the response broke HTTP or a bound; the next upstream may be tried."""


_SSL: ssl.SSLContext | None = None


def _ssl() -> ssl.SSLContext:
    global _SSL
    if _SSL is None:
        _SSL = ssl.create_default_context()
    return _SSL


class _Conn(asyncio.Protocol):
    """One upstream connection: feeds every byte to llhttp and to the response being read."""

    def __init__(self, max_header_bytes: int, max_headers: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.resp: Response | None = None
        self.broken = False  # never reuse: closed, a framing error, or a byte nobody asked for
        self.paused = False
        self._max_header_bytes, self._max_headers = max_header_bytes, max_headers

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        r = self.resp
        if r is None or r.complete:  # unsolicited: whatever it is, this connection is no longer in step
            self.close()
            return
        r._feed(data)

    def eof_received(self) -> bool:
        self.broken = True
        if self.resp is not None:
            self.resp._eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.broken = True
        self.transport = None
        if self.resp is not None:
            self.resp._eof()

    # -- ours -------------------------------------------------------------------------------------
    @property
    def usable(self) -> bool:
        return not self.broken and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.broken = True
        if self.transport is not None:
            self.transport.close()

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.transport.is_closing():
            self.paused = False
            self.transport.resume_reading()


class Response:
    """The status and headers of one upstream response; its body through ``chunks()`` or ``read()``.

    The parser's callbacks land here; ``headers`` maps lower-cased names to raw values (the values of
    ``connection`` and ``transfer-encoding`` lower-cased too)."""

    def __init__(self, pool: Pool, origin: Origin, conn: _Conn, max_body_bytes: int) -> None:
        self._pool, self._origin, self._conn = pool, origin, conn
        self._parser = httptools.HttpResponseParser(self)
        self._max_body = max_body_bytes
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self._head_bytes = 0
        self._body_bytes = 0
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._wake: asyncio.Future[None] | None = None
        self._head_done = False
        self.complete = False  # the whole body was framed and received
        self._until_eof = False
        self._error: UpstreamError | None = None
        self._seen_bytes = False
        self._closed = False
        self._keep_alive = False

    # -- llhttp callbacks ------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.complete:  # a second response nobody asked for: stop parsing it
            raise UpstreamError("bytes after the end of the response")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self._conn._max_headers:
            raise UpstreamError(f"more than {self._conn._max_headers} response headers")
        name = name.lower()
        if name in (b"connection", b"transfer-encoding"):
            value = value.lower()
        self.headers[name] = value

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._head_done = True
        framed = b"content-length" in self.headers or b"chunked" in self.headers.get(b"transfer-encoding", b"")
        self._until_eof = not framed and self.status not in _NO_BODY and self.status >= 200
        if self.status < 200:  # 1xx: an interim response (100-continue) is not ours to handle
            raise UpstreamError(f"interim response {self.status}")
        self._signal()

    def on_body(self, data: bytes) -> None:
        self._body_bytes += len(data)
        if self._body_bytes > self._max_body:
            raise UpstreamError(f"the response body passed {self._max_body:,} bytes (this client's bound)")
        self._queue.append(data)
        self._queued += len(data)
        if self._queued > _HIGH_WATER:
            self._conn.pause()
        self._signal()

    def on_message_complete(self) -> None:
        self._keep_alive = self._parser.should_keep_alive()  # llhttp forgets it once the next message may begin
        self.complete = True
        self._signal()

    # -- fed by the connection -------------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        self._seen_bytes = True
        if not self._head_done:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__ if isinstance(e.__context__, UpstreamError) else None
            self._fail(cause or UpstreamError("the response broke HTTP framing"))
        except httptools.HttpParserError as e:
            self._fail(UpstreamError(f"the response broke HTTP framing ({type(e).__name__})"))
        if not self._head_done and self._head_bytes > self._conn._max_header_bytes:
            self._fail(UpstreamError(f"the response headers passed {self._conn._max_header_bytes:,} bytes"))

    def _fail(self, err: UpstreamError) -> None:
        self._conn.close()  # whatever happened, this connection is out of step
        if not self.complete and self._error is None:
            self._error = err
        self._signal()

    def _eof(self) -> None:
        if self._until_eof and self._head_done and not self.complete:
            self.complete = True  # a close-delimited body ends here; the connection is not reused
        elif not self.complete and self._error is None:
            self._error = UpstreamError("the connection closed before the response was complete"
                                        if self._seen_bytes else "the connection closed before the response")
        self._signal()

    def _signal(self) -> None:
        w = self._wake
        if w is not None and not w.done():
            w.set_result(None)

    async def _wait(self) -> None:
        self._wake = asyncio.get_running_loop().create_future()
        try:
            await self._wake
        finally:
            self._wake = None

    async def _head(self) -> None:
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait()

    # -- the reader's side -----------------------------------------------------------------------
    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; the connection goes back to the pool only once the body is complete
        and clean. Leaving early (an exception, a cancel, ``aclose``) closes the connection."""
        try:
            while True:
                if self._queue:
                    data = self._queue.popleft()
                    self._queued -= len(data)
                    if self._queued < _LOW_WATER:
                        self._conn.resume()
                    yield data
                    continue
                if self._error is not None:
                    raise self._error
                if self.complete:
                    return
                await self._wait()
        finally:
            self.close()

    async def read(self) -> bytes:
        return b"".join([c async for c in self.chunks()])

    def close(self) -> None:
        """Back to the pool when read completely and cleanly; closed otherwise. Idempotent."""
        if self._closed:
            return
        self._closed = True
        conn = self._conn
        if (self.complete and not self._until_eof and not self._queue and conn.usable and self._keep_alive
                and self.headers.get(b"connection") != b"close"):
            conn.resp = None
            self._pool._put(self._origin, conn)
        else:
            conn.close()


class Pool:
    """Keep-alive connections per (host, port, tls), with the bounds every response is read under."""

    def __init__(self, max_idle_per_origin: int = 256, *, max_body_bytes: int = 64 << 20,
                 max_header_bytes: int = 64 << 10, max_headers: int = 100) -> None:
        self._idle: dict[Origin, list[_Conn]] = {}
        self.max_idle = max_idle_per_origin
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers

    def _put(self, origin: Origin, conn: _Conn) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= self.max_idle:
            conn.close()
        else:
            idle.append(conn)

    def _take(self, origin: Origin) -> _Conn | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.usable:
                return conn
            conn.close()
        return None

    async def post(self, url: str, body: bytes, headers: dict[str, str], connect_timeout_s: float,
                   *, max_body_bytes: int | None = None) -> Response:
        """Send the request and read the status line and headers (the caller bounds how long that may
        take; a cancel closes the connection)."""
        u = urlsplit(url)
        tls = u.scheme == "https"
        origin = (u.hostname or "127.0.0.1", u.port or (443 if tls else 80), tls)
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = (f"POST {path} HTTP/1.1\r\nHost: {origin[0]}:{origin[1]}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
                .encode("latin-1"))
        limit = self.max_body_bytes if max_body_bytes is None else max_body_bytes
        for attempt in range(2):  # an idle connection the upstream already closed gets one fresh retry
            conn = self._take(origin)
            fresh = conn is None
            if conn is None:
                conn = _Conn(self.max_header_bytes, self.max_headers)
                try:
                    await asyncio.wait_for(asyncio.get_running_loop().create_connection(
                        lambda c=conn: c, origin[0], origin[1], ssl=_ssl() if tls else None), connect_timeout_s)
                except (OSError, asyncio.TimeoutError) as e:
                    conn.close()
                    raise UpstreamError(f"cannot connect: {type(e).__name__}") from None
            resp = Response(self, origin, conn, limit)
            conn.resp = resp
            try:
                assert conn.transport is not None
                conn.transport.write(head + body)
                await resp._head()
            except UpstreamError:
                conn.close()
                if not fresh and attempt == 0 and not resp._seen_bytes:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            return resp
        raise UpstreamError("connection failed before the response")  # pragma: no cover

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()
