import asyncio
import json
import sqlite3
import time

import pytest

from weighbridge.core.config import load_config
from weighbridge.eval.engine import Bakeoff, run_bakeoff
from weighbridge.core.errors import BackendUnavailable, WeighbridgeError
from weighbridge.storage.store import Store
from weighbridge.analysis.summary import summarise_run

from .conftest import free_port, smol_project, write
from .fake_upstream import FakeUpstream, ok_stream

CASES = """
- id: add
  prompt: What is 2 + 2? Reply with the number only.
  expected: 4
  scorers: [numeric]
- id: hello
  prompt: Say hello.
  scorers: [{type: contains, value: hello}]
- id: json
  prompt: 'Reply with the JSON object {"ok": true} and nothing else.'
  scorers: [{type: json_schema, fields: {ok: true}}]
"""


def smol_config(tmp_path, max_tokens=32, extra=""):
    return load_config(smol_project(tmp_path, CASES, max_tokens, extra, price="{gpu_hour_usd: 2.0}"))


def bake(cfg, store, **kw):
    b = Bakeoff(cfg, store, **kw)

    async def go():
        await b.prepare()
        run_id = b.create_run()
        return run_id, await b.run(run_id)

    run_id, stats = asyncio.run(go())
    return b, run_id, stats


def test_rerun_of_unchanged_bakeoff_makes_no_model_calls(tmp_path):
    cfg = smol_config(tmp_path)
    store = Store(tmp_path / "wb.db")
    first, run1, s1 = bake(cfg, store)
    assert s1.model_calls == 3 and s1.cache_hits == 0
    second, run2, s2 = bake(cfg, store)
    assert s2.model_calls == 0 and s2.cache_hits == 3
    assert second.backends["smol"]._llama is None  # the model was never even loaded
    a, b = summarise_run(store, run1), summarise_run(store, run2)
    # (stored as they finish: answers decoded together finish in their own order)
    assert {r.key: r.generation.text for r in a.rows} == {r.key: r.generation.text for r in b.rows}
    assert b.models[0].cached == 3 and a.models[0].cached == 0
    # cached answers keep the latency measured when they were made
    assert b.models[0].latency_mean_ms == a.models[0].latency_mean_ms


def test_changed_params_miss_the_cache(tmp_path):
    store = Store(tmp_path / "wb.db")
    bake(smol_config(tmp_path, max_tokens=32), store)
    _, _, stats = bake(smol_config(tmp_path, max_tokens=20), store)
    assert stats.model_calls == 3


def test_no_cache_calls_the_model_again(tmp_path):
    cfg = smol_config(tmp_path)
    store = Store(tmp_path / "wb.db")
    bake(cfg, store)
    _, _, stats = bake(cfg, store, use_cache=False)
    assert stats.model_calls == 3 and stats.cache_hits == 0


