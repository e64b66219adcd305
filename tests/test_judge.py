import asyncio
import json

import pytest
from typer.testing import CliRunner

from weighbridge.cli import app
from weighbridge.core.config import load_config
from weighbridge.eval.engine import run_bakeoff
from weighbridge.eval.rescore import rescore_run
from weighbridge.core.errors import ConfigError
from weighbridge.scorers.judge import pairwise
from weighbridge.storage.store import Store
from weighbridge.analysis.summary import summarise_run

from .conftest import write
from .fake_upstream import FakeUpstream, chunk

runner = CliRunner()

CASES = """
- id: capital
  prompt: What is the capital of France?
  scorers:
    - {type: judge, rubric: "Pass if the answer names Paris as the capital of France."}
- id: hello
  prompt: Say hello.
  scorers:
    - {type: contains, value: hello}
    - {type: judge, rubric: "Pass if the answer is a friendly greeting."}
"""


def local_judge_config(tmp_path):
    write(tmp_path / "cases.yaml", CASES)
    return load_config(write(tmp_path / "weighbridge.yaml", """
models:
  - {name: smol, backend: llamacpp, bundled: smollm2-135m, n_threads: 2, params: {max_tokens: 24}}
judges:
  - {name: grader, backend: llamacpp, bundled: smollm2-135m, n_threads: 2}
suites: [cases.yaml]
"""))


def test_local_judge_gives_grammar_constrained_verdicts_cached_and_rescored(tmp_path):
    cfg = local_judge_config(tmp_path)
    store = Store(tmp_path / "wb.db")
    stats = asyncio.run(run_bakeoff(cfg, store))
    s = summarise_run(store, stats.run_id)
    judged = [(sc, r) for r in s.rows for name, sc in r.scores if name == "judge"]
    assert len(judged) == 2
    for sc, _ in judged:  # the grammar makes every reply a parseable verdict
        assert sc.reason.startswith("judge:") and sc.value in (0.0, 1.0)
    assert any("smollm" in w for w in s.run["manifest"]["warnings"])  # judge and candidate share a family
    # re-scoring calls no candidate, and cached verdicts call no judge either
    r = asyncio.run(rescore_run(cfg, store, stats.run_id))
    assert (r.done, r.changed, r.judges.calls, r.judges.cache_hits, r.version) == (2, [], 0, 2, 2)
    r = asyncio.run(rescore_run(cfg, store, stats.run_id, use_cache=False))
    assert r.judges.calls == 2 and r.version == 3
    after = summarise_run(store, stats.run_id)
    assert [r.generation.text for r in after.rows] == [r.generation.text for r in s.rows]


def test_judge_scorer_needs_a_judge(tmp_path):
    write(tmp_path / "cases.yaml", CASES)
    cfg = load_config(write(tmp_path / "w.yaml", "models:\n  - {name: smol, backend: llamacpp, bundled: smollm2-135m}\n"
                                                 "suites: [cases.yaml]\n"))
    with pytest.raises(ConfigError, match="no judges"):
        asyncio.run(run_bakeoff(cfg, Store(tmp_path / "wb.db")))
    with pytest.raises(ConfigError, match="share the name"):
        load_config(write(tmp_path / "x.yaml", "models:\n  - {name: a, backend: llamacpp, bundled: smollm2-135m}\n"
                                               "judges:\n  - {name: a, backend: llamacpp, bundled: smollm2-135m}\n"))


def _judge_reply(h, content: str) -> None:
    h.start_stream()
    h.event(chunk(content))
    h.event(chunk(finish="stop"))
    h.event("[DONE]")


def served_judge_config(tmp_path, base_url):
    write(tmp_path / "cases.yaml", CASES)
    return load_config(write(tmp_path / "weighbridge.yaml", f"""
models:
  - {{name: smol, backend: llamacpp, bundled: smollm2-135m, n_threads: 2, params: {{max_tokens: 16}}}}
judges:
  - {{name: grader, backend: openai, base_url: "{base_url}", model: judge-model, max_retries: 0}}
suites: [cases.yaml]
"""))


