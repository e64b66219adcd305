"""How long builtin:long-context takes to build its cases: the generator alone and the whole suite
load (generation, validation as cases), at 128k tokens.

    python bench/long_context_build.py

Goal (issue 13): < 1 s for a 128k-token case. Median of five builds, one thread.
"""

from __future__ import annotations

import statistics
import sys
import time

from weighbridge.suites import load_suite
from weighbridge.suites.longcontext import generate, parse_options


def median_s(fn) -> float:
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> int:
    gen = median_s(lambda: generate(parse_options("lengths=128k&depths=50")))
    load = median_s(lambda: load_suite("builtin:long-context?lengths=128k&depths=50"))
    chars = len(generate(parse_options("lengths=128k&depths=50"))[0]["prompt"])
    print(f"generator, 2 cases of 128k tokens ({chars:,} characters each): {gen * 1000:.1f} ms   "
          f"goal < 1 s {'met' if gen < 1 else 'MISSED'}")
    print(f"load_suite, the same 2 cases validated:            {load * 1000:.1f} ms   "
          f"goal < 1 s {'met' if load < 1 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
