"""Paired comparison of two sets of answers to the same cases, and the regression gate.

Models are compared on the same (case, sample) items, so the tests are paired. The difference in
pass rate gets Tango's score interval and its test McNemar's asymptotic (score) test: the test is
the interval's own statistic at Δ = 0, so the interval excludes 0 exactly when p < 0.05 – the two
figures shown side by side cannot contradict each other. (Earlier versions paired McNemar's exact
conditional test with a bootstrap interval: on 4 discordant pairs all one way the interval
excluded 0 while p was 0.125.) Fagerland, Lydersen and Laake recommend the asymptotic McNemar test
over the exact conditional one, which is conservative ("The McNemar test for binary matched-pairs
data: mid-p and asymptotic are better than exact conditional", BMC Med Res Methodol 13:91, 2013),
and Tango's interval among the paired-difference intervals. Partial credit (mean scorer values)
keeps a paired bootstrap interval. Flipped cases: fixed (failed before, passes now), broken (the
reverse).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import WeighbridgeError
from .stats import mcnemar_score_p, paired_bootstrap, tango_interval
from ..storage.store import Store

Outcomes = dict[str, bool]  # "case_id#sample" -> passed


@dataclass
class Comparison:
    model: str
    baseline_label: str
    pairs: int
    baseline_pass_rate: float
    candidate_pass_rate: float
    delta: float
    delta_ci95: tuple[float, float]
    fixed: list[str]
    broken: list[str]
    p_value: float
    test: str = ("McNemar asymptotic (score) test, two-sided; 95% CI of Δ by Tango's score method, which inverts "
                 "the same statistic: the interval excludes 0 exactly when p < 0.05")
    missing: list[str] = field(default_factory=list)
    score_delta: float | None = None  # mean scorer value (partial credit), candidate − baseline
    score_delta_ci95: tuple[float, float] | None = None

    def regression(self, alpha: float, margin: float) -> bool:
        """Significant at ``alpha`` and worse by more than ``margin`` (a pass-rate fraction)."""
        return self.p_value < alpha and -self.delta > margin

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["delta_ci95"] = list(self.delta_ci95)
        d["score_delta_ci95"] = list(self.score_delta_ci95) if self.score_delta_ci95 else None
        return d


def outcomes_from_run(store: Store, run_id: str) -> dict[str, Outcomes]:
    out: dict[str, Outcomes] = {}
    for r in store.generations(run_id):
        out.setdefault(r.model, {})[r.key] = r.passed
    return out


def outcomes_from_file(path: Path) -> dict[str, Outcomes]:
    """A bakeoff --json file carries each model's per-case outcomes under models[].outcomes."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {m["model"]: {k: bool(v) for k, v in m["outcomes"].items()} for m in data["models"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise WeighbridgeError(f"{path}: not a weighbridge results file with per-case outcomes ({e})") from None


def scores_from_run(store: Store, run_id: str) -> dict[str, dict[str, float]]:
    """Per (case, sample) mean scorer value: partial credit (fields right, tests passed) the pass/fail hides."""
    out: dict[str, dict[str, float]] = {}
    for r in store.generations(run_id):
        out.setdefault(r.model, {})[r.key] = r.mean_score
    return out


def scores_from_file(path: Path) -> dict[str, dict[str, float]]:
    """Per-case mean scores from a results file (absent in files that predate them)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {m["model"]: {k: float(v) for k, v in (m.get("scores") or {}).items()} for m in data["models"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def fingerprints_from_run(store: Store, run_id: str) -> dict[str, dict[str, Any] | None]:
    """Each model's fingerprint as the run's manifest recorded it (None where it recorded none)."""
    from ..backends.fingerprint import from_manifest

    models = store.run(run_id)["manifest"].get("models") or {}
    return {name: from_manifest(entry) for name, entry in models.items()}


def fingerprints_from_file(path: Path) -> dict[str, dict[str, Any] | None]:
    """The same from a results file's manifest (files that predate fingerprints give none)."""
    from ..backends.fingerprint import from_manifest

    try:
        models = (json.loads(path.read_text(encoding="utf-8")).get("manifest") or {}).get("models") or {}
        return {name: from_manifest(entry) for name, entry in models.items()} if isinstance(models, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def compare(model: str, baseline: Outcomes, candidate: Outcomes, label: str,
            baseline_scores: dict[str, float] | None = None, candidate_scores: dict[str, float] | None = None) -> Comparison:
    keys = sorted(set(baseline) & set(candidate))
    if not keys:
        raise WeighbridgeError(f"model '{model}': no cases in common with the baseline ({label})")
    before = [1.0 if baseline[k] else 0.0 for k in keys]
    after = [1.0 if candidate[k] else 0.0 for k in keys]
    fixed = [k for k in keys if not baseline[k] and candidate[k]]
    broken = [k for k in keys if baseline[k] and not candidate[k]]
    delta = (len(fixed) - len(broken)) / len(keys)
    lo, hi = tango_interval(len(broken), len(fixed), len(keys))
    score_delta = score_ci = None
    if baseline_scores and candidate_scores:
        common = [k for k in keys if k in baseline_scores and k in candidate_scores]
        if common:
            d, slo, shi = paired_bootstrap([baseline_scores[k] for k in common], [candidate_scores[k] for k in common])
            score_delta, score_ci = d, (slo, shi)
    return Comparison(model=model, baseline_label=label, pairs=len(keys), score_delta=score_delta,
                      score_delta_ci95=score_ci,
                      baseline_pass_rate=sum(before) / len(keys), candidate_pass_rate=sum(after) / len(keys),
                      delta=delta, delta_ci95=(lo, hi), fixed=fixed, broken=broken,
                      p_value=mcnemar_score_p(len(broken), len(fixed)),
                      missing=sorted(set(baseline) ^ set(candidate)))
