"""One retry policy for the backends and the gateway: the same statuses are worth another try, the
same older servers get asked again without ``stream_options``, and ``Retry-After`` is read one way.
Fake upstreams here inject the refusals (a real server that rejects stream_options is not bundled)."""

import asyncio
import email.utils

import httpx
import pytest

from weighbridge.backends import Request, build_backend
from weighbridge.core.config import ModelSpec
from weighbridge.wire.retry import MAX_RETRY_AFTER_S, backoff, retry_after, retryable

from .conftest import write
from .fake_upstream import FakeUpstream, ok_stream
from .gateway_server import Gateway

ASK = [{"role": "user", "content": "hi"}]
ANSWER = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "rescued"}, "finish_reason": "stop"}]}


def _old_server(h, body, n):
    """An older server: its request model forbids the field it does not know."""
    if "stream_options" in body:
        h.send_json(400, {"error": {"message": "extra fields not permitted: stream_options"}})
    else:
        ok_stream(h, ["fine"])


def _backend(base_url: str, **kw):
    return build_backend(ModelSpec(name="remote", backend="openai", base_url=base_url, model="fake-model", **kw))


async def _twice(backend):
    try:
        await backend.preflight()
        return [await backend.generate(Request(messages=ASK)) for _ in range(2)]
    finally:
        await backend.aclose()


def test_fake_upstream_rejecting_stream_options_is_asked_again_without_it_by_the_backend():
    with FakeUpstream(_old_server) as up:
        gens = asyncio.run(_twice(_backend(up.base_url)))
    assert [g.text for g in gens] == ["fine", "fine"]
    assert ["stream_options" in p for p in up.posts] == [True, False, False]  # remembered for the next call


def test_fake_upstream_rejecting_stream_options_is_asked_again_without_it_by_the_gateway(tmp_path):
    with FakeUpstream(_old_server) as up:
        p = write(tmp_path / "plan.yaml", f"routes:\n  chat:\n    upstreams: [{{name: old, base_url: '{up.base_url}', model: m}}]\n")
        with Gateway(p) as gw:
            texts = []
            for _ in range(2):
                with httpx.stream("POST", gw + "/chat/completions", timeout=10,
                                  json={"model": "chat", "stream": True, "messages": ASK}) as s:
                    texts.append(s.read().decode())
    assert all('"fine"' in t and t.endswith("data: [DONE]\n\n") for t in texts)
    assert ["stream_options" in p for p in up.posts] == [True, False, False]


def test_fake_upstream_a_400_that_is_not_about_stream_options_is_the_clients_error(tmp_path):
    with FakeUpstream(lambda h, b, n: h.send_json(400, {"error": {"message": "bad tool schema"}})) as up:
        p = write(tmp_path / "plan.yaml", f"routes:\n  chat:\n    upstreams: [{{name: u, base_url: '{up.base_url}', model: m}}]\n")
        with Gateway(p) as gw:
            with httpx.stream("POST", gw + "/chat/completions", timeout=10,
                              json={"model": "chat", "stream": True, "messages": ASK}) as s:
                s.read()
                status = s.status_code
    assert status == 400 and len(up.posts) == 1  # not asked again, not stripped


@pytest.mark.parametrize("status", [409, 425])
def test_fake_upstream_statuses_the_backend_retries_are_the_ones_the_gateway_falls_back_on(tmp_path, status):
    def flaky(h, body, n):
        if n == 0:
            h.send_json(status, {"error": {"message": "try again"}})
        else:
            ok_stream(h, ["second"])

    with FakeUpstream(flaky) as up:
        gens = asyncio.run(_twice(_backend(up.base_url, max_retries=2)))
    assert gens[0].text == "second" and len(up.posts) == 3  # one refusal, retried

    with FakeUpstream(lambda h, b, n: h.send_json(status, {"error": {"message": "try again"}})) as bad, \
            FakeUpstream(lambda h, b, n: h.send_json(200, ANSWER)) as good:
        p = write(tmp_path / "plan.yaml", f"""routes:
  chat:
    upstreams: [{{name: flaky, base_url: '{bad.base_url}', model: m}}]
    fallback: [{{name: backup, base_url: '{good.base_url}', model: m}}]
""")
        with Gateway(p) as gw:
            r = httpx.post(gw + "/chat/completions", json={"model": "chat", "messages": ASK}, timeout=10)
    assert r.status_code == 200 and r.headers["x-weighbridge-upstream"] == "backup"
    assert {s: retryable(s) for s in (400, 401, 404, 409, 422, 425, 429, 500, 501, 503)} == {
        400: False, 401: False, 404: False, 409: True, 422: False, 425: True, 429: True, 500: True, 501: False,
        503: True}


def test_retry_after_is_read_one_way_and_bounded():
    now = 1_700_000_000.0
    assert retry_after("2") == 2.0 and retry_after(" 0.25 ") == 0.25
    assert retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0  # a date already past
    assert retry_after("86400") == MAX_RETRY_AFTER_S  # a hostile server does not park a run for a day
    for bad in (None, "", "-1", "nan", "inf", "soon", "1" * 100):
        assert retry_after(bad) is None, bad
    assert all(0.25 <= backoff(0) <= 0.75 for _ in range(50)) and backoff(30) <= 30.0
