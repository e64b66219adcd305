"""Did the code get slower, or the machine? Run one bench at two commits in the same run, interleaved.

A figure published last week and one measured today differ for two reasons that look alike: the code
changed, or the machine (its load, its clock, a noisy neighbour) did. Measuring both commits now,
alternately - A B A B … - puts them on the same machine in the same minutes, so their ratio speaks of
the code. Each commit is checked out into a temporary git worktree and its own copy of the bench
runs with that worktree's ``src`` first on the import path (the installed dependencies are shared).

Every line the bench prints as ``label: number unit`` is a figure; per figure it prints each round,
the median of A and of B, and B/A.

Usage: python bench/compare_commits.py A B [--rounds 3] [-- SCRIPT ARGS…]   (default: engine_overhead.py --no-rerun)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

FIGURE = re.compile(r"^\s*(?:\d+\.\s*)?(?P<label>[^:]{3,120}):\s*(?P<value>[\d,]+(?:\.\d+)?)\s*(?P<unit>[^\s(,;—]*)")
ROOT = Path(__file__).resolve().parent.parent


def figures(output: str) -> dict[str, tuple[float, str]]:
    """``label -> (value, unit)`` for every line that reads ``label: number unit``."""
    out: dict[str, tuple[float, str]] = {}
    for line in output.splitlines():
        m = FIGURE.match(line)
        if m:
            out.setdefault(m["label"].strip(), (float(m["value"].replace(",", "")), m["unit"]))
    return out


def checkout(rev: str, into: Path) -> str:
    """A detached worktree of ``rev``; its full commit id."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(into), commit], cwd=ROOT, check=True)
    return commit


def run(tree: Path, bench: list[str], timeout_s: float, scripts: Path | None = None) -> str:
    """The bench's output with ``tree``'s code first on the import path (and its bench/, or ``scripts``)."""
    where = scripts or tree / "bench"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree / "src"), str(where)]), "COLUMNS": "400"}
    proc = subprocess.run([sys.executable, str(where / bench[0]), *bench[1:]], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise SystemExit(f"{bench[0]} failed at {tree.name}:\n{proc.stderr[-2000:]}")
    return proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="the earlier commit (a hash, tag or ref)")
    ap.add_argument("b", help="the later commit")
    ap.add_argument("--rounds", type=int, default=3, help="A B pairs to run (default 3)")
    ap.add_argument("--timeout-s", type=float, default=900.0, help="the longest one bench run may take")
    ap.add_argument("--script-from", choices=("own", "B"), default="own", help="run each commit's own copy of the "
                    "bench (default), or B's copy at both (when A's lacks an option; A's code must offer what it uses)")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = ap.parse_args(argv[:cut])
    bench = argv[cut + 1:] or ["engine_overhead.py", "--no-rerun"]  # after --: a script in bench/ and its options
    with tempfile.TemporaryDirectory(prefix="wb-compare-") as tmp:
        trees = {side: Path(tmp) / side for side in ("A", "B")}
        commits = {}
        try:
            for side, rev in (("A", args.a), ("B", args.b)):
                commits[side] = checkout(rev, trees[side])
            print(f"A = {args.a} ({commits['A'][:10]}), B = {args.b} ({commits['B'][:10]}); bench: {' '.join(bench)}; "
                  f"{args.rounds} rounds, interleaved A B; scripts: {'B' if args.script_from == 'B' else 'each its own'}")
            seen: dict[str, dict[str, list[float]]] = {"A": {}, "B": {}}
            units: dict[str, str] = {}
            for i in range(1, args.rounds + 1):
                for side in ("A", "B"):
                    scripts = trees["B"] / "bench" if args.script_from == "B" else None
                    got = figures(run(trees[side], bench, args.timeout_s, scripts))
                    for label, (value, unit) in got.items():
                        seen[side].setdefault(label, []).append(value)
                        units[label] = unit
                    print(f"round {i} {side}: " + "; ".join(f"{k[:50]} {v:g}{u}" for k, (v, u) in got.items()))
            print("\nfigure | median A | median B | B/A")
            for label in seen["A"]:
                if label not in seen["B"]:
                    continue
                a, b = statistics.median(seen["A"][label]), statistics.median(seen["B"][label])
                ratio = f"{b / a:.2f}" if a else "–"
                print(f"{label[:70]} | {a:g} {units[label]} | {b:g} {units[label]} | {ratio}")
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
                shutil.rmtree(tree, ignore_errors=True)
            subprocess.run(["git", "worktree", "prune"], cwd=ROOT, capture_output=True)


if __name__ == "__main__":
    main()
