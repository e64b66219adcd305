from weighbridge.stats import mean, percentile, wilson_interval


def test_wilson_matches_published_values():
    # Reference values: Wilson (1927) score interval, as tabulated by Newcombe (1998), 95%.
    lo, hi = wilson_interval(81, 263)
    assert round(lo, 4) == 0.2553 and round(hi, 4) == 0.3662
    lo, hi = wilson_interval(15, 148)
    assert round(lo, 4) == 0.0624 and round(hi, 4) == 0.1605
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and round(hi, 4) == 0.2775
    lo, hi = wilson_interval(10, 10)
    assert round(lo, 4) == 0.7225 and hi == 1.0


def test_wilson_empty_is_uninformative():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_percentile_interpolates_like_numpy():
    xs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert percentile(xs, 50) == 5.5
    assert abs(percentile(xs, 95) - 9.55) < 1e-9
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    assert mean([1, 2, 3]) == 2


def test_mcnemar_exact_known_values():
    from weighbridge.stats import mcnemar_exact
    # hand-computable: two-sided p = 2 × P[X ≤ min(b, c)], X ~ Bin(b + c, 1/2)
    assert mcnemar_exact(1, 6) == 2 * (1 + 7) / 128  # 0.125
    assert mcnemar_exact(0, 5) == 2 / 32
    assert mcnemar_exact(0, 6) == 2 / 64
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0
    # textbook example (Agresti, presidential approval): discordant 150 vs 86 → exact p ≈ 3.8e-5
    p = mcnemar_exact(150, 86)
    assert 3e-5 < p < 5e-5


def test_paired_bootstrap_fixed_seed_and_degenerate_cases():
    from weighbridge.stats import paired_bootstrap
    a = [0, 1, 1, 0, 1, 1, 1, 0, 1, 1]
    b = [1, 1, 1, 0, 1, 0, 1, 1, 1, 1]
    d1 = paired_bootstrap(a, b, seed=7)
    assert d1 == paired_bootstrap(a, b, seed=7)  # reproducible with a fixed seed
    assert d1[0] == 0.1 and d1[1] < 0.1 < d1[2]
    assert paired_bootstrap(a, a) == (0.0, 0.0, 0.0)
    shift = [x + 0.25 for x in a]
    mean, lo, hi = paired_bootstrap(a, shift)
    assert mean == lo == hi == 0.25


def test_pass_at_k_known_values():
    from weighbridge.stats import pass_at_k
    assert pass_at_k(5, 0, 1) == 0.0 and pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(5, 2, 1) == 0.4           # pass@1 is the plain pass rate
    assert pass_at_k(5, 2, 5) == 1.0           # one of the five passed
    assert abs(pass_at_k(10, 3, 2) - (1 - 21 / 45)) < 1e-12  # 1 − C(7,2)/C(10,2)
