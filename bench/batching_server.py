"""A test double of a server that batches, whose capacity is known exactly: at most ``capacity``
sequences decode at once, each writes one token every ``step_s`` (continuous batching at a fixed step
time), up to ``queue`` more requests wait for a slot, and a request beyond them gets 503 at once.
Its capacity is ``capacity / (tokens × step_s)`` requests per second. OpenAI-style streaming on
loopback, asyncio in a process of its own (a thread of the caller's would share its interpreter lock
and cap both), one connection per request; ``GET /stats`` says what it did.

Used by bench/adaptive_concurrency.py and the tests of ``concurrency: auto``.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager


class BatchingServer:
    def __init__(self, capacity: int, step_s: float, tokens: int, queue: int) -> None:
        self.capacity, self.step_s, self.tokens, self.queue = capacity, step_s, tokens, queue
        self.active = self.waiting = self.peak_active = 0
        self.served = self.refused = 0

    @property
    def capacity_rps(self) -> float:
        return self.capacity / (self.tokens * self.step_s)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            length = next((int(h.split(":", 1)[1]) for h in lines[1:] if h.lower().startswith("content-length:")), 0)
            if length:
                await reader.readexactly(length)
            if method == "GET" and path.endswith("/stats"):
                self._json(writer, 200, {"served": self.served, "refused": self.refused, "peak_active": self.peak_active})
            elif method == "GET":
                self._json(writer, 200, {"object": "list", "data": [{"id": "batching", "object": "model"}]})
            elif self.active >= self.capacity and self.waiting >= self.queue:
                self.refused += 1
                self._json(writer, 503, {"error": {"message": "overloaded", "type": "server_error"}})
            else:
                await self._stream(writer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        self.waiting += 1
        async with self._slots:
            self.waiting -= 1
            self.active += 1
            self.peak_active = max(self.peak_active, self.active)
            try:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
                for _ in range(self.tokens):
                    await asyncio.sleep(self.step_s)
                    writer.write(b'data: {"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n')
                writer.write(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
                             b'data: {"choices":[],"usage":{"prompt_tokens":8,"completion_tokens":%d}}\n\n'
                             b"data: [DONE]\n\n" % self.tokens)
                self.served += 1
            finally:
                self.active -= 1

    @staticmethod
    def _json(writer: asyncio.StreamWriter, status: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
                     f"connection: close\r\n\r\n".encode() + body)

    async def serve(self, port: int) -> None:
        self._slots = asyncio.Semaphore(self.capacity)
        server = await asyncio.start_server(self._handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    @contextmanager
    def running(self) -> Iterator[str]:
        """The base URL (``…/v1``) while the server runs in its own process."""
        import subprocess
        import sys
        import time
        import urllib.request

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        proc = subprocess.Popen([sys.executable, __file__, str(port), str(self.capacity), str(self.step_s),
                                 str(self.tokens), str(self.queue)])
        base = f"http://127.0.0.1:{port}/v1"
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(base + "/models", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.05)
            yield base
            got = json.loads(urllib.request.urlopen(base + "/stats", timeout=5).read())
            self.served, self.refused, self.peak_active = got["served"], got["refused"], got["peak_active"]
        finally:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    import sys

    port, capacity, step_s, tokens, queue = sys.argv[1:6]
    asyncio.run(BatchingServer(int(capacity), float(step_s), int(tokens), int(queue)).serve(int(port)))
