"""How much time does weighbridge itself add per job, and how fast is a re-run from cache?

Prints three figures:
1. engine overhead per job against an instant in-process backend (the engine, scoring with
   'exact', the cache lookup and the SQLite commit of every job: everything except the model);
2. the same through the openai backend against an instant streaming HTTP server on loopback
   (adds httpx, SSE parsing and the loopback round trip);
3. wall time of `weighbridge bakeoff` re-running the unchanged embedded default (the three bundled
   models on the starter suite and every fourth tools case: 156 jobs) from cache, a whole process
   (start-up, config, preflight, manifest, report): the first re-run scores the cached answers
   (model code in the sandbox, two of Qwen's answers into its 10 s limit) and caches the scores, the
   second takes the scores from the cache too.

Goals: (1) under 2 ms per job (issue 2); (3) under 1 s once the scores are cached (issue 27).
Usage: python bench/engine_overhead.py [--jobs 2000] [--store PATH-of-a-warm-store] [--no-rerun]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from weighbridge.backends.base import Generation, Request, Timings

try:
    from weighbridge.core.config import Config, ModelSpec
    from weighbridge.eval.engine import Bakeoff
    from weighbridge.storage.store import Store
except ImportError:  # the layout before 2026-12-03, so bench/compare_commits.py can run this at older commits
    from weighbridge.config import Config, ModelSpec  # type: ignore[no-redef]
    from weighbridge.engine import Bakeoff  # type: ignore[no-redef]
    from weighbridge.store import Store  # type: ignore[no-redef]

from instant_server import instant_server  # bench/ sibling module


class InstantBackend:
    """Answers at once with the expected text: measures the engine, not a model."""

    name = "instant"

    def identity(self):
        return {"backend": "instant"}

    def manifest(self):
        return {"backend": "instant"}

    async def preflight(self):
        return None

    async def generate(self, request: Request) -> Generation:
        t = Timings(sent=time.perf_counter_ns())
        t.mark_token()
        t.done = time.perf_counter_ns()
        return Generation.from_timings(t, text="ok", finish_reason="stop", prompt_tokens=10, completion_tokens=1,
                                       token_source="server")

    async def aclose(self):
        return None




def _suite(folder: Path, n_cases: int) -> str:
    path = folder / "cases.jsonl"
    path.write_text("".join(f'{{"id": "c{i}", "prompt": "case {i}", "expected": "ok"}}\n' for i in range(n_cases)))
    return str(path)


def _config(folder: Path, n_cases: int, samples: int, spec: ModelSpec) -> Config:
    cfg = Config(models=[spec], suites=[_suite(folder, n_cases)], samples=samples)
    cfg.base_dir = str(folder)
    return cfg


def _time_engine(cfg: Config, backends: dict | None) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "b.db")
        bake = Bakeoff(cfg, store, use_cache=False, backends=backends)

        async def go():
            await bake.prepare()
            run_id = bake.create_run()
            t0 = time.perf_counter()
            stats = await bake.run(run_id)
            return time.perf_counter() - t0, stats.model_calls

        return asyncio.run(go())


def _bytecode_note() -> str:
    """Said beside a whole-process figure: with PYTHONDONTWRITEBYTECODE set, an editable install's own
    modules are compiled from source at every start (≈ 0.1 s on the 2-core machine), which an installed
    package, compiled once, does not pay."""
    return "; PYTHONDONTWRITEBYTECODE is set: the project's modules compile at every start" if os.environ.get(
        "PYTHONDONTWRITEBYTECODE") else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--store", help="a store that already holds a starter-suite bakeoff of the bundled models")
    ap.add_argument("--no-rerun", action="store_true", help="print figures 1 and 2 only (3 needs a bakeoff of the "
                                                             "bundled models, minutes when the store is cold)")
    args = ap.parse_args()
    n_cases, samples = 100, max(1, args.jobs // 100)
    jobs = n_cases * samples
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = ModelSpec(name="instant", backend="openai", base_url="http://127.0.0.1:1/v1", model="instant",
                         concurrency=8)
        seconds, calls = _time_engine(_config(folder, n_cases, samples, spec), {"instant": InstantBackend()})
        print(f"1. engine overhead, instant in-process backend: {seconds / jobs * 1000:.3f} ms/job "
              f"({jobs} jobs, {calls} calls, {jobs / seconds:,.0f} jobs/s; goal < 2 ms)")

        with instant_server() as base:
            http_spec = ModelSpec(name="instant-http", backend="openai", base_url=base, model="instant", concurrency=8)
            seconds, calls = _time_engine(_config(folder, n_cases, samples, http_spec), None)
            print(f"2. per job through the openai backend, instant HTTP upstream on loopback: "
                  f"{seconds / jobs * 1000:.3f} ms/job ({jobs / seconds:,.0f} jobs/s, concurrency 8)")

    if args.no_rerun:
        return
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(args.store).resolve()) if args.store else str(Path(tmp) / "cache.db")
        env = {**os.environ, "COLUMNS": "120"}
        cmd = [sys.executable, "-m", "weighbridge", "bakeoff", "--store", store, "--report", str(Path(tmp) / "r.html")]
        if not args.store:
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=tmp, env=env, check=True, capture_output=True)
            print(f"   (cold bakeoff of the embedded default, the bundled models: {time.perf_counter() - t0:.1f} s)")
        for which in ("first", "second"):
            t0 = time.perf_counter()
            out = subprocess.run(cmd, cwd=tmp, env={**env, "COLUMNS": "400"}, check=True, capture_output=True,
                                 text=True).stdout
            wall = time.perf_counter() - t0
            line = next((ln for ln in out.splitlines() if "model calls" in ln), "").strip()
            print(f"3. {which} re-run of the unchanged embedded default from cache: {wall:.2f} s wall (whole process; "
                  f"goal < 1 s with cached scores{_bytecode_note()}) — {line}")


if __name__ == "__main__":
    main()
