"""Streaming sha256 of files, remembered by (path, size, mtime) so a run does not re-read GBs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

_CHUNK = 4 * 1024 * 1024


def sha256_file(path: str | Path) -> str:
    """Hash in fixed-size chunks: memory stays flat whatever the file size."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stable_hash(obj: object) -> str:
    """Hash of a JSON-able object with sorted keys: the same content always gives the same key."""
    return sha256_text(json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str))


def _cache_file() -> Path:
    return Path(os.environ.get("WEIGHBRIDGE_CACHE_DIR", Path.home() / ".cache" / "weighbridge")) / "file-hashes.json"


def cached_sha256(path: str | Path) -> str:
    """sha256 of ``path``, reused while its size and mtime are unchanged."""
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    cache_path = _cache_file()
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    digest = sha256_file(p)
    cache = {k: v for k, v in cache.items() if not k.startswith(f"{p}|")}
    cache[key] = digest
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_path)
    except OSError:
        pass  # a read-only home only costs a re-hash next time
    return digest
