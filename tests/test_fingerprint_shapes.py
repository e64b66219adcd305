"""Reading a served model's fingerprint from what each server kind exposes (the JSON shapes of
vLLM, llama.cpp's llama-server, Ollama, TGI and SGLang, as their docs show them), and from hostile
answers: kept only as short scalars, never trusted further. The llama-cpp-python probe runs against a
real server in test_gate_fingerprint.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from weighbridge.backends.fingerprint import Fingerprint, changed, read_fingerprint


def read(kind: str | None, listing: Any, pages: dict[str, Any]) -> Fingerprint:
    async def get(url: str) -> Any:
        return pages.get(url.removeprefix("http://h"))

    async def post(url: str, body: dict[str, Any]) -> Any:
        return None
    return asyncio.run(read_fingerprint(kind, "m", "http://h", "http://h/v1", listing, get, post))


@pytest.mark.parametrize("kind,listing,pages,facts", [
    ("vllm", {"data": [{"id": "m", "root": "/models/qwen2.5-7b", "max_model_len": 32768}]}, {},
     {"root": "/models/qwen2.5-7b", "max_model_len": 32768}),
    ("llama.cpp", {"data": [{"id": "m", "meta": {"n_params": 494032768, "size": 397807936, "n_vocab": 151936}}]},
     {"/props": {"model_path": "/models/qwen.gguf", "default_generation_settings": {}}},
     {"n_params": 494032768, "size": 397807936, "n_vocab": 151936, "model_path": "/models/qwen.gguf"}),
    ("ollama", {"data": [{"id": "m:latest"}]},
     {"/api/tags": {"models": [{"name": "m:latest", "digest": "845dbda0ea48ed74", "size": 4683087332}]}},
     {"digest": "845dbda0ea48ed74", "size": 4683087332}),
    ("tgi", None, {"/info": {"model_id": "Qwen/Qwen2.5-7B", "model_sha": "a09a3545", "model_dtype": "torch.float16"}},
     {"model_id": "Qwen/Qwen2.5-7B", "model_sha": "a09a3545", "model_dtype": "torch.float16"}),
    ("sglang", None, {"/get_model_info": {"model_path": "/models/q", "is_generation": True}}, {"model_path": "/models/q"}),
])
def test_each_server_kinds_fingerprint(kind, listing, pages, facts):
    fp = read(kind, listing, pages)
    assert fp.source and fp.facts == facts and fp.sha256


def test_a_hosted_api_has_none_and_says_why():
    fp = read(None, {"data": [{"id": "m"}]}, {})
    assert fp.source is None and fp.sha256 is None and "cannot be detected" in (fp.why or "")
    assert changed(fp.to_dict(), fp.to_dict()) is None  # unknown, never "unchanged"


def test_hostile_metadata_keeps_only_short_scalars():
    listing = {"data": [{"id": "m", "root": "x" * 10_000, "max_model_len": float("nan"), "parent": {"deep": [1]}}]}
    fp = read("vllm", listing, {})
    assert fp.source is None  # nothing usable: no fingerprint rather than a forged one
    fp = read("vllm", {"data": [{"id": "m", "root": "/m", "max_model_len": 10**30}]}, {})
    assert fp.facts == {"root": "/m"}
    assert read("ollama", None, {"/api/tags": {"models": "not a list"}}).source is None


def test_a_changed_fact_is_named():
    a = read("vllm", {"data": [{"id": "m", "root": "/models/a", "max_model_len": 8192}]}, {}).to_dict()
    b = read("vllm", {"data": [{"id": "m", "root": "/models/b", "max_model_len": 8192}]}, {}).to_dict()
    assert changed(a, b) is True and changed(a, a) is False
    assert Fingerprint.difference(a, b) == "vLLM /v1/models: root /models/a → /models/b"


def count_with(kind: str, pages: dict[str, Any], request: Any) -> tuple[int | None, list[tuple[str, dict]]]:
    from weighbridge.backends.token_count import ServerTokenCounter

    asked: list[tuple[str, dict]] = []

    async def post(url: str, body: dict[str, Any]) -> Any:
        asked.append((url.removeprefix("http://h"), body))
        return pages.get(url.removeprefix("http://h"))
    return asyncio.run(ServerTokenCounter(kind, "http://h", "m", post).prompt_tokens(request)), asked


CHAT = [{"role": "user", "content": "hi"}]


def test_vllm_counts_a_chat_prompt_with_its_own_template():
    from weighbridge.backends.base import Request

    n, asked = count_with("vllm", {"/tokenize": {"count": 9, "max_model_len": 32768, "tokens": list(range(9))}},
                          Request(messages=CHAT))
    assert n == 9 and asked == [("/tokenize", {"model": "m", "messages": CHAT, "add_generation_prompt": True})]


def test_llama_server_renders_then_counts():
    from weighbridge.backends.base import Request

    pages = {"/apply-template": {"prompt": "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"},
             "/tokenize": {"tokens": [1, 2, 3, 4, 5, 6, 7]}}
    n, asked = count_with("llama.cpp", pages, Request(messages=CHAT))
    assert n == 7 and [a[0] for a in asked] == ["/apply-template", "/tokenize"]
    assert asked[1][1]["content"].startswith("<|im_start|>user") and asked[1][1]["add_special"] is False


@pytest.mark.parametrize("answer", [{"count": -1}, {"count": 1.5}, {"count": True}, {"count": 10**12}, "x", None])
def test_a_hostile_count_leaves_the_prompt_uncounted(answer):
    from weighbridge.backends.base import Request

    assert count_with("vllm", {"/tokenize": answer}, Request(messages=CHAT))[0] is None
