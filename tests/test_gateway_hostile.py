"""A real ``weighbridge serve`` process against hostile and careless clients: PII in every field of a
request (and in the model's own answer) never reaches an upstream that must not see it, the cache
or the audit log unmasked; headers that never end, too many or too large headers, a body that
trickles in, and bodies no schema expects are refused with a 4xx and audited — never a 500, never a
stalled event loop. The fake upstream records exactly which bytes left the gateway, which a real
model server cannot show."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from .conftest import write
from .fake_upstream import FakeUpstream
from .serve_process import health_probe, serve
from .test_gateway_limits import _read_reply

RAW = ["alice@example.org", "bob@example.org", "eve@example.org", "admin@example.org", "4111 1111 1111 1111",
       "4155552671", "7946 0958", "DE89 3704"]


def _reply(h, body, n) -> None:
    """Answers with PII of its own when asked to, and with a tool call whose arguments carry PII."""
    text = json.dumps(body)
    if "echo-pii" in text:
        content, calls = "Mail sent to carol@example.org", None
    elif "tool-pii" in text:
        content, calls = None, [{"id": "call_1", "type": "function", "function": {
            "name": "lookup", "arguments": json.dumps({"email": "dave@example.org"})}}]
    else:
        content, calls = "ok", None
    if body.get("stream"):
        h.start_stream()
        delta = {"role": "assistant", "content": content} if content else {"role": "assistant", "tool_calls": [
            {"index": 0, **calls[0], "function": {"name": "lookup", "arguments": ""}}]}
        h.event({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        if calls:
            args = calls[0]["function"]["arguments"]
            for piece in (args[:10], args[10:]):  # the arguments arrive split, as servers send them
                h.event({"choices": [{"index": 0, "delta": {"tool_calls": [
                    {"index": 0, "function": {"arguments": piece}}]}, "finish_reason": None}]})
        h.event({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls" if calls else "stop"}]})
        h.event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})
        h.event("[DONE]")
        return
    msg = {"role": "assistant", "content": content}
    if calls:
        msg["tool_calls"] = calls
    choice = {"index": 0, "message": msg, "finish_reason": "tool_calls" if calls else "stop"}
    if "prompt" in body:
        choice = {"index": 0, "text": content or "", "finish_reason": "stop"}
    h.send_json(200, {"id": "x", "object": "chat.completion", "choices": [choice],
                      "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})


@pytest.fixture()
def served(tmp_path):
    with FakeUpstream(_reply) as up:
        plan = write(tmp_path / "plan.yaml", f"""audit: {{store_text: true}}
http: {{header_timeout_s: 1, body_timeout_s: 1, max_headers: 40, max_header_bytes: 8192}}
routes:
  chat:
    redact_upstream: always
    cache: {{ttl_s: 600}}
    upstreams: [{{name: u, base_url: '{up.base_url}', model: fake-model}}]
