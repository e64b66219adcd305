"""The gateway's added latency, its highest sustained rate, and the same loads through LiteLLM's proxy.

Starts the instant upstream of bench/instant_server.py, ``weighbridge serve`` in front of it (its
defaults: an API key, synchronous SQLite audit, redaction of the audit copy, metrics) and, when a LiteLLM
install is given (``--litellm /path/to/venv/bin/litellm``, its own virtual environment), LiteLLM's
proxy in front of the same upstream, configured as its production docs say for one instance: one
Uvicorn worker per instance, scaled out by instances (docs.litellm.ai/docs/proxy/server_tuning), a
master key (it refuses to start without one), logs at ERROR, no database - its command and config
are printed, and its figures are divided by ours at the end. Each runs in its own process.

Method: open loop at a fixed rate (constant arrivals), for streamed and plain requests; every
request's latency is taken by the client from send to last byte, and the target's CPU (its process
tree's user + system time from /proc/PID/stat) is read before and after each cell. Each target runs
alone: it is started for its own cells and stopped after them, and before every cell the machine is
let go idle (under 15% of its CPUs busy, said beside the cell): a saturated peer burning CPU on its
backlog can no longer slow the next target's cells. Ours run first, a peer's (LiteLLM) last.
"Added" is the gateway's percentile minus the direct path's at the same rate and mode, in the same
run. The highest sustained rate is the largest offered rate at which the achieved rate stays within
5% and p99 under 50 ms.

Usage: python bench/gateway_overhead.py [--seconds 10] [--rates 100,500] [--litellm PATH]
       python bench/gateway_overhead.py --baseline-src ../old/src   (another checkout's gateway as a
              target in the same run, interleaved: before/after a change on one machine state)
       python bench/gateway_overhead.py --floor --cpu-reps 3   (also a bare relay on the same stack: the floor
              under the gateway's CPU per request)
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
from typing import Any, Iterator

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
def _serving(cmd: list[str], port: int, ready_path: str, what: str, headers: dict[str, str],
             env: dict[str, str] | None = None, timeout: float = 120) -> Iterator[tuple[str, int, dict[str, str]]]:
    """A target's process on loopback while the block runs: its /v1 base URL, its pid (whose CPU is read)
    and the headers a request to it carries; stopped after."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        _wait(f"http://127.0.0.1:{port}{ready_path}", proc, what, timeout)
        yield f"http://127.0.0.1:{port}/v1", proc.pid, headers
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
    with _serving([sys.executable, "-m", "weighbridge.cli", "serve", "--plan", str(plan), "--port", str(port),
                   "--workers", str(workers)], port, "/readyz", "weighbridge serve",
                  {"authorization": f"Bearer {key}"}, env) as target:
        yield target


@contextlib.contextmanager
def relay_floor(upstream: str) -> Iterator[tuple[str, int, dict[str, str]]]:
    """bench/relay_floor.py in front of the upstream: the least a gateway on this stack spends."""
    port = free_port()
    with _serving([sys.executable, str(Path(__file__).with_name("relay_floor.py")), "--upstream", upstream,
                   "--port", str(port)], port, "/readyz", "relay floor", {}) as target:
        yield target


