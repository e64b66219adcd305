"""A deployment profile: the facts about a planned use that license clauses turn on.

Unknown facts stay ``None`` on purpose: a clause that depends on one yields "needs review",
never a silent "allowed".
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..core.yamlsource import load_yaml, validation_error


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deployment: Literal["internal", "customer_facing"] = "internal"
    commercial: bool = Field(True, description="used by or for a business (internal business use counts)")
    offered_as_api: bool = Field(False, description="third parties call the model through your API")
    monthly_active_users: int | None = Field(None, ge=0)
    annual_revenue_usd: float | None = Field(None, ge=0)
    fine_tuning: bool = False
    distillation: bool = Field(False, description="training another model on this model's outputs")
    redistribute_weights: bool = False
    multimodal: bool = False
    regions: list[str] = Field(default_factory=list, description="where users or the company are, e.g. [EU, US]")
    sector: str | None = Field("general", description="e.g. general, healthcare, lending, military; null = unknown")

    @property
    def serves_third_parties(self) -> bool:
        return self.deployment == "customer_facing" or self.offered_as_api

    @property
    def makes_derivative_available(self) -> bool:
        return (self.fine_tuning or self.distillation) and (self.redistribute_weights or self.serves_third_parties)


def load_profile(path: str | Path) -> Profile:
    src = load_yaml(path)
    try:
        return Profile.model_validate(src.data or {})
    except ValidationError as e:
        raise validation_error(e, src, str(path)) from None
