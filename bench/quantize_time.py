"""Time to quantise the bundled SmolLM2-135M (Q4_1) to lower types with llama.cpp's quantiser,
through weighbridge.quantize (writing, hashing and the provenance record included).

    python bench/quantize_time.py [--types Q4_K_M,Q3_K_M,Q2_K] [--threads 2]

No goal (issue 14 asks for the figure): one run per type, in a temporary folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from weighbridge.backends.bundled import resolve_bundled
from weighbridge.backends.quantize import parse_types, quantize


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", default="Q4_K_M,Q3_K_M,Q2_K")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    src = resolve_bundled("smollm2-135m", "smollm2-135m")
    with tempfile.TemporaryDirectory() as d:
        for t in parse_types(args.types):
            t0 = time.perf_counter()
            (v,) = quantize(src, [t], Path(d), threads=args.threads, allow_requantize=True)
            print(f"{t:7} {v.size / 1e6:6.1f} MB  quantise {v.seconds:.2f} s  with hashing and record "
                  f"{time.perf_counter() - t0:.2f} s  fallback tensors {v.fallback_tensors}/{v.total_tensors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