def _pkg_version(binary: str) -> str:
    """The litellm version installed beside the binary (its own virtual environment)."""
    python = Path(binary).with_name("python")
    got = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True)
    return got.stdout.strip() or "(version unknown)"


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
    cmd = [binary, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    shown = {k: ("sk-…" if k == "LITELLM_MASTER_KEY" else env[k]) for k in (
        "LITELLM_MASTER_KEY", "LITELLM_LOG", "LITELLM_LOCAL_MODEL_COST_MAP", "DISABLE_SCHEMA_UPDATE", "LITELLM_TELEMETRY")}
    print(f"  litellm {_pkg_version(binary)}: {' '.join(f'{k}={v}' for k, v in shown.items())} "
          f"{' '.join(cmd[:1] + ['--config', 'litellm.yaml'] + cmd[3:])}\n  litellm.yaml:\n"
          + "".join(f"    {line}\n" for line in cfg.read_text().splitlines()), end="", flush=True)
    with _serving(cmd, port, "/health/liveliness", "litellm proxy", {"authorization": f"Bearer {master}"}, env,
                  timeout=180) as target:
        yield target


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


def _busy_share(window_s: float = 0.5) -> float:
    """The share of all CPUs busy over a short window (/proc/stat: everything but idle and iowait)."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)
    b0, t0 = sample()
    time.sleep(window_s)
    b1, t1 = sample()
    return (b1 - b0) / max(1, t1 - t0)


def wait_idle(limit: float = 0.15, timeout_s: float = 60.0) -> str:
    """Wait until the machine is quiet (under ``limit`` of its CPUs busy); what it found, in words."""
    deadline = time.time() + timeout_s
    share = _busy_share()
    while share > limit and time.time() < deadline:
        share = _busy_share()
    return f"{share:.0%} busy" + ("" if share <= limit else f" after waiting {timeout_s:.0f} s: NOT idle")


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
                                                             "this many times per gateway and mode")
    ap.add_argument("--floor", action="store_true", help="also measure bench/relay_floor.py: uvicorn and weighbridge's "
                                                          "HTTP client relaying, nothing else (the least a gateway on "
                                                          "this stack spends)")
    ap.add_argument("--baseline-src", default=None, help="another checkout's src/ folder: its gateway is measured "
                                                         "too, after this one (before/after a change)")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    cpus = os.cpu_count()
    print(f"machine: {cpus} CPUs, Python {sys.version.split()[0]}; every process (load generator, upstream, "
          f"gateway) shares them. Each target runs alone: started for its own cells, stopped after them, and the "
          f"machine let go idle before every cell; weighbridge's cells first, a peer's (LiteLLM) last")
    with tempfile.TemporaryDirectory() as tmp, instant_server() as upstream, contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server()) if args.shared else None
        counts = [int(w) for w in args.workers.split(",")]
        if any(w > 1 for w in counts) and not redis:
            raise SystemExit("--workers above 1 needs --shared (several workers share budgets through Redis)")
        makers: dict[str, Any] = {"direct": lambda: contextlib.nullcontext((upstream, None, {}))}
        for w in counts:
            name = "weighbridge" if counts == [1] and not redis else f"wb×{w}{'+redis' if redis else ''}"
            makers[name] = lambda w=w: weighbridge_gateway(upstream, Path(tmp), w, redis)
            if args.baseline_src:
                makers[name + "@base"] = lambda w=w: weighbridge_gateway(upstream, Path(tmp), w, redis,
                                                                         src=args.baseline_src)
        if args.floor:
            makers["relay floor"] = lambda: relay_floor(upstream)
        if args.litellm:
            makers["litellm"] = lambda: litellm_proxy(args.litellm, upstream, Path(tmp))
        if args.soak_minutes:
            with makers["weighbridge"]() as target:
                soak(target, rates[0], args.soak_minutes)
            return
        cells: dict[tuple[float, bool, str], tuple[list[float], int, float, float, str]] = {}
        cpu_rows: list[str] = []
        cpu_medians: dict[tuple[str, bool], float] = {}
        sustained: list[str] = []
        for name, make in makers.items():
            wait_idle()
            with make() as (base, pid, h):
                asyncio.run(open_loop(base, 50, 1, True, h))  # warm connections and code paths
                asyncio.run(open_loop(base, 50, 1, False, h))
                if args.cpu_reps and name != "direct":
                    cpu_rows += cpu_per_request(name, base, pid, h, args.cpu_reps, cpu_medians)
                for rate in rates:
                    for stream in (False, True):
                        quiet = wait_idle()
                        cpu0 = _cpu_s(pid)
                        lat, fail, achieved = asyncio.run(open_loop(base, rate, args.seconds, stream, h))
                        cpu = (_cpu_s(pid) - cpu0) * 1000 / max(1, len(lat) + fail)
                        cells[(rate, stream, name)] = (lat, fail, achieved, cpu, quiet)
                if args.max_rate and name != "direct":
                    sustained.append(max_rate(name, base, h))
            print(f"  {name}: done and stopped", flush=True)
        if cpu_rows:
            print("\nCPU ms per request of the target's process tree, 500 sequential requests (median, min–max)")
            print("\n".join(cpu_rows))
        print(f"\nopen loop, {args.seconds:.0f} s per cell; latency = client send → last byte (ms); added = the "
              "target's percentile minus the direct path's at the same rate and mode")
        print(f"{'rate':>6} {'mode':>6} {'target':>16} {'ok req/s':>9} {'fail':>5} {'p50':>7} {'p99':>7} "
              f"{'added p50':>10} {'added p99':>10} {'CPU ms/req':>11}  machine before the cell")
        for rate in rates:
            for stream in (False, True):
                direct = cells[(rate, stream, "direct")][0]
                d50, d99 = _fmt(direct) if direct else (float("nan"), float("nan"))
                for name in makers:
                    lat, fail, achieved, cpu, quiet = cells[(rate, stream, name)]
                    p50, p99 = _fmt(lat) if lat else (float("nan"), float("nan"))
                    added = ("", "") if name == "direct" else (f"{p50 - d50:+.2f}", f"{p99 - d99:+.2f}")
                    print(f"{rate:>6.0f} {'stream' if stream else 'plain':>6} {name:>16} {achieved:>9.1f} {fail:>5} "
                          f"{p50:>7.2f} {p99:>7.2f} {added[0]:>10} {added[1]:>10} "
                          f"{'–' if name == 'direct' else f'{cpu:.3f}':>11}  {quiet}", flush=True)
        if "litellm" in makers and "weighbridge" in makers:
            print("\nLiteLLM against weighbridge in this run (LiteLLM's figure ÷ weighbridge's; above 1: LiteLLM spends more)")
            for (name, stream), value in cpu_medians.items():
                if name == "litellm" and cpu_medians.get(("weighbridge", stream)):
                    print(f"  CPU per request, sequential, {'stream' if stream else 'plain'}: "
                          f"{value / cpu_medians[('weighbridge', stream)]:.1f}×")
            for rate in rates:
                for stream in (False, True):
                    ours, theirs = cells[(rate, stream, "weighbridge")], cells[(rate, stream, "litellm")]
                    direct = cells[(rate, stream, "direct")][0]
                    if ours[0] and theirs[0] and direct:
                        d50 = _fmt(direct)[0]
                        added_ours, added_theirs = _fmt(ours[0])[0] - d50, _fmt(theirs[0])[0] - d50
                        ratio = f"{theirs[3] / ours[3]:.1f}×" if ours[3] > 0 else "– (ours read 0 CPU ticks)"
                        print(f"  {rate:.0f} req/s {'stream' if stream else 'plain'}: CPU per request "
                              f"{ratio}, added p50 {added_theirs:+.2f} ms against {added_ours:+.2f} ms")
        if sustained:
            print("\nhighest sustained rate (achieved ≥ 95% of offered, p99 < 50 ms), streamed requests, 5 s per step")
            print("\n".join(sustained))


def max_rate(name: str, base: str, h: dict[str, str]) -> str:
    best = 0.0
    for rate in (250, 500, 750, 1000, 1250, 1500, 2000):
        wait_idle()
        lat, fail, achieved = asyncio.run(open_loop(base, rate, 5, True, h))
        if fail or achieved < 0.95 * rate or not lat or percentile(lat, 99) >= 50:
            break
        best = rate
    return f"  {name}: {best:.0f} req/s sustained"


async def _sequential(base: str, headers: dict[str, str], n: int, stream: bool) -> None:
    client = RawClient(base, headers=headers, timeout_s=30)
    body = json.dumps({"model": "chat", "max_tokens": 8, "stream": stream, "temperature": 0,
                       "messages": [{"role": "user", "content": "Say a b"}]}).encode()
    for _ in range(n):
        async for _ in client.post_stream("/chat/completions", body):
            pass
    await client.aclose()


def cpu_per_request(name: str, base: str, pid: int | None, headers: dict[str, str], reps: int,
                    medians: dict[tuple[str, bool], float], n: int = 500) -> list[str]:
    """CPU of one gateway's process tree per request, one request at a time, on a quiet machine: the
    figure another busy process moves least (wall-clock percentiles on two shared cores swing by
    milliseconds)."""
    rows = []
    for stream in (False, True):
        values = []
        for _ in range(reps):
            wait_idle()
            before = _cpu_s(pid)
            asyncio.run(_sequential(base, headers, n, stream))
            values.append((_cpu_s(pid) - before) * 1000 / n)
        medians[(name, stream)] = statistics.median(values)
        rows.append(f"  {name:>16} {'stream' if stream else 'plain':>6} {statistics.median(values):.3f} "
                    f"({min(values):.3f}–{max(values):.3f})")
    return rows


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
