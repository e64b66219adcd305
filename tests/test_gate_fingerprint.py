"""The regression gate calls the models, and notices when the weights behind a served name change.

The scenario: a llama-cpp-python server answers for alias ``m`` with the bundled Qwen2.5-Coder; a
baseline is taken; the server is restarted on the same port with the same alias on another GGUF
(Gemma 3 270M, a base model: a stand-in for a bad weights upgrade). Before this was fixed, `check`
answered all 18 cases from the response cache and printed `ok`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from weighbridge.cli import app
from weighbridge.core.procs import stop

from .conftest import _start_llama_server, free_port, write

runner = CliRunner()
EASY = Path(__file__).parent / "data" / "easy_cases.yaml"


@pytest.fixture(scope="module")
def swap(tmp_path_factory):
    from weighbridge.backends.bundled import resolve_bundled

    tmp = tmp_path_factory.mktemp("swap")
    port = free_port()
    write(tmp / "cases.yaml", EASY.read_text())
    cfg = write(tmp / "wb.yaml", "models:\n  - {name: m, backend: openai, base_url: 'http://127.0.0.1:%d/v1', model: m,"
                                 " params: {max_tokens: 48}}\nsuites: [cases.yaml]\nstore: wb.db\n" % port)
    base, proc = _start_llama_server(resolve_bundled("qwen2.5-coder-0.5b", "q"), "m", tmp / "qwen.log", port)
    try:
        r = runner.invoke(app, ["bakeoff", "-c", str(cfg), "--json", str(tmp / "base.json")])
        assert r.exit_code == 0, r.output
        same = runner.invoke(app, ["check", "-c", str(cfg), "--baseline", str(tmp / "base.json"), "--allow-cache",
                                   "--json", str(tmp / "same.json")])
    finally:
        stop(proc)
    _, proc = _start_llama_server(resolve_bundled("gemma3-270m", "g"), "m", tmp / "gemma.log", port)
    yield tmp, cfg, same
    stop(proc)


def test_allow_cache_says_the_answers_came_from_the_cache(swap):
    tmp, _, same = swap
    assert same.exit_code == 0, same.output
    flat = " ".join(same.output.split())
    assert "--allow-cache: 18 of 18 answers came from the response cache" in flat
    cache = json.loads((tmp / "same.json").read_text())["cache"]
    assert cache == {"allowed": True, "answers": 18, "from_cache": 18, "model_calls": 0}
    fp = json.loads((tmp / "same.json").read_text())["comparisons"][0]["fingerprint"]
    assert fp["changed"] is False and fp["now"]["source"] == "llama-cpp-python probe"


def test_allow_cache_cannot_reuse_answers_of_other_weights(swap):
    tmp, cfg, _ = swap
    r = runner.invoke(app, ["check", "-c", str(cfg), "--baseline", str(tmp / "base.json"), "--allow-cache"])
    flat = " ".join(r.output.split())
    assert r.exit_code == 1, r.output
    assert "--allow-cache: 0 of 18 answers came from the response cache" in flat  # the fingerprint is in the key
    assert "the model behind m changed since the baseline" in flat


def test_check_calls_the_model_and_names_the_changed_weights(swap):
    tmp, cfg, _ = swap
    r = runner.invoke(app, ["check", "-c", str(cfg), "--baseline", str(tmp / "base.json"), "--json",
                            str(tmp / "now.json")])
    flat = " ".join(r.output.split())
    assert r.exit_code == 1, r.output  # the swapped model is a real regression, found by calling it
    assert "REGRESSION" in flat and "0 from cache" in flat
    assert "the model behind m changed since the baseline: llama-cpp-python probe: greedy" in flat
    assert "the gate called the model for all 18 answers" in flat
    out = json.loads((tmp / "now.json").read_text())
    assert out["cache"]["from_cache"] == 0 and out["comparisons"][0]["fingerprint"]["changed"] is True
