"""The model catalog: one sourced entry per open-weight release, loaded from the package's YAML.

Every entry names where its facts come from (``sources``) and which of them are not yet checked
against the vendor's own files (``unverified``), so a reader knows what to trust.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..core.errors import ConfigError
from ..core.yamlsource import load_yaml, validation_error

CATALOG_AS_OF = "2026-11-23"
FACT_FIELDS = {"release_date", "params_total_b", "params_active_b", "context_length", "license", "kv", "architecture"}


class Published(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weights: bool
    inference_code: bool
    training_code: bool
    data: bool


class KV(BaseModel):
    """What the KV cache needs per token: layers × (2 × kv_heads × head_dim), or a latent (MLA) width."""

    model_config = ConfigDict(extra="forbid")
    layers: int = Field(gt=0)
    kv_heads: int | None = Field(None, gt=0)
    head_dim: int | None = Field(None, gt=0)
    mla_dim: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _shape(self) -> "KV":
        if self.mla_dim is None and (self.kv_heads is None or self.head_dim is None):
            raise ValueError("kv needs kv_heads and head_dim, or mla_dim for latent attention")
        return self

    def bytes_per_token(self, bytes_per_value: float = 2.0) -> float:
        width = self.mla_dim if self.mla_dim is not None else 2 * self.kv_heads * self.head_dim  # type: ignore[operator]
        return self.layers * width * bytes_per_value


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    family: str
    name: str
    hf_repo: str = Field(pattern=r"^[^/\s]+/[^/\s]+$")
    release_date: str = Field(pattern=r"^\d{4}-\d{2}(-\d{2})?$")
    architecture: Literal["dense", "moe"]
    params_total_b: float = Field(gt=0)
    params_active_b: float | None = Field(None, gt=0)
    context_length: int = Field(gt=0)
    license: str
    chat: bool = True
    reasoning: bool = False
    base_model: str | None = None
    published: Published
    strengths: list[str] = Field(default_factory=list)
    kv: KV | None = None
    sources: dict[str, str]
    unverified: list[str] = Field(default_factory=list)
    notes: str | None = None

    @field_validator("sources")
    @classmethod
    def _sources(cls, v: dict[str, str]) -> dict[str, str]:
        for key in ("card", "license"):
            if not v.get(key, "").startswith("https://"):
                raise ValueError(f"sources.{key} must be an https URL")
        return v

    @field_validator("unverified")
    @classmethod
    def _unverified(cls, v: list[str]) -> list[str]:
        unknown = set(v) - FACT_FIELDS
        if unknown:
            raise ValueError(f"unverified names unknown fields {sorted(unknown)} (known: {sorted(FACT_FIELDS)})")
        return v

    @property
    def active_b(self) -> float:
        return self.params_active_b or self.params_total_b


@dataclass
class Catalog:
    models: list[ModelEntry]
    as_of: str

    def get(self, key: str) -> ModelEntry | None:
        k = key.lower()
        for m in self.models:
            if k in (m.id, m.hf_repo.lower(), m.name.lower()):
                return m
        return None


@cache
def load_catalog() -> Catalog:
    folder = resources.files("weighbridge.catalog") / "data" / "models"
    models: list[ModelEntry] = []
    for res in sorted(folder.iterdir(), key=lambda r: r.name):
        if not res.name.endswith(".yaml"):
            continue
        path = f"weighbridge/catalog/data/models/{res.name}"
        src = load_yaml(path, res.read_text(encoding="utf-8"))
        family = src.data.get("family")
        for i, raw in enumerate(src.data.get("models") or []):
            raw = {"family": family, **raw}
            try:
                models.append(ModelEntry.model_validate(raw))
            except ValidationError as e:
                raise validation_error(e, src, path, prefix=("models", i)) from None
    ids = [m.id for m in models]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise ConfigError(f"duplicate catalog ids: {sorted(dupes)}", path="weighbridge/catalog/data/models")
    return Catalog(models, CATALOG_AS_OF)


def entry_dict(m: ModelEntry) -> dict[str, Any]:
    return m.model_dump(exclude_none=True)
