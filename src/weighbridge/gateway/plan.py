"""The routing plan (YAML): named routes → weighted upstreams with a fallback chain.

Only the upstreams named here are ever called; a client cannot supply a base URL.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError
from ..yamlsource import load_yaml, validation_error


class Upstream(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    base_url: str
    model: str
    api_key_env: str | None = None
    weight: float = Field(1.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return v.rstrip("/")


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upstreams: list[Upstream] = Field(min_length=1, description="load-balanced by weight")
    fallback: list[Upstream] = Field(default_factory=list, description="tried in order when the chosen one fails")
    connect_timeout_s: float = Field(5.0, gt=0)
    first_token_timeout_s: float = Field(60.0, gt=0)
    total_timeout_s: float = Field(300.0, gt=0)
    max_tokens: int | None = Field(None, ge=1, description="cap on a request's max_tokens")


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    routes: dict[str, Route] = Field(min_length=1)
    default_route: str | None = None

    @model_validator(mode="after")
    def _default_exists(self) -> "Plan":
        if self.default_route is not None and self.default_route not in self.routes:
            raise ValueError(f"default_route '{self.default_route}' is not one of the routes")
        return self


def load_plan(path: str | Path) -> Plan:
    src = load_yaml(path)
    if not isinstance(src.data, dict):
        raise ConfigError("a plan is a mapping with 'routes:'", path=str(path), line=1)
    try:
        return Plan.model_validate(src.data)
    except ValidationError as e:
        raise validation_error(e, src, str(path)) from None
