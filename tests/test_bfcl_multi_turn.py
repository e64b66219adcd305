"""`bfcl:multi_turn_*` through the agent loop, its verdicts held against BFCL's own multi-turn checker
case by case. Each answer is played by a scripted model (fake, named so) through the real loop
against BFCL's environments in the sandbox and scored by the ``agent`` scorer's ``rules: bfcl``; the
same calls go, as BFCL's decoded strings, to ``multi_turn_checker`` - which executes them with
``eval``, so it too runs inside bubblewrap, in an environment whose only job is to run it. Answers:
the ground truth (in one step a turn, or one call a step), a turn's calls left out, an argument
changed, a turn's calls made a turn late, the first call of each turn made twice - and the calls the
bundled Qwen made in 12 real episodes (tests/data/bfcl-multi-turn-qwen.jsonl: recorded 2026-12-04 by
`weighbridge bakeoff -c examples/bfcl.yaml`, bfcl:multi_turn_base[:4], three trials at temperature 0.7)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from weighbridge.backends.toolcalls import make_call
from weighbridge.core.types import Generation, Request, Timings
from weighbridge.eval.agent.job import gold_states, run_agent_job
from weighbridge.eval.agent.sandboxed import SandboxedEnvironment
from weighbridge.scorers import build_scorer
from weighbridge.suites import load_suite
from weighbridge.suites.agent_case import installed_library

pytestmark = pytest.mark.usefixtures("need_bubblewrap")
RECORDED = Path(__file__).parent / "data" / "bfcl-multi-turn-qwen.jsonl"

CHECKER = '''
LIBRARIES = ["bfcl_eval", "mpmath"]


class Reference:
    def load_state(self, state):
        from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import multi_turn_checker

        self.verdicts = []
        for job in state["jobs"]:
            result = multi_turn_checker(job["decoded"], job["ground_truth"], job["entry"], job["category"],
                                        "weighbridge_" + str(len(self.verdicts)))
            self.verdicts.append(bool(result["valid"]))

    def state(self):
        return {"verdicts": self.verdicts}
'''


class ScriptedPlayer:
    """A scripted model (fake, named so): at user turn t it plays steps[t] one by one, then answers."""

    def __init__(self, steps: list[list[list[dict]]]):
        self.steps = steps

    async def generate(self, request: Request) -> Generation:
        t = Timings(sent=time.perf_counter_ns())
        t.mark_token()
        t.done = time.perf_counter_ns()
        msgs = request.messages or []
        turn = sum(1 for m in msgs if m["role"] == "user") - 1
        since_user = len(msgs) - max(i for i, m in enumerate(msgs) if m["role"] == "user") - 1
        step = sum(1 for m in msgs[len(msgs) - since_user:] if m["role"] == "assistant")
        plan = self.steps[turn] if turn < len(self.steps) else []
        if step < len(plan) and plan[step]:
            calls = [make_call(f"c{turn}_{step}_{i}", c["name"], json.dumps(c["arguments"])) for i, c in
                     enumerate(plan[step])]
            return Generation.from_timings(t, text="", finish_reason="tool_calls", prompt_tokens=10,
                                           completion_tokens=5, token_source="engine", tool_calls=calls)
        return Generation.from_timings(t, text="Done.", finish_reason="stop", prompt_tokens=10, completion_tokens=1,
                                       token_source="engine")


def as_string(call: dict) -> str:
    return f"{call['name']}({', '.join(f'{k}={v!r}' for k, v in call['arguments'].items())})"


def variants(gold: list[list[dict]]) -> list[tuple[str, list[list[list[dict]]]]]:
    """(label, steps per turn, each step a list of calls) built from the gold calls."""
    out = [("gold, one step a turn", [[turn] if turn else [] for turn in gold]),
           ("gold, one call a step", [[[c] for c in turn] for turn in gold])]
    last = max((i for i, turn in enumerate(gold) if turn), default=None)
    if last is not None:
        out.append(("a turn's calls left out", [[turn] if turn and i != last else [] for i, turn in enumerate(gold)]))
        changed = [[dict(c) for c in turn] for turn in gold]
        for turn in changed:
            for c in turn:
                key = next((k for k, v in c["arguments"].items() if isinstance(v, str)), None)
                if key:
                    c["arguments"] = {**c["arguments"], key: c["arguments"][key] + "_x"}
                    break
            else:
                continue
            break
        out.append(("an argument changed", [[turn] if turn else [] for turn in changed]))
        first = next(i for i, turn in enumerate(gold) if turn)
        if first + 1 < len(gold):
            late = [list(turn) for turn in gold]
            late[first + 1] = late[first] + late[first + 1]
            late[first] = []
            out.append(("a turn's calls a turn late", [[turn] if turn else [] for turn in late]))
        out.append(("each turn's first call twice", [[turn[:1] + turn] if turn else [] for turn in gold]))
    return out


def reference_verdicts(jobs: list[dict]) -> list[bool]:
    libraries = {name: where for name, where, _ in (installed_library(n, "the checker") for n in ("bfcl_eval", "mpmath"))}
    with SandboxedEnvironment(CHECKER, "Reference", {"jobs": jobs}, libraries=libraries, call_timeout_s=120,
                              start_timeout_s=300, max_result_bytes=1 << 22, memory_mb=2048) as env:
        return list(env.state()["verdicts"])


@pytest.mark.slow
def test_verdicts_agree_with_bfcls_multi_turn_checker_case_by_case():
    from weighbridge.suites.bfcl import _data, _lines

    cases = [*load_suite("bfcl:multi_turn_base[:12]").cases, *load_suite("bfcl:multi_turn_miss_param[:6]").cases,
             *load_suite("bfcl:multi_turn_miss_func[:6]").cases, *load_suite("bfcl:multi_turn_long_context[:3]").cases]
    entries = {}
    truths = {}
    for category in ("multi_turn_base", "multi_turn_miss_param", "multi_turn_miss_func", "multi_turn_long_context"):
        entries.update({e["id"]: e for e in _lines(_data(f"BFCL_v4_{category}.json"))})
        truths.update({a["id"]: a["ground_truth"] for a in _lines(_data(f"possible_answer/BFCL_v4_{category}.json"))})
    scorer = build_scorer({"type": "agent", "rules": "bfcl"})
    qwen = [json.loads(line) for line in RECORDED.read_text(encoding="utf-8").splitlines()]
    ours, jobs, labels = [], [], []

    async def play():
        for case in cases:
            gold = await gold_states(case, "bubblewrap")
            plan = [[c.model_dump(exclude={"fails"}) for c in turn] for turn in case.gold]
            recorded = [(f"qwen, trial {r['trial']}", r["steps"]) for r in qwen if r["case_id"] == case.id]
            for label, steps in variants(plan) + recorded:
                gen = await run_agent_job(ScriptedPlayer(steps), case, Request(max_tokens=64), gold, "bubblewrap")
                ours.append((await scorer.evaluate(case, gen, None)).passed)
                entry = {k: v for k, v in entries[case.id].items() if k != "function"}
                jobs.append({"decoded": [[[as_string(c) for c in step] for step in turn if step] for turn in steps],
                             "ground_truth": truths[case.id], "entry": entry, "category": case.workload[5:]})
                labels.append((case.id, label))

    asyncio.run(play())
    theirs = reference_verdicts(jobs)
    disagree = [(lab, a, b) for lab, a, b in zip(labels, ours, theirs) if a != b]
    print(f"{len(ours)} answers, {sum(ours)} passed")
    assert disagree == [] and len(ours) >= 150 and sum(1 for _, label in labels if label.startswith("qwen")) == 12
    assert sum(ours) >= len(cases)  # each gold answer at least passes
