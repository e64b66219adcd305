"""The gateway in front of a reasoning model: ``reasoning_content`` passed to the client (or dropped
by the plan), metered as reasoning tokens, redacted and audited as its own field, never cached. The
upstream is a fake one that answers as vLLM does with a reasoning parser (its own field, usage with
``completion_tokens_details.reasoning_tokens``) - no bundled model has one."""

from __future__ import annotations

import json

import httpx

from .conftest import write
from .fake_upstream import FakeUpstream, chunk
from .gateway_server import Gateway
from .serve_process import audit_records

SECRET_THOUGHT = "the user is jane.doe@example.com, so"
ASK = [{"role": "user", "content": "What is 6 * 7?"}]


def reasoning_upstream(h, body, n):
    """Thinking in its own field, then the answer; usage counts 25 of its 30 output tokens as reasoning."""
    if not body.get("stream"):
        h.send_json(200, {"id": "r", "object": "chat.completion", "created": 1, "model": "r1", "choices": [
            {"index": 0, "finish_reason": "stop",
             "message": {"role": "assistant", "content": "42", "reasoning_content": SECRET_THOUGHT + " 6*7=42"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 30,
                      "completion_tokens_details": {"reasoning_tokens": 25}}})
        return
    h.start_stream()
    h.event({"id": "r", "choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": SECRET_THOUGHT},
                                     "finish_reason": None}]})
    h.event({"id": "r", "choices": [{"index": 0, "delta": {"reasoning_content": " 6*7=42"}, "finish_reason": None}]})
    h.event(chunk("42"))
    h.event(chunk(finish="stop"))
    h.event({"id": "r", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 30,
                                                  "completion_tokens_details": {"reasoning_tokens": 25}}})
    h.event("[DONE]")


def _plan(tmp_path, base_url: str, route_extra: str = "") -> str:
    return str(write(tmp_path / "plan.yaml", f"""\
audit: {{store_text: true}}
routes:
  chat:
    upstreams: [{{name: r1, base_url: '{base_url}', model: r1, price: {{input_per_mtok: 1.0, output_per_mtok: 4.0}}}}]
    cache: {{ttl_s: 600}}
{route_extra}
"""))


def _stream(gw: str, body: dict) -> tuple[list[dict], httpx.Headers]:
    events = []
    with httpx.stream("POST", gw + "/chat/completions", json={**body, "stream": True}, timeout=30) as s:
        headers = s.headers
        for line in s.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    return events, headers


def test_fake_upstream_reasoning_reaches_the_client_is_metered_redacted_in_the_audit_and_never_cached(tmp_path):
    with FakeUpstream(reasoning_upstream) as up:
        p = _plan(tmp_path, up.base_url)
        with Gateway(p) as gw:
            body = {"model": "chat", "messages": ASK, "temperature": 0, "max_tokens": 64}
            events, _ = _stream(gw, body)
            thought = "".join(c["delta"].get("reasoning_content", "") for e in events for c in e.get("choices", []))
            assert thought == SECRET_THOUGHT + " 6*7=42"  # passed through, as the upstream sent it
            plain = httpx.post(gw + "/chat/completions", json={**body, "max_tokens": 65}, timeout=30)
            assert plain.json()["choices"][0]["message"]["reasoning_content"].startswith(SECRET_THOUGHT)
            again, headers = _stream(gw, body)  # the same request again: from the cache
            assert headers["x-weighbridge-cache"] == "hit"
            assert not any("reasoning_content" in c.get("delta", {}) for e in again for c in e.get("choices", []))
            assert "".join(c["delta"].get("content", "") or "" for e in again for c in e.get("choices", [])) == "42"
            metrics = httpx.get(gw.removesuffix("/v1") + "/metrics", timeout=10).text
        assert len(up.posts) == 2  # the third came from the cache
    records = audit_records(tmp_path)
    streamed, whole = records[0], records[1]
    for r in (streamed, whole):
        assert r["reasoning_tokens"] == 25 and r["completion_tokens"] == 30
        assert "jane.doe@example.com" not in json.dumps(r)  # redacted as its own field
        assert r["reasoning"].startswith("the user is [EMAIL], so") and r["response"] == "42"
        assert r["safety"].get("reasoning.pii.email") == 1 and r["reasoning_sha256"]
    assert 'weighbridge_reasoning_tokens_total{route="chat",upstream="r1"} 50' in metrics
    db = (tmp_path / "gateway.db").read_bytes()
    assert b"jane.doe" not in db and b"6*7=42" not in db  # neither the audit log nor the cache kept it raw


def test_fake_upstream_a_plan_can_drop_reasoning_before_the_client_sees_it(tmp_path):
    with FakeUpstream(reasoning_upstream) as up:
        p = _plan(tmp_path, up.base_url, route_extra="    reasoning: drop")
        with Gateway(p) as gw:
            body = {"model": "chat", "messages": ASK, "max_tokens": 64}
            events, _ = _stream(gw, body)
            plain = httpx.post(gw + "/chat/completions", json=body, timeout=30).json()
    assert not any("reasoning_content" in c.get("delta", {}) for e in events for c in e.get("choices", []))
    assert "".join(c["delta"].get("content", "") or "" for e in events for c in e.get("choices", [])) == "42"
    assert "reasoning_content" not in plain["choices"][0]["message"] and plain["choices"][0]["message"]["content"] == "42"
    assert plain["usage"]["completion_tokens"] == 30  # the thinking was generated and is paid for all the same
    assert all(r["reasoning_tokens"] == 25 for r in audit_records(tmp_path))


def test_fake_upstream_without_usage_the_estimate_counts_the_thinking_too(tmp_path):
    def no_usage(h, body, n):
        h.start_stream()
        h.event({"choices": [{"index": 0, "delta": {"reasoning_content": "x" * 400}, "finish_reason": None}]})
        h.event(chunk("42"))
        h.event(chunk(finish="stop"))
        h.event("[DONE]")

    with FakeUpstream(no_usage) as up:
        p = _plan(tmp_path, up.base_url)
        with Gateway(p) as gw:
            _stream(gw, {"model": "chat", "messages": ASK, "max_tokens": 200})
    (r,) = audit_records(tmp_path)
    assert r["tiers"][0]["usage_source"] == "estimate"
    assert r["completion_tokens"] >= 100 and r["reasoning_tokens"] >= 100  # 400 characters of thinking, not 2 of answer
