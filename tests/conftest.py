"""Shared fixtures: real bundled models, a real llama_cpp.server on loopback, temp stores."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from weighbridge.core.procs import stop

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the tests' file-hash cache and assembled models out of the user's home."""
    os.environ["WEIGHBRIDGE_CACHE_DIR"] = str(tmp_path_factory.mktemp("wb-cache"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    from weighbridge.backends.bundled import resolve_bundled

    return resolve_bundled("smollm2-135m", "smollm2-135m")


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    from weighbridge.backends.bundled import resolve_bundled

    return resolve_bundled("gemma3-270m", "gemma3-270m")


def _start_llama_server(model: Path, alias: str, log: Path, port: int | None = None,
                        extra: tuple[str, ...] = ()) -> tuple[str, subprocess.Popen]:
    port = port or free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model),
                                 "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port),
                                 "--n_ctx", "2048", "--n_threads", "2", "--interrupt_requests", "False", *extra], stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("llama_cpp.server did not become ready in 60 s")
    return base, proc


@pytest.fixture(scope="session")
def llama_server(smollm_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real ``python -m llama_cpp.server`` serving SmolLM2 on a free loopback port."""
    base, proc = _start_llama_server(smollm_path, "smollm2", tmp_path_factory.mktemp("server") / "server.log")
    yield base
    stop(proc)


@pytest.fixture(scope="session")
def qwen_server(tmp_path_factory: pytest.TempPathFactory):
    """``llama_cpp.server`` serving the bundled Qwen2.5-Coder (its GGUF chat template renders tools)."""
    from weighbridge.backends.bundled import resolve_bundled

    path = resolve_bundled("qwen2.5-coder-0.5b", "qwen")
    base, proc = _start_llama_server(path, "qwen", tmp_path_factory.mktemp("qwen-server") / "server.log")
    yield base
    stop(proc)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def smol_project(tmp_path: Path, cases: str, max_tokens: int = 24, extra: str = "", price: str = "") -> Path:
    """A config with the bundled SmolLM2 (2 threads) on a suite of ``cases``; returns the config path."""
    write(tmp_path / "cases.yaml", cases)
    price_line = f"    price: {price}\n" if price else ""
    return write(tmp_path / "weighbridge.yaml",
                 "models:\n  - name: smol\n    backend: llamacpp\n    bundled: smollm2-135m\n    n_threads: 2\n"
                 f"    params: {{max_tokens: {max_tokens}}}\n{price_line}{extra}suites: [cases.yaml]\n")


def _need(binary: str, package: str) -> str:
    """A server binary for the tests; missing means skip locally, fail in CI (where .ci/run installs it)."""
    found = shutil.which(binary) or next((str(p) for p in Path("/usr/lib/postgresql").glob(f"*/bin/{binary}")), None)
    if found is None:
        message = f"{binary} not installed (apt-get install {package}; .ci/run does this)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _wait_port(port: int, proc: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{what} did not listen in 30 s")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory):
    """A real redis-server on a free loopback port, no persistence."""
    binary = _need("redis-server", "redis-server")
    port, log = free_port(), tmp_path_factory.mktemp("redis") / "redis.log"
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    _wait_port(port, proc, "redis-server", log)
    yield f"redis://127.0.0.1:{port}/0"
    stop(proc)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory):
    """A real Postgres server in a temp dir (run as the 'postgres' user when the tests run as root)."""
    initdb, postgres = _need("initdb", "postgresql"), _need("postgres", "postgresql")
    root = Path(tempfile.mkdtemp(prefix="wb-pg-"))  # not under pytest's 0700 temp root: postgres must reach it
    data, log = root / "data", root / "postgres.log"
    data.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chmod(root, 0o755)
        os.chown(data, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "wb"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    proc = subprocess.Popen([*as_user, postgres, "-D", str(data), "-p", str(port), "-k", str(data),
                             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    _wait_port(port, proc, "postgres", log)
    time.sleep(0.5)
    yield f"postgresql://wb@127.0.0.1:{port}/postgres"
    stop(proc, grace_s=20)
    shutil.rmtree(root, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """A run that skipped tests for want of a tool says so in one block at the end, with the install
    command, instead of only in pytest's short summary (where a passing run hides it)."""
    missing: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if "apt-get install" in reason:
            key = reason.split("Skipped: ", 1)[-1]
            missing[key] = missing.get(key, 0) + 1
    if missing:
        terminalreporter.section("tests NOT run: tools missing on this machine", sep="!", red=True, bold=True)
        for reason, n in sorted(missing.items()):
            terminalreporter.line(f"{n} test(s): {reason}")
        terminalreporter.line("CI (.ci/run) installs these and fails instead of skipping.")


@pytest.fixture()
def need_bubblewrap(request: pytest.FixtureRequest) -> None:
    """Tests of the sandbox and what runs in it: failed in CI when bubblewrap cannot start one (the tools
    are installed there), skipped with the reason elsewhere; ``no_bwrap_needed`` opts a test out."""
    if "no_bwrap_needed" in request.keywords:
        return
    from weighbridge.scorers import sandbox

    try:
        sandbox.check()
    except sandbox.SandboxUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(str(e))
        pytest.skip(str(e))
