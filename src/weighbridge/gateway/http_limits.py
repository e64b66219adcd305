"""Limits on what a client may do before its request reaches the app: header count and size, URL
length, and how long it may take to send its headers.

Connections are also bounded per client address (``max_connections_per_client``): a client that
opens hundreds of slow connections (slowloris) uses up its own share, not the gateway's global
``max_connections`` that every other client needs; the connection over its share gets a 503 and is
closed before it is read.

An ASGI app only sees a request once its headers are complete, so a client that sends headers one
byte a minute (slowloris) or a megabyte of them is invisible to it; uvicorn sets no limit of its
own on either with httptools. These checks therefore sit in the HTTP protocol: a subclass of
uvicorn's httptools protocol that answers 431 (too many or too large headers), 414 (URL too long)
or 408 (headers not complete in time) and closes the connection. The body has its own limits in
the app (``max_body_bytes``, ``body_timeout_s``), where a JSON error can name them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .plan import Plan

_REASONS = {408: b"Request Timeout", 414: b"URI Too Long", 431: b"Request Header Fields Too Large",
            503: b"Service Unavailable"}


class LimitedHttpTools(HttpToolsProtocol):
    max_headers = 100
    max_header_bytes = 32 * 1024
    max_url_bytes = 8 * 1024
    header_timeout_s = 10.0
    max_per_client = 0
    _open: ClassVar[Counter[str]] = Counter()  # connections open per client address, in this process

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._rejected = False
        self._count = 0
        self._bytes = 0
        self._peer: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        if self.max_per_client and isinstance(peer, tuple) and peer:
            if self._open[peer[0]] >= self.max_per_client:
                self._reject(503, f"more than {self.max_per_client} connections from one client", raise_=False)
                return
            self._peer = peer[0]
            self._open[self._peer] += 1
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._peer is not None:
            self._open[self._peer] -= 1
            if self._open[self._peer] <= 0:
                del self._open[self._peer]
            self._peer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        if self._header_timer is None and self.cycle is not None and self.cycle.response_complete:
            self._arm()  # the next request on a kept-alive connection gets its own deadline
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if not self._rejected:  # after our own answer the parser's error is not sent as well
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._count = self._bytes = 0
        if self._header_timer is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.max_url_bytes:
            self._reject(414, f"the URL is longer than {self.max_url_bytes:,} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count += 1
        self._bytes += len(name) + len(value) + 4
        if self._count > self.max_headers:
            self._reject(431, f"more than {self.max_headers} header fields")
        if self._bytes > self.max_header_bytes:
            self._reject(431, f"the header fields are larger than {self.max_header_bytes:,} bytes")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # the keep-alive timer takes over until the next request begins

    # -- helpers -------------------------------------------------------------------------------
    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # headers came in; the app is working on it
        self._reject(408, f"the request headers did not arrive within {self.header_timeout_s:g} s", raise_=False)

    def _reject(self, status: int, message: str, raise_: bool = True) -> None:
        if not self._rejected and not self.transport.is_closing():
            body = ('{"error":{"message":"' + message + '","type":"invalid_request_error","param":null,'
                    '"code":"request_rejected"}}').encode()
            self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                                 b"connection: close\r\n\r\n" % (status, _REASONS[status], len(body)) + body)
            self.transport.close()
        self._rejected = True
        self._disarm()
        if raise_:
            raise _Rejected(message)  # stops the parser; uvicorn's 400 for it is suppressed above


class _Rejected(Exception):
    pass


def protocol_for(plan: Plan) -> type[HttpToolsProtocol]:
    """The protocol class with this plan's limits."""
    limits = plan.http
    return type("PlanLimitedHttpTools", (LimitedHttpTools,), {
        "max_headers": limits.max_headers, "max_header_bytes": limits.max_header_bytes,
        "max_url_bytes": limits.max_url_bytes, "header_timeout_s": limits.header_timeout_s,
        "max_per_client": limits.max_connections_per_client, "_open": Counter()})


def uvicorn_config(app: Any, plan: Plan, host: str, port: int) -> uvicorn.Config:
    """How ``serve`` and the smoke run start the gateway: uvicorn with the plan's HTTP limits."""
    return uvicorn.Config(app, host=host, port=port, log_level="warning", http=protocol_for(plan),
                          timeout_keep_alive=int(plan.http.keep_alive_s),
                          limit_concurrency=plan.http.max_connections,
                          timeout_graceful_shutdown=plan.http.shutdown_grace_s)


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a drain phase: the first SIGTERM/SIGINT makes ``/readyz`` answer 503
    for ``drain_s`` while everything else keeps serving, then uvicorn's own graceful shutdown runs
    (stop accepting, finish what is in flight, lifespan shutdown flushes the audit writer)."""

    def __init__(self, config: uvicorn.Config, gateway: Any, drain_s: float) -> None:
        super().__init__(config)
        self.gateway, self.drain_s, self._draining = gateway, drain_s, False

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self._draining or self.drain_s <= 0:
            self.gateway.draining = True
            return self._exit(sig, frame)
        import threading

        self._draining = True
        self.gateway.draining = True
        threading.Timer(self.drain_s, self._exit, args=(sig, frame)).start()

    def _exit(self, sig: int, frame: Any) -> None:
        import signal

        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM:  # uvicorn re-raises it after shutdown; a drained stop is a clean exit (0)
            self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]
