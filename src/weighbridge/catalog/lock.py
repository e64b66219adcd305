"""``weighbridge.lock``: pin every model's weight files (sha256, size) and license, then verify.

The lock lives beside the config. Hashing streams the file in fixed chunks, so memory stays flat
for a 100 GB file. Pickle-based weight formats can run code when loaded; locking one needs an
explicit ``allow_pickle``.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version as pkg_version
from pathlib import Path
from typing import Any

from .. import __version__
from ..backends.bundled import BUNDLED, resolve_bundled
from .check import identify_spec
from .identify import license_files
from .licenses import load_licenses
from ..core.config import Config, ModelSpec
from ..core.errors import WeighbridgeError
from ..core.files import write_atomic
from ..core.hashing import sha256_file

LOCK_NAME = "weighbridge.lock"
LOCK_VERSION = 1
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
WEIGHT_SUFFIXES = {".gguf", ".safetensors", *PICKLE_SUFFIXES}
FOLDER_EXTRAS = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "tokenizer.model", "chat_template.jinja", "model.safetensors.index.json"}
_SHARD = re.compile(r"^(?P<stem>.*)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$")


class LockError(WeighbridgeError):
    pass


def lock_path(cfg: Config) -> Path:
    return Path(cfg.base_dir) / LOCK_NAME


def model_files(path: Path) -> list[Path]:
    """The files that make up a model: one GGUF (all shards of a split one) or a folder's weights."""
    if path.is_dir():
        licenses = set(license_files(path))  # pinned too: a changed LICENSE fails `verify` like a changed weight
        return sorted(p for p in path.iterdir()
                      if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name in FOLDER_EXTRAS or p in licenses))
    m = _SHARD.match(path.name)
    if m:
        n = int(m.group("n"))
        return [path.with_name(f"{m.group('stem')}-{i:05d}-of-{n:05d}.gguf") for i in range(1, n + 1)]
    return [path]


def _where(spec: ModelSpec, cfg: Config) -> Path:
    return resolve_bundled(spec.bundled, spec.name) if spec.bundled else cfg.resolve(spec.path or "")


def _source(spec: ModelSpec) -> str:
    if spec.bundled:
        pkg = BUNDLED[spec.bundled].package
        try:
            return f"bundled:{spec.bundled} ({pkg} {pkg_version(pkg)})"
        except PackageNotFoundError:
            return f"bundled:{spec.bundled} ({pkg})"
    return f"file:{spec.path}"


def _display_path(f: Path, cfg: Config, lock_dir: Path | None = None) -> str:
    """Relative to the lockfile's folder for a file inside the project (the config's folder), so a lock
    travels with its project wherever it is written; a file outside it (a bundled model in
    site-packages) keeps its absolute path."""
    real, project = f.resolve(), Path(cfg.base_dir).resolve()
    try:
        real.relative_to(project)
    except ValueError:
        return str(f)
    return os.path.relpath(real, (lock_dir or project).resolve())


def lock_entry(spec: ModelSpec, cfg: Config, *, allow_pickle: bool = False,
               lock_dir: Path | None = None) -> dict[str, Any]:
    ident = identify_spec(spec, cfg, load_licenses())
    lic = ident.license
    license_block = {"id": lic.id if lic else None, "declared": ident.license_key, "from": ident.kind,
                     "text_sha256": lic.text_sha256 if lic else None,
                     "text_fingerprint": lic.fingerprint if lic else None, "source": lic.source if lic else None}
    if "license_files" in ident.facts:
        license_block["license_files"] = ident.facts["license_files"]
    if ident.review:
        license_block["review"] = ident.review
    if spec.backend != "llamacpp":
        return {"backend": spec.backend, "source": f"{spec.base_url} model={spec.model}", "revision": spec.revision,
                "files": [], "note": "served over HTTP: no local files to hash", "license": license_block}
    where = _where(spec, cfg)
    files = model_files(where)
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise LockError(f"model '{spec.name}': missing file(s) {', '.join(missing)}")
    pickled = [f.name for f in files if f.suffix in PICKLE_SUFFIXES]
    if pickled and not allow_pickle:
        raise LockError(f"model '{spec.name}': {', '.join(pickled)} use a pickle-based format, which can run code "
                        "when loaded. Prefer safetensors or GGUF; pass --allow-pickle to lock them anyway")
    entry = {
        "backend": "llamacpp", "source": _source(spec), "revision": spec.revision,
        "files": [{"name": f.name, "path": _display_path(f, cfg, lock_dir), "sha256": sha256_file(f), "size": f.stat().st_size}
                  for f in files],
        "license": license_block,
    }
    from ..backends.quantize import provenance

    made = provenance(files[0]) if len(files) == 1 else None
    if made and made.get("sha256") == entry["files"][0]["sha256"]:  # written by `weighbridge quantize`, unchanged
        entry["quantized_from"] = {k: made[k] for k in ("source", "source_sha256", "type", "allow_requantize",
                                                          "threads", "fallback_tensors", "total_tensors", "llama_cpp")
                                   if k in made}
    return entry


def write_lock(cfg: Config, *, allow_pickle: bool = False, path: Path | None = None) -> Path:
    data = {"version": LOCK_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "weighbridge": __version__,
            "models": {m.name: lock_entry(m, cfg, allow_pickle=allow_pickle, lock_dir=(path or lock_path(cfg)).parent)
                       for m in cfg.models}}
    return write_atomic(path or lock_path(cfg), json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_lock(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LockError(f"{path}: no lockfile (create one with `weighbridge lock`)") from None
    except ValueError as e:
        raise LockError(f"{path}: not valid JSON ({e})") from None
    if data.get("version") != LOCK_VERSION or not isinstance(data.get("models"), dict):
        raise LockError(f"{path}: not a weighbridge lockfile of version {LOCK_VERSION}")
    return data


@dataclass
class FileCheck:
    model: str
    path: str
    status: str  # ok | changed | missing | size
    expected: str
    actual: str | None


def verify(lock: dict[str, Any], cfg: Config) -> list[FileCheck]:
    """Re-hash every locked file, found again through the config (the real bytes, never a cached hash)."""
    out = []
    specs = {m.name: m for m in cfg.models}
    for name, entry in lock["models"].items():
        if not entry.get("files"):
            continue
        spec = specs.get(name)
        if spec is None or spec.backend != "llamacpp":
            out.append(FileCheck(name, "-", "not in config", "", None))
            continue
        try:
            present = {p.name: p for p in model_files(_where(spec, cfg)) if p.exists()}
        except WeighbridgeError:
            present = {}
        for f in entry["files"]:
            p = present.get(f["name"])
            if p is None:
                out.append(FileCheck(name, f["path"], "missing", f["sha256"], None))
            elif p.stat().st_size != f["size"]:
                out.append(FileCheck(name, f["path"], "size", f["sha256"], f"{p.stat().st_size} bytes, locked {f['size']}"))
            else:
                actual = sha256_file(p)
                out.append(FileCheck(name, f["path"], "ok" if actual == f["sha256"] else "changed", f["sha256"], actual))
    return out


def locked_sha256(cfg: Config, model: str) -> str | None:
    """The sha256 the lock pins for a single-file model, if a lock exists beside the config."""
    path = lock_path(cfg)
    if not path.exists():
        return None
    entry = read_lock(path)["models"].get(model)
    if not entry or len(entry.get("files", [])) != 1:
        return None
    return entry["files"][0]["sha256"]
