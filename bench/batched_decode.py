"""How much does decoding several answers together in one llama.cpp batch buy on this machine?

Prints two things:
1. aggregate decode tokens/s of the bundled models at batch 1, 2, 4, 8, 16 (greedy, a ~70-token
   prompt, 32 timed steps; each sequence with its own KV cells, as the backend decodes them), beside
   one answer decoded by llama-cpp-python's own loop (what `batch: 1` runs);
2. where batched greedy decoding parts from one answer alone: the same prompt decoded alone and as
   every row of a batch of 16 (96 greedy tokens), the first token where each row differs;
3. the embedded default (`make demo`'s bakeoff: three bundled models, 156 jobs, fresh stores, no
   cache) run with `batch: 1` and with `batch: auto` in the same run, alternating: wall time of each,
   the ratio, the batch each model chose, and the temperature-0 answers compared - batched numerics
   can change a greedy choice, so how many answers differ is printed, per model.

Goal (issue 27): the demo's bakeoff at least 2x faster batched than one answer at a time.
Usage: python bench/batched_decode.py [--rounds 1] [--steps 32] [--no-demo]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from typing import Any

from llama_cpp import Llama

from weighbridge.backends.bundled import resolve_bundled
from weighbridge.backends.llama_batch import BatchContext, Sequence, measure
from weighbridge.backends.llama_runtime import quiet_stderr
from weighbridge.core.config import default_config
from weighbridge.core.contention import default_threads
from weighbridge.eval.engine import run_bakeoff
from weighbridge.storage.store import Store

PROMPT = (b"You are a helpful assistant. Summarise in two sentences why lighthouses were automated during the "
          b"twentieth century, and name one thing keepers did besides tending the light.")
SIZES = (1, 2, 4, 8, 16)


def throughput(steps: int) -> None:
    print(f"aggregate decode tokens/s, {steps} steps, {default_threads()} threads (higher is better)")
    print(f"{'model':<22}{'own loop':>10}" + "".join(f"{f'batch {s}':>10}" for s in SIZES) + f"{'16 vs 1':>10}")
    for alias in ("qwen2.5-coder-0.5b", "smollm2-135m", "gemma3-270m"):
        with quiet_stderr(True):
            llm = Llama(model_path=str(resolve_bundled(alias, alias)), n_ctx=4096, n_threads=default_threads(),
                        n_threads_batch=default_threads(), verbose=False)
        prompt = llm.tokenize(PROMPT, add_bos=True)
        llm.eval(prompt)  # llama-cpp-python's own loop, one answer: what batch 1 runs through
        t0, n = time.perf_counter(), 0
        for _ in llm.generate(prompt, temp=0.0, reset=False):
            n += 1
            if n == steps:
                break
        own = steps / (time.perf_counter() - t0)
        rates = {}
        for size in SIZES:
            with quiet_stderr(True):
                ctx = BatchContext(llm, size, len(prompt) + steps + 16)
            try:
                rates[size] = measure(llm, ctx, size, prompt, steps)
            finally:
                ctx.close()
        llm.close()
        print(f"{alias:<22}{own:>10.1f}" + "".join(f"{rates[s]:>10.1f}" for s in SIZES)
              + f"{rates[16] / rates[1]:>9.2f}x", flush=True)


def divergence(tokens: int = 96) -> None:
    from llama_cpp import _internals

    print(f"\nthe same prompt alone and in every row of a batch of 16, {tokens} greedy tokens: "
          "the first token where a row differs from the answer alone (– none)")
    for alias in ("qwen2.5-coder-0.5b", "smollm2-135m", "gemma3-270m"):
        with quiet_stderr(True):
            llm = Llama(model_path=str(resolve_bundled(alias, alias)), n_ctx=4096, n_threads=default_threads(),
                        n_threads_batch=default_threads(), verbose=False)
        prompt = llm.tokenize(b"Write a Python function is_palindrome(s: str) -> bool that ignores case.\nAnswer:",
                              add_bos=True)

        def decode(size: int) -> list[list[int]]:
            with quiet_stderr(True):
                ctx = BatchContext(llm, size, len(prompt) + tokens + 16)
            seqs = []
            for _ in range(size):
                sampler = _internals.LlamaSampler()
                sampler.add_greedy()
                seqs.append(Sequence(prompt=list(prompt), max_tokens=tokens, stops=[], sampler=sampler,
                                     ignore_eog=True))
                ctx.admit(seqs[-1])
            while ctx.active:
                ctx.step()
            ctx.close()
            return [s.out for s in seqs]

        alone = decode(1)[0]
        rows = decode(16)
        first = [next((i for i, (a, b) in enumerate(zip(alone, r)) if a != b), None) for r in rows]
        shown = sorted({"–" if f is None else str(f) for f in first})
        print(f"{alias:<22}rows differing: {sum(f is not None for f in first)}/16, first at token {', '.join(shown)}")
        llm.close()


async def bakeoff(batch: int | str, path: str) -> tuple[float, dict[str, Any], dict[str, Any]]:
    cfg = default_config()
    cfg.models = [m.model_copy(update={"batch": batch}) for m in cfg.models]
    t0 = time.perf_counter()
    stats = await run_bakeoff(cfg, path, use_cache=False)
    wall = time.perf_counter() - t0
    store = Store(path)
    try:
        answers = {(g.model, g.key): (g.generation.text if g.generation else None, g.passed)
                   for g in store.generations(stats.run_id)}
        chosen = {m["name"]: (m.get("runtime") or {}).get("batch") for m in store.run_models(stats.run_id)}
    finally:
        store.close()
    return wall, answers, chosen


def demo(rounds: int) -> None:
    walls: dict[str, list[float]] = {"1": [], "auto": []}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        for r in range(rounds):
            for batch in (1, "auto"):
                path = os.path.join(d, f"{batch}-{r}.db")
                wall, answers, chosen = asyncio.run(bakeoff(batch, path))
                walls[str(batch)].append(wall)
                results[str(batch)] = (answers, chosen)
                print(f"round {r + 1}: batch {batch}: {wall:.1f} s", flush=True)
    one, auto = min(walls["1"]), min(walls["auto"])
    print(f"\nmake demo's bakeoff (156 jobs, no cache), best of {rounds}: one answer at a time {one:.1f} s, "
          f"batched {auto:.1f} s: {one / auto:.2f}x faster")
    (single, _), (batched, chosen) = results["1"], results["auto"]
    print(f"{'model':<22}{'batch':>6}{'mean in batch':>15}{'answers differ':>16}{'passed 1 / batched':>20}")
    for model in dict.fromkeys(m for m, _ in single):
        keys = [k for k in single if k[0] == model]
        differ = sum(1 for k in keys if single[k][0] != batched.get(k, (None,))[0])
        facts = chosen.get(model) or {}
        print(f"{model:<22}{facts.get('size', '?'):>6}{facts.get('mean_sequences') or 0:>15.1f}"
              f"{f'{differ}/{len(keys)}':>16}"
              f"{sum(single[k][1] for k in keys):>12} / {sum(batched.get(k, (None, False))[1] for k in keys)}")
    rates = {m: f.get("tokens_per_s") for m, f in chosen.items() if f}
    print("measured at load (tokens/s by batch size):", rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--no-demo", action="store_true", help="the tokens/s table only")
    args = ap.parse_args()
    throughput(args.steps)
    divergence()
    if not args.no_demo:
        print()
        demo(args.rounds)


if __name__ == "__main__":
    main()
