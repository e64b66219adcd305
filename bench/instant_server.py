"""An instant OpenAI-style streaming server, run in a second process for the benches.

It answers every streamed POST at once with two content chunks, a usage event and [DONE] (and a
plain POST with one chat.completion JSON body); the first chunk
carries the server's own time.perf_counter_ns() stamps for "request read" and "first chunk
written" (CLOCK_MONOTONIC is shared by processes on Linux), so a client's TTFT can be checked
against the server's. GET (/v1/models) returns one model, "instant".
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import textwrap
from typing import Iterator

try:
    from weighbridge.core.procs import stop
except ImportError:  # the layout before 2026-12-03 (bench/compare_commits.py runs older commits)
    from weighbridge.procs import stop  # type: ignore[no-redef]

SERVER = textwrap.dedent(r'''
    import asyncio, json, re, sys, time
    STREAM = re.compile(rb'"stream"\s*:\s*true')
    PLAIN = (b'{"id":"i","object":"chat.completion","created":0,"model":"instant","choices":[{"index":0,'
             b'"message":{"role":"assistant","content":"a b"},"finish_reason":"stop"}],'
             b'"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12}}')
    TAIL = (b'data: {"choices":[{"index":0,"delta":{"content":" b"},"finish_reason":null}]}\n\n'
            b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
            b'"usage":{"prompt_tokens":10,"completion_tokens":2}}\n\ndata: [DONE]\n\n')
    async def handle(r, w):
        try:
            while True:
                head = await r.readuntil(b"\r\n\r\n")
                t_read = time.perf_counter_ns()
                n = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        n = int(line.split(b":")[1])
                payload = b""
                if n:
                    payload = await r.readexactly(n)
                    t_read = time.perf_counter_ns()
                if head.startswith(b"GET"):
                    body = b'{"data":[{"id":"instant"}]}'
                    w.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
                    continue
                if head.startswith(b"POST") and not STREAM.search(payload):
                    w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                            % len(PLAIN) + PLAIN)
                    await w.drain()
                    continue
                t_first = time.perf_counter_ns()
                first = ('data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}],'
                         '"server_read_ns":%d,"server_first_ns":%d}\n\n' % (t_read, t_first)).encode()
                body = first + TAIL
                w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n"
                        % len(body) + body)
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            w.close()
    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=4096)
        print("ready", flush=True)
        await srv.serve_forever()
    asyncio.run(main())
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def instant_server() -> Iterator[str]:
    """Start the server on a free loopback port; yields its base URL (…/v1)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()  # "ready"
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)
