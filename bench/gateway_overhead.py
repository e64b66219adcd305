"""The gateway's added latency, its highest sustained rate, and the same loads through LiteLLM's proxy.

Starts the instant upstream of bench/instant_server.py, ``weighbridge serve`` in front of it (its
defaults: an API key, synchronous SQLite audit, redaction of the audit copy, metrics) and, when a LiteLLM
install is given (``--litellm /path/to/venv/bin/litellm``, its own virtual environment, no
database, its master key set because it refuses to start without one), LiteLLM's proxy in front of
the same upstream. Each runs in its own process.

Method: open loop at a fixed rate (constant arrivals), for streamed and plain requests; every
request's latency is taken by the client from send to last byte. "Added" is the gateway's
percentile minus the direct path's percentile at the same rate, measured in the same run,
interleaved by target. The highest sustained rate is the largest offered rate at which the
achieved rate stays within 5% and p99 under 50 ms.

Usage: python bench/gateway_overhead.py [--seconds 10] [--rates 100,500] [--litellm PATH]
       python bench/gateway_overhead.py --baseline-src ../old/src   (another checkout's gateway as a
              target in the same run, interleaved: before/after a change on one machine state)
       python bench/gateway_overhead.py --soak-minutes 10 --rates 100   (memory over a long run)
       python bench/gateway_overhead.py --workers 1,2 --shared --max-rate   (serve --workers N; --shared starts a
              redis-server and puts rate windows and budgets there, as several workers need)
"""

from __future__ import annotations

import argparse
import shutil
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from instant_server import free_port, instant_server  # noqa: E402

from weighbridge.bench.rawhttp import RawClient  # noqa: E402
from weighbridge.core.procs import stop  # noqa: E402
from weighbridge.analysis.stats import percentile  # noqa: E402


def _wait(url: str, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited while starting")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{what} not ready after {timeout:.0f}s")


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("--shared needs redis-server (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


@contextlib.contextmanager
def weighbridge_gateway(upstream: str, workdir: Path, workers: int = 1, redis: str | None = None,
                        src: str | None = None) -> Iterator[tuple[str, int, dict[str, str]]]:
    """``weighbridge serve`` in front of the upstream; ``src``: run another checkout's code instead."""
    tag = f"{workers}{'-baseline' if src else ''}"
    plan = workdir / f"plan-{tag}.yaml"
    plan.write_text(f"routes:\n  chat:\n    upstreams: [{{name: instant, base_url: '{upstream}', model: instant}}]\n"
                    f"state: {workdir / f'gateway-{tag}.db'}\naudit: {{url: {workdir / f'audit-{tag}.db'}}}\n"
                    + (f"redis: '{redis}'\n" if redis else ""))
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())} if src else None
    made = subprocess.run([sys.executable, "-m", "weighbridge.cli", "keys", "create", "bench", "--plan", str(plan)],
                          capture_output=True, text=True, check=True, env=env)
    key = made.stdout.strip().splitlines()[-1]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "weighbridge.cli", "serve", "--plan", str(plan), "--port", str(port),
                             "--workers", str(workers)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        _wait(f"http://127.0.0.1:{port}/readyz", proc, "weighbridge serve")
        yield f"http://127.0.0.1:{port}/v1", proc.pid, {"authorization": f"Bearer {key}"}
    finally:
        stop(proc)


