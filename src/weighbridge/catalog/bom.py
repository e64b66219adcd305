"""An AI bill of materials: CycloneDX 1.6 JSON with one machine-learning-model component per model.

Hashes come from weighbridge.catalog.lock when there is one (what was vetted), else from the files now.
Licenses use SPDX ids where one exists and name + URL otherwise. The document is validated
against the CycloneDX 1.6 JSON schema (cyclonedx-python-lib's strict validator) before writing.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from .. import __version__
from .catalog import load_catalog
from .check import check
from .licenses import load_licenses
from .profile import Profile
from ..core.config import Config
from ..core.errors import WeighbridgeError
from ..core.hashing import stable_hash
from .lock import lock_entry, lock_path, read_lock

_SPDX_IDS = {"Apache-2.0", "MIT"}


def _license_block(license_id: str | None) -> list[dict[str, Any]]:
    lic = load_licenses().get(license_id)
    if lic is None:
        return [{"license": {"name": license_id or "unknown"}}]
    if lic.spdx in _SPDX_IDS:
        return [{"license": {"id": lic.spdx, "url": lic.source}}]
    return [{"license": {"name": lic.name, "url": lic.source}}]


def build_bom(cfg: Config, profile: Profile | None = None, profile_name: str | None = None) -> dict[str, Any]:
    """``profile``: the deployment the license verdicts were judged under; the BOM records it (name,
    fields and their hash) beside the verdicts, so a verdict is never read apart from its premises."""
    lock = read_lock(lock_path(cfg)) if lock_path(cfg).exists() else None
    prof = profile or Profile()
    prof_fields = prof.model_dump(mode="json")
    verdicts = {r.name: r for r in check([m.name for m in cfg.models], cfg, prof)}
    catalog = load_catalog()
    components, refs = [], []
    for spec in cfg.models:
        entry = (lock or {}).get("models", {}).get(spec.name) or lock_entry(spec, cfg, allow_pickle=True)
        ref = f"model:{spec.name}"
        refs.append(ref)
        v = verdicts[spec.name]
        cat = catalog.get(spec.catalog_id) if spec.catalog_id else None
        files = entry.get("files", [])
        comp: dict[str, Any] = {
            "type": "machine-learning-model", "bom-ref": ref, "name": spec.name,
            "version": spec.revision or (files[0]["sha256"][:12] if files else spec.model or "unversioned"),
            "licenses": _license_block(v.verdict.license.id if v.verdict.license else v.identity.license_key),
            "properties": [{"name": "weighbridge:backend", "value": spec.backend},
                           {"name": "weighbridge:source", "value": entry.get("source", "")},
                           {"name": "weighbridge:license-verdict", "value": v.verdict.verdict},
                           {"name": "weighbridge:license-profile-sha256", "value": stable_hash(prof_fields)},
                           *[{"name": "weighbridge:license-caveat", "value": c} for c in v.verdict.caveats],
                           {"name": "weighbridge:hashes-from", "value": "weighbridge.lock" if lock else "files now"}],
            "modelCard": {"modelParameters": {"task": "text-generation",
                                              "architectureFamily": (cat.family if cat else
                                                                     str(v.identity.facts.get("general.architecture", "unknown"))),
                                              "modelArchitecture": (cat.architecture if cat else "unknown")},
                          "considerations": {"useCases": ["evaluated with weighbridge bakeoff"]}},
        }
        if len(files) == 1:
            comp["hashes"] = [{"alg": "SHA-256", "content": files[0]["sha256"]}]
        elif files:
            comp["components"] = [{"type": "file", "bom-ref": f"{ref}:{f['name']}", "name": f["name"],
                                   "hashes": [{"alg": "SHA-256", "content": f["sha256"]}]} for f in files]
        refs_ext = []
        if cat:
            refs_ext.append({"type": "distribution", "url": f"https://huggingface.co/{cat.hf_repo}"})
        if v.verdict.license:
            refs_ext.append({"type": "license", "url": v.verdict.license.source})
        if spec.base_url:
            refs_ext.append({"type": "other", "url": spec.base_url, "comment": f"served model id {spec.model}"})
        if refs_ext:
            comp["externalReferences"] = refs_ext
        components.append(comp)
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.6", "serialNumber": f"urn:uuid:{uuid.uuid4()}", "version": 1,
        "metadata": {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "tools": {"components": [{"type": "application", "name": "weighbridge", "version": __version__}]},
                     "component": {"type": "application", "bom-ref": "project", "name": Path(cfg.base_dir).name or "project"},
                     "properties": [{"name": "weighbridge:license-profile", "value": profile_name or "default"},
                                    {"name": "weighbridge:license-profile-sha256", "value": stable_hash(prof_fields)},
                                    {"name": "weighbridge:license-profile-fields",
                                     "value": json.dumps(prof_fields, sort_keys=True, ensure_ascii=False)}]},
        "components": components,
        "dependencies": [{"ref": "project", "dependsOn": refs}] + [{"ref": r} for r in refs],
    }


def validate_bom(bom: dict[str, Any]) -> None:
    """Raise WeighbridgeError unless the document validates against the CycloneDX 1.6 schema."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom))
    if error is not None:
        raise WeighbridgeError(f"generated BOM does not validate against CycloneDX 1.6: {error}")
