"""Answers of one in-process model decoded together (llama_batch, llama_sched), on the real engine."""

import asyncio
import json

import pytest

from weighbridge.analysis.cost import concurrency_used
from weighbridge.backends import Request, build_backend
from weighbridge.backends import llama_sched
from weighbridge.backends.llama_batch import choose_size
from weighbridge.backends.llama_sched import kv_bytes_per_cell
from weighbridge.core.config import ModelSpec
from weighbridge.core.gguf import read_metadata

PROMPTS = ["Name a colour.", "What is 2 + 2?", "Say hello in French.", "Name a planet.", "Count from 1 to 5.",
           "What is the capital of Italy?"]


def _ask(spec: ModelSpec, requests: list[Request]):
    b = build_backend(spec)

    async def go():
        await b.preflight()
        out = await asyncio.gather(*(b.generate(r) for r in requests), return_exceptions=True)
        facts = b.runtime_facts()
        await b.aclose()
        return out, facts

    out, facts = asyncio.run(go())
    return b, out, facts


def _chat(text: str, **kw) -> Request:
    return Request(messages=[{"role": "user", "content": text}], **kw)


def test_answers_decoded_together_keep_their_own_limits_and_timings():
    spec = ModelSpec(name="smol", backend="llamacpp", bundled="smollm2-135m", n_threads=2, batch=4)
    reqs = [_chat(p, max_tokens=24) for p in PROMPTS]
    reqs.append(_chat("Count from 1 to 20, one number per line.", max_tokens=64, stop=["7"]))
    reqs.append(_chat("Write a long story about a cat.", max_tokens=5))
    b, out, facts = _ask(spec, reqs)
    assert not [g for g in out if isinstance(g, BaseException)]
    for g in out:
        assert g.finish_reason in ("stop", "length") and 0 < g.ttft_ms <= g.latency_ms
    counted, short = out[-2], out[-1]
    assert "7" not in counted.text and counted.finish_reason == "stop"  # cut before its own stop string
    assert short.finish_reason == "length" and short.completion_tokens <= 5
    batch = facts["batch"]
    assert batch["size"] == 4 and batch["chosen_by"] == "config" and batch["answers"] == len(reqs)
    assert 1 < batch["mean_sequences"] <= 4  # they really shared steps
    assert b.calls == len(reqs)


def test_batched_greedy_answers_match_one_at_a_time_or_the_difference_is_numeric():
    """At temperature 0 each answer is the model's greedy one: the same prompts one at a time (the
    own loop) and together must give the same answers, except where batched arithmetic flips a near
    tie - which the bench counts; here all but at most one of six must agree exactly."""
    reqs = [_chat(p, max_tokens=24) for p in PROMPTS]
    _, alone, _ = _ask(ModelSpec(name="smol", backend="llamacpp", bundled="smollm2-135m", n_threads=2, batch=1), reqs)
    _, together, facts = _ask(ModelSpec(name="smol", backend="llamacpp", bundled="smollm2-135m", n_threads=2,
                                        batch=6), reqs)
    same = sum(a.text == t.text for a, t in zip(alone, together))
    assert same >= len(reqs) - 1, [(a.text, t.text) for a, t in zip(alone, together)]
    assert facts["batch"]["size"] == 6


def test_batch_one_decodes_through_the_single_answer_loop():
    spec = ModelSpec(name="smol", backend="llamacpp", bundled="smollm2-135m", n_threads=2, batch=1)
    b, out, facts = _ask(spec, [_chat("Name a colour.", max_tokens=8)])
    assert not b.batches and "batch" not in facts and out[0].text


def test_a_schema_and_a_thinking_budget_beside_batched_answers():
    """A grammar is part of each sequence's own sampler; a thinking budget decodes alone."""
    spec = ModelSpec(name="qwen", backend="llamacpp", bundled="qwen2.5-coder-0.5b", n_threads=2, batch=4)
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    reqs = [_chat("Give a person's name as JSON.", max_tokens=32, json_schema=schema),
            _chat("Name a colour.", max_tokens=16),
            _chat("What is 3 + 4? Think first.", max_tokens=48, thinking="on", thinking_budget=8)]
    _, out, facts = _ask(spec, reqs)
    assert not [g for g in out if isinstance(g, BaseException)]
    assert "name" in json.loads(out[0].text)
    assert out[2].raw["thinking_budget"]["budget"] == 8
    assert facts["batch"]["answers"] == 2  # the budgeted one did not join the batch


