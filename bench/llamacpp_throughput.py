"""llama.cpp decode speed through weighbridge versus the same model called directly.

Both paths load the same GGUF with the same threads and context, run the same prompts greedily
(temperature 0) and stream. "Direct" is llama-cpp-python's create_chat_completion(stream=True);
"weighbridge" is a whole bakeoff run (engine, scoring, SQLite commits) on the llamacpp backend.
Each measurement runs in a fresh process (llama.cpp's OpenMP thread teams from one path would
otherwise steal cores from the other). tokens/s = completion tokens ÷ wall time over all prompts,
model load excluded. Rounds alternate the order to cancel drift; the median is printed.
Goal (issue 2): weighbridge within 5% of direct.
Usage: python bench/llamacpp_throughput.py [--model smollm2-135m] [--rounds 3] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from weighbridge.backends.bundled import resolve_bundled
from weighbridge.core.config import Config, ModelSpec, SamplingParams
from weighbridge.eval.engine import Bakeoff
from weighbridge.storage.store import Store
from weighbridge.analysis.summary import summarise_run

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a hash table works, with an example in Python.",
    "Describe the water cycle for a ten-year-old, in several paragraphs.",
    "List ten tips for writing clear technical documentation and explain each.",
    "Write a product description for a waterproof hiking backpack.",
]


def direct(path: Path, threads: int, n_ctx: int, max_tokens: int) -> tuple[int, float]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, seed=42, verbose=False)
    llm.create_completion("warm up", max_tokens=1)  # the weighbridge path is warmed by its load, likewise
    tokens, t0 = 0, time.perf_counter()
    for p in PROMPTS:
        text = ""
        for chunk in llm.create_chat_completion([{"role": "user", "content": p}], max_tokens=max_tokens,
                                                temperature=0.0, top_p=1.0, seed=42, stream=True):
            text += chunk["choices"][0]["delta"].get("content") or ""
        tokens += len(llm.tokenize(text.encode(), add_bos=False, special=True))
    wall = time.perf_counter() - t0
    llm.close()
    return tokens, wall


def through_weighbridge(alias: str, threads: int, n_ctx: int, max_tokens: int, tmp: Path) -> tuple[int, float]:
    suite = tmp / "prompts.jsonl"
    # a scorer needs something to compare with; what it says is not the point here
    suite.write_text("".join(f'{{"id": "p{i}", "prompt": "{p}", "expected": "0", "scorers": ["numeric"]}}\n'
                             for i, p in enumerate(PROMPTS)))
    spec = ModelSpec(name="m", backend="llamacpp", bundled=alias, n_threads=threads, n_ctx=n_ctx,
                     params=SamplingParams(max_tokens=max_tokens))
    cfg = Config(models=[spec], suites=[str(suite)])
    store = Store(tmp / f"wb-{time.monotonic_ns()}.db")
    bake = Bakeoff(cfg, store, use_cache=False)

    async def go():
        await bake.prepare()
        run_id = bake.create_run()
        await bake.backends["m"].load()  # load outside the timed part, as the direct path does
        t0 = time.perf_counter()
        await bake.run(run_id)
        return run_id, time.perf_counter() - t0

    run_id, wall = asyncio.run(go())
    return summarise_run(store, run_id).models[0].completion_tokens, wall


def measure(which: str, alias: str, threads: int, n_ctx: int, max_tokens: int) -> tuple[int, float]:
    """One measurement in a fresh process; returns (completion tokens, seconds)."""
    out = subprocess.run([sys.executable, __file__, "--child", which, "--model", alias, "--threads", str(threads),
                          "--max-tokens", str(max_tokens), "--n-ctx", str(n_ctx)],
                         check=True, capture_output=True, text=True).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return data["tokens"], data["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m", help="bundled alias with a chat template")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--child", choices=["direct", "weighbridge"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.child == "direct":
            tokens, seconds = direct(resolve_bundled(args.model, args.model), args.threads, args.n_ctx, args.max_tokens)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                tokens, seconds = through_weighbridge(args.model, args.threads, args.n_ctx, args.max_tokens, Path(tmp))
        print(json.dumps({"tokens": tokens, "seconds": seconds}))
        return
    ratios, d_rates, w_rates = [], [], []
    for r in range(args.rounds):
        order = ["direct", "weighbridge"] if r % 2 == 0 else ["weighbridge", "direct"]
        res = {w: measure(w, args.model, args.threads, args.n_ctx, args.max_tokens) for w in order}
        d = res["direct"][0] / res["direct"][1]
        w = res["weighbridge"][0] / res["weighbridge"][1]
        d_rates.append(d)
        w_rates.append(w)
        ratios.append(w / d)
        print(f"round {r + 1}: direct {d:6.1f} tok/s ({res['direct'][0]} tok) · "
              f"weighbridge {w:6.1f} tok/s ({res['weighbridge'][0]} tok) · ratio {w / d:.3f}", flush=True)
    print(f"{args.model}, {args.threads} threads, {len(PROMPTS)} prompts × ≤{args.max_tokens} tokens, "
          f"median of {args.rounds}: direct {statistics.median(d_rates):.1f} tok/s, weighbridge "
          f"{statistics.median(w_rates):.1f} tok/s, weighbridge/direct = {statistics.median(ratios):.3f} "
          f"(goal ≥ 0.95)")


if __name__ == "__main__":
    main()
