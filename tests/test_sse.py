"""The one SSE decoder: every line-end style, split at every byte boundary, gives the same events."""

from __future__ import annotations

import json

import pytest

from weighbridge.wire.sse import SSEDecoder

EVENTS = [
    ": keep-alive",
    'data: {"choices": [{"delta": {"content": "Grüße, 你好"}}]}',
    'event: message\nid: 7\nretry: 3000\ndata:{"choices": [{"delta": {"content": "no space after the colon"}}]}',
    "data: first line\ndata: second line",
    'data: {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\\"a\\": 1}"}}]}}]}',
    "data: [DONE]",
]


def stream(eol: str) -> bytes:
    return "".join(block.replace("\n", eol) + eol + eol for block in EVENTS).encode("utf-8")


def decode(chunks: list[bytes]) -> list[tuple]:
    d = SSEDecoder()
    out = []
    for c in chunks:
        out += d.feed(c)
    out += d.end()
    return [(e.data, e.event, e.id, e.retry) for e in out]


EXPECTED = decode([stream("\n")])


def test_the_reference_stream_decodes_as_the_spec_says():
    assert EXPECTED[0] == (None, None, None, None)  # a comment-only block: a keep-alive
    assert json.loads(EXPECTED[1][0])["choices"][0]["delta"]["content"] == "Grüße, 你好"
    assert EXPECTED[2][1:] == ("message", "7", 3000) and "no space" in EXPECTED[2][0]
    assert EXPECTED[3][0] == "first line\nsecond line"
    assert EXPECTED[5][0] == "[DONE]" and len(EXPECTED) == 6


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_split_at_every_byte_boundary_gives_the_same_events(eol):
    data = stream(eol)
    assert decode([data]) == EXPECTED
    for i in range(len(data) + 1):
        assert decode([data[:i], data[i:]]) == EXPECTED, f"split at byte {i} ({eol!r})"
    assert decode([data[i:i + 1] for i in range(len(data))]) == EXPECTED  # one byte at a time


def test_three_way_splits_around_every_crlf():
    data = stream("\r\n")
    for i in [k for k in range(len(data)) if data[k:k + 1] == b"\r"]:
        assert decode([data[:i], data[i:i + 1], data[i + 1:]]) == EXPECTED


def test_a_last_event_without_its_blank_line_still_counts():
    assert decode([b"data: a\n\ndata: b"]) == [("a", None, None, None), ("b", None, None, None)]


def test_events_are_passed_on_with_their_lines():
    d = SSEDecoder()
    ev = d.feed(b"event: x\r\ndata: y\r\n\r\n")[0]
    assert ev.encode() == b"event: x\ndata: y\n\n"


# Every consumer of streams reads a CRLF server (sse-starlette's default) and a CR-only one, with
# the CR of a line end at the end of one write and its LF at the start of the next.
import asyncio  # noqa: E402

from .fake_upstream import FakeUpstream, ok_stream  # noqa: E402

WORDS = ["Hel", "lo", " wor", "ld"]


@pytest.mark.parametrize("eol", ["\r\n", "\r"], ids=["CRLF", "CR"])
def test_fake_upstream_crlf_stream_reaches_the_openai_backend_whole(eol):
    from weighbridge.backends import Request, build_backend
    from weighbridge.core.config import ModelSpec

    with FakeUpstream(lambda h, b, n: ok_stream(h, WORDS), eol=eol, split_eol=True) as up:
        b = build_backend(ModelSpec(name="m", backend="openai", base_url=up.base_url, model="fake-model"))

        async def go():
            await b.preflight()
            try:
                return await b.generate(Request(messages=[{"role": "user", "content": "hi"}]))
            finally:
                await b.aclose()

        g = asyncio.run(go())
    assert g.text == "Hello world" and g.finish_reason == "stop"


@pytest.mark.parametrize("eol", ["\r\n", "\r"], ids=["CRLF", "CR"])
def test_fake_upstream_crlf_stream_is_measured_by_the_load_generator(eol):
    from weighbridge.bench.loadgen import Target, stream_once
    from weighbridge.bench.rawhttp import RawClient

    with FakeUpstream(lambda h, b, n: ok_stream(h, WORDS), eol=eol, split_eol=True) as up:
        async def go():
            client = RawClient(up.base_url, {}, 10)
            try:
                return await stream_once(client, Target(up.base_url, "fake-model"), "hi", 8)
            finally:
                await client.aclose()

        rec = asyncio.run(go())
    assert rec.error is None and rec.text == "Hello world" and len(rec.chunk_times) == 4


@pytest.mark.parametrize("eol", ["\r\n", "\r"], ids=["CRLF", "CR"])
def test_fake_upstream_crlf_stream_passes_through_the_gateway_as_lf(tmp_path, eol):
    import httpx

    from .conftest import write
    from .serve_process import serve

    with FakeUpstream(lambda h, b, n: ok_stream(h, WORDS), eol=eol, split_eol=True) as up:
        plan = write(tmp_path / "plan.yaml", f"routes:\n  chat:\n    upstreams: [{{name: u, base_url: '{up.base_url}', "
                                             "model: fake-model}]\n")
        with serve(str(plan)) as (base, _):
            with httpx.stream("POST", base + "/v1/chat/completions", timeout=10,
                              json={"model": "chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
                body = r.read().decode()
    assert r.status_code == 200 and "\r" not in body and body.endswith("data: [DONE]\n\n")
    texts = [json.loads(line[6:])["choices"][0]["delta"].get("content") for line in body.split("\n")
             if line.startswith("data: {") and json.loads(line[6:]).get("choices")]
    assert "".join(t or "" for t in texts) == "Hello world"


def test_a_line_without_an_end_is_refused_at_the_bound_not_buffered_forever():
    from weighbridge.wire.sse import SSEError

    d = SSEDecoder(max_line_bytes=1 << 20)
    with pytest.raises(SSEError, match="1,048,576 bytes without a line end"):
        for _ in range(100):  # 6.4 MB of one line, in pieces
            d.feed(b"x" * 65536)


def test_an_event_of_many_short_lines_is_bounded_too():
    from weighbridge.wire.sse import SSEError

    d = SSEDecoder(max_line_bytes=4096)
    with pytest.raises(SSEError, match="event passed 4,096 bytes"):
        d.feed(b"data: 0123456789\n" * 1000)


def test_a_long_line_in_many_pieces_arrives_whole():
    d = SSEDecoder()
    payload = b"y" * (3 << 20)
    out = []
    for i in range(0, len(payload), 1024):
        out += d.feed((b"data: " if i == 0 else b"") + payload[i:i + 1024])
    out += d.feed(b"\r\n\r\n")
    assert len(out) == 1 and out[0].data == payload.decode()
