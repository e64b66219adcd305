"""What a model's answers cost, and what one *successful* answer costs.

Two bases, stated in every report:
- ``tokens``: API prices, cost = prompt_tokens × input $/1M + completion_tokens × output $/1M.
- ``gpu_hour``: self-hosted hardware, cost = GPU $/hour × busy hours, where busy hours =
  Σ request latency ÷ concurrency (requests in flight share the hardware). $/1M output tokens is
  then GPU $/hour ÷ (3600 × measured output tokens/s at that concurrency).
Cost per success = total cost ÷ passed cases: a cheap model that fails most cases is not cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.config import Price
from ..core.format import usd


@dataclass
class CostFigures:
    basis: str  # "tokens", "gpu_hour" or "none"
    label: str  # the basis in a few words, for table cells
    total_usd: float | None
    per_mtok_output_usd: float | None
    per_success_usd: float | None
    formula: str
    # why these figures are not exact (prompt tokens not counted, a busy machine): shown as "≈" beside
    # each dollar figure and as a footnote, and in JSON as ``estimated`` with ``marks``
    marks: list[str] = field(default_factory=list)

    @property
    def estimated(self) -> bool:
        return bool(self.marks)

    def shown(self, value: float | None) -> str:
        """One of these figures as a table shows it: dollars, with "≈" when it is an estimate."""
        return ("≈" if self.estimated and value is not None else "") + usd(value)


def compute_cost(price: Price | None, *, prompt_tokens: int, completion_tokens: int, busy_seconds: float,
                 concurrency: float, passed: int, prompt_tokens_known: bool = True,
                 concurrency_note: str = "the most requests in flight at once") -> CostFigures:
    """``concurrency`` is what the engine actually ran the model at (not the configured default):
    requests in flight together share the hardware's hour."""
    if price is None or (price.gpu_hour_usd is None and price.input_per_mtok is None and price.output_per_mtok is None):
        return CostFigures("none", "no price set", None, None, None, "no price in config")
    marks: list[str] = []
    if price.gpu_hour_usd is not None:
        hours = busy_seconds / max(concurrency, 1) / 3600
        total = price.gpu_hour_usd * hours
        per_mtok = total / completion_tokens * 1e6 if completion_tokens else None
        formula = f"${price.gpu_hour_usd:g}/h × Σlatency ÷ concurrency {concurrency:g} ({concurrency_note})"
        basis, label = "gpu_hour", f"hardware ${price.gpu_hour_usd:g}/h"
    else:
        tokens = price.tokens()
        assert tokens is not None, "a price with no basis returned above"
        inp, out = tokens.input_per_mtok, tokens.output_per_mtok
        total = tokens.cost(prompt_tokens, completion_tokens)
        per_mtok = out if price.output_per_mtok is not None else None
        formula = f"in ${inp:g}/1M × prompt tokens + out ${out:g}/1M × completion tokens"
        basis, label = "tokens", "API token prices"
        if not prompt_tokens_known and inp > 0:
            marks.append("the server reported no prompt tokens and none were counted: the input cost is missing "
                         "from the total (it is a lower bound); set tokenizer: on the model to count them")
    return CostFigures(basis, label, total, per_mtok, total / passed if passed else None, formula, marks)


def concurrency_used(manifest: dict[str, Any], name: str, runtime: dict[str, Any] | None
                      ) -> tuple[float, str] | None:
    """The requests a model really had in flight together: the engine's limit for it (a server's safe
    default, one for in-process llama.cpp), lowered to the peak it measured when fewer ran at once; for
    concurrency found as the run went (auto), the time-weighted mean of the requests in flight; for
    in-process llama.cpp decoding answers together, the time-weighted mean of the answers in its batch
    (requests waiting in its queue share nothing)."""
    batch = (runtime or {}).get("batch")
    if isinstance(batch, dict):
        mean = batch.get("mean_sequences")
        if isinstance(mean, (int, float)) and not isinstance(mean, bool) and 1 <= mean <= 4096:
            return float(mean), f"the mean answers decoded together (llama.cpp batch of {batch.get('size')})"
    adaptive = (runtime or {}).get("adaptive")
    if isinstance(adaptive, dict):
        mean = adaptive.get("mean_in_flight")
        if isinstance(mean, (int, float)) and not isinstance(mean, bool) and 0 < mean < 1e6:
            return float(mean), (f"the mean requests in flight over the run (concurrency auto: found between 1 and "
                                 f"{adaptive.get('ceiling')}, {adaptive.get('final')} at the end)")
    limit = (manifest.get("concurrency") or {}).get(name)
    if limit == "batch":  # in-process batches, every answer from the cache
        return 1.0, ("answers from the cache: the llama.cpp batch they were decoded in is not known here; priced "
                     "at 1 at a time, an upper bound")
    if limit == "auto":  # every answer came from the cache: the concurrency they were made at is not known here
        return 1.0, ("concurrency auto, answers from the cache: the concurrency they were made at is not known "
                     "here; priced at 1 in flight, an upper bound")
    peak = (runtime or {}).get("peak_in_flight")
    if isinstance(peak, int) and peak > 0:
        cap = limit if isinstance(limit, int) and limit > 0 else peak
        return min(cap, peak), "the most requests in flight at once"
    if isinstance(limit, int) and limit > 0:
        return limit, "the limit the engine used"
    return None
