"""A reasoning model's thinking, counted and priced apart from its answers, and the answers it never
gave because the thinking was cut off (censored).

- **answers with thinking**: answered jobs whose output held thinking (a reasoning field or tags);
- **reasoning tokens**: tokens of that thinking (the server's ``reasoning_tokens``, else the model's
  tokenizer; answers whose thinking could not be counted are said beside the figure), and their
  share of all output tokens;
- **$ on thinking**: token prices: reasoning tokens × the output price; hardware: the run's cost ×
  the thinking's share of output tokens (an estimate: decode time taken as proportional to tokens);
- **output tokens per success**: every output token the model spent, thinking included, ÷ passed;
- **censored**: jobs whose thinking ``max_tokens`` cut off before an answer: not scored, not a wrong
  answer – each one is a budget that was too small;
- **closed at budget**: answers whose thinking reached ``thinking_budget`` and was closed for them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .cost import CostFigures

if TYPE_CHECKING:
    from ..storage.store import StoredGeneration


@dataclass
class ThinkingFigures:
    answered: int
    with_thinking: int
    reasoning_tokens: int
    uncounted: int  # answers with thinking whose tokens nobody counted
    completion_tokens: int
    censored: int
    censored_max_tokens: list[int]  # the max_tokens that cut them off
    closed_at_budget: int
    passed: int
    reasoning_usd: float | None
    reasoning_usd_note: str | None

    @property
    def share(self) -> float | None:
        return self.reasoning_tokens / self.completion_tokens if self.completion_tokens else None

    @property
    def tokens_per_success(self) -> float | None:
        return self.completion_tokens / self.passed if self.passed else None

    @property
    def any(self) -> bool:
        return bool(self.with_thinking or self.censored)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "share": self.share, "tokens_per_success": self.tokens_per_success}


def thinking_figures(rows: list["StoredGeneration"], cost: CostFigures, completion_tokens: int, passed: int,
                     output_per_mtok: float | None) -> ThinkingFigures:
    answered = [r.generation for r in rows if r.generation is not None]
    infos = [g.raw.get("thinking") for g in answered]
    thought = [i for i in infos if isinstance(i, dict)]
    counted = [i["tokens"] for i in thought if isinstance(i.get("tokens"), int) and i["tokens"] >= 0]
    reasoning = sum(counted)
    censored = [g for g in answered if isinstance(g.raw.get("censored"), str)]
    budgets = [g.raw.get("thinking_budget") for g in answered]
    usd, note = None, None
    if cost.total_usd is not None and reasoning:
        if cost.basis == "tokens" and output_per_mtok is not None:
            usd, note = reasoning * output_per_mtok / 1e6, "reasoning tokens × the output price"
        elif cost.basis == "gpu_hour" and completion_tokens:
            usd = cost.total_usd * reasoning / completion_tokens
            note = "≈ the run's hardware cost × the thinking's share of output tokens (decode time taken as " \
                   "proportional to tokens)"
    return ThinkingFigures(
        answered=len(answered), with_thinking=len(thought), reasoning_tokens=reasoning,
        uncounted=len(thought) - len(counted), completion_tokens=completion_tokens, censored=len(censored),
        censored_max_tokens=sorted({int(g.raw["thinking"].get("max_tokens") or 0) for g in censored
                                    if isinstance(g.raw.get("thinking"), dict)} - {0}),
        closed_at_budget=sum(1 for b in budgets if isinstance(b, dict) and b.get("closed_by_weighbridge")),
        passed=passed, reasoning_usd=usd, reasoning_usd_note=note)


def thinking_rows(figures: list[ThinkingFigures | None], costs: list[CostFigures]) -> list[tuple[str, list[str]]]:
    """Table rows (label, one plain-text cell per model) when any model thought or was censored."""
    if not any(f is not None and f.any for f in figures):
        return []

    def cell(f: ThinkingFigures | None, text: str) -> str:
        return text if f is not None and f.answered else "–"

    def tokens(f: ThinkingFigures) -> str:
        share = f" ({f.share:.0%} of output)" if f.share is not None else ""
        more = f", {f.uncounted} uncounted" if f.uncounted else ""
        return f"{f.reasoning_tokens:,}{share}{more}"

    def money(f: ThinkingFigures, c: CostFigures) -> str:
        if f.reasoning_usd is None:
            return "–"
        return ("≈" if c.basis == "gpu_hour" and not c.estimated else "") + c.shown(f.reasoning_usd)

    return [
        ("answers with thinking", [cell(f, f"{f.with_thinking}/{f.answered}") if f else "–" for f in figures]),
        ("reasoning tokens", [cell(f, tokens(f)) if f else "–" for f in figures]),
        ("$ on thinking", [cell(f, money(f, c)) if f else "–" for f, c in zip(figures, costs)]),
        ("output tokens / success", [cell(f, f"{f.tokens_per_success:,.0f}" if f.tokens_per_success else "no passes")
                                     if f else "–" for f in figures]),
        ("censored (thinking cut off)", [cell(f, f"{f.censored}/{f.answered}") if f else "–" for f in figures]),
        ("thinking closed at budget", [cell(f, str(f.closed_at_budget)) if f else "–" for f in figures]),
    ]


def censored_lines(models: list[tuple[str, ThinkingFigures | None]]) -> list[str]:
    """What every report says under its table when a budget was too small."""
    lines = []
    for name, f in models:
        if f is None or not f.censored:
            continue
        at = ", ".join(map(str, f.censored_max_tokens)) or "?"
        lines.append(f"{name}: {f.censored} of {f.answered} answers censored - the thinking was cut off by max_tokens "
                     f"({at}) before any answer, so they are not scored (counted as not passed, not as wrong "
                     "answers): the budget was too small for them; raise max_tokens or set thinking_budget")
    return lines
