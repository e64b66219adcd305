"""Identify what a local model file or folder is, and under which license, from its own metadata.

GGUF files describe themselves (``general.license``, ``general.basename``, ``general.size_label``…);
Hugging Face folders through ``config.json`` and the README's YAML front matter. A license we do
not recognise is reported as such: the verdict is then "needs review", never "allowed".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..gguf import GGUFError, read_metadata
from .licenses import License, LicenseBook


@dataclass
class Identity:
    target: str
    kind: str  # gguf | hf-folder | served | unknown
    license_key: str | None
    license: License | None
    facts: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def _front_matter(readme: Path) -> dict[str, Any]:
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    try:
        data = yaml.safe_load(text[3:end]) if end > 0 else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def identify_gguf(path: Path, book: LicenseBook) -> Identity:
    try:
        meta = read_metadata(path)
    except (GGUFError, OSError) as e:
        return Identity(str(path), "unknown", None, None, note=f"cannot read GGUF metadata: {e}")
    facts = {k: meta[k] for k in ("general.name", "general.basename", "general.size_label", "general.architecture",
                                  "general.license", "general.license.name", "general.license.link", "general.finetune")
             if k in meta}
    key = meta.get("general.license")
    lic = book.get(key) or book.get(meta.get("general.license.name"))
    note = "" if lic else (f"GGUF says license '{key}', which the catalog does not know" if key
                           else "the GGUF names no license (general.license)")
    return Identity(str(path), "gguf", key, lic, facts, note)


def identify_hf_folder(path: Path, book: LicenseBook) -> Identity:
    facts: dict[str, Any] = {}
    cfg = path / "config.json"
    if cfg.exists():
        try:
            c = json.loads(cfg.read_text(encoding="utf-8"))
            facts.update({k: c[k] for k in ("architectures", "model_type", "max_position_embeddings") if k in c})
        except ValueError:
            facts["config_error"] = "config.json is not valid JSON"
    card = _front_matter(path / "README.md") if (path / "README.md").exists() else {}
    key = card.get("license")
    if key == "other":  # custom licenses are named in license_name
        key = card.get("license_name") or "other"
    facts.update({k: card[k] for k in ("license", "license_name", "license_link", "base_model") if k in card})
    lic = book.get(key if isinstance(key, str) else None)
    note = "" if lic else (f"model card says license '{key}', which the catalog does not know" if key
                           else "no license in the model card front matter")
    return Identity(str(path), "hf-folder", key if isinstance(key, str) else None, lic, facts, note)


def identify_path(path: Path, book: LicenseBook) -> Identity:
    if path.is_dir():
        return identify_hf_folder(path, book)
    return identify_gguf(path, book)