def test_run_rows_manifest_and_summary(tmp_path):
    cfg = smol_config(tmp_path)
    store = Store(tmp_path / "wb.db")
    _, run_id, _ = bake(cfg, store)
    s = summarise_run(store, run_id)
    m = s.run["manifest"]["models"]["smol"]
    assert len(m["sha256"]) == 64 and m["chat_template_sha256"] and m["llama_cpp_python"]
    assert s.run["manifest"]["machine"]["cpu_count"] >= 1
    assert s.run["status"] == "finished" and len(s.rows) == 3
    ms = s.models[0]
    assert ms.jobs == 3 and 0 <= ms.passed <= 3 and ms.ci95[0] <= ms.pass_rate <= ms.ci95[1]
    assert ms.cost.basis == "gpu_hour" and ms.cost.total_usd > 0
    if ms.passed:
        assert ms.cost.per_success_usd == pytest.approx(ms.cost.total_usd / ms.passed)
    busy_h = sum(r.generation.latency_ms for r in s.rows) / 1000 / 3600
    together = ms.runtime["batch"]["mean_sequences"]  # the answers llama.cpp decoded at once, on average
    assert 1 <= together <= 3 and ms.cost.total_usd == pytest.approx(2.0 * busy_h / together)
    db = sqlite3.connect(tmp_path / "wb.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 3


def test_unreachable_endpoint_leaves_no_run_behind(tmp_path):
    cfg = smol_config(tmp_path, extra=f"""  - name: gone
    backend: openai
    base_url: http://127.0.0.1:{free_port()}/v1
    model: x
    connect_timeout_s: 2
""")
    store = Store(tmp_path / "wb.db")
    with pytest.raises(BackendUnavailable, match="model 'gone'"):
        asyncio.run(run_bakeoff(cfg, store))
    assert store.runs() == []


def test_missing_gguf_leaves_no_run_behind(tmp_path):
    cfg = smol_config(tmp_path, extra="  - {name: lost, backend: llamacpp, path: nowhere.gguf}\n")
    store = Store(tmp_path / "wb.db")
    with pytest.raises(BackendUnavailable, match="GGUF file not found"):
        asyncio.run(run_bakeoff(cfg, store))
    assert store.runs() == []


def test_fake_upstream_failing_case_is_recorded_and_the_run_finishes(tmp_path):
    def script(h, body, n):
        if "hello" in json.dumps(body["messages"]):
            h.send_json(500, {"error": "boom"})
        else:
            ok_stream(h, ["4"], usage={"prompt_tokens": 3, "completion_tokens": 1})

    with FakeUpstream(script, models=["m"]) as up:
        write(tmp_path / "cases.yaml", CASES)
        cfg = load_config(write(tmp_path / "w.yaml", f"""
models:
  - {{name: api, backend: openai, base_url: "{up.base_url}", model: m, max_retries: 1,
      price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}}}
suites: [cases.yaml]
"""))
        store = Store(tmp_path / "wb.db")
        stats = asyncio.run(run_bakeoff(cfg, store))
    assert stats.errors == 1
    s = summarise_run(store, stats.run_id)
    m = s.models[0]
    assert s.run["status"] == "finished" and m.errors == 1 and m.error_kinds == {"http_500": 1}
    assert m.passed == 1 and m.jobs == 3  # the error counts as a failure
    assert m.token_sources == ["server"] and m.cost.total_usd == pytest.approx((2 * 3 * 1.0 + 2 * 1 * 2.0) / 1e6)
    # a resume retries only the failed job
    assert store.done_jobs(stats.run_id) == {("api", "add", 0), ("api", "json", 0)}


def test_resume_refuses_a_changed_suite(tmp_path):
    cfg = smol_config(tmp_path)
    store = Store(tmp_path / "wb.db")
    _, run_id, _ = bake(cfg, store)
    store.set_status(run_id, "interrupted")
    write(tmp_path / "cases.yaml", CASES.replace("2 + 2", "3 + 3"))
    with pytest.raises(WeighbridgeError, match="different cases"):
        asyncio.run(run_bakeoff(load_config(tmp_path / "weighbridge.yaml"), store, resume=True))


def test_resume_with_nothing_to_resume(tmp_path):
    store = Store(tmp_path / "wb.db")
    with pytest.raises(WeighbridgeError, match="no unfinished run"):
        asyncio.run(run_bakeoff(smol_config(tmp_path), store, resume=True))


def test_samples_repeat_each_case(tmp_path):
    cfg = smol_config(tmp_path, max_tokens=8)
    cfg.samples = 2
    store = Store(tmp_path / "wb.db")
    _, run_id, stats = bake(cfg, store)
    assert stats.jobs_total == 6 and stats.model_calls == 6
    assert {r.sample for r in store.generations(run_id)} == {0, 1}


def test_auto_schedule_keeps_local_models_apart_and_remote_ones_parallel():
    from weighbridge.core.config import ModelSpec
    from weighbridge.eval.schedule import lanes

    specs = [ModelSpec(name="a", backend="llamacpp", bundled="x"),
             ModelSpec(name="b", backend="openai", base_url="http://127.0.0.1:8000/v1", model="m"),
             ModelSpec(name="c", backend="openai", base_url="https://api.example.com/v1", model="m"),
             ModelSpec(name="d", backend="openai", base_url="http://localhost:11434/v1", model="m")]
    assert lanes("auto", specs) == [["a", "b", "d"], ["c"]]
    assert lanes("sequential", specs) == [["a", "b", "c", "d"]]
    assert lanes("parallel", specs) == [["a"], ["b"], ["c"], ["d"]]


def test_fake_upstream_timing_sequential_lane_runs_one_model_at_a_time(tmp_path):
    """Two loopback 'servers' that each take 100 ms: in one lane they never overlap."""
    spans = []

    def script(h, body, n):
        start = time.perf_counter()
        time.sleep(0.1)
        ok_stream(h, ["4"])
        spans.append((body["model"], start, time.perf_counter()))

    with FakeUpstream(script, models=["one", "two"]) as up:
        write(tmp_path / "cases.yaml", CASES)
        cfg = load_config(write(tmp_path / "w.yaml", f"""
models:
  - {{name: one, backend: openai, base_url: "{up.base_url}", model: one, concurrency: 3}}
  - {{name: two, backend: openai, base_url: "{up.base_url}", model: two, concurrency: 3}}
suites: [cases.yaml]
"""))
        asyncio.run(run_bakeoff(cfg, Store(tmp_path / "wb.db")))
    one = [s for s in spans if s[0] == "one"]
    two = [s for s in spans if s[0] == "two"]
    assert len(one) == len(two) == 3
    assert max(e for _, _, e in one) <= min(b for _, b, _ in two)  # model two started after model one ended


def test_repeats_vary_with_temperature_and_give_pass_at_k(tmp_path):
    write(tmp_path / "cases.yaml", "- {id: story, prompt: 'Write one sentence about a dragon.', "
                                   "scorers: [{type: contains, value: dragon}]}\n"
                                   "- {id: color, prompt: 'Name a color.', scorers: [{type: regex, pattern: '(?i)red|blue|green'}]}\n")
    cfg = load_config(write(tmp_path / "w.yaml", "models:\n  - {name: smol, backend: llamacpp, bundled: smollm2-135m, "
                                                 "n_threads: 2, params: {temperature: 1.0, max_tokens: 24}}\n"
                                                 "suites: [cases.yaml]\nsamples: 3\n"))
    store = Store(tmp_path / "wb.db")
    stats = asyncio.run(run_bakeoff(cfg, store))
    s = summarise_run(store, stats.run_id)
    texts = {r.sample: r.generation.text for r in s.rows if r.case_id == "story"}
    assert len(set(texts.values())) > 1  # seed + sample index: the repeats differ
    m = s.models[0]
    assert m.samples == 3 and set(m.pass_at_k) == {"pass@1", "pass@3"}
    assert m.pass_at_k["pass@1"] == pytest.approx(m.pass_rate) and m.pass_at_k["pass@3"] >= m.pass_at_k["pass@1"]
    for cid in m.unstable_cases:
        assert len({r.passed for r in s.rows if r.case_id == cid}) == 2
    # the same config again is served from the cache, repeats included
    again = asyncio.run(run_bakeoff(cfg, store))
    assert again.model_calls == 0 and again.cache_hits == 6


class _CallsOnly:
    """A backend that writes only the calls (no BackendBase): a plugin's, or one a caller hands in."""

    name = "smol"

    def identity(self):
        return {"backend": "calls-only"}

    def manifest(self):
        return {"backend": "calls-only"}

    async def preflight(self):
        return None

    async def generate(self, request):
        from weighbridge.core.types import Generation, Timings

        t = Timings(sent=time.perf_counter_ns())
        t.mark_token()
        t.done = time.perf_counter_ns()
        return Generation.from_timings(t, text="4 hello {\"ok\": true}", finish_reason="stop", prompt_tokens=3,
                                       completion_tokens=5, token_source="engine")

    async def aclose(self):
        return None


def test_a_backend_handed_to_the_engine_that_declares_nothing_takes_the_defaults(tmp_path):
    cfg = smol_config(tmp_path)
    store = Store(tmp_path / "wb.db")
    _, run_id, _ = bake(cfg, store, backends={"smol": _CallsOnly()})
    summary = summarise_run(store, run_id)
    assert summary.models[0].jobs == 3 and summary.models[0].answered == 3  # ran, with no capability declared
