"""Read a GGUF file's key/value metadata without loading the model.

The run manifest needs the chat template and the file's self-description (``general.*``) on every
run, cheaply; loading weights for that would cost seconds. Large arrays (the vocabulary) are
skipped, only their length kept.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from pathlib import Path
from typing import Any

from .errors import WeighbridgeError
from .filecache import file_key, remembered
from .hashing import stable_hash

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")
_KEEP_ARRAY_UP_TO = 64
_MAX_DEPTH = 4  # arrays of arrays of ...: no real model nests deeper than two
_MAX_KEY = 64 * 1024  # bytes of one key name
_MAX_KEPT_STRING = 16 << 20  # bytes of one string value kept (a chat template is a few KiB)


class GGUFError(WeighbridgeError):
    pass


def _min_size(vtype: int) -> int:
    """The fewest bytes one value of this type can take: what bounds a declared count."""
    if vtype in _SCALARS:
        return struct.calcsize(_SCALARS[vtype])
    return 8 if vtype == _STRING else 12  # a string's length; an array's type and count


class _Reader:
    """Reads the header of a file that may be hostile: every length and count is held against the
    bytes the file still has, nesting is bounded, and every read is checked against the end, so a
    69-byte file cannot declare 2^63 strings and keep the reader busy forever. Errors name the offset."""

    def __init__(self, buf: mmap.mmap, path: str) -> None:
        self.buf, self.pos, self.path = buf, 0, path
        self.size = len(buf)

    def _fail(self, at: int, problem: str) -> GGUFError:
        return GGUFError(f"{self.path}: bad GGUF header at byte {at:,}: {problem}")

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self._fail(self.pos, f"{what} of {n:,} bytes runs past the end of the file ({self.size:,} bytes)")

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        self.need(size, "a value")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self, limit: int = _MAX_KEPT_STRING) -> str:
        at = self.pos
        n = self.take("<Q")
        if n > limit:
            raise self._fail(at, f"a string of {n:,} bytes (at most {limit:,} kept)")
        self.need(n, "a string")
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.take("<Q")
        self.need(n, "a string")
        self.pos += n

    def skip_strings(self, count: int) -> None:
        """Skip ``count`` strings (a vocabulary: 150,000 of them) in one tight loop, each length still
        held against the end of the file."""
        buf, pos, size, unpack = self.buf, self.pos, self.size, _U64.unpack_from
        for _ in range(count):
            if pos + 8 > size:
                self.pos = pos
                self.need(8, "a value")
            pos += 8 + unpack(buf, pos)[0]
            if pos > size:
                raise self._fail(pos, "a string runs past the end of the file")
        self.pos = pos

    def count(self, itype: int) -> int:
        at = self.pos
        n = int(self.take("<Q"))
        if n * _min_size(itype) > self.size - self.pos:
            raise self._fail(at, f"an array of {n:,} items; the file has {self.size - self.pos:,} bytes left")
        return n

    def value(self, vtype: int, depth: int = 0, digest: bool = False) -> Any:
        """A value; an array too long to keep is summarised by its type and length and, when asked
        (the tokenizer's vocabulary and merges), the sha256 of its bytes: two files tokenise alike
        only if those agree."""
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            if depth >= _MAX_DEPTH:
                raise self._fail(self.pos, f"arrays nested deeper than {_MAX_DEPTH}")
            itype = self.take("<I")
            if itype not in _SCALARS and itype not in (_STRING, _ARRAY):
                raise self._fail(self.pos - 4, f"unknown GGUF value type {itype}")
            count = self.count(itype)
            start = self.pos
            if count <= _KEEP_ARRAY_UP_TO:
                return [self.value(itype, depth + 1) for _ in range(count)]
            if itype == _STRING:
                self.skip_strings(count)
            elif itype in _SCALARS:
                self.need(struct.calcsize(_SCALARS[itype]) * count, "an array")
                self.pos += struct.calcsize(_SCALARS[itype]) * count
            else:
                for _ in range(count):
                    self.value(itype, depth + 1)
            summary: dict[str, Any] = {"array_of": itype, "length": count}
            if digest:
                summary["sha256"] = hashlib.sha256(self.buf[start:self.pos]).hexdigest()
            return summary
        raise self._fail(self.pos - 4, f"unknown GGUF value type {vtype}")


_READ: dict[str, dict[str, Any]] = {}  # one process reads a file's header once


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Return the metadata key/values of a GGUF file (arrays longer than 64 items summarised). A
    file read before, unchanged since (core/filecache.py), is not read again: a run reads each
    model's header several times (license, preflight, manifest), and a re-run from the cache would
    spend a tenth of a second walking and hashing three vocabularies."""
    try:
        key = file_key(path)
    except OSError:
        return _read_metadata(str(path))  # gone or unreadable: the reader names the problem
    if key in _READ:
        return dict(_READ[key])
    meta = remembered("gguf-metadata", key, lambda: _read_metadata(str(path)),
                      lambda v: isinstance(v, dict) and v.get("gguf.version") is not None)
    if len(_READ) >= 32:
        _READ.clear()
    _READ[key] = meta
    return dict(meta)


def _read_metadata(path: str) -> dict[str, Any]:
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise GGUFError(f"{path}: not a GGUF file (bad magic bytes)")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            r = _Reader(buf, path)
            r.pos = 4
            version = r.take("<I")
            if version < 2:
                raise GGUFError(f"{path}: GGUF version {version} is too old (need 2 or later)")
            r.take("<Q")  # tensor count
            at = r.pos
            n_kv = r.take("<Q")
            if n_kv * 13 > r.size - r.pos:  # a key's length, its type, one byte of value at the least
                raise r._fail(at, f"{n_kv:,} metadata entries; the file has {r.size - r.pos:,} bytes left")
            meta: dict[str, Any] = {"gguf.version": version}
            for _ in range(n_kv):
                key = r.string(_MAX_KEY)
                meta[key] = r.value(r.take("<I"), digest=key.startswith("tokenizer."))
            return meta


_SPECIAL_IDS = ("bos_token_id", "eos_token_id", "eot_token_id", "padding_token_id", "unknown_token_id",
                "add_bos_token", "add_eos_token")


def tokenizer_facts(meta: dict[str, Any]) -> dict[str, Any]:
    """What decides how text becomes tokens, from the GGUF's header: the tokenizer kind, one hash
    over its vocabulary, merges and token types, and the special token ids. Two deployments of one
    model that differ here tokenise differently, whatever their weights."""
    parts = {k: meta[k].get("sha256") if isinstance(meta.get(k), dict) else meta.get(k)
             for k in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type")}
    return {"model": meta.get("tokenizer.ggml.model"), "pre": meta.get("tokenizer.ggml.pre"),
            "sha256": stable_hash(parts) if any(parts.values()) else None,
            "special": {k: meta[f"tokenizer.ggml.{k}"] for k in _SPECIAL_IDS if f"tokenizer.ggml.{k}" in meta}}
