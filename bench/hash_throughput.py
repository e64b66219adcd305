"""Lockfile hashing speed next to coreutils' sha256sum on the same file.

Writes a file of --size-mb random bytes (default 1024), then alternates `sha256sum FILE` and
weighbridge's streaming sha256 (the function `weighbridge lock` and `verify` use) for --rounds
rounds and prints each figure in MB/s with the median. The file is read once first so both
read from the page cache: this compares hashing, not the disk. Peak Python memory while hashing
is printed too (it stays at the chunk size, whatever the file size).
Usage: python bench/hash_throughput.py [--size-mb 1024] [--rounds 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

from weighbridge.core.hashing import sha256_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "weights.bin"
        with open(path, "wb") as f:
            for _ in range(args.size_mb):
                f.write(os.urandom(1024 * 1024))
        size_mb = path.stat().st_size / 1e6
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
        ours, theirs = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]
            theirs.append(size_mb / (time.perf_counter() - t0))
            tracemalloc.start()
            t0 = time.perf_counter()
            digest = sha256_file(path)
            ours.append(size_mb / (time.perf_counter() - t0))
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert digest == out, "digests differ"
        print(f"file: {size_mb:,.0f} MB, {args.rounds} rounds, page cache warm")
        print("sha256sum:           " + ", ".join(f"{x:,.0f}" for x in theirs) + f" MB/s · median {statistics.median(theirs):,.0f} MB/s")
        print("weighbridge (lock):  " + ", ".join(f"{x:,.0f}" for x in ours) + f" MB/s · median {statistics.median(ours):,.0f} MB/s")
        print(f"ratio weighbridge/sha256sum: {statistics.median(ours) / statistics.median(theirs):.2f} · "
              f"peak Python memory while hashing: {peak / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
