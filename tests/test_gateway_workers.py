"""`weighbridge serve --workers N` on real Postgres and Redis: a worker killed under load leaves the
other serving (and is started again), no answered request is missing from the audit log, the chain
verifies, SIGTERM drains and exits 0; N > 1 without shared state is refused; a single gateway's
/readyz goes unready before it stops serving."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from weighbridge.cli import app as cli

from .conftest import free_port, write
from .test_gateway_shared import shared_plan  # noqa: F401 - fixture
from .test_gateway_faults import _wait_ready

runner = CliRunner()


def test_workers_need_shared_state(tmp_path, llama_server):
    plan = write(tmp_path / "p.yaml", f"routes:\n  chat:\n    upstreams: [{{name: s, base_url: '{llama_server}', "
                                      "model: smollm2}]\n")
    r = runner.invoke(cli, ["serve", "--plan", str(plan), "--workers", "2"])
    assert r.exit_code == 2 and "add redis: redis://" in " ".join(r.output.split())


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _prompt_sha(i: int) -> str:
    from weighbridge.gateway.redact import prompt_text  # what the audit record hashes

    return hashlib.sha256(prompt_text({"messages": [{"role": "user", "content": f"request {i}"}]}).encode()).hexdigest()


@pytest.mark.slow
def test_a_killed_worker_loses_no_answered_request_and_sigterm_drains(shared_plan):  # noqa: F811
    import psycopg

    plan, url = shared_plan
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "weighbridge", "serve", "--plan", plan, "--workers", "2",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    base = f"http://127.0.0.1:{port}"
    try:
        first = proc.stdout.readline()
        pids = [int(p) for p in re.search(r"pids ([\d ]+)", first).group(1).split()]
        assert len(pids) == 2, first
        _wait_ready(base, proc)
        answered: list[int] = []
        failed: list[int] = []

        async def load() -> None:
            async with httpx.AsyncClient(timeout=60) as client:
                sem = asyncio.Semaphore(4)

                async def one(i: int) -> None:
                    async with sem:
                        if i == 20:
                            os.kill(pids[0], signal.SIGKILL)  # a worker dies with requests in flight
                        try:
                            r = await client.post(base + "/v1/chat/completions", json={
                                "model": "chat", "max_tokens": 2, "messages": [{"role": "user", "content": f"request {i}"}]})
                            (answered if r.status_code == 200 else failed).append(i)
                        except httpx.HTTPError:
                            failed.append(i)
                await asyncio.gather(*(one(i) for i in range(80)))
        asyncio.run(load())
        assert len(answered) >= 60, (len(answered), failed)  # the other worker kept serving
        with psycopg.connect(url) as conn:
            records = [row[0] for row in conn.execute("SELECT record FROM weighbridge_audit")]
        audited = {json.loads(rec)["prompt_sha256"] for rec in records}
        missing = [i for i in answered if _prompt_sha(i) not in audited]
        assert not missing, f"answered but not in the audit log: {missing}"
        r = runner.invoke(cli, ["audit", "verify", "--plan", plan])
        assert r.exit_code == 0, r.output
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        rest = proc.stdout.read()
        assert code == 0, rest
        assert f"worker {pids[0]} exited" in first + rest
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_makes_readyz_unready_before_the_gateway_stops(tmp_path, llama_server):
    plan = write(tmp_path / "p.yaml", f"routes:\n  chat:\n    upstreams: [{{name: s, base_url: '{llama_server}', "
                                      "model: smollm2}]\nhttp: {drain_s: 1.5}\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "weighbridge", "serve", "--plan", str(plan), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc)
        assert httpx.get(base + "/readyz").status_code == 200
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        r = httpx.get(base + "/readyz")
        assert r.status_code == 503 and r.json()["error"]["code"] == "draining"
        assert httpx.get(base + "/healthz").status_code == 200  # still serving while it drains
        ok = httpx.post(base + "/v1/chat/completions", timeout=30, json={
            "model": "chat", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]})
        assert ok.status_code == 200
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def _two_workers_on_redis(tmp_path, llama_server: str, redis_url: str) -> tuple[subprocess.Popen, str]:
    """`serve --workers 2` on a plan that shares its limits through Redis, ready; (the supervisor, base URL)."""
    plan = write(tmp_path / "p.yaml", f"routes:\n  chat:\n    upstreams: [{{name: s, base_url: '{llama_server}', "
                                      f"model: smollm2}}]\nredis: '{redis_url}'\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "weighbridge", "serve", "--plan", str(plan), "--workers", "2",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc)
    except BaseException:
        proc.kill()
        raise
    return proc, base


@pytest.mark.slow
def test_metrics_of_every_worker_are_merged(tmp_path, llama_server, redis_url):
    proc, base = _two_workers_on_redis(tmp_path, llama_server, redis_url)
    try:

        async def burst() -> list[int]:
            async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_keepalive_connections=0)) as client:
                rs = await asyncio.gather(*(client.post(base + "/v1/chat/completions", json={
                    "model": "chat", "max_tokens": 1, "messages": [{"role": "user", "content": f"m {i}"}]})
                    for i in range(24)))
                return [r.status_code for r in rs]
        assert asyncio.run(burst()) == [200] * 24
        time.sleep(1.5)  # one snapshot interval
        totals = set()
        for _ in range(6):  # fresh connections: the kernel hands them to either worker
            text = httpx.get(base + "/metrics", headers={"connection": "close"}).text
            totals.add(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                           if line.startswith("weighbridge_requests_total{")))
        assert totals == {24.0}, totals  # every scrape counts both workers' requests
        # … and they are the sum of the two workers' own snapshots (in the folder the supervisor made)
        children = [int(d) for d in os.listdir("/proc") if d.isdigit() and _ppid(int(d)) == proc.pid]
        env = Path(f"/proc/{children[0]}/environ").read_bytes().split(b"\0")
        folder = next(e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"WEIGHBRIDGE_METRICS_DIR="))
        snaps = [json.loads(f.read_text()) for f in Path(folder).glob("*.json")]
        assert len(snaps) == 2
        assert sum(v for s in snaps for _, v in s["values"].get("weighbridge_requests_total", [])) == 24
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_workers_do_not_outlive_a_killed_supervisor(tmp_path, llama_server, redis_url):
    proc, _ = _two_workers_on_redis(tmp_path, llama_server, redis_url)
    try:
        children = [int(d) for d in os.listdir("/proc") if d.isdigit() and _ppid(int(d)) == proc.pid]
        assert len(children) == 2
        proc.kill()  # SIGKILL: the supervisor gets no chance to stop them
        proc.wait(timeout=10)
        def alive() -> list[int]:
            out = []
            for c in children:
                try:
                    if "zombie" not in Path(f"/proc/{c}/status").read_text().lower():
                        out.append(c)
                except OSError:
                    pass
            return out
        deadline = time.time() + 15  # they drain (http.drain_s) and exit
        while alive() and time.time() < deadline:
            time.sleep(0.2)
        alive = alive()
        assert not alive, f"workers outlived their supervisor: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
