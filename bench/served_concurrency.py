"""Where is a real server's knee, and does ``concurrency: auto`` find it?

bench/adaptive_concurrency.py answers this against a test double whose capacity is known. This one
points the same bakeoff engine at a server you name (vLLM, SGLang, TGI, llama-server --parallel N):
one bakeoff of ``--cases`` identical-length cases at each fixed concurrency, then one at ``auto`` as a
user gets it (start 4, ceiling ``--ceiling``). Since a real server's capacity is unknown, the best
fixed concurrency stands for it; auto's answers per second are shown against that. Each row prints
answers/s, output tokens/s (the tokens the server counted), errors, the server's push-backs, and for
auto the limit it ended at with its rises and back-offs.

The cases run in the order given, each bakeoff alone; nothing else should load the server.
Usage: python bench/served_concurrency.py --base-url http://127.0.0.1:8080/v1 --model m
           [--cases 1000] [--max-tokens 64] [--fixed 4,16,64,128] [--ceiling 256]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from weighbridge.core.config import Config, ModelSpec
from weighbridge.eval.engine import Bakeoff
from weighbridge.storage.store import Store


def _bakeoff(base: str, model: str, cases: int, max_tokens: int, concurrency: int | str, ceiling: int,
             folder: Path) -> tuple[float, int, int, float, Bakeoff]:
    """One bakeoff: seconds, errors, output tokens counted, the client's CPU (cores busy on average: near
    1 means this Python process, not the server, set the pace) and the engine (its limiter's trace)."""
    suite = folder / "cases.jsonl"
    suite.write_text("".join(f'{{"id": "c{i}", "prompt": "Write about the number {i}.", "expected": "x"}}\n'
                             for i in range(cases)))
    spec = ModelSpec(name="served", backend="openai", base_url=base, model=model, concurrency=concurrency,
                     max_concurrency=ceiling, max_retries=6,
                     params={"max_tokens": max_tokens, "temperature": 0})
    cfg = Config(models=[spec], suites=[str(suite)])
    cfg.base_dir = str(folder)
    db = folder / f"run-{concurrency}.db"
    bake = Bakeoff(cfg, Store(db), use_cache=False)

    async def go() -> tuple[float, int, float]:
        await bake.prepare()
        run_id = bake.create_run()
        t0, cpu0 = time.perf_counter(), os.times()
        stats = await bake.run(run_id)
        seconds, cpu1 = time.perf_counter() - t0, os.times()
        return seconds, stats.errors, (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / seconds

    seconds, errors, client_cpu = asyncio.run(go())
    with sqlite3.connect(db) as con:
        tokens = con.execute("SELECT coalesce(sum(completion_tokens), 0) FROM generations").fetchone()[0]
    return seconds, errors, int(tokens), client_cpu, bake


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--fixed", default="4,16,64,128")
    ap.add_argument("--ceiling", type=int, default=256)
    a = ap.parse_args()
    print(f"client machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; server {a.base_url}, "
          f"model {a.model}; {a.cases} cases of {a.max_tokens} output tokens at most", flush=True)
    best = 0.0
    for concurrency in [int(x) for x in a.fixed.split(",")] + ["auto"]:
        with tempfile.TemporaryDirectory() as tmp:
            seconds, errors, tokens, client_cpu, bake = _bakeoff(a.base_url, a.model, a.cases, a.max_tokens, concurrency,
                                                     a.ceiling, Path(tmp))
        rps = a.cases / seconds
        backend = bake.backends["served"]
        tail = ""
        limiter = bake.adaptive.get("served")
        if limiter is not None:
            ups = sum(1 for _, _, why in limiter.trace if why.startswith("throughput"))
            downs = sum(1 for _, _, why in limiter.trace if why.startswith("pressure"))
            peak = max(limit for _, limit, _ in limiter.trace)
            tail = f" · limit at the end {limiter.limit}, highest {peak} ({ups} rises, {downs} back-offs)"
            tail += f" · {rps / best:.0%} of the best fixed" if best else ""
        else:
            best = max(best, rps)
        label = f"auto (ceiling {a.ceiling})" if concurrency == "auto" else f"fixed {concurrency}"
        print(f"{label:>18}: {seconds:7.1f} s · {rps:7.1f} answers/s · {tokens / seconds:8.0f} output tokens/s · "
              f"errors {errors}/{a.cases} · push-backs {int(getattr(backend, 'pushbacks', 0))} · "
              f"client CPU {client_cpu:.2f} cores{tail}", flush=True)


if __name__ == "__main__":
    main()