@contextlib.contextmanager
def litellm_proxy(binary: str, upstream: str, workdir: Path) -> Iterator[tuple[str, int, dict[str, str]]]:
    cfg = workdir / "litellm.yaml"
    cfg.write_text(f"""model_list:
  - model_name: chat
    litellm_params: {{model: openai/instant, api_base: '{upstream}', api_key: unused}}
""")
    port = free_port()
    master = "sk-bench-" + os.urandom(16).hex()  # recent LiteLLM refuses to start without a master key
    env = {**os.environ, "LITELLM_MASTER_KEY": master, "LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "DISABLE_SCHEMA_UPDATE": "true", "LITELLM_TELEMETRY": "False"}
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen([binary, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port),
                             "--num_workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        _wait(f"http://127.0.0.1:{port}/health/liveliness", proc, "litellm proxy", timeout=180)
        yield f"http://127.0.0.1:{port}/v1", proc.pid, {"authorization": f"Bearer {master}"}
    finally:
        stop(proc)


async def open_loop(base: str, rate: float, seconds: float, stream: bool,
                    headers: dict[str, str] | None = None) -> tuple[list[float], int, float]:
    """Constant arrivals; returns (latencies in ms of successful requests, failures, achieved req/s)."""
    client = RawClient(base, headers=headers, timeout_s=30)
    body = json.dumps({"model": "chat", "max_tokens": 8, "stream": stream, "temperature": 0,
                       "messages": [{"role": "user", "content": "Say a b"}]}).encode()
    latencies: list[float] = []
    failures = 0

    async def one() -> None:
        nonlocal failures
        t = time.perf_counter()
        try:
            async for _ in client.post_stream("/chat/completions", body):
                pass
            latencies.append((time.perf_counter() - t) * 1000)
        except Exception:  # noqa: BLE001 - a failed request is counted, not fatal
            failures += 1

    tasks = []
    n = int(rate * seconds)
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    took = time.perf_counter() - start
    await client.aclose()
    return latencies, failures, len(latencies) / took


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) of a process and its children: what a request costs the gateway,
    a figure that, unlike wall-clock percentiles, another busy process on the machine barely moves."""
    if pid is None:
        return float("nan")
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        proc_pid, ppid = int(stat.parent.name), int(fields[1])
        if proc_pid == pid or ppid == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _fmt(lat: list[float]) -> tuple[float, float]:
    return percentile(lat, 50), percentile(lat, 99)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rates", default="100,500")
    ap.add_argument("--litellm", default=None, help="path to a litellm binary in its own venv")
    ap.add_argument("--max-rate", action="store_true", help="also ramp the rate to find the highest sustained one")
    ap.add_argument("--soak-minutes", type=float, default=0.0)
    ap.add_argument("--workers", default="1", help="serve --workers N, comma-separated to compare, e.g. 1,2")
    ap.add_argument("--shared", action="store_true", help="rate windows and budgets in a redis-server this starts")
    ap.add_argument("--cpu-reps", type=int, default=0, help="also: CPU ms per request over 500 sequential requests, "
                                                             "this many times per gateway and mode, interleaved")
    ap.add_argument("--baseline-src", default=None, help="another checkout's src/ folder: its gateway is measured "
                                                         "too, interleaved with this one (before/after a change)")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    cpus = os.cpu_count()
    print(f"machine: {cpus} CPUs, Python {sys.version.split()[0]}; every process (load generator, upstream, "
          f"gateway) shares them")
    with tempfile.TemporaryDirectory() as tmp, instant_server() as upstream, contextlib.ExitStack() as stack:
        targets: dict[str, tuple[str, int | None, dict[str, str]]] = {"direct": (upstream, None, {})}
        redis = stack.enter_context(redis_server()) if args.shared else None
        counts = [int(w) for w in args.workers.split(",")]
        if any(w > 1 for w in counts) and not redis:
            raise SystemExit("--workers above 1 needs --shared (several workers share budgets through Redis)")
        for w in counts:
            name = "weighbridge" if counts == [1] and not redis else f"wb×{w}{'+redis' if redis else ''}"
            targets[name] = stack.enter_context(weighbridge_gateway(upstream, Path(tmp), w, redis))
            if args.baseline_src:
                targets[name + "@base"] = stack.enter_context(
                    weighbridge_gateway(upstream, Path(tmp), w, redis, src=args.baseline_src))
        if args.litellm:
            targets["litellm"] = stack.enter_context(litellm_proxy(args.litellm, upstream, Path(tmp)))
        for base, _, h in targets.values():  # warm connections and code paths
            asyncio.run(open_loop(base, 50, 1, True, h))
            asyncio.run(open_loop(base, 50, 1, False, h))
        if args.soak_minutes:
            soak(targets["weighbridge"], rates[0], args.soak_minutes)
            return
        if args.cpu_reps:
            cpu_per_request({k: v for k, v in targets.items() if k != "direct"}, args.cpu_reps)
        print(f"\nopen loop, {args.seconds:.0f} s per cell; latency = client send → last byte (ms)")
        print(f"{'rate':>6} {'mode':>6} {'target':>16} {'ok req/s':>9} {'fail':>5} {'p50':>7} {'p99':>7} "
              f"{'added p50':>10} {'added p99':>10} {'CPU ms/req':>11}")
        for rate in rates:
            for stream in (False, True):
                base_p = None
                for name, (base, pid, h) in targets.items():
                    cpu0 = _cpu_s(pid)
                    lat, fail, achieved = asyncio.run(open_loop(base, rate, args.seconds, stream, h))
                    cpu = (_cpu_s(pid) - cpu0) * 1000 / max(1, len(lat) + fail)
                    p50, p99 = _fmt(lat) if lat else (float("nan"), float("nan"))
                    if name == "direct":
                        base_p = (p50, p99)
                        added = ("", "")
                    else:
                        added = (f"{p50 - base_p[0]:+.2f}", f"{p99 - base_p[1]:+.2f}")
                    print(f"{rate:>6.0f} {'stream' if stream else 'plain':>6} {name:>16} {achieved:>9.1f} {fail:>5} "
                          f"{p50:>7.2f} {p99:>7.2f} {added[0]:>10} {added[1]:>10} {cpu:>11.3f}", flush=True)
        if args.max_rate:
            print("\nhighest sustained rate (achieved ≥ 95% of offered, p99 < 50 ms), streamed requests, 5 s per step")
            for name, (base, _, h) in targets.items():
                if name == "direct":
                    continue
                best = 0.0
                for rate in (250, 500, 750, 1000, 1250, 1500, 2000):
                    lat, fail, achieved = asyncio.run(open_loop(base, rate, 5, True, h))
                    good = not fail and achieved >= 0.95 * rate and lat and percentile(lat, 99) < 50
                    print(f"  {name:>12} offered {rate:>5} → {achieved:7.1f} req/s, p99 "
                          f"{percentile(lat, 99) if lat else float('nan'):7.2f} ms, {fail} failed", flush=True)
                    if not good:
                        break
                    best = rate
                print(f"  {name}: {best:.0f} req/s sustained")


async def _sequential(base: str, headers: dict[str, str], n: int, stream: bool) -> None:
    client = RawClient(base, headers=headers, timeout_s=30)
    body = json.dumps({"model": "chat", "max_tokens": 8, "stream": stream, "temperature": 0,
                       "messages": [{"role": "user", "content": "Say a b"}]}).encode()
    for _ in range(n):
        async for _ in client.post_stream("/chat/completions", body):
            pass
    await client.aclose()


def cpu_per_request(targets: dict[str, tuple[str, int | None, dict[str, str]]], reps: int, n: int = 500) -> None:
    """CPU of each gateway's process tree per request, one request at a time: the figure a busy
    machine moves least (wall-clock percentiles on two shared cores swing by milliseconds)."""
    print(f"\nCPU ms per request, {n} sequential requests × {reps}, interleaved (median, min–max)")
    got: dict[tuple[str, bool], list[float]] = {(k, s): [] for k in targets for s in (False, True)}
    for _ in range(reps):
        for stream in (False, True):
            for name, (base, pid, h) in targets.items():
                before = _cpu_s(pid)
                asyncio.run(_sequential(base, h, n, stream))
                got[(name, stream)].append((_cpu_s(pid) - before) * 1000 / n)
    for (name, stream), values in got.items():
        print(f"  {name:>16} {'stream' if stream else 'plain':>6} {statistics.median(values):.3f} "
              f"({min(values):.3f}–{max(values):.3f})")


def soak(target: tuple[str, int | None, dict[str, str]], rate: float, minutes: float) -> None:
    base, pid, headers = target
    print(f"\nsoak: {rate:.0f} req/s for {minutes:g} min through weighbridge (alternating plain/streamed); RSS of "
          f"the gateway process every 30 s")
    start = time.time()
    samples = []
    i = 0
    while time.time() - start < minutes * 60:
        lat, fail, achieved = asyncio.run(open_loop(base, rate, 30, i % 2 == 1, headers))
        rss = _rss_mb(pid or 0)
        samples.append(rss)
        print(f"  t={time.time() - start:6.0f}s  rss {rss:7.1f} MB  {achieved:6.1f} req/s  p99 "
              f"{percentile(lat, 99):6.2f} ms  failed {fail}", flush=True)
        i += 1
    first_half = statistics.mean(samples[1: len(samples) // 2 + 1]) if len(samples) > 2 else samples[0]
    second_half = statistics.mean(samples[len(samples) // 2:])
    print(f"soak: RSS {samples[0]:.1f} → {samples[-1]:.1f} MB; mean of first half {first_half:.1f}, second half "
          f"{second_half:.1f} (after the first sample)")


if __name__ == "__main__":
    main()