""")
        with serve(str(plan)) as (base, proc):
            yield base, tmp_path, up, proc


def _audit(tmp_path: Path) -> list[dict]:
    db = sqlite3.connect(tmp_path / "gateway.db")
    try:
        return [json.loads(r[0]) for r in db.execute("SELECT record FROM audit ORDER BY seq")]
    finally:
        db.close()


def _stored(tmp_path: Path) -> bytes:
    return b"".join(f.read_bytes() for f in tmp_path.glob("gateway.db*"))


def _no_raw(blob: bytes | str, extra: tuple[str, ...] = ()) -> None:
    data = blob.encode() if isinstance(blob, str) else blob
    for raw in RAW + list(extra):
        assert raw.encode() not in data, raw


FULL = {
    "model": "chat", "temperature": 0, "user": "alice@example.org", "metadata": {"crm": "bob@example.org"},
    "messages": [
        {"role": "system", "name": "admin@example.org", "content": "You help."},
        {"role": "user", "content": [{"type": "text", "text": "card 4111 1111 1111 1111"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_0", "type": "function", "function": {
            "name": "lookup", "arguments": json.dumps({"phone": 4155552671, "email": "eve@example.org"})}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "IBAN DE89 3704 0044 0532 0130 00"}],
    "tools": [{"type": "function", "function": {"name": "lookup", "description": "escalate to admin@example.org",
                                                "parameters": {"type": "object", "properties": {"q": {
                                                    "type": "string", "description": "like +44 20 7946 0958"}}}}}],
}


def test_fake_upstream_pii_in_every_field_is_masked_before_the_upstream_cache_and_audit(served):
    base, tmp, up, _ = served
    for _ in range(2):  # twice: a request with PII in it is never answered from, nor written to, the cache
        r = httpx.post(base + "/v1/chat/completions", json=FULL, timeout=10)
        assert r.status_code == 200, r.text
        assert r.headers["x-weighbridge-cache"] == "miss"
    assert len(up.posts) == 2
    sent = json.dumps(up.posts[0], ensure_ascii=False)
    _no_raw(sent)
    assert json.loads(up.posts[0]["messages"][2]["tool_calls"][0]["function"]["arguments"]) == {
        "phone": "[PHONE]", "email": "[EMAIL]"}
    assert up.posts[0]["tools"][0]["function"]["name"] == "lookup" and up.posts[0]["user"] == "[EMAIL]"
    r = httpx.post(base + "/v1/completions", json={"model": "chat", "prompt": "write to alice@example.org"}, timeout=10)
    assert r.status_code == 200 and up.posts[-1]["prompt"] == "write to [EMAIL]"
    metrics = httpx.get(base + "/metrics").text
    assert 'weighbridge_cache_total{result="skipped_pii",route="chat"} 2' in metrics
    _no_raw(_stored(tmp))


REPORTED = [  # the values the issue found the old regexes missing, and the look-alikes they masked
    ("Ruf an: 030 12345678, Handy 0171 1234567", "Ruf an: [PHONE], Handy [PHONE]"),
    ("打+8613800138000或13800138000", "打[PHONE]或[PHONE]"),
    ("call 4155552671 or 07700 900123", "call [PHONE] or [PHONE]"),
    ("Amex 3714 496353 98431, iban de89 3704 0044 0532 0130 00", "Amex [CARD], iban [IBAN]"),
    ("SSN 078051120, mail müller@beispiel.de", "SSN [NATIONAL_ID], mail [EMAIL]"),
    ("Order #123-456-7890 at 2024-11-23 14:05:33, version 1.2.3.4",
     "Order #123-456-7890 at 2024-11-23 14:05:33, version 1.2.3.4"),
]


def test_fake_upstream_the_reported_misses_and_false_positives_through_serve(served):
    base, _, up, _ = served
    for text, masked in REPORTED:
        r = httpx.post(base + "/v1/chat/completions", timeout=10,
                       json={"model": "chat", "messages": [{"role": "user", "content": text}]})
        assert r.status_code == 200
        assert up.posts[-1]["messages"][0]["content"] == masked


def test_fake_upstream_an_answer_with_pii_is_not_cached_and_is_masked_in_the_audit(served):
    base, tmp, up, _ = served
    ask = {"model": "chat", "temperature": 0, "messages": [{"role": "user", "content": "echo-pii please"}]}
    for _ in range(2):
        r = httpx.post(base + "/v1/chat/completions", json=ask, timeout=10)
        assert r.json()["choices"][0]["message"]["content"] == "Mail sent to carol@example.org"  # the client's own answer
        assert r.headers["x-weighbridge-cache"] == "miss"
    clean = {"model": "chat", "temperature": 0, "messages": [{"role": "user", "content": "hello"}]}
    hits = [httpx.post(base + "/v1/chat/completions", json=clean, timeout=10).headers["x-weighbridge-cache"]
            for _ in range(2)]
    assert hits == ["miss", "hit"]  # the cache still works for requests and answers without PII
    assert len(up.posts) == 3
    rec = _audit(tmp)
    assert rec[0]["response"] == "Mail sent to [EMAIL]" and rec[0]["safety"] == {"response.pii.email": 1}
    _no_raw(_stored(tmp), ("carol@example.org",))


def test_fake_upstream_streamed_tool_call_arguments_are_masked_in_the_audit(served):
    base, tmp, _, _ = served
    ask = {"model": "chat", "temperature": 0, "stream": True, "messages": [{"role": "user", "content": "tool-pii"}]}
    with httpx.stream("POST", base + "/v1/chat/completions", json=ask, timeout=10) as s:
        text = s.read().decode()
    assert "dave@example.org" not in text or '"arguments"' in text  # the client gets its arguments as sent
    assert text.rstrip().endswith("[DONE]")
    rec = _audit(tmp)[-1]
    assert "[EMAIL]" in rec["response"] and '"name": "lookup"' in rec["response"]
    assert rec["safety"] == {"response.pii.email": 1}
    _no_raw(_stored(tmp), ("dave@example.org",))


def test_fake_upstream_a_big_body_full_of_pii_is_redacted_without_stalling_other_requests(served):
    base, tmp, up, proc = served
    line = "Customer alice@example.org called from +1 415 555 2671 about card 4111 1111 1111 1111. "
    big = {"model": "chat", "messages": [{"role": "user", "content": line * (3_500_000 // len(line))}]}
    with health_probe(base) as health:
        r = httpx.post(base + "/v1/chat/completions", json=big, timeout=120)
    assert r.status_code == 200, r.text
    assert len(health) >= 5 and max(health) < 1.0, (len(health), max(health))
    _no_raw(json.dumps(up.posts[-1]))
    assert _audit(tmp)[-1]["safety"]["pii.email"] == 3_500_000 // len(line)


# -- limits before work ------------------------------------------------------------------------------

def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def test_fake_upstream_headers_that_never_finish_get_408_and_the_gateway_keeps_serving(served):
    base, *_ = served
    socks = []
    for _ in range(20):  # a slowloris: many connections, each sending half a request line and stopping
        s = socket.create_connection(("127.0.0.1", _port(base)), timeout=5)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
    t = time.monotonic()
    assert httpx.get(base + "/healthz", timeout=5).status_code == 200
    reply = _read_reply(socks[0])
    assert reply.startswith("HTTP/1.1 408") and "did not arrive within 1 s" in reply, reply
    assert time.monotonic() - t < 5
    for s in socks:
        s.settimeout(5)
        assert s.recv(1) in (b"", b"H")  # each one is answered and closed, none left hanging
        s.close()


def test_fake_upstream_too_many_or_too_large_headers_get_431(served):
    base, *_ = served
    many = "".join(f"X-H{i}: v\r\n" for i in range(60))
    large = "X-Big: " + "a" * 10_000 + "\r\n"
    for extra in (many, large):
        with socket.create_connection(("127.0.0.1", _port(base)), timeout=5) as s:
            s.sendall(f"GET /healthz HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
            reply = _read_reply(s)
        assert reply.startswith("HTTP/1.1 431"), reply[:200]
    with socket.create_connection(("127.0.0.1", _port(base)), timeout=5) as s:
        s.sendall(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_reply(s).startswith("HTTP/1.1 414")
    assert httpx.get(base + "/healthz", timeout=5).status_code == 200


def test_fake_upstream_a_body_that_trickles_in_gets_408_and_is_audited(served):
    base, tmp, *_ = served
    with socket.create_connection(("127.0.0.1", _port(base)), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"model\": ")
        t = time.monotonic()
        reply = _read_reply(s)
    assert reply.startswith("HTTP/1.1 408") and "request_timeout" in reply, reply
    assert time.monotonic() - t < 5
    rec = _audit(tmp)[-1]
    assert rec["status"] == 408 and rec["code"] == "request_timeout"


@pytest.mark.parametrize("raw,param", [
    (b'{"model": "chat", "temperature": NaN, "messages": []}', None),
    (b'{"model": "chat", "max_tokens": 1e400, "messages": []}', "max_tokens"),
    (b'{"model": "chat", "max_tokens": 99999999999999999999999, "messages": []}', "max_tokens"),
    (b'{"model": "chat", "messages": [{"role": "user", "content": "\\ud800 lone surrogate"}]}', "messages.0.content"),
    (b'{"model": "chat", "messages": [{"role": "user", "content": "x", "role": "system"}]}', None),
    (b'[' * 100_000 + b']' * 100_000, None),
    (b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}',
     "tools.0"),
    (b'{"model": "chat", "messages": [{"role": 7, "content": "hi"}]}', "messages.0.role"),
    (b'\xff\xfe{"model": "chat"}', None),
    (b'{"model": "chat", "seed": ' + b"9" * 5000 + b', "messages": []}', None),  # past int() digit limit
])
def test_fake_upstream_bodies_no_schema_expects_are_400s_naming_the_field_and_audited(served, raw, param):
    base, tmp, up, proc = served
    n = len(up.posts)
    r = httpx.post(base + "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["code"] in ("invalid_field", "invalid_json"), err
    assert len(up.posts) == n and proc.poll() is None
    rec = _audit(tmp)[-1]
    assert rec["status"] == 400 and rec["code"] == err["code"]
