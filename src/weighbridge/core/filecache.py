"""Facts about a file remembered across runs while the file is unchanged: its sha256, its GGUF
header, what the llama.cpp library says about its build. Each is seconds or a tenth of one to
work out again (a GGUF vocabulary of 150,000 strings to walk and hash), and a re-run whose answers
all come from the cache should not pay it. A fact is keyed by the file's path, size, modification
and change times and inode (``file_key``): any write to the file makes a new key. The store is one
small JSON file per kind in weighbridge's cache folder, read strictly - a damaged, foreign or
oversized file is ignored and the fact worked out again - and written atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .files import write_atomic

T = TypeVar("T")
MAX_ENTRIES = 256  # files remembered per kind; the oldest go first
MAX_BYTES = 32 << 20  # a store larger than this is not read (and is rewritten with the one new fact)


def cache_dir() -> Path:
    """weighbridge's cache folder: ``$WEIGHBRIDGE_CACHE_DIR``, else ``~/.cache/weighbridge``."""
    return Path(os.environ.get("WEIGHBRIDGE_CACHE_DIR", Path.home() / ".cache" / "weighbridge"))


def file_key(path: str | Path) -> str:
    """The file's resolved path and what changes with any write to it (OSError when it is gone)."""
    p = os.path.realpath(path)
    st = os.stat(p)
    return f"{p}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"


def _load(store: Path) -> dict[str, Any]:
    try:
        if store.stat().st_size > MAX_BYTES:
            return {}
        data = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def remembered(kind: str, key: str, compute: Callable[[], T], valid: Callable[[Any], bool]) -> T:
    """The fact stored for ``key`` in the ``kind`` store (``<kind>.json``) when ``valid`` accepts it,
    else ``compute()``'s, stored for next time (a read-only cache folder only costs the work again).
    Facts about an earlier version of the same path are dropped."""
    store = cache_dir() / f"{kind}.json"
    data = _load(store)
    hit = data.get(key)
    if hit is not None and valid(hit):
        return hit  # type: ignore[no-any-return]  # valid() checked its shape
    value = compute()
    path = key.split("|", 1)[0]
    kept = [(k, v) for k, v in data.items() if k.split("|", 1)[0] != path]
    kept = kept[-(MAX_ENTRIES - 1):] + [(key, value)]
    try:
        write_atomic(store, json.dumps(dict(kept), ensure_ascii=False))
    except (OSError, TypeError, ValueError):
        pass
    return value
