"""Scores cached with the answers they judge: a re-run from the response cache scores nothing again
(model code is not run in the sandbox again), while a changed scorer, case, scorer code or a rescore
recomputes, and a reused sandbox time-out is counted and said. The backend
is a scripted one (it answers with fixed code at once): what is measured is the engine and the real
sandbox, not a model."""

from __future__ import annotations

import asyncio
import time

import pytest

from weighbridge.core.config import load_config
from weighbridge.storage.store import Store

from .conftest import write

ANSWER = "```python\ndef add(a, b):\n    return a + b\n\ndef slow():\n    while True:\n        pass\n```"


class _Scripted:
    name = "coder"
    calls = 0

    def identity(self):
        return {"backend": "scripted-coder"}

    def manifest(self):
        return {"backend": "scripted-coder"}

    async def preflight(self):
        return None

    async def generate(self, request):
        from weighbridge.core.types import Generation, Timings

        _Scripted.calls += 1
        t = Timings(sent=time.perf_counter_ns())
        t.mark_token()
        t.done = time.perf_counter_ns()
        return Generation.from_timings(t, text=ANSWER, finish_reason="stop", prompt_tokens=3, completion_tokens=30,
                                       token_source="engine")

    async def aclose(self):
        return None


def _project(tmp_path, tests: str = "assert add(2, 3) == 5"):
    write(tmp_path / "cases.yaml", f"""\
cases:
  - id: adds
    prompt: Write add(a, b).
    scorers: [{{type: python_tests, tests: "{tests}"}}]
  - id: loops
    prompt: Write slow().
    scorers: [{{type: python_tests, tests: "slow()", timeout_s: 1}}]
  - id: says
    prompt: Say def.
    scorers: [{{type: contains, value: "def add"}}]
""")
    write(tmp_path / "weighbridge.yaml", "models:\n  - {name: coder, backend: openai, base_url: 'http://127.0.0.1:9/v1', "
                                         "model: c}\nsuites: [cases.yaml]\n")
    return load_config(tmp_path / "weighbridge.yaml")


def _run(cfg, store, **kw):
    from weighbridge.eval.engine import Bakeoff

    b = Bakeoff(cfg, store, backends={"coder": _Scripted()}, **kw)

    async def go():
        await b.prepare()
        run_id = b.create_run()
        stats = await b.run(run_id)
        return run_id, stats

    return asyncio.run(go())


def _scores(store, run_id):
    return {r.case_id: [(n, s.passed, s.reason) for n, s in r.scores] for r in store.generations(run_id)}


@pytest.mark.usefixtures("need_bubblewrap")
def test_scripted_backend_a_cached_rerun_reuses_the_scores_and_a_changed_scorer_recomputes(tmp_path, monkeypatch):
    cfg = _project(tmp_path)
    store = Store(tmp_path / "wb.db")
    first, stats = _run(cfg, store)
    assert stats.model_calls == 3 and stats.score_cache_hits == 0
    assert _scores(store, first)["loops"][0][2].startswith("timed out after")  # decided by the clock

    t0 = time.perf_counter()
    again, stats = _run(cfg, store)
    rerun_s = time.perf_counter() - t0
    assert stats.model_calls == 0 and stats.cache_hits == 3
    assert stats.score_cache_hits == 3 and stats.score_cache_timeouts == 1  # the time-out reused, and counted
    assert _scores(store, again) == _scores(store, first)
    print(f"cached re-run with a 1 s sandbox timeout among its cases: {rerun_s:.2f} s")

    changed, stats = _run(_project(tmp_path, tests="assert add(2, 2) == 5"), store)
    assert stats.model_calls == 0 and stats.score_cache_hits == 2  # only 'adds' changed
    assert not _scores(store, changed)["adds"][0][1]

    from weighbridge.eval import score_cache

    monkeypatch.setattr(score_cache, "scorer_code_version", lambda: "other scorer code")
    _, stats = _run(cfg, store)
    assert stats.score_cache_hits == 0  # new scorer code: every answer is scored again

    _, stats = _run(cfg, store, use_cache=False)  # --no-cache (the gate): answers and scores from scratch
    assert stats.model_calls == 3 and stats.score_cache_hits == 0


@pytest.mark.usefixtures("need_bubblewrap")
def test_fake_upstream_bakeoff_says_how_many_scores_came_from_the_cache_and_rescore_never_reads_it(tmp_path):
    """The score cache is trusted like the response cache (the store is the user's own file): a row
    tampered to say "forged" is what a cached re-run reuses - proof it was reused - while `rescore`
    scores the answers again and a row that does not read as scores is a miss; reused time-outs are said."""
    import sqlite3

    from typer.testing import CliRunner

    from weighbridge.cli import app as cli

    from .fake_upstream import FakeUpstream, ok_stream

    runner = CliRunner()
    _project(tmp_path)
    with FakeUpstream(lambda h, body, n: ok_stream(h, [ANSWER])) as up:
        write(tmp_path / "weighbridge.yaml", f"models:\n  - {{name: coder, base_url: '{up.base_url}', model: fake-model}}"
                                             "\nsuites: [cases.yaml]\n")
        cfg = ["-c", str(tmp_path / "weighbridge.yaml")]
        first = runner.invoke(cli, ["bakeoff", *cfg])
        assert first.exit_code == 0 and "0 scores from cache" in " ".join(first.output.split()), first.output
        db = sqlite3.connect(tmp_path / "weighbridge.db")
        keys = [k for (k,) in db.execute("SELECT key FROM score_cache")]
        rows = db.execute("SELECT key, scores_json FROM score_cache").fetchall()
        assert len(rows) == 3
        others = [k for k, j in rows if "timed out after" not in j]
        db.execute("UPDATE score_cache SET scores_json = ? WHERE key = ?", ('[["exact", true, 1.0, "forged"]]', others[0]))
        db.execute("UPDATE score_cache SET scores_json = 'not json' WHERE key = ?", (others[1],))
        db.commit()
        again = runner.invoke(cli, ["bakeoff", *cfg])
    out = " ".join(again.output.split())
    assert again.exit_code == 0 and "0 model calls, 3 from cache" in out, out
    assert "2 scores from cache (1 of them sandbox time-outs: `weighbridge rescore` runs them again)" in out
    run_id = Store(tmp_path / "weighbridge.db").latest_run()
    reasons = [s.reason for r in Store(tmp_path / "weighbridge.db").generations(run_id) for _, s in r.scores]
    assert reasons.count("forged") == 1
    rescored = runner.invoke(cli, ["rescore", run_id, *cfg])
    assert rescored.exit_code == 0, rescored.output
    reasons = [s.reason for r in Store(tmp_path / "weighbridge.db").generations(run_id) for _, s in r.scores]
    assert "forged" not in reasons  # rescore judged the answers itself
