"""A test double of a server that batches, whose capacity is known exactly: at most ``capacity``
sequences decode at once, all of them writing one token at every step of one clock (continuous
batching at a fixed step time ``step_s``, kept on an absolute schedule so that late wake-ups do not
add up), a waiting request takes a free slot at the next step, up to ``queue`` more wait, and a
request beyond them gets 503 at once. Its capacity is ``capacity / (tokens × step_s)`` requests per
second, exactly: ``slot_steps / (capacity × steps)`` in its stats is the share of it that was used
while it had work. OpenAI-style streaming on
loopback, asyncio in a process of its own (a thread of the caller's would share its interpreter lock
and cap both), one connection per request; ``GET /stats`` says what it did.

With ``per_seq`` or ``knee`` a step takes longer the more sequences share it, ``step_s × (1 +
per_seq × n + (n / knee)²)`` for n decoding, as a real server's does (llama-server on an H200 in
bench/gpu/served_knee.sh: throughput peaked near 32 in flight and fell past it, with slots to
spare): its capacity is then the best of ``n / (tokens × step(n))``, at ``best_concurrency``.

Used by bench/adaptive_concurrency.py and the tests of ``concurrency: auto``.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class BatchingServer:
    def __init__(self, capacity: int, step_s: float, tokens: int, queue: int, per_seq: float = 0.0,
                 knee: float = 0.0) -> None:
        self.capacity, self.step_s, self.tokens, self.queue = capacity, step_s, tokens, queue
        self.per_seq, self.knee = per_seq, knee
        self.peak_active = self.served = self.refused = 0
        self.steps = self.busy_steps = self.slot_steps = 0  # steps taken, steps with a sequence, sequence-steps
        self.held_s = 0.0  # the seconds requests it accepted spent in it (waiting and decoding), summed

    def step_time(self, n: int) -> float:
        """One step's time with ``n`` sequences decoding."""
        return self.step_s * (1 + self.per_seq * n + ((n / self.knee) ** 2 if self.knee else 0.0))

    def answers_per_s(self, n: int) -> float:
        """The throughput with ``n`` requests in flight (past the slots, the rest wait)."""
        n = min(n, self.capacity)
        return n / (self.tokens * self.step_time(n))

    @property
    def best_concurrency(self) -> int:
        return max(range(1, self.capacity + 1), key=self.answers_per_s)

    @property
    def capacity_rps(self) -> float:
        return self.answers_per_s(self.best_concurrency)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            length = next((int(h.split(":", 1)[1]) for h in lines[1:] if h.lower().startswith("content-length:")), 0)
            if length:
                await reader.readexactly(length)
            if method == "GET" and path.endswith("/stats"):
                self._json(writer, 200, {"served": self.served, "refused": self.refused, "peak_active": self.peak_active,
                                         "steps": self.steps, "busy_steps": self.busy_steps,
                                         "slot_steps": self.slot_steps, "held_s": self.held_s})
            elif method == "GET":
                self._json(writer, 200, {"object": "list", "data": [{"id": "batching", "object": "model"}]})
            elif len(self._active) + len(self._waiting) >= self.capacity + self.queue:
                self.refused += 1
                self._json(writer, 503, {"error": {"message": "overloaded", "type": "server_error"}})
            else:
                loop = asyncio.get_running_loop()
                done, arrived = loop.create_future(), loop.time()
                self._waiting.append((writer, done))
                self._work.set()
                await done
                self.held_s += loop.time() - arrived
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def _steps(self) -> None:
        """The decoding loop: every ``step_s`` (on an absolute schedule, so late wake-ups do not add
        up), waiting requests take the free slots and every sequence in a slot writes one token."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._active and not self._waiting:
                self._work.clear()
                await self._work.wait()
                due = loop.time()
            while self._waiting and len(self._active) < self.capacity:
                writer, done = self._waiting.popleft()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
                self._active.append([writer, done, 0])
            self.peak_active = max(self.peak_active, len(self._active))
            self.steps += 1
            self.busy_steps += bool(self._active)
            self.slot_steps += len(self._active)
            decoding = len(self._active)  # this step's time grows with them (per_seq, knee)
            for seq in self._active:
                seq[0].write(b'data: {"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n')
                seq[2] += 1
            for seq in [s for s in self._active if s[2] >= self.tokens]:
                seq[0].write(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
                             b'data: {"choices":[],"usage":{"prompt_tokens":8,"completion_tokens":%d}}\n\n'
                             b"data: [DONE]\n\n" % self.tokens)
                self.served += 1
                self._active.remove(seq)
                if not seq[1].done():
                    seq[1].set_result(None)
            due += self.step_time(decoding)
            await asyncio.sleep(max(0.0, due - loop.time()))

    @staticmethod
    def _json(writer: asyncio.StreamWriter, status: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
                     f"connection: close\r\n\r\n".encode() + body)

    async def serve(self, port: int) -> None:
        self._active: list[list] = []  # [writer, its done future, tokens written]
        self._waiting: deque = deque()  # (writer, done future) waiting for a slot
        self._work = asyncio.Event()
        stepping = asyncio.create_task(self._steps())  # noqa: F841  (runs as long as the server)
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
                                 str(self.tokens), str(self.queue), str(self.per_seq), str(self.knee)])
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
            self.steps, self.busy_steps, self.slot_steps = got["steps"], got["busy_steps"], got["slot_steps"]
            self.held_s = got["held_s"]
        finally:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    import sys

    port, capacity, step_s, tokens, queue, per_seq, knee = sys.argv[1:8]
    asyncio.run(BatchingServer(int(capacity), float(step_s), int(tokens), int(queue), float(per_seq),
                               float(knee)).serve(int(port)))
