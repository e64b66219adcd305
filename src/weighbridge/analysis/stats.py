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
    """Exactly rounded (fsum), so the same figures in another order - answers stored as they finish
    in one run, in case order in its cached re-run - give the same mean to the last digit."""
    return math.fsum(values) / len(values) if values else None


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


def mcnemar_score_p(b: int, c: int) -> float:
    """Two-sided p of McNemar's asymptotic test, z = (c − b) / √(b + c): the score test of Δ = 0
    that Tango's interval inverts, so the two always agree. 1 with no discordant pairs."""
    if b + c == 0:
        return 1.0
    z = abs(c - b) / math.sqrt(b + c)
    return math.erfc(z / math.sqrt(2))


def _tango_score(b: int, c: int, n: int, d: float) -> float:
    """Tango's score statistic for H: Δ = d, Δ = p(second only) − p(first only) over n pairs.

    The restricted maximum-likelihood estimate x of p(first only) under Δ = d is the positive root
    of 2n·x² − B·x − b·d·(1 − d) = 0 with B = (b + c) − d·(2n + b − c) (from the multinomial
    likelihood); the variance of (c − b)/n under the restriction is (2x + d(1 − d)) / n.
    """
    big_b = (b + c) - d * (2 * n + b - c)
    x = (big_b + math.sqrt(max(0.0, big_b * big_b + 8 * n * b * d * (1 - d)))) / (4 * n)
    var = n * (2 * x + d * (1 - d))
    num = c - b - n * d
    if var <= 0:
        return 0.0 if num == 0 else math.copysign(math.inf, num)
    return num / math.sqrt(var)


def tango_interval(b: int, c: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Tango's (1998) asymptotic score interval for a paired difference in proportions:
    {d : |T(d)| ≤ z}, from b pairs where only the first passed, c where only the second did, n in
    all. It contains 0 exactly when :func:`mcnemar_score_p` ≥ 1 − confidence."""
    if n <= 0 or b < 0 or c < 0 or b + c > n:
        raise ValueError("tango_interval needs 0 ≤ b, c and b + c ≤ n, n > 0")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    est = (c - b) / n

    def root(target: float, lo: float, hi: float) -> float:
        # T(d) falls as d rises: bisect for T(d) = target between lo and hi
        for _ in range(200):
            mid = (lo + hi) / 2
            if _tango_score(b, c, n, mid) > target:
                lo = mid
            else:
                hi = mid
            if hi - lo < 1e-12:
                break
        return (lo + hi) / 2

    lower = -1.0 if b == n else root(z, -1.0, est)
    upper = 1.0 if c == n else root(-z, est, 1.0)
    return (max(-1.0, lower), min(1.0, upper))
