"""Intervals and percentiles for the report. Small, exact, and tested against known values."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Sequence


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; sane at 0/n and n/n, unlike the Wald interval."""
    if n == 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends, no float dust
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method), q in [0, 100]; None when empty."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    b = pairs where only the first condition passed, c = only the second. Under the null each
    discordant pair is a fair coin, so p = min(1, 2 × P[X ≤ min(b, c)]), X ~ Binomial(b + c, ½).
    """
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_bootstrap(first: Sequence[float], second: Sequence[float], *, resamples: int = 10_000,
                     seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of (second − first) over paired items and its percentile bootstrap interval.

    Items are resampled with replacement as pairs, so the interval respects the pairing.
    """
    import numpy as np

    if len(first) != len(second) or not first:
        raise ValueError("paired_bootstrap needs two equally long, non-empty sequences")
    diffs = np.asarray(second, dtype=float) - np.asarray(first, dtype=float)
    n = len(diffs)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, 4_000_000 // n))  # bound memory: ~32 MB of indices per chunk
    means = np.concatenate([diffs[rng.integers(0, n, size=(min(chunk, resamples - i), n))].mean(axis=1)
                            for i in range(0, resamples, chunk)])
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(diffs.mean()), float(lo), float(hi)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one case: n samples, c of them passed (Chen et al., 2021)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)
