"""The tool_call scorer's cost per case, on builtin:tools with its hand-written reference answers
(the calls parsed, matched in any order, arguments checked one by one) and with wrong answers.

    python bench/tool_call_scorer.py [--rounds 200]

Goal (issue 13): < 0.2 ms per case. Median of five passes over the 47 cases × rounds, one thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import yaml

from weighbridge.backends.toolcalls import make_call
from weighbridge.scorers import build_scorer
from weighbridge.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    refs = yaml.safe_load((ROOT / "tests" / "data" / "tools_references.yaml").read_text(encoding="utf-8"))
    suite = load_suite("builtin:tools")
    jobs = []
    for case in suite.cases:
        scorer = next(build_scorer(s) for s in case.scorers if (s if isinstance(s, str) else s["type"]) == "tool_call")
        good = [make_call(f"c{i}", c["name"], c["arguments"]) for i, c in enumerate(refs[case.id]["calls"])]
        wrong = [make_call("w", case.tools[0].function["name"], '{"x": 1}')]
        jobs.append((scorer, case.expected, good, wrong))
    for label, pick in (("reference answers", 2), ("wrong answers", 3)):
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(args.rounds):
                for job in jobs:
                    job[0].score_calls(job[pick], job[1])
            runs.append((time.perf_counter() - t) * 1000 / (args.rounds * len(jobs)))
        ms = statistics.median(runs)
        print(f"tool_call scorer, {label:18} {ms:.4f} ms per case ({len(jobs)} cases × {args.rounds} rounds)   "
              f"goal < 0.2 ms {'met' if ms < 0.2 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
