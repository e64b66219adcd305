"""Which family a model belongs to (a judge tends to favour its own family's answers)."""

from __future__ import annotations

from ..core.config import Config, ModelSpec


_FAMILIES = ("qwen", "qwq", "llama", "deepseek", "glm", "kimi", "minimax", "mistral", "gemma", "gpt-oss", "phi",
             "smollm", "yi")


def model_family(spec: ModelSpec, cfg: Config) -> str | None:
    """The model family, from its catalog entry, its GGUF's own metadata, or its served model id."""
    from .catalog import load_catalog
    from .check import identify_spec
    from .licenses import load_licenses

    cat = load_catalog()
    entry = cat.get(spec.catalog_id) if spec.catalog_id else None
    if entry is None:
        ident = identify_spec(spec, cfg, load_licenses())
        cid = ident.facts.get("catalog_id")
        entry = cat.get(cid) if cid else None
        hint = str(ident.facts.get("general.basename") or spec.model or "").lower()
    else:
        hint = ""
    if entry is not None:
        return "qwen" if entry.family == "qwen" else entry.family
    for fam in _FAMILIES:
        if fam in hint:
            return "qwen" if fam == "qwq" else fam
    return None
