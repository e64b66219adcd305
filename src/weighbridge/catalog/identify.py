"""Identify what a local model file or folder is, and under which license, from its own metadata.

GGUF files describe themselves (``general.license``, ``general.basename``, ``general.size_label``…);
Hugging Face folders through ``config.json`` and the README's YAML front matter. A license we do
not recognise is reported as such: the verdict is then "needs review", never "allowed".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..core.gguf import GGUFError, read_metadata
from .licenses import License, LicenseBook


@dataclass
class Identity:
    target: str
    kind: str  # gguf | hf-folder | served | unknown
    license_key: str | None
    license: License | None
    facts: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    review: str = ""  # set when the files contradict each other: the verdict is at best "needs review"


_LICENSE_FILE = re.compile(r"^(licen[cs]e|model_licen[cs]e|license[-_]model|copying)([-_.].*)?$", re.I)


def license_files(folder: Path) -> list[Path]:
    """Files in a model folder that hold license text (LICENSE, LICENSE-MODEL, MODEL_LICENSE.txt, …)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and _LICENSE_FILE.match(p.name) and p.stat().st_size < 1 << 20)


@dataclass
class TextMatch:
    file: str
    fingerprint: str | None  # of the file under the matched (or declared) license's bounds
    license: License | None


def match_license_files(folder: Path, book: LicenseBook) -> list[TextMatch]:
    """Which catalog license each license file in the folder is, word for word."""
    out = []
    for f in license_files(folder):
        text = f.read_text(encoding="utf-8", errors="replace")
        html = f.suffix.lower() in (".html", ".htm")
        lic = book.match_text(text, html=html)
        out.append(TextMatch(f.name, lic.fingerprint_of(text, html=html) if lic else None, lic))
    return out


def _reconcile(declared: License | None, key: str | None, texts: list[TextMatch]) -> tuple[License | None, str, str]:
    """(license, note, review) from what the model card declares and what its license files say.

    The text is what binds, so a matching LICENSE file decides; a card and a file that disagree,
    or a file whose words differ from the text the catalog structured, leave the verdict to a person.
    """
    matched = [t for t in texts if t.license]
    # LICENSE-CODE beside LICENSE-MODEL (DeepSeek's layout) governs the code, not the weights
    matched = [t for t in matched if "code" not in t.file.lower()] or matched
    if len({t.license.id for t in matched}) > 1 and not (declared and any(t.license is declared for t in matched)):  # type: ignore[union-attr]
        found = ", ".join(f"{t.file}: {t.license.id}" for t in matched)  # type: ignore[union-attr]
        return matched[0].license, "", f"the folder's license files are different licenses ({found})"
    if declared is not None:
        if any(t.license is declared for t in matched):
            return declared, "", ""
        others = [t for t in matched if t.license is not declared]
        if others:
            t = others[0]
            return t.license, "", (f"the model card says '{key}' but {t.file} is the text of '{t.license.id}'"  # type: ignore[union-attr]
                                   " - check which terms apply")
        if texts and declared.fingerprint:
            names = ", ".join(t.file for t in texts)
            return declared, "", (f"{names} does not match the '{declared.id}' text the catalog structured"
                                  " (see `weighbridge license verify-text`): its terms may differ")
        return declared, "", ""
    if matched:
        t = matched[0]
        return t.license, f"license identified from the text of {t.file}", ""
    return None, "", ""


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


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def match_catalog(*, repo: str | None = None, basename: str | None = None, size_label: str | None = None,
                  name: str | None = None) -> str | None:
    """The catalog entry a local model is a copy or quantization of, when its metadata says enough.

    A Hugging Face repo id decides outright; otherwise the GGUF's base name and size label must
    both appear in exactly one entry id (instruct variants win when the name says instruct).
    """
    from .catalog import load_catalog

    cat = load_catalog()
    if repo:
        hit = cat.get(repo)
        if hit:
            return hit.id
    if not basename or not size_label:
        return None
    base, size = _norm(basename), _norm(size_label)
    hits = [m for m in cat.models if base in _norm(m.id) and size in _norm(m.id)]
    if len(hits) > 1 and name and "instruct" in name.lower():
        hits = [m for m in hits if "instruct" in m.id] or hits
    if len(hits) > 1:
        chat = [m for m in hits if m.chat]
        hits = chat if len(chat) == 1 else hits
    return hits[0].id if len(hits) == 1 else None


def identify_gguf(path: Path, book: LicenseBook) -> Identity:
    try:
        meta = read_metadata(path)
    except (GGUFError, OSError) as e:
        return Identity(str(path), "unknown", None, None, note=f"cannot read GGUF metadata: {e}")
    facts = {k: meta[k] for k in ("general.name", "general.basename", "general.size_label", "general.architecture",
                                  "general.license", "general.license.name", "general.license.link", "general.finetune")
             if k in meta}
    match = match_catalog(basename=meta.get("general.basename"), size_label=meta.get("general.size_label"),
                          name=meta.get("general.name"))
    if match:
        facts["catalog_id"] = match
    key = meta.get("general.license")
    lic = book.get(key) or book.get(meta.get("general.license.name"))
    note = "" if lic else (f"GGUF says license '{key}', which the catalog does not know" if key
                           else "the GGUF names no license (general.license)")
    if lic is None and key is None and match:  # silent file, known model: the catalog entry's sourced license
        from .catalog import load_catalog

        entry = load_catalog().get(match)
        if entry is not None and book.get(entry.license):
            key, lic = entry.license, book.get(entry.license)
            note = f"the GGUF names no license; the catalog entry {match} (sourced) says {entry.license}"
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
    repo = card.get("base_model") if isinstance(card.get("base_model"), str) else None
    match = match_catalog(repo=repo) or match_catalog(repo=path.name.replace("--", "/"))
    if match:
        facts["catalog_id"] = match
    key = key if isinstance(key, str) else None
    texts = match_license_files(path, book)
    if texts:
        facts["license_files"] = {t.file: (t.license.id if t.license else "not a text the catalog knows") for t in texts}
    lic, note, review = _reconcile(book.get(key), key, texts)
    if lic is None:
        note = (f"model card says license '{key}', which the catalog does not know" if key
                else "no license in the model card front matter or license file the catalog knows")
    return Identity(str(path), "hf-folder", key, lic, facts, note, review)


def identify_path(path: Path, book: LicenseBook) -> Identity:
    if path.is_dir():
        return identify_hf_folder(path, book)
    return identify_gguf(path, book)
