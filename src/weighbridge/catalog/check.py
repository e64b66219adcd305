"""License check of models named on the command line or in a config, under one profile."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends.bundled import BUNDLED, resolve_bundled
from ..core.config import Config, ModelSpec
from ..core.errors import BackendUnavailable, WeighbridgeError
from .catalog import load_catalog
from .identify import Identity, identify_path
from .licenses import LicenseBook, Verdict, load_licenses, verdict_for
from .profile import Profile


@dataclass
class CheckResult:
    name: str
    identity: Identity
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.name, "identified_from": self.identity.kind, "license_key": self.identity.license_key,
                "facts": self.identity.facts, "note": self.identity.note, "review": self.identity.review or None,
                **self.verdict.to_dict()}


def identify_spec(spec: ModelSpec, cfg: Config, book: LicenseBook) -> Identity:
    """Which license a configured model is under: stated in the config, its catalog entry, or its files."""
    if spec.license:  # stated in the config: believed, and said so
        return Identity(spec.name, "config", spec.license, book.get(spec.license),
                        note="" if book.get(spec.license) else f"'{spec.license}' is not a license the catalog knows")
    if spec.catalog_id:  # the catalog's license for this release
        from .catalog import load_catalog

        entry = load_catalog().get(spec.catalog_id)
        if entry is None:
            return Identity(spec.name, "unknown", None, None, note=f"catalog_id '{spec.catalog_id}' is not in the catalog")
        if spec.backend != "llamacpp":
            lic = book.get(entry.license)
            return Identity(spec.name, "catalog", entry.license, lic, {"catalog_id": entry.id},
                            note="" if lic else f"license '{entry.license}' is not yet structured in the catalog")
    if spec.backend == "llamacpp":
        try:
            path = resolve_bundled(spec.bundled, spec.name) if spec.bundled else cfg.resolve(spec.path or "")
        except BackendUnavailable as e:
            return Identity(spec.name, "unknown", None, None, note=str(e))
        return identify_path(path, book)
    return Identity(spec.name, "served", None, None,
                    note="a served model's license cannot be read over its API: set 'license:' for it in weighbridge.yaml")


def check(targets: list[str], cfg: Config | None, profile: Profile) -> list[CheckResult]:
    book = load_licenses()
    results = []
    if not targets:
        if cfg is None:
            raise WeighbridgeError("nothing to check: name models, files or bundled aliases, or give -c weighbridge.yaml")
        targets = [m.name for m in cfg.models]
    names = {m.name: m for m in cfg.models} if cfg else {}
    for t in targets:
        if t in names:
            ident = identify_spec(names[t], cfg, book)  # type: ignore[arg-type]
        elif t in BUNDLED:
            ident = identify_path(resolve_bundled(t, t), book)
        elif Path(t).exists():
            ident = identify_path(Path(t), book)
        elif (entry := load_catalog().get(t)) is not None:  # a catalog id or a Hugging Face repo id
            lic = book.get(entry.license)
            ident = Identity(t, "catalog", entry.license, lic, {"catalog_id": entry.id},
                             note="" if lic else f"license '{entry.license}' is not yet structured in the catalog")
        else:
            raise WeighbridgeError(f"'{t}' is not a model in the config, a bundled alias ({', '.join(BUNDLED)}), "
                                   "a catalog id or Hugging Face repo id (see `weighbridge catalog list`), a GGUF "
                                   "file or a model folder")
        results.append(CheckResult(t, ident, verdict_of(ident, profile)))
    return results


def verdict_of(ident: Identity, profile: Profile) -> Verdict:
    """The license's verdict, held at "needs review" when the model's own files contradict it."""
    v = verdict_for(ident.license, profile, ident.note)
    if ident.review and v.verdict in ("allowed", "allowed_with_duties"):
        v.verdict, v.reason = "needs_review", ident.review
    return v
