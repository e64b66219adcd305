"""Read a GGUF file's key/value metadata without loading the model.

The run manifest needs the chat template and the file's self-description (``general.*``) on every
run, cheaply; loading weights for that would cost seconds. Large arrays (the vocabulary) are
skipped, only their length kept.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import Any

from .errors import WeighbridgeError

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_KEEP_ARRAY_UP_TO = 64


class GGUFError(WeighbridgeError):
    pass


class _Reader:
    def __init__(self, buf: mmap.mmap, path: str) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise GGUFError(f"{self.path}: truncated GGUF header")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("<Q")
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        self.pos += 8 + int.from_bytes(self.buf[self.pos:self.pos + 8], "little")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            itype, count = self.take("<I"), self.take("<Q")
            if count <= _KEEP_ARRAY_UP_TO:
                return [self.value(itype) for _ in range(count)]
            if itype == _STRING:
                for _ in range(count):
                    self.skip_string()
            elif itype in _SCALARS:
                self.pos += struct.calcsize(_SCALARS[itype]) * count
            else:
                for _ in range(count):
                    self.value(itype)
            return {"array_of": itype, "length": count}
        raise GGUFError(f"{self.path}: unknown GGUF value type {vtype}")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Return the metadata key/values of a GGUF file (arrays longer than 64 items summarised)."""
    path = str(path)
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
            n_kv = r.take("<Q")
            meta: dict[str, Any] = {"gguf.version": version}
            for _ in range(n_kv):
                key = r.string()
                meta[key] = r.value(r.take("<I"))
            return meta
