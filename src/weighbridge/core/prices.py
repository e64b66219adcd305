"""The one per-token price: USD per 1M prompt and completion tokens, and the one formula that turns
tokens into dollars. A gateway upstream's price is one; a managed API's line on a price sheet is one
with where it was read (and a cached-input rate); a model's ``price:`` in a bakeoff config holds one
when it is priced by tokens rather than by the hardware hour.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Config models refuse fields they do not know: a typo is an error naming the field, never a
    setting silently ignored."""

    model_config = ConfigDict(extra="forbid")


class TokenPrice(Strict):
    """USD per 1M tokens; a self-hosted model may state its amortised hardware cost this way."""

    input_per_mtok: float = Field(0.0, ge=0, description="USD per 1M prompt tokens")
    output_per_mtok: float = Field(0.0, ge=0, description="USD per 1M completion tokens")

    def input_rate(self, cached_share: float = 0.0) -> float:
        """USD per 1M prompt tokens when ``cached_share`` of them hit a provider's prompt cache."""
        return self.input_per_mtok

    def cost(self, prompt_tokens: float, completion_tokens: float, cached_share: float = 0.0) -> float:
        return (prompt_tokens * self.input_rate(cached_share) + completion_tokens * self.output_per_mtok) / 1e6