def test_fake_upstream_judge_gets_a_schema_and_one_retry(tmp_path):
    def script(h, body, n):
        if len(body["messages"]) == 2:  # first try: prose instead of JSON
            _judge_reply(h, "I think it is fine.")
        else:  # the retry carries the reminder
            _judge_reply(h, json.dumps({"reason": "names Paris", "verdict": "pass"}))

    with FakeUpstream(script, models=["judge-model"]) as up:
        cfg = served_judge_config(tmp_path, up.base_url)
        stats = asyncio.run(run_bakeoff(cfg, Store(tmp_path / "wb.db")))
        bodies = list(up.posts)
    rf = bodies[0]["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["schema"]["properties"]["verdict"]["enum"] == ["pass", "fail"]
    retries = [b for b in bodies if len(b["messages"]) == 4]
    assert retries and "not a valid JSON object" in retries[0]["messages"][-1]["content"]
    s = summarise_run(Store(tmp_path / "wb.db"), stats.run_id)
    assert all(sc.passed and sc.reason == "judge: names Paris" for r in s.rows for n, sc in r.scores if n == "judge")


def test_fake_upstream_judge_that_never_answers_in_json_fails_the_check_with_a_reason(tmp_path):
    with FakeUpstream(lambda h, body, n: _judge_reply(h, "no JSON here"), models=["judge-model"]) as up:
        cfg = served_judge_config(tmp_path, up.base_url)
        stats = asyncio.run(run_bakeoff(cfg, Store(tmp_path / "wb.db")))
    s = summarise_run(Store(tmp_path / "wb.db"), stats.run_id)
    reasons = [sc.reason for r in s.rows for n, sc in r.scores if n == "judge"]
    assert reasons and all("not a valid verdict after one retry" in x for x in reasons)
    assert not any(r.passed for r in s.rows if r.case_id == "capital")


class ScriptedJudge:
    """A judge stand-in with a fixed preference, to pin down the both-orders logic exactly."""

    def __init__(self, pick):
        self.pick = pick

    async def call(self, judge, request):
        from weighbridge.backends.base import Generation
        text = request.messages[-1]["content"]
        winner = self.pick(text)
        return Generation(text=json.dumps({"reason": "r", "winner": winner}), finish_reason="stop", prompt_tokens=1,
                          completion_tokens=1, token_source="server", latency_ms=1, ttft_ms=1, decode_ms=0)


def test_pairwise_tie_when_the_verdict_follows_the_order():
    msgs = [{"role": "user", "content": "Capital of France?"}]
    always_a = ScriptedJudge(lambda text: "A")
    r = asyncio.run(pairwise(always_a, None, "c", msgs, "rubric", "m1", "Paris", "m2", "Lyon"))
    assert r.winner == "tie" and r.position_bias
    content_based = ScriptedJudge(lambda text: "A" if text.index("Paris") < text.index("Lyon") else "B")
    r = asyncio.run(pairwise(content_based, None, "c", msgs, "rubric", "m1", "Paris", "m2", "Lyon"))
    assert r.winner == "m1" and not r.position_bias and (r.order_ab, r.order_ba) == ("A", "B")


def test_cli_rescore_and_pairwise(tmp_path):
    local_judge_config(tmp_path)  # writes the cases and config this test extends
    cfg_path = tmp_path / "weighbridge.yaml"
    write(cfg_path, cfg_path.read_text().replace("models:\n", "models:\n  - {name: smol2, backend: llamacpp, "
                                                               "bundled: smollm2-135m, n_threads: 2, "
                                                               "params: {max_tokens: 4}}\n"))
    assert runner.invoke(app, ["bakeoff", "-c", str(cfg_path)]).exit_code == 0
    r = runner.invoke(app, ["rescore", "-c", str(cfg_path)])
    assert r.exit_code == 0 and "no candidate model was called" in " ".join(r.output.split())
    out = tmp_path / "pw.json"
    r = runner.invoke(app, ["pairwise", "-c", str(cfg_path), "--a", "smol", "--b", "smol2", "--json", str(out)])
    assert r.exit_code == 0 and "both orders" in " ".join(r.output.split())
    results = json.loads(out.read_text())
    assert {x["case_id"] for x in results} == {"capital", "hello"}
    assert all(x["winner"] in ("smol", "smol2", "tie") for x in results)
