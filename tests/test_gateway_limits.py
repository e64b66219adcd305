"""Hostile clients against a real ``weighbridge serve`` process: an oversized body is refused with
413 before it is read or parsed while the gateway keeps answering others, and a field of the wrong
type is a 400 naming the field, never a 500. The fake upstream only answers the well-formed ones."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from typer.testing import CliRunner

from weighbridge.cli import app as cli

from .conftest import write
from .fake_upstream import FakeUpstream, ok_stream
from .serve_process import health_probe, serve

ASK = [{"role": "user", "content": "hi"}]


def _answer(h, body, n) -> None:
    if body.get("stream"):
        ok_stream(h, ["ok"])
    else:
        h.send_json(200, {"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


@pytest.fixture()
def served(tmp_path):
    with FakeUpstream(_answer) as up:
        plan = write(tmp_path / "plan.yaml", f"routes:\n  chat:\n    upstreams: [{{name: u, base_url: '{up.base_url}', "
                                             "model: fake-model}]\nmax_body_bytes: 1048576\n")
        with serve(str(plan)) as (base, proc):
            yield base, plan, proc


def test_fake_upstream_an_oversized_body_is_413_and_the_gateway_keeps_answering(served):
    base, _, proc = served
    big = b'{"model": "chat", "messages": [{"role": "user", "content": "' + b"x" * (50 * 1024 * 1024) + b'"}]}'
    t0 = time.monotonic()
    with health_probe(base, pause_s=0.05) as health:
        r = httpx.post(base + "/v1/chat/completions", content=big, headers={"content-type": "application/json"},
                       timeout=30)
    took = time.monotonic() - t0
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert "at most 1,048,576" in r.json()["error"]["message"]
    assert max(health) < 1.0, health  # the event loop was never stalled by the body
    assert took < 10 and proc.poll() is None


def test_fake_upstream_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(served):
    base, _, _ = served
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 50000000\r\n\r\n")
        reply = _read_reply(s)
    assert reply.startswith("HTTP/1.1 413") and "request_too_large" in reply


def _read_reply(s: socket.socket) -> str:
    """One whole HTTP response from a raw socket (headers, then content-length bytes), or what came before EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = s.recv(65536)
        if not piece:
            return data.decode(errors="replace")
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
    while len(rest) < length:
        piece = s.recv(65536)
        if not piece:
            break
        rest += piece
    return (head + b"\r\n\r\n" + rest).decode(errors="replace")


@pytest.mark.parametrize("body,field", [
    ({"model": ["chat"], "messages": ASK}, "model"),
    ({"model": "chat", "max_tokens": "x", "messages": ASK}, "max_tokens"),
    ({"model": "chat", "stream_options": "x", "stream": True, "messages": ASK}, "stream_options"),
    ({"model": "chat", "stream": "yes", "messages": ASK}, "stream"),
    ({"model": "chat", "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ({"model": "chat", "messages": "hi"}, "messages"),
    ({"model": "chat", "messages": [{"role": "assistant", "content": None,
                                     "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}]},
     "messages.0.tool_calls.0.function.arguments"),
])
def test_fake_upstream_a_field_of_the_wrong_type_is_a_400_naming_it(served, body, field):
    base, _, proc = served
    r = httpx.post(base + "/v1/chat/completions", json=body, timeout=10)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == field and err["code"] == "invalid_field" and f"field '{field}'" in err["message"]
    ok = httpx.post(base + "/v1/chat/completions", json={"model": "chat", "messages": ASK}, timeout=10)
    assert ok.status_code == 200 and proc.poll() is None


def test_fake_upstream_a_malformed_request_without_a_key_is_told_only_401(served):
    base, plan, _ = served
    created = CliRunner().invoke(cli, ["keys", "create", "bot", "--plan", str(plan)])
    assert created.exit_code == 0, created.output
    deadline = time.time() + 10
    while time.time() < deadline:  # the gateway reloads its keys every couple of seconds
        r = httpx.post(base + "/v1/chat/completions", json={"model": ["chat"], "messages": ASK}, timeout=10)
        if r.status_code == 401:
            break
        time.sleep(0.3)
    assert r.status_code == 401 and "model" not in r.json()["error"]["message"]
