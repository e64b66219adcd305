"""Attack tests, issue 22 item 1: an upstream that breaks HTTP framing must never make the gateway hand
one client another client's answer, nor fail the next, innocent request. A real ``weighbridge serve``
process against a raw-socket fake upstream: only raw bytes can inject these faults."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from typer.testing import CliRunner

from weighbridge.cli import app as cli

from .conftest import write
from .raw_upstream import RawUpstream, chat_body, last_user, response
from .serve_process import audit_records, serve

runner = CliRunner(env={"COLUMNS": "250"})


def _plan(tmp_path, up: RawUpstream, extra: str = "") -> str:
    return str(write(tmp_path / "plan.yaml", f"""audit: {{store_text: true}}
{extra}
routes:
  chat:
    upstreams: [{{name: u, base_url: '{up.base_url}', model: m}}]
"""))


def _key(plan: str, name: str) -> str:
    r = runner.invoke(cli, ["keys", "create", name, "--plan", plan])
    assert r.exit_code == 0, r.output
    return r.output.strip().splitlines()[-1]


def _ask(base: str, key: str, text: str) -> httpx.Response:
    return httpx.post(base + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=30,
                      json={"model": "chat", "messages": [{"role": "user", "content": text}]})


def test_fake_upstream_extra_bytes_after_a_response_never_hand_one_client_another_clients_answer(tmp_path):
    def script(conn, n, body):
        answer = response(chat_body(f"answer to {last_user(body)}"))
        if n == 0:  # a complete response, then a second, unsolicited one on the same keep-alive connection
            conn.sendall(answer + response(chat_body("answer to nobody")))
        else:
            conn.sendall(answer)

    with RawUpstream(script) as up:
        plan = _plan(tmp_path, up)
        alice, bob = _key(plan, "alice"), _key(plan, "bob")
        with serve(plan) as (base, _):
            got = []
            for i in range(6):
                who, key = ("alice", alice) if i % 2 == 0 else ("bob", bob)
                r = _ask(base, key, f"{who}-{i}")
                assert r.status_code == 200, r.text
                got.append((f"{who}-{i}", r.json()["choices"][0]["message"]["content"]))
                time.sleep(0.05)  # the stray bytes arrive while the connection idles in the pool
    assert all(content == f"answer to {q}" for q, content in got), got
    audited = [(a["prompt"], a["response"]) for a in audit_records(tmp_path)]
    assert all(resp == f"answer to {prompt}" for prompt, resp in audited), audited
    assert up.connections == 2  # the connection that carried stray bytes was dropped; the next one is reused


def _ask_in_turn(base: str, n: int) -> list[str]:
    """Questions q0…q(n-1) through the gateway, one after another; the answers' texts."""
    return [httpx.post(base + "/v1/chat/completions", timeout=30, json={
        "model": "chat", "messages": [{"role": "user", "content": f"q{i}"}]}).json()["choices"][0]["message"]["content"]
        for i in range(n)]


def test_fake_upstream_an_honest_upstream_keeps_one_connection_for_many_requests(tmp_path):
    with RawUpstream(lambda conn, n, body: conn.sendall(response(chat_body(f"answer to {last_user(body)}")))) as up:
        plan = _plan(tmp_path, up)
        with serve(plan) as (base, _):
            answers = _ask_in_turn(base, 5)
    assert answers == [f"answer to q{i}" for i in range(5)]
    assert up.connections == 1  # kept alive: the strictness above is not bought by reconnecting every time


def test_fake_upstream_extra_bytes_in_the_same_write_never_reach_the_next_client(tmp_path):
    def script(conn, n, body):
        stale = response(chat_body("stale answer")) if n == 0 else b""
        conn.sendall(response(chat_body(f"answer to {last_user(body)}")) + stale)

    with RawUpstream(script) as up:
        plan = _plan(tmp_path, up)
        with serve(plan) as (base, _):
            answers = _ask_in_turn(base, 4)
    assert answers == [f"answer to q{i}" for i in range(4)]


def test_fake_upstream_content_length_counted_in_characters_fails_only_its_own_request(tmp_path):
    def script(conn, n, body):
        data = chat_body(f"réponse à {last_user(body)} — ünïcödé")
        if n == 0:  # a sloppy server: the length of the text in characters, not bytes
            conn.sendall(response(data, content_length=len(data.decode())))
        else:
            conn.sendall(response(data))

    with RawUpstream(script) as up:
        plan = _plan(tmp_path, up)
        with serve(plan) as (base, _):
            first = httpx.post(base + "/v1/chat/completions", timeout=30, json={
                "model": "chat", "messages": [{"role": "user", "content": "one"}]})
            time.sleep(0.05)
            second = httpx.post(base + "/v1/chat/completions", timeout=30, json={
                "model": "chat", "messages": [{"role": "user", "content": "two"}]})
    assert first.status_code == 502 and "two" not in first.text
    assert second.status_code == 200, second.text
    assert second.json()["choices"][0]["message"]["content"] == "réponse à two — ünïcödé"


@pytest.mark.parametrize("junk", [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", b"garbage\r\n\r\n", b"\r\n"])
def test_fake_upstream_junk_after_a_streamed_answer_closes_the_connection(tmp_path, junk):
    def script(conn, n, body):
        if body.get("stream"):
            events = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": f"s{n}"},
                                    "finish_reason": None}]},
                      {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
            sse = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
            chunked = f"{len(sse):x}\r\n".encode() + sse + b"\r\n0\r\n\r\n"
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                         + chunked + (junk if n == 0 else b""))
        else:
            conn.sendall(response(chat_body(f"answer to {last_user(body)}")))

    with RawUpstream(script) as up:
        plan = _plan(tmp_path, up)
        with serve(plan) as (base, _):
            s = httpx.post(base + "/v1/chat/completions", timeout=30, json={
                "model": "chat", "stream": True, "messages": [{"role": "user", "content": "x"}]})
            assert s.status_code == 200 and '"s0"' in s.text and s.text.rstrip().endswith("[DONE]")
            time.sleep(0.05)
            answers = [httpx.post(base + "/v1/chat/completions", timeout=30, json={
                "model": "chat", "messages": [{"role": "user", "content": f"q{i}"}]}).json()
                ["choices"][0]["message"]["content"] for i in range(3)]
    assert answers == [f"answer to q{i}" for i in range(3)]