def test_a_cancelled_answer_leaves_the_batch_and_the_next_ones_still_run():
    spec = ModelSpec(name="smol", backend="llamacpp", bundled="smollm2-135m", n_threads=2, batch=4)
    b = build_backend(spec)

    async def go():
        await b.preflight()
        long = asyncio.ensure_future(b.generate(_chat("Write a very long story.", max_tokens=2000)))
        await asyncio.sleep(1.0)
        long.cancel()
        with pytest.raises(asyncio.CancelledError):
            await long
        t0 = asyncio.get_running_loop().time()
        after = await b.generate(_chat("Name a colour.", max_tokens=8))
        waited = asyncio.get_running_loop().time() - t0
        await b.aclose()
        return after, waited

    after, waited = asyncio.run(go())
    assert after.text and waited < 10  # 2,000 tokens of the cancelled answer were not decoded first


def test_auto_measures_and_stays_within_the_memory(monkeypatch):
    llama_sched._rates_file().unlink(missing_ok=True)
    spec = ModelSpec(name="smol", backend="llamacpp", bundled="smollm2-135m", n_threads=2)
    probe = build_backend(spec)
    per_seq = kv_bytes_per_cell(probe.metadata) * spec.n_ctx
    monkeypatch.setattr(llama_sched, "available_memory", lambda: per_seq * 4 * 2)  # room for two answers' caches
    _, out, facts = _ask(spec, [_chat(p, max_tokens=8) for p in PROMPTS[:3]])
    batch = facts["batch"]
    assert batch["memory_cap"] == 2 and set(batch["tokens_per_s"]) == {"1", "2"} and batch["size"] <= 2
    assert batch["chosen_by"] == "measured" and batch["calibration_seconds"] > 0
    assert batch["measurement_reused"] is False
    _, _, again = _ask(spec, [_chat("Name a colour.", max_tokens=4)])  # a later run on this machine
    assert again["batch"]["measurement_reused"] is True and again["batch"]["measured_at"] == batch["measured_at"]
    assert again["batch"]["tokens_per_s"] == batch["tokens_per_s"]


def test_a_batch_size_measured_on_a_busy_machine_is_marked_and_not_kept_for_later_runs(monkeypatch):
    """The measurement behind ``batch: auto`` is reused for a week; one taken while other processes
    held the CPUs would carry its wrong choice into quiet runs unmarked. A real CPU hog on every core."""
    from .test_honest_figures import cpu_hog

    path = llama_sched._rates_file()
    path.unlink(missing_ok=True)
    spec = ModelSpec(name="smol", backend="llamacpp", bundled="smollm2-135m", n_threads=2)
    probe = build_backend(spec)
    monkeypatch.setattr(llama_sched, "available_memory",
                        lambda: kv_bytes_per_cell(probe.metadata) * spec.n_ctx * 4 * 2)  # sizes 1 and 2 only
    with cpu_hog(60):
        _, _, busy = _ask(spec, [_chat("Name a colour.", max_tokens=4)])
    assert busy["batch"]["measured_busy"].startswith("measured on a busy machine")
    assert busy["batch"]["measurement_reused"] is False and not path.exists()  # not kept
    _, _, quiet = _ask(spec, [_chat("Name a colour.", max_tokens=4)])
    assert "measured_busy" not in quiet["batch"] and quiet["batch"]["measurement_reused"] is False
    _, _, later = _ask(spec, [_chat("Name a colour.", max_tokens=4)])
    assert later["batch"]["measurement_reused"] is True and "measured_busy" not in later["batch"]


@pytest.mark.parametrize("damage", ["{not json", '{"k": 1}', "[1, 2]", "BAD-RATES"])
def test_a_damaged_or_forged_measurement_file_is_measured_again(monkeypatch, damage):
    spec = ModelSpec(name="smol", backend="llamacpp", bundled="smollm2-135m", n_threads=2)
    probe = build_backend(spec)
    monkeypatch.setattr(llama_sched, "available_memory",
                        lambda: kv_bytes_per_cell(probe.metadata) * spec.n_ctx * 4 * 2)
    path = llama_sched._rates_file()
    _ask(spec, [_chat("Name a colour.", max_tokens=4)])  # a measurement to forge
    data = json.loads(path.read_text())
    if damage == "BAD-RATES":  # a size no one measures, a negative and a non-finite rate
        for entry in data.values():
            entry["rates"] = {"3": 10.0, "1": -5.0, "2": "NaN"}
        path.write_text(json.dumps(data))
    else:
        path.write_text(damage)
    _, _, facts = _ask(spec, [_chat("Name a colour.", max_tokens=4)])
    assert facts["batch"]["measurement_reused"] is False and set(facts["batch"]["tokens_per_s"]) == {"1", "2"}


