"""Reading a user's file so that nothing in it can hurt: the limits and checks every format shares.

YAML, JSONL and CSV (configs, suites, plans, profiles) all come through ``read_text``: a directory,
a missing file, a file past the size limit, a NUL byte or bytes that are not UTF-8 are each
reported as themselves, with the file and line, before any parser sees them. ``loads_json`` is
the JSON half: duplicate keys and nesting past the depth limit are errors, not silent guesses.
The YAML half (duplicate keys, alias expansion, depth) lives in ``yamlsource``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ConfigError

MAX_YAML_BYTES = 16 * 1024 * 1024  # libyaml reads ~3 MB/s here: a bigger YAML suite belongs in JSONL
MAX_DATA_BYTES = 256 * 1024 * 1024  # JSONL and CSV parse at C speed
MAX_DEPTH = 64  # nesting of mappings/lists; no config or case needs more
MAX_ALIAS_EXPANSION = 1_000_000  # nodes that YAML aliases may add beyond the document's own


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def read_text(path: str | Path, *, max_bytes: int, kind: str) -> str:
    """The file's text, or a ConfigError that says which of the ways it is not readable text."""
    p = Path(path)
    where = str(path)
    if p.is_dir():
        raise ConfigError(f"is a directory, not a {kind} file", path=where)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise ConfigError("file not found", path=where) from None
    except OSError as e:
        raise ConfigError(f"cannot read it ({e.strerror})", path=where) from None
    if size > max_bytes:
        raise ConfigError(f"the file is {_mb(size)}; the limit for a {kind} file is {_mb(max_bytes)}"
                          + (" (put large suites in JSONL)" if kind == "YAML" else ""), path=where)
    try:
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise ConfigError(f"cannot read it ({e.strerror})", path=where) from None
    return decode(data, where, kind)


def decode(data: bytes, where: str, kind: str) -> str:
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise ConfigError(f"contains a NUL byte (is this a binary file, not {kind} text?)", path=where, line=line)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(f"is not UTF-8 text: byte 0x{data[e.start]:02x} at column {column} cannot be decoded "
                          "(convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8)", path=where, line=line) from None


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key '{key}' in one JSON object (the last would silently win)")
        out[key] = value
    return out


def depth_of(obj: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a JSON-like value, without recursion (a hostile document may be deep)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, d = stack.pop()
        if isinstance(value, dict):
            children = list(value.values())
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        stack.extend((c, d + 1) for c in children)
    return deepest


def loads_json(text: str, *, where: str, line: int | None = None, field: str | None = None) -> Any:
    """Strict JSON: duplicate keys and excessive nesting are errors that name the file and line."""
    try:
        value = json.loads(text, object_pairs_hook=no_duplicate_keys)
    except RecursionError:
        raise ConfigError(f"JSON nested deeper than {MAX_DEPTH} levels", path=where, line=line, field=field) from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"invalid JSON: {e.msg} (column {e.colno})", path=where,
                          line=(line if line is not None else e.lineno), field=field) from None
    except ValueError as e:
        raise ConfigError(str(e), path=where, line=line, field=field) from None
    if depth_of(value) > MAX_DEPTH:
        raise ConfigError(f"JSON nested deeper than {MAX_DEPTH} levels", path=where, line=line, field=field)
    return value

