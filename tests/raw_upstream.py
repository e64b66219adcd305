"""A loopback server that answers with exact bytes, for the faults an HTTP library will not produce:
extra bytes after a complete response, a Content-Length that counts characters, a body of a gigabyte,
an SSE line that never ends. Used only where such a fault must be injected; real-model tests use
llama_cpp.server.

Each connection is read as keep-alive HTTP/1.1 (request line, headers, Content-Length body); the
script gets the request's number (over all connections) and its JSON body and writes whatever it
likes to the socket.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any

Script = Callable[[socket.socket, int, dict[str, Any]], None]


def response(body: bytes, status: int = 200, content_length: int | None = None,
             content_type: str = "application/json") -> bytes:
    """One HTTP/1.1 response; ``content_length`` overrides the true length (to lie about it)."""
    n = len(body) if content_length is None else content_length
    return (f"HTTP/1.1 {status} OK\r\ncontent-type: {content_type}\r\ncontent-length: {n}\r\n\r\n"
            .encode() + body)


def chat_body(content: str, usage: Any = None) -> bytes:
    obj: dict[str, Any] = {"id": "x", "object": "chat.completion", "model": "m",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                        "finish_reason": "stop"}]}
    obj["usage"] = usage if usage is not None else {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    return json.dumps(obj, ensure_ascii=False).encode()


def last_user(body: dict[str, Any]) -> str:
    msgs = body.get("messages") or [{}]
    content = msgs[-1].get("content")
    return content if isinstance(content, str) else ""


class RawUpstream:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.count = 0
        self.connections = 0
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = False
        self._conns: list[socket.socket] = []

    def __enter__(self) -> RawUpstream:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self.sock.close()
        for c in list(self._conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while not self._stop:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                raw, buf = buf[:length], buf[length:]
                body = json.loads(raw or b"{}")
                with self._lock:
                    n = self.count
                    self.count += 1
                    self.bodies.append(body)
                self.script(conn, n, body)
        except OSError:
            return
        finally:
            conn.close()
