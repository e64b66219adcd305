"""What to load-test: a URL + model id, a model from weighbridge.yaml, or a bundled/GGUF model for which
a real llama.cpp server (``python -m llama_cpp.server``) is started on a free loopback port and stopped
afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import httpx

from ..backends.bundled import BUNDLED, resolve_bundled
from ..core.config import Config
from ..core.errors import WeighbridgeError
from ..core.procs import die_with_parent, stop
from .loadgen import Target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_server(gguf: Path, alias: str, n_ctx: int = 2048, threads: int | None = None,
                 ready_timeout_s: float = 90.0) -> Iterator[str]:
    """Serve a GGUF with llama.cpp's OpenAI-compatible server on loopback; yields its base URL."""
    port = _free_port()
    log = tempfile.NamedTemporaryFile(prefix="weighbridge-server-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias,
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
           # by default this server cuts off a running stream when a new request arrives; queue them instead
           "--interrupt_requests", "False"]
    from ..core.contention import default_threads

    cmd += ["--n_threads", str(threads or default_threads())]  # never more than the CPUs it may use
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise WeighbridgeError(f"llama_cpp.server exited while starting (log: {log.name}); is "
                                       "llama-cpp-python[server] installed?")
            try:
                if httpx.get(base + "/models", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise WeighbridgeError(f"llama_cpp.server not ready after {ready_timeout_s:.0f}s (log: {log.name})")
            time.sleep(0.2)
        yield base
    finally:
        stop(proc)
        log.close()
        os.unlink(log.name)


def gguf_token_counter(gguf: Path) -> Callable[[str], int]:
    """Count tokens with a GGUF's own tokenizer (vocabulary only: no weights are loaded)."""
    from llama_cpp import Llama

    from ..backends.llama_runtime import quiet_stderr

    with quiet_stderr(True):
        vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    return lambda text: len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True)) if text else 0


@contextlib.contextmanager
def resolve_target(target: str, model: str | None, cfg: Config | None, threads: int | None = None
                   ) -> Iterator[tuple[Target, str]]:
    """Yields (Target, description). Starts and stops a local server when the target is a model file."""
    if target.startswith(("http://", "https://")):
        if not model:
            raise WeighbridgeError("a URL target needs --server-model (the server's model id; see its /v1/models)")
        yield Target(target.rstrip("/"), model, os.environ.get("WEIGHBRIDGE_BENCH_API_KEY")), f"{target} model={model}"
        return
    spec = next((m for m in cfg.models if m.name == target), None) if cfg else None
    if spec is not None and spec.backend == "openai":
        key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        yield Target(spec.base_url.rstrip("/"), spec.model, key, spec.mode), f"{spec.name} ({spec.base_url})"  # type: ignore[union-attr]
        return
    if spec is not None:
        gguf = resolve_bundled(spec.bundled, spec.name) if spec.bundled else cfg.resolve(spec.path or "")  # type: ignore[union-attr]
        alias, mode = spec.name, spec.mode
    elif target in BUNDLED:
        gguf, alias = resolve_bundled(target, target), target
        mode = "chat" if BUNDLED[target].chat else "completion"
    elif Path(target).is_file():
        gguf, alias, mode = Path(target), Path(target).stem, "chat"
    else:
        raise WeighbridgeError(f"'{target}' is not a URL, a model in the config, a bundled alias "
                               f"({', '.join(BUNDLED)}) or a GGUF file")
    with local_server(gguf, alias, threads=threads) as base:
        yield Target(base, alias, None, mode, gguf), f"{alias} via llama_cpp.server on {base}"
