"""Does ``concurrency: auto`` saturate a server that batches without overloading it, from any start?

A 1,000-case bakeoff against bench/batching_server.py - a test double with a known capacity - once
per starting concurrency, and at fixed concurrencies for comparison (4, the old default, unless
``--fixed`` names others), on two servers:

- **slots**: 16 sequences at once, 8 tokens each at 10 ms a token (200 requests/s), 16 more may
  wait for a slot, 503 beyond;
- **slowing**: 128 slots whose every step takes longer the more sequences share it, 2 ms × (1 +
  n/2.25 + (n/32)²) for n decoding (fitted to llama-server on an H200, bench/gpu/served_knee.sh:
  throughput 0.73 of its best at 4 in flight, best near 32, 0.77 of it at 128); capacity is the
  best of any fixed concurrency, 123 requests/s at 32; it never pushes back.

Prints the answers per second achieved against the capacity, the errors, the 503s the server sent
(the backend retries them), the limit the run ended at, and for the slots server the share of its
slot-steps that decoded something while it had work and, for a start below its slots, the most a
start that doubles every round could reach (the goal's ceiling from there).

Goal (issue 27): ≥ 95% of the server's capacity with < 1% errors, from any starting concurrency.
Usage: python bench/adaptive_concurrency.py [--cases 1000] [--starts 1,4,16,128] [--servers slots,slowing]
                                           [--fixed 4]   (fixed concurrencies to run beside auto: 4,20,24,28
                                           shows what the best fixed number reaches on the same machine)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from batching_server import BatchingServer  # bench/ sibling module

from weighbridge.core.config import Config, ModelSpec
from weighbridge.eval.adaptive import AdaptiveLimit
from weighbridge.eval.engine import Bakeoff
from weighbridge.storage.store import Store


def _run(base: str, cases: int, concurrency: int | str, start: int, folder: Path) -> tuple[float, object, Bakeoff]:
    suite = folder / "cases.jsonl"
    suite.write_text("".join(f'{{"id": "c{i}", "prompt": "case {i}", "expected": "tok"}}\n' for i in range(cases)))
    spec = ModelSpec(name="batching", backend="openai", base_url=base, model="batching", concurrency=concurrency,
                     max_concurrency=256, max_retries=6, params={"max_tokens": 8})
    cfg = Config(models=[spec], suites=[str(suite)])
    cfg.base_dir = str(folder)
    bake = Bakeoff(cfg, Store(folder / f"b-{concurrency}-{start}.db"), use_cache=False)

    async def go():
        await bake.prepare()
        if concurrency == "auto":  # the starting point under test (the engine starts at 4)
            backend = bake.backends["batching"]
            bake.adaptive["batching"] = AdaptiveLimit(start=start, ceiling=256,
                                                      pressure=lambda: int(getattr(backend, "pushbacks", 0)))
        run_id = bake.create_run()
        t0 = time.perf_counter()
        stats = await bake.run(run_id)
        return time.perf_counter() - t0, stats

    seconds, stats = asyncio.run(go())
    return seconds, stats, bake


def _ramp_bound(cases: int, start: int, server: BatchingServer) -> float:
    """Answers per second of a perfect start from ``start`` in flight, doubling every round (one
    answer's time) until the slots are full, then full to the end: the goal's ceiling from that start."""
    round_s = server.tokens * server.step_s
    left, seconds, limit = cases, 0.0, start
    while limit < server.capacity and left > 0:
        left -= min(limit, left)
        seconds += round_s
        limit *= 2
    return cases / (seconds + left / server.capacity_rps)


SERVERS = {
    "slots": lambda: BatchingServer(capacity=16, step_s=0.01, tokens=8, queue=16),
    "slowing": lambda: BatchingServer(capacity=128, step_s=0.002, tokens=8, queue=128, per_seq=1 / 2.25, knee=32),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--starts", default="1,4,16,128")  # 4: where the engine starts
    ap.add_argument("--servers", default="slots,slowing")
    ap.add_argument("--fixed", default="4", help="fixed concurrencies to run beside auto (4: the old default)")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    runs: list[tuple[str, int | str, int]] = [(f"fixed {n}", int(n), int(n)) for n in args.fixed.split(",")] + [
        (f"auto from {s}", "auto", int(s)) for s in args.starts.split(",")]
    for name in args.servers.split(","):
        slots = name == "slots"
        model = SERVERS[name]()
        print(f"server '{name}': capacity {model.capacity_rps:.0f} answers/s at {model.best_concurrency} in flight, "
              f"{model.capacity} slots", flush=True)
        for label, concurrency, start in runs:
            server = SERVERS[name]()
            with tempfile.TemporaryDirectory() as tmp, server.running() as base:
                seconds, stats, bake = _run(base, args.cases, concurrency, start, Path(tmp))
            rps = args.cases / seconds
            limiter = bake.adaptive.get("batching")
            tail = ""
            if limiter is not None:
                ups = sum(1 for _, _, why in limiter.trace if why.startswith("throughput"))
                downs = sum(1 for _, _, why in limiter.trace if why.startswith("pressure"))
                tail = f" · limit at the end {limiter.limit} ({ups} rises, {downs} back-offs)"
            used = (f" (slots busy {server.slot_steps / max(1, server.capacity * server.steps):.0%} of its steps)"
                    if slots else "")
            print(f"{label:>14}: {rps:6.1f} answers/s = {rps / server.capacity_rps:4.0%} of the server's "
                  f"{server.capacity_rps:.0f}/s{used} · errors {stats.errors}/{args.cases} "
                  f"({stats.errors / args.cases:.1%}) · 503s sent {server.refused} · most decoding at once "
                  f"{server.peak_active}{tail}", flush=True)
            if slots and concurrency == "auto" and start < server.capacity:
                best = _ramp_bound(args.cases, start, server)
                print(f"{'':>16}the most any start from {start} that doubles every round can reach: "
                      f"{best:.1f}/s = {best / server.capacity_rps:.0%} (its first rounds leave slots empty)")


if __name__ == "__main__":
    main()
