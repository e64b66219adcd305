"""builtin:tools: at least 40 cases covering single calls, choosing among functions, parallel
calls, nested arguments and requests no tool answers; each proven passable by a hand-written
reference answer (tests/data/tools_references.yaml), and failed by a wrong one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from weighbridge.backends.base import Generation
from weighbridge.backends.toolcalls import make_call
from weighbridge.eval.judging import score_answer
from weighbridge.scorers import build_scorer
from weighbridge.suites import load_suite

REFERENCES = Path(__file__).parent / "data" / "tools_references.yaml"


def _gen(text: str, calls: list[dict]) -> Generation:
    return Generation(text=text, finish_reason="stop", prompt_tokens=1, completion_tokens=1, token_source="none",
                      latency_ms=1.0, ttft_ms=1.0, decode_ms=0.0,
                      tool_calls=[make_call(f"c{i}", c["name"], c["arguments"]) for i, c in enumerate(calls)])


def _scores(case, gen):
    return asyncio.run(score_answer([build_scorer(s) for s in case.scorers], case, gen, None))


def test_the_suite_covers_each_kind_of_tool_use():
    suite = load_suite("builtin:tools")
    assert len(suite.cases) >= 40 and all(c.tools for c in suite.cases) and {c.workload for c in suite.cases} == {"tools"}
    kinds = {c.id.split("-")[1] for c in suite.cases}
    assert {"parallel", "nested", "none", "choose", "history"} <= kinds
    assert sum(1 for c in suite.cases if isinstance(c.expected, list) and len(c.expected) > 1) >= 8
    assert sum(1 for c in suite.cases if c.expected == "none") >= 8


def test_every_case_is_passed_by_its_reference_and_failed_by_a_wrong_answer():
    refs = yaml.safe_load(REFERENCES.read_text(encoding="utf-8"))
    suite = load_suite("builtin:tools")
    assert set(refs) == {c.id for c in suite.cases}
    for case in suite.cases:
        ref = refs[case.id]
        good = _scores(case, _gen(ref.get("text", ""), ref["calls"]))
        assert all(s.passed for _, s in good), (case.id, [s.reason for _, s in good])
        wrong_calls = [] if ref["calls"] else [{"name": case.tools[0].function["name"], "arguments": {}}]
        bad = _scores(case, _gen("I can't help with that.", wrong_calls))
        assert not all(s.passed for _, s in bad), case.id