def test_kv_bytes_from_the_gguf_header():
    from weighbridge.backends.bundled import resolve_bundled

    meta = read_metadata(resolve_bundled("smollm2-135m", "smol"))
    assert kv_bytes_per_cell(meta) == 30 * 3 * (64 + 64) * 2  # layers × kv heads × (k + v dims) × f16
    assert kv_bytes_per_cell({"general.architecture": "x"}) == 0  # a header that does not say: no cap
    assert kv_bytes_per_cell({"general.architecture": "x", "x.block_count": -3, "x.attention.head_count": True}) == 0


def test_choose_size_keeps_the_largest_that_still_gains():
    assert choose_size({1: 100, 2: 90, 4: 130, 8: 200, 16: 210}) == 8  # 16 gains 5%: not worth its memory
    assert choose_size({1: 100, 2: 95, 4: 105}) == 1
    assert choose_size({1: 60, 2: 50, 4: 80, 8: 120, 16: 200}) == 16


def test_hardware_cost_divides_by_the_answers_really_in_the_batch():
    runtime = {"batch": {"size": 16, "mean_sequences": 9.5}, "peak_in_flight": 16}
    used, why = concurrency_used({"concurrency": {"m": "batch"}}, "m", runtime)
    assert used == 9.5 and "decoded together" in why and "16" in why
    used, why = concurrency_used({"concurrency": {"m": "batch"}}, "m", None)  # every answer from the cache
    assert used == 1.0 and why.endswith("an upper bound")
    used, _ = concurrency_used({"concurrency": {"m": "batch"}}, "m", {"batch": {"mean_sequences": float("nan")}})
    assert used == 1.0  # a stored figure that is not a number is not believed


def test_batch_belongs_to_llamacpp_models():
    with pytest.raises(ValueError, match="belongs to llamacpp"):
        ModelSpec(name="s", backend="openai", base_url="http://127.0.0.1:1/v1", model="m", batch=4)
    with pytest.raises(ValueError, match="auto or 1 to 256"):
        ModelSpec(name="s", backend="llamacpp", bundled="smollm2-135m", batch=0)
    assert ModelSpec(name="s", backend="llamacpp", bundled="smollm2-135m", batch=4).effective_concurrency == 4
    assert ModelSpec(name="s", backend="llamacpp", bundled="smollm2-135m", batch=4,
                     concurrency=2).effective_concurrency == 2


def test_slots_hold_what_the_answers_need_and_grow_when_a_longer_one_comes():
    """Cells per answer are the next power of two of prompt + max_tokens (512 at least), not n_ctx:
    the batch's memory is slots × cells. A longer answer waits for the batch to finish, then a larger
    one is made."""
    spec = ModelSpec(name="smol", backend="llamacpp", bundled="smollm2-135m", n_threads=2, batch=2)
    b = build_backend(spec)

    async def go():
        await b.preflight()
        short = await b.generate(_chat("Name a colour.", max_tokens=8))
        small = b.runtime_facts()["batch"]
        both = await asyncio.gather(b.generate(_chat("Name a colour.", max_tokens=8)),
                                    b.generate(_chat("Tell a long story.", max_tokens=900)))
        grown = b.runtime_facts()["batch"]
        await b.aclose()
        return short, small, both, grown

    short, small, both, grown = asyncio.run(go())
    per_cell = kv_bytes_per_cell(b.metadata)
    assert small["cells_per_answer"] == 512 and small["kv_cache_bytes_estimate"] == per_cell * 512 * 2
    assert grown["cells_per_answer"] == 1024 and grown["answers"] == 3
    assert short.text and all(g.text for g in both) and both[1].completion_tokens > 8


def test_answers_decoded_together_are_cached_apart_from_answers_decoded_one_at_a_time():
    """Batched arithmetic can flip a greedy choice, so a run pinned to ``batch: 1`` for a reproducible
    comparison must not be handed answers a batched run left in the response cache (nor the reverse)."""
    def ident(batch):
        return build_backend(ModelSpec(name="smol", backend="llamacpp", bundled="smollm2-135m", batch=batch)).identity()

    alone, together, auto = ident(1), ident(4), ident("auto")
    assert "decoding" not in alone  # one at a time keeps the identity (and the cache) it had before batching
    assert together["decoding"] == auto["decoding"] == "batched"
    assert together != alone
