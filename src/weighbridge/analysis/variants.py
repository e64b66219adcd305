"""Variants of one model side by side: quality against the reference, memory, speed, and the pick.

Each non-reference variant is compared with the reference on the same (case, sample) pairs, as
``weighbridge check`` compares a candidate with its baseline: McNemar's test on the flips and
Tango's score interval of Δ pass rate, which inverts the same statistic (see ``compare``). Three verdicts follow, with α and the margin stated:

- **worse**: significantly worse (p < α) by more than the margin – ``check``'s regression rule;
- **within margin**: the interval's lower end is above −margin, so a loss larger than the margin
  is ruled out (a non-inferiority test at the same 95%);
- **not shown**: neither – not significantly worse, but the data cannot rule out a loss past the
  margin (too few cases for that margin).

The pick is the smallest variant (file size, then resident memory) not significantly worse than the
reference by more than the margin, and beside it the smallest one shown within the margin: the
first is the issue's "may we ship it", the second what the data actually proves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .compare import Comparison, compare

if TYPE_CHECKING:
    from .summary import ModelSummary, RunSummary

ALPHA = 0.05


@dataclass
class VariantRow:
    model: str
    variant: str
    reference: bool
    passed: int
    jobs: int
    pass_rate: float
    ci95: tuple[float, float]
    file_bytes: int | None
    resident_bytes: int | None
    output_tok_s: float | None
    comparison: Comparison | None = None
    verdict: str = "reference"

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "variant": self.variant, "reference": self.reference, "passed": self.passed,
                "jobs": self.jobs, "pass_rate": self.pass_rate, "ci95": list(self.ci95),
                "file_bytes": self.file_bytes, "resident_bytes": self.resident_bytes,
                "output_tok_s": self.output_tok_s, "verdict": self.verdict,
                "comparison": self.comparison.to_dict() if self.comparison else None}


@dataclass
class VariantGroup:
    name: str
    reference: str
    margin: float
    alpha: float
    rows: list[VariantRow]
    pick: str | None = None  # smallest not significantly worse by more than the margin
    pick_shown: str | None = None  # smallest shown within the margin
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "reference": self.reference, "margin": self.margin, "alpha": self.alpha,
                "pick": self.pick, "pick_shown_within_margin": self.pick_shown, "notes": self.notes,
                "rule": RULE, "variants": [r.to_dict() for r in self.rows]}


RULE = ("worse: McNemar p < α and Δ below −margin (check's regression rule); within margin: the 95% "
        "interval of Δ (Tango's score interval) lies above −margin; not shown: neither. Pick: the smallest variant that is not "
        "'worse'; 'shown' adds the smallest that is 'within margin'.")


def verdict(c: Comparison, alpha: float, margin: float) -> str:
    if c.regression(alpha, margin):
        return "worse"
    if c.delta_ci95[0] >= -margin - 1e-12:
        return "within margin"
    return "not shown"


def _size(r: VariantRow) -> tuple[float, float]:
    inf = float("inf")
    return (r.file_bytes if r.file_bytes is not None else inf, r.resident_bytes if r.resident_bytes is not None else inf)


def variant_groups(summary: "RunSummary", alpha: float = ALPHA) -> list[VariantGroup]:
    """One group per config entry with variants, in the run's model order."""
    by_group: dict[str, list["ModelSummary"]] = {}
    for m in summary.models:
        if m.variant_of:
            by_group.setdefault(m.variant_of, []).append(m)
    groups = []
    for name, members in by_group.items():
        ref = next((m for m in members if m.reference), members[0])
        ref_out = summary.outcomes(ref.model)
        rows = []
        for m in members:
            row = VariantRow(model=m.model, variant=m.variant or m.model, reference=m is ref, passed=m.passed,
                             jobs=m.jobs, pass_rate=m.pass_rate, ci95=m.ci95, file_bytes=m.file_bytes,
                             resident_bytes=m.resident_bytes, output_tok_s=m.output_tok_s)
            if m is not ref and m.jobs and ref.jobs:
                row.comparison = compare(m.model, ref_out, summary.outcomes(m.model), ref.model,
                                         summary.scores(ref.model), summary.scores(m.model))
                row.verdict = verdict(row.comparison, alpha, ref.variant_margin)
            elif m is not ref:
                row.verdict = "no answers"
            rows.append(row)
        group = VariantGroup(name=name, reference=ref.variant or ref.model, margin=ref.variant_margin, alpha=alpha,
                             rows=rows)
        keep = [r for r in rows if r.verdict in ("reference", "within margin", "not shown")]
        shown = [r for r in rows if r.verdict in ("reference", "within margin")]
        group.pick = min(keep, key=_size).variant if keep else None
        group.pick_shown = min(shown, key=_size).variant if shown else None
        if any(r.file_bytes is None for r in rows):
            group.notes.append("variants served over HTTP have no file size here: they sort last")
        if any(r.resident_bytes is None for r in rows):
            group.notes.append("resident memory is measured for in-process (llamacpp) variants that answered "
                               "in this run; cached answers and served variants show –")
        groups.append(group)
    return groups


def pick_lines(g: VariantGroup) -> list[str]:
    """The verdict in words, for every renderer."""
    pts = f"{g.margin * 100:g} points"
    by = {r.variant: r for r in g.rows}
    lines = []
    if g.pick is None:
        lines.append(f"no variant of {g.name} is not significantly worse than {g.reference} by more than {pts}")
    else:
        r = by[g.pick]
        what = "the reference itself" if r.reference else (
            f"Δ {r.comparison.delta * 100:+.1f} points, McNemar p = {r.comparison.p_value:.2g}" if r.comparison else "")
        lines.append(f"smallest variant not significantly worse than {g.reference} by more than {pts}: "
                     f"{g.pick}{' (' + what + ')' if what else ''}")
    if g.pick_shown != g.pick:
        pairs = max((r.comparison.pairs for r in g.rows if r.comparison), default=0)
        lines.append(f"shown to stay within {pts} (95% interval of Δ above −{pts}): "
                     + (f"{g.pick_shown}" if g.pick_shown and g.pick_shown != g.reference else
                        f"only the reference – with {pairs} pairs the intervals are wider than the margin") )
    return lines
