"""Injected upstream faults: every request gets a fallback answer or a clear OpenAI-style error, never a
hang. Fake upstreams here exist to inject faults and exact timings; the crash test runs the real
``weighbridge serve`` process in front of the real llama.cpp server."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import httpx
import pytest
from typer.testing import CliRunner

from weighbridge.cli import app as cli
from weighbridge.core.procs import stop

from .conftest import free_port, write
from .fake_upstream import FakeUpstream, chunk, ok_stream
from .gateway_server import Gateway

runner = CliRunner(env={"COLUMNS": "250"})
ASK = [{"role": "user", "content": "hi"}]


def two_tier_plan(tmp_path, bad: FakeUpstream, good: FakeUpstream, extra: str = "") -> str:
    return str(write(tmp_path / "plan.yaml", f"""routes:
  chat:
    first_token_timeout_s: 0.5
    total_timeout_s: 2
{extra}
    upstreams: [{{name: flaky, base_url: '{bad.base_url}', model: m}}]
    fallback: [{{name: backup, base_url: '{good.base_url}', model: m}}]
"""))


def _stream(gw: str) -> tuple[httpx.Headers, str]:
    with httpx.stream("POST", gw + "/chat/completions", timeout=10,
                      json={"model": "chat", "stream": True, "messages": ASK}) as s:
        return s.headers, s.read().decode()


def _silent(h, body, n):
    time.sleep(3)


def _malformed(h, body, n):
    h.start_stream()
    h.event("{not json")


def _error_event(h, body, n):
    h.start_stream()
    h.event({"error": {"message": "model overloaded"}})


def _empty(h, body, n):
    h.start_stream()
    h.event("[DONE]")


def _role_then_silence(h, body, n):
    h.start_stream()
    h.event(chunk(role="assistant"))
    time.sleep(3)


def _reset(h, body, n):
    h.connection.shutdown(2)


@pytest.mark.parametrize("fault", [_silent, _malformed, _error_event, _empty, _role_then_silence, _reset])
def test_fake_upstream_faults_before_the_first_token_fall_back(tmp_path, fault):
    with FakeUpstream(fault) as bad, FakeUpstream(lambda h, b, n: ok_stream(h, ["rescued"])) as good:
        with Gateway(two_tier_plan(tmp_path, bad, good)) as gw:
            t = time.perf_counter()
            headers, text = _stream(gw)
            took = time.perf_counter() - t
    assert headers["x-weighbridge-upstream"] == "backup" and '"rescued"' in text and text.endswith("data: [DONE]\n\n")
    assert took < 2.5  # bounded by the first-token timeout, not by the silent upstream


def test_fake_upstream_non_streamed_faults_fall_back(tmp_path):
    def bad(h, body, n):
        if n == 0:
            h.send_json(200, {"nonsense": True})  # no choices
        elif n == 1:
            h.send_response(200)
            h.send_header("content-length", "5")
            h.end_headers()
            h.wfile.write(b"{oops")
        else:
            time.sleep(3)  # slower than the total timeout

    good_body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}
    with FakeUpstream(bad) as b, FakeUpstream(lambda h, body, n: h.send_json(200, good_body)) as g:
        with Gateway(two_tier_plan(tmp_path, b, g)) as gw:
            rs = [httpx.post(gw + "/chat/completions", json={"model": "chat", "messages": ASK}, timeout=10)
                  for _ in range(3)]
    assert [r.headers["x-weighbridge-upstream"] for r in rs] == ["backup"] * 3
    rows = [json.loads(r[0]) for r in sqlite3.connect(tmp_path / "gateway.db").execute("SELECT record FROM audit")]
    reasons = [r["failures"][0].split(": ", 1)[1] for r in rows]
    assert reasons[0] == "malformed response: choices: no choice" and reasons[2] == "TimeoutError"
    assert reasons[1].startswith("malformed response: body: not JSON")


def test_fake_upstream_slow_stream_past_the_total_timeout_ends_with_an_error_event(tmp_path):
    def slow(h, body, n):
        h.start_stream()
        for i in range(10):
            h.event(chunk(f"w{i} "), delay=0.3)

    with FakeUpstream(slow) as up, FakeUpstream(lambda h, b, n: ok_stream(h, ["unused"])) as good:
        with Gateway(two_tier_plan(tmp_path, up, good)) as gw:
            t = time.perf_counter()
            headers, text = _stream(gw)
            took = time.perf_counter() - t
    assert headers["x-weighbridge-upstream"] == "flaky" and "w0" in text
    assert '"code": "upstream_stream_broken"' in text or '"code":"upstream_stream_broken"' in text
    assert "[DONE]" not in text and took < 3.0


def test_fake_upstream_4xx_is_the_clients_error_and_not_retried(tmp_path):
    with FakeUpstream(lambda h, b, n: h.send_json(400, {"error": {"message": "bad tool schema", "code": "bad"}})) as b, \
            FakeUpstream(lambda h, b, n: ok_stream(h, ["x"])) as g:
        with Gateway(two_tier_plan(tmp_path, b, g)) as gw:
            r = httpx.post(gw + "/chat/completions", json={"model": "chat", "messages": ASK}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["message"] == "bad tool schema" and not g.posts


def test_fake_upstream_4xx_that_echoes_our_upstream_key_reaches_the_client_scrubbed(tmp_path, monkeypatch):
    key = "sk-upstream-9d8c7b6a5f4e"
    monkeypatch.setenv("WB_UPSTREAM_KEY", key)

    def echo(h, body, n):  # a hostile or careless upstream: its error repeats the request headers
        h.send_json(400, {"error": {"message": f"rejected request with headers {dict(h.headers)}", "code": "bad"}})

    with FakeUpstream(echo) as up:
        plan = write(tmp_path / "plan.yaml", f"routes:\n  chat:\n    upstreams: [{{name: u, base_url: '{up.base_url}', "
                                             "model: m, api_key_env: WB_UPSTREAM_KEY}]\n")
        with Gateway(str(plan)) as gw:
            r = httpx.post(gw + "/chat/completions", json={"model": "chat", "messages": ASK}, timeout=10)
        assert up.requests[-1]["headers"].get("authorization") == f"Bearer {key}"  # the key did go upstream
    assert r.status_code == 400
    assert key not in r.text and "Bearer ***" in r.json()["error"]["message"]
    for f in tmp_path.iterdir():
        if f.is_file():
            assert key.encode() not in f.read_bytes(), f"the upstream key reached {f.name}"


def test_fake_upstream_tools_and_response_format_pass_through_both_ways(tmp_path):
    tool_call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}

    def script(h, body, n):
        if body.get("stream"):
            h.start_stream()
            h.event({"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
                "finish_reason": None}]})
            h.event({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": "{\"city\": \"Oslo\"}"}}]}, "finish_reason": None}]})
            h.event(chunk(finish="tool_calls"))
            h.event("[DONE]")
        else:
            h.send_json(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": None,
                                                                   "tool_calls": [tool_call]},
                                           "finish_reason": "tool_calls"}]})

    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    with FakeUpstream(script) as up:
        p = write(tmp_path / "plan.yaml", f"routes:\n  chat:\n    upstreams: [{{name: u, base_url: '{up.base_url}', model: m}}]\n")
        with Gateway(p) as gw:
            body = {"model": "chat", "messages": ASK, "tools": tools, "tool_choice": "auto", "response_format": rf}
            r = httpx.post(gw + "/chat/completions", json=body, timeout=10)
            with httpx.stream("POST", gw + "/chat/completions", json={**body, "stream": True}, timeout=10) as s:
                text = s.read().decode()
    assert up.posts[0]["tools"] == tools and up.posts[0]["response_format"] == rf and up.posts[0]["tool_choice"] == "auto"
    assert r.json()["choices"][0]["message"]["tool_calls"] == [tool_call]
    assert "get_weather" in text and "Oslo" in text and text.endswith("data: [DONE]\n\n")


def test_serve_binds_beyond_loopback_only_with_keys(tmp_path, llama_server):
    p = str(write(tmp_path / "plan.yaml", f"routes:\n  chat:\n    upstreams: [{{name: s, base_url: '{llama_server}', model: smollm2}}]\n"))
    refused = runner.invoke(cli, ["serve", "--plan", p, "--host", "0.0.0.0"])
    assert refused.exit_code == 2 and "no API keys" in refused.output
    assert runner.invoke(cli, ["keys", "create", "ops", "--plan", p]).exit_code == 0
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "weighbridge.cli", "serve", "--plan", p, "--host", "0.0.0.0",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "chat", "messages": ASK})
        assert r.status_code == 401
    finally:
        stop(proc)


def _wait_ready(base: str, proc: subprocess.Popen) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("gateway not ready in 30 s")


@pytest.mark.slow
def test_kill_9_under_load_loses_no_answered_request_and_the_chain_verifies(tmp_path, llama_server):
    p = str(write(tmp_path / "plan.yaml", f"routes:\n  chat:\n    upstreams: [{{name: s, base_url: '{llama_server}', model: smollm2}}]\n"))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "weighbridge.cli", "serve", "--plan", p, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    _wait_ready(base, proc)
    answered: list[str] = []
    stop = threading.Event()

    def client(i: int) -> None:
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                try:
                    stream = i % 2 == 0
                    r = c.post(base + "/v1/chat/completions", json={
                        "model": "chat", "max_tokens": 3, "stream": stream,
                        "messages": [{"role": "user", "content": f"client {i} says hi"}]})
                    if r.status_code == 200 and (not stream or r.text.endswith("data: [DONE]\n\n")):
                        answered.append(r.text)
                except httpx.HTTPError:
                    return

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    deadline = time.time() + 60  # under load until some answers are in (a fixed sleep flaked on a busy machine)
    while len(answered) < 8 and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # and kill while more are in flight
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stop.set()
    for t in threads:
        t.join(30)
    ok = runner.invoke(cli, ["audit", "verify", "--plan", p])
    assert ok.exit_code == 0, ok.output
    rows = [json.loads(r[0]) for r in sqlite3.connect(tmp_path / "gateway.db").execute("SELECT record FROM audit")]
    committed_ok = [r for r in rows if r["status"] == 200]
    assert len(answered) >= 5
    assert len(committed_ok) >= len(answered)  # every answer a client received had its record committed first


def test_fake_upstream_a_client_gone_mid_stream_stops_the_upstream_read_at_once_and_is_audited_as_client_closed(tmp_path):
    """A client that leaves a stream must not leave the gateway reading it to the end (the upstream
    generating, and billing, for nobody): the upstream connection is closed within a moment, and the
    call is audited as 499 client_closed with the tokens generated so far. The fake upstream times
    when its writes start failing."""
    broke: list[float] = []

    def long(h, body, n):
        h.start_stream()
        h.event(chunk(role="assistant"))
        try:
            for i in range(200):  # 10 s of events
                h.event(chunk(f"w{i} "), delay=0.05)
        except OSError:
            broke.append(time.perf_counter())

    with FakeUpstream(long) as up:
        plan = write(tmp_path / "plan.yaml", f"routes:\n  chat:\n    upstreams: [{{name: u, base_url: '{up.base_url}', "
                                             "model: m}]\n")
        with Gateway(str(plan)) as gw:
            with httpx.stream("POST", gw + "/chat/completions", timeout=10,
                              json={"model": "chat", "stream": True, "messages": ASK}) as s:
                for line in s.iter_lines():
                    if "w2" in line:
                        break
                left = time.perf_counter()
            deadline = time.perf_counter() + 8
            while not broke and time.perf_counter() < deadline:
                time.sleep(0.02)
    assert broke and broke[0] - left < 1.0, "the gateway kept reading the upstream after its client left"
    rows = [json.loads(r[0]) for r in sqlite3.connect(tmp_path / "gateway.db").execute("SELECT record FROM audit")]
    assert [(r["status"], r["code"], r["stream"]) for r in rows] == [(499, "client_closed", True)]
    assert rows[0]["response_sha256"] is not None
