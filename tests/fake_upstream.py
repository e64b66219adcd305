"""A scriptable OpenAI-style server on loopback, used only where a fault or an exact timing must
be injected (429s, 500s, role-only chunks, delays, malformed SSE). Real-model tests use
llama_cpp.server instead."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

Script = Callable[["Handler", dict, int], None]  # (handler, request body, request number)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        if self.path.endswith("/models"):
            self.server.requests.append({"path": self.path, "headers": dict(self.headers)})
            self.send_json(200, {"object": "list", "data": [{"id": m} for m in self.server.models]})
        elif self.path in self.server.gets:
            self.send_json(200, self.server.gets[self.path])
        else:
            self.send_json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        with self.server.lock:
            n = len(self.server.posts)
            self.server.posts.append(body)
            self.server.requests.append({"path": self.path, "headers": dict(self.headers)})
        self.server.script(self, body, n)

    # helpers the scripts use
    def send_json(self, status: int, obj: dict, headers: dict | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()

    def event(self, obj: dict | str, delay: float = 0.0) -> None:
        if delay:
            time.sleep(delay)
        payload = obj if isinstance(obj, str) else json.dumps(obj)
        eol = self.server.eol
        data = f"data: {payload}{eol}{eol}".encode()
        if self.server.split_eol and eol == "\r\n":  # CR at the end of one write, LF at the start of the next
            self.wfile.write(data[:-1])
            self.wfile.flush()
            time.sleep(0.002)
            data = data[-1:]
        self.wfile.write(data)
        self.wfile.flush()


def chunk(content: str | None = None, role: str | None = None, finish: str | None = None) -> dict:
    delta = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def ok_stream(h: Handler, words: list[str], usage: dict | None = None, delay: float = 0.0) -> None:
    h.start_stream()
    h.event(chunk(role="assistant", content=""))
    for w in words:
        h.event(chunk(w), delay)
    h.event(chunk(finish="stop"))
    if usage:
        h.event({"choices": [], "usage": usage})
    h.event("[DONE]")
    h.close_connection = True


class FakeUpstream:
    def __init__(self, script: Script, models: tuple[str, ...] | list[str] = ("fake-model",), eol: str = "\n",
                 split_eol: bool = False, gets: dict | None = None) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.script = script
        self.httpd.eol = eol  # "\r\n" or "\r" as some servers (sse-starlette) send; "\n" by default
        self.httpd.split_eol = split_eol
        self.httpd.models = list(models)  # what GET /models lists
        self.httpd.gets = gets or {}  # other GET paths (a server's /version, /props …) and their JSON
        self.httpd.posts = []
        self.httpd.requests = []
        self.httpd.lock = threading.Lock()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def posts(self) -> list[dict]:
        return self.httpd.posts

    @property
    def requests(self) -> list[dict]:
        return self.httpd.requests

    def __enter__(self) -> "FakeUpstream":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
