import asyncio
import json
import os
import shutil
import tracemalloc

import pytest
from typer.testing import CliRunner

from weighbridge.cli import app
from weighbridge.core.config import load_config
from weighbridge.eval.engine import run_bakeoff
from weighbridge.core.errors import BackendUnavailable
from weighbridge.core.hashing import sha256_file
from weighbridge.catalog.lock import LockError, model_files, read_lock, verify, write_lock
from weighbridge.storage.store import Store

from .conftest import write

runner = CliRunner()


@pytest.fixture
def project(tmp_path, smollm_path):
    shutil.copy(smollm_path, tmp_path / "smol.gguf")
    write(tmp_path / "cases.yaml", "- {id: a, prompt: 'Say hi.', scorers: [{type: contains, value: hi}]}\n")
    return write(tmp_path / "weighbridge.yaml", "models:\n  - {name: smol, backend: llamacpp, path: smol.gguf, "
                                                "params: {max_tokens: 8}}\n"
                                                "  - {name: api, backend: openai, base_url: 'http://127.0.0.1:9/v1', "
                                                "model: m, license: mit}\nsuites: [cases.yaml]\n")


def test_lock_pins_hash_size_and_license(project, smollm_path):
    cfg = load_config(project)
    lock = read_lock(write_lock(cfg))
    smol = lock["models"]["smol"]
    assert smol["files"] == [{"name": "smol.gguf", "path": "smol.gguf", "sha256": sha256_file(smollm_path),
                              "size": smollm_path.stat().st_size}]
    assert smol["license"]["id"] == "apache-2.0" and len(smol["license"]["text_sha256"]) == 64
    assert lock["models"]["api"]["files"] == [] and lock["models"]["api"]["license"]["id"] == "mit"
    assert [c.status for c in verify(lock, cfg)] == ["ok"]


def test_verify_detects_a_changed_file(project):
    cfg = load_config(project)
    lock = read_lock(write_lock(cfg))
    gguf = project.parent / "smol.gguf"
    with open(gguf, "r+b") as f:  # flip one byte deep inside, size unchanged
        f.seek(50_000_000)
        b = f.read(1)
        f.seek(50_000_000)
        f.write(bytes([b[0] ^ 0xFF]))
    assert [c.status for c in verify(lock, cfg)] == ["changed"]
    r = runner.invoke(app, ["verify", "-c", str(project)])
    assert r.exit_code == 1 and "changed" in r.output
    gguf.unlink()
    assert [c.status for c in verify(lock, cfg)] == ["missing"]


def test_bakeoff_refuses_a_file_that_differs_from_the_lock(project, tmp_path):
    cfg = load_config(project)
    write_lock(cfg)
    gguf = tmp_path / "smol.gguf"
    st = gguf.stat()
    with open(gguf, "r+b") as f:
        f.seek(60_000_000)
        b = f.read(1)
        f.seek(60_000_000)
        f.write(bytes([b[0] ^ 0x01]))
    store = Store(tmp_path / "wb.db")
    cfg = load_config(project)
    cfg.models = cfg.models[:1]
    with pytest.raises(BackendUnavailable, match="does not match weighbridge.lock"):
        asyncio.run(run_bakeoff(cfg, store))  # mtime changed: caught before the run exists
    assert store.runs() == []
    os.utime(gguf, ns=(st.st_atime_ns, st.st_mtime_ns))  # hide the change from the hash cache
    with pytest.raises(BackendUnavailable, match="does not match weighbridge.lock"):
        asyncio.run(run_bakeoff(cfg, store, use_cache=False))  # caught when the bytes are read for loading


def test_locked_unchanged_model_runs(project, tmp_path):
    cfg = load_config(project)
    write_lock(cfg)
    cfg.models = cfg.models[:1]
    stats = asyncio.run(run_bakeoff(cfg, Store(tmp_path / "wb.db")))
    assert stats.model_calls == 1 and stats.errors == 0


def test_pickle_weights_are_refused_unless_allowed(tmp_path):
    folder = tmp_path / "hf"
    write(folder / "config.json", "{}")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 not really a pickle")
    cfg = load_config(write(tmp_path / "w.yaml", "models:\n  - {name: old, backend: llamacpp, path: hf}\n"))
    with pytest.raises(LockError, match="pickle-based format"):
        write_lock(cfg)
    lock = read_lock(write_lock(cfg, allow_pickle=True))
    assert {f["name"] for f in lock["models"]["old"]["files"]} == {"config.json", "pytorch_model.bin"}
    r = runner.invoke(app, ["lock", "-c", str(tmp_path / "w.yaml")])
    assert r.exit_code == 2 and "--allow-pickle" in " ".join(r.output.split())


def test_split_gguf_locks_every_shard(tmp_path):
    first = tmp_path / "big-00001-of-00003.gguf"
    assert [p.name for p in model_files(first)] == [f"big-0000{i}-of-00003.gguf" for i in (1, 2, 3)]


def test_hashing_streams_with_flat_memory(tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for _ in range(64):
            f.write(os.urandom(1024 * 1024))
    tracemalloc.start()
    digest = sha256_file(big)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(digest) == 64 and peak < 8 * 1024 * 1024  # a 64 MiB file, under 8 MiB held


def test_cli_lock_and_verify(project):
    r = runner.invoke(app, ["lock", "-c", str(project)])
    assert r.exit_code == 0 and "apache-2.0" in r.output
    r = runner.invoke(app, ["verify", "-c", str(project)])
    assert r.exit_code == 0 and "match" in r.output
    assert json.loads((project.parent / "weighbridge.lock").read_text())["version"] == 1


def test_verify_without_a_lock_is_a_clear_error(tmp_path):
    cfg = write(tmp_path / "w.yaml", "models:\n  - {name: a, backend: llamacpp, bundled: smollm2-135m}\n")
    r = runner.invoke(app, ["verify", "-c", str(cfg)])
    assert r.exit_code == 2 and "weighbridge lock" in r.output
