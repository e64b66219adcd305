import asyncio
from pathlib import Path

import pytest

from weighbridge.backends import Request, build_backend
from weighbridge.core.config import ModelSpec, SamplingParams
from weighbridge.core.errors import BackendUnavailable

MATH = [{"role": "system", "content": "Answer with a number."}, {"role": "user", "content": "What is 2 + 2?"}]


def test_chat_mode_with_the_models_own_template():
    spec = ModelSpec(name="smol", backend="llamacpp", bundled="smollm2-135m", n_threads=2)
    b = build_backend(spec)

    async def go():
        await b.preflight()
        g1 = await b.generate(Request(messages=MATH, max_tokens=24))
        g2 = await b.generate(Request(messages=MATH, max_tokens=24))
        await b.aclose()
        return g1, g2

    g1, g2 = asyncio.run(go())
    assert g1.text.strip() and g1.text == g2.text  # temperature 0: deterministic
    assert g1.finish_reason in ("stop", "length")
    assert g1.token_source == "tokenizer" and g1.prompt_tokens > 10 and 0 < g1.completion_tokens <= 24
    assert 0 < g1.ttft_ms <= g1.latency_ms and g1.decode_ms is not None
    assert b.calls == 2 and b.load_seconds is not None  # loaded once, used twice
    m = b.manifest()
    assert m["gguf"]["general.license"] == "apache-2.0" and len(m["sha256"]) == 64 and m["chat_template_sha256"]


def test_completion_mode_for_a_base_model():
    spec = ModelSpec(name="gemma", backend="llamacpp", bundled="gemma3-270m", mode="completion", n_threads=2,
                     params=SamplingParams(max_tokens=16))
    b = build_backend(spec)

    async def go():
        await b.preflight()
        g = await b.generate(Request(prompt="Monday, Tuesday, Wednesday,", max_tokens=8))
        await b.aclose()
        return g

    g = asyncio.run(go())
    assert "Thursday" in g.text
    assert g.completion_tokens > 0 and g.prompt_tokens >= 5
    assert b.manifest()["gguf"]["general.license"] == "gemma"


def test_max_tokens_gives_finish_reason_length():
    b = build_backend(ModelSpec(name="smol", backend="llamacpp", bundled="smollm2-135m"))
    g = asyncio.run(b.generate(Request(messages=[{"role": "user", "content": "Write a long story about a dragon."}],
                                       max_tokens=5)))
    assert g.finish_reason == "length" and g.completion_tokens <= 6


def test_missing_gguf_names_the_model_and_path(tmp_path):
    b = build_backend(ModelSpec(name="my-qwen", backend="llamacpp", path="models/qwen.gguf"), str(tmp_path))
    with pytest.raises(BackendUnavailable) as e:
        asyncio.run(b.preflight())
    msg = str(e.value)
    assert "model 'my-qwen'" in msg and str(tmp_path / "models" / "qwen.gguf") in msg and "Check:" in msg


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    p = tmp_path / "fake.gguf"
    p.write_bytes(b"PK\x03\x04 not a model")
    b = build_backend(ModelSpec(name="broken", backend="llamacpp", path=str(p)))
    with pytest.raises(BackendUnavailable, match="not a GGUF file"):
        asyncio.run(b.preflight())


def test_chat_mode_on_a_model_without_template_says_use_completion(gemma_path: Path):
    b = build_backend(ModelSpec(name="gemma", backend="llamacpp", path=str(gemma_path), mode="chat"))
    meta_has_template = "tokenizer.chat_template" in b.metadata
    if meta_has_template:
        pytest.skip("this Gemma GGUF carries a chat template")
    with pytest.raises(BackendUnavailable, match="mode: completion"):
        asyncio.run(b.preflight())


def test_unknown_bundled_alias():
    b = build_backend(ModelSpec(name="x", backend="llamacpp", bundled="llama-405b"))
    with pytest.raises(BackendUnavailable, match="unknown bundled model 'llama-405b'"):
        asyncio.run(b.preflight())


def test_manifest_names_the_llama_cpp_build():
    m = build_backend(ModelSpec(name="s", backend="llamacpp", bundled="smollm2-135m")).manifest()
    assert m["llama_cpp"] and "CPU" in m["llama_cpp_system_info"]
