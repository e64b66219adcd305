import asyncio
import time

import pytest

from weighbridge.backends import Request, build_backend
from weighbridge.core.config import ModelSpec
from weighbridge.core.errors import BackendError, BackendUnavailable

from .conftest import _start_llama_server, free_port, stop
from .fake_upstream import FakeUpstream, chunk, ok_stream

HELLO = [{"role": "user", "content": "Say hello in one word."}]


def spec(base_url: str, **kw) -> ModelSpec:
    return ModelSpec(name=kw.pop("name", "remote"), backend="openai", base_url=base_url,
                     model=kw.pop("model", "smollm2"), **kw)


def run(coro):
    return asyncio.run(coro)


async def generate_once(backend, request):
    try:
        await backend.preflight()
        return await backend.generate(request)
    finally:
        await backend.aclose()


def test_real_llama_cpp_server_chat_streaming(llama_server):
    b = build_backend(spec(llama_server))
    g = run(generate_once(b, Request(messages=HELLO, max_tokens=16)))
    assert g.text.strip()
    # llama_cpp.server 0.3.x sends no usage in streams, so tokens are counted per chunk
    assert g.token_source in ("server", "chunks") and g.completion_tokens > 0
    assert 0 < g.ttft_ms <= g.latency_ms
    assert b.server_models == ["smollm2"]


def test_real_llama_cpp_server_completion_mode(llama_server):
    b = build_backend(spec(llama_server, mode="completion"))
    g = run(generate_once(b, Request(prompt="1, 2, 3, 4,", max_tokens=6)))
    assert "5" in g.text and g.finish_reason in ("length", "stop")


def test_unreachable_endpoint_names_model_url_and_what_to_check():
    url = f"http://127.0.0.1:{free_port()}/v1"
    b = build_backend(spec(url, name="qwen-vllm", connect_timeout_s=2))
    with pytest.raises(BackendUnavailable) as e:
        run(generate_once(b, Request(messages=HELLO)))
    msg = str(e.value)
    assert "model 'qwen-vllm'" in msg and url in msg and "is the server running" in msg


def test_api_key_comes_from_the_named_env_var(monkeypatch):
    monkeypatch.setenv("WB_TEST_KEY", "sk-test-123")
    with FakeUpstream(lambda h, body, n: ok_stream(h, ["hi"])) as up:
        b = build_backend(spec(up.base_url, model="fake-model", api_key_env="WB_TEST_KEY"))
        run(generate_once(b, Request(messages=HELLO)))
        assert all(r["headers"].get("Authorization") == "Bearer sk-test-123" for r in up.requests)
        assert "sk-test-123" not in str(b.manifest())


def test_missing_api_key_env_var_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("WB_NOT_SET", raising=False)
    b = build_backend(spec("http://127.0.0.1:9/v1", name="hosted", api_key_env="WB_NOT_SET"))
    with pytest.raises(BackendUnavailable, match="env var WB_NOT_SET"):
        run(generate_once(b, Request(messages=HELLO)))


def test_fake_upstream_rejected_key_fails_preflight(monkeypatch):
    def script(h, body, n):
        pass

    with FakeUpstream(script) as up:
        # patched for this test only: a `del` of the class attribute once removed GET from every later fake
        monkeypatch.setattr(up.httpd.RequestHandlerClass, "do_GET",
                            lambda h: h.send_json(401, {"error": {"message": "bad key"}}))
        b = build_backend(spec(up.base_url, model="fake-model"))
        with pytest.raises(BackendUnavailable, match="refused the API key"):
            run(generate_once(b, Request(messages=HELLO)))


def test_fake_upstream_429_and_500_are_retried_with_backoff():
    def script(h, body, n):
        if n == 0:
            h.send_json(429, {"error": {"message": "slow down"}}, headers={"retry-after": "0.05"})
        elif n == 1:
            h.send_json(503, {"error": {"message": "overloaded"}})
        else:
            ok_stream(h, ["fine"], usage={"prompt_tokens": 5, "completion_tokens": 1})

    with FakeUpstream(script) as up:
        g = run(generate_once(build_backend(spec(up.base_url, model="fake-model", max_retries=3)), Request(messages=HELLO)))
        assert g.text == "fine" and len(up.posts) == 3
        assert g.token_source == "server" and (g.prompt_tokens, g.completion_tokens) == (5, 1)


def test_fake_upstream_gives_up_after_max_retries():
    with FakeUpstream(lambda h, body, n: h.send_json(500, {"error": "boom"})) as up:
        with pytest.raises(BackendError) as e:
            run(generate_once(build_backend(spec(up.base_url, model="fake-model", max_retries=2)), Request(messages=HELLO)))
        assert e.value.kind == "http_500" and len(up.posts) == 3


def test_fake_upstream_400_is_not_retried():
    with FakeUpstream(lambda h, body, n: h.send_json(400, {"error": "bad request"})) as up:
        with pytest.raises(BackendError, match="HTTP 400"):
            run(generate_once(build_backend(spec(up.base_url, model="fake-model")), Request(messages=HELLO)))
        assert len(up.posts) == 1


def test_fake_upstream_timing_role_only_chunk_is_not_the_first_token():
    """The server sends a role-only chunk at once and content 300 ms later: TTFT must be ~300 ms."""
    def script(h, body, n):
        h.start_stream()
        h.event(chunk(role="assistant"))
        h.event(chunk(content=""))
        h.event(chunk("Hello"), delay=0.3)
        h.event(chunk(" there"), delay=0.1)
        h.event(chunk(finish="stop"))
        h.event("[DONE]")

    with FakeUpstream(script) as up:
        g = run(generate_once(build_backend(spec(up.base_url, model="fake-model")), Request(messages=HELLO)))
    assert g.text == "Hello there"
    assert 290 <= g.ttft_ms < 400 and g.latency_ms >= 390
    assert 90 <= g.decode_ms < 200
    assert g.token_source == "chunks" and g.completion_tokens == 2  # no usage given: counted per chunk


def test_fake_upstream_reasoning_content_counts_as_first_token():
    def script(h, body, n):
        h.start_stream()
        h.event({"choices": [{"index": 0, "delta": {"reasoning_content": "thinking"}, "finish_reason": None}]}, delay=0.1)
        h.event(chunk("42"), delay=0.2)
        h.event(chunk(finish="stop"))
        h.event("[DONE]")

    with FakeUpstream(script) as up:
        g = run(generate_once(build_backend(spec(up.base_url, model="fake-model")), Request(messages=HELLO)))
    assert g.text == "42" and g.reasoning == "thinking" and g.ttft_ms < 250


def test_fake_upstream_malformed_sse_is_an_error_not_a_crash():
    def script(h, body, n):
        h.start_stream()
        h.event(chunk("partial"))
        h.wfile.write(b"data: {not json\n\n")
        h.wfile.flush()

    with FakeUpstream(script) as up:
        with pytest.raises(BackendError) as e:
            run(generate_once(build_backend(spec(up.base_url, model="fake-model", max_retries=0)), Request(messages=HELLO)))
        assert e.value.kind == "malformed_response"


def test_fake_upstream_connection_reset_mid_stream_is_retried():
    def script(h, body, n):
        if n == 0:
            h.start_stream()
            h.event(chunk("half"))
            h.connection.shutdown(2)  # cut before [DONE]: a truncated answer must not count as one
            return
        ok_stream(h, ["whole"])

    with FakeUpstream(script) as up:
        g = run(generate_once(build_backend(spec(up.base_url, model="fake-model", max_retries=2)), Request(messages=HELLO)))
        assert g.text == "whole" and len(up.posts) == 2


def test_fake_upstream_done_without_finish_reason_is_a_cut_answer_not_a_short_one():
    def script(h, body, n):
        h.start_stream()
        h.event(chunk(role="assistant", content=""))
        h.event(chunk("The answer is"))
        h.event("[DONE]")  # llama-cpp-python's server drops a running answer so: [DONE] with no finish_reason

    with FakeUpstream(script) as up:
        with pytest.raises(BackendError) as e:
            run(generate_once(build_backend(spec(up.base_url, model="fake-model", max_retries=1)), Request(messages=HELLO)))
    assert e.value.kind == "truncated" and "no finish_reason" in str(e.value) and len(up.posts) == 2


def test_real_llama_cpp_server_interrupting_overlapped_answers_never_scores_a_cut_one(smollm_path, tmp_path):
    """llama-cpp-python's server (interrupt_requests on, its default) ends a running stream with [DONE]
    alone when the next request arrives: each answer is then whole, or that request's error."""
    base, proc = _start_llama_server(smollm_path, "smollm2", tmp_path / "server.log",
                                     extra=("--interrupt_requests", "True"))

    async def overlapped():
        b = build_backend(spec(base, max_retries=0))
        await b.preflight()
        try:
            return await asyncio.gather(*(b.generate(Request(messages=HELLO, max_tokens=24)) for _ in range(3)),
                                        return_exceptions=True)
        finally:
            await b.aclose()

    try:
        results = run(overlapped())
    finally:
        stop(proc)
    answers = [r for r in results if not isinstance(r, BaseException)]
    cut = [r for r in results if isinstance(r, BackendError)]
    assert len(answers) + len(cut) == 3 and answers and cut  # the last request runs whole; the ones it overtook were cut
    assert all(g.finish_reason in ("stop", "length") for g in answers)
    assert all(e.kind == "truncated" for e in cut)


def test_fake_upstream_timeout_is_reported_as_timeout():
    def script(h, body, n):
        h.start_stream()
        time.sleep(1.5)

    with FakeUpstream(script) as up:
        with pytest.raises(BackendError) as e:
            run(generate_once(build_backend(spec(up.base_url, model="fake-model", timeout_s=0.5, max_retries=0)), Request(messages=HELLO)))
        assert e.value.kind == "timeout"


def test_request_body_carries_deterministic_params_and_usage_request():
    with FakeUpstream(lambda h, body, n: ok_stream(h, ["x"])) as up:
        run(generate_once(build_backend(spec(up.base_url, model="fake-model", extra_body={"top_k": 1})),
                          Request(messages=HELLO, temperature=0, seed=7, max_tokens=9, stop=["\n"])))
        body = up.posts[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0 and body["seed"] == 7 and body["max_tokens"] == 9 and body["stop"] == ["\n"]
    assert body["top_k"] == 1 and body["model"] == "fake-model"


def test_manifest_records_what_the_server_says_about_itself(llama_server):
    b = build_backend(spec(llama_server))
    run(generate_once(b, Request(messages=HELLO, max_tokens=2)))
    m = b.manifest()
    assert m["server_header"] and "uvicorn" in m["server_header"].lower()
    assert m["base_url"] == llama_server and m["server_models"] == ["smollm2"]


def test_extra_body_is_part_of_a_served_models_identity_so_answers_are_not_shared_across_it():
    from weighbridge.backends.openai import OpenAIBackend
    from weighbridge.core.config import ModelSpec

    def ident(**extra):
        return OpenAIBackend(ModelSpec(name="m", backend="openai", base_url="http://127.0.0.1:1/v1", model="q",
                                       **extra)).identity()

    plain, penalised = ident(), ident(extra_body={"repeat_penalty": 1.0})
    assert "extra_body" not in plain  # a model without one keeps the identity (and the cache) it had
    assert penalised != plain and penalised["extra_body"] == {"repeat_penalty": 1.0}
