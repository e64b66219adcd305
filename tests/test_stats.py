from weighbridge.analysis.stats import mean, percentile, wilson_interval


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


def test_mcnemar_score_test_and_tango_interval_match_published_examples():
    """The pair `check`, the report and the variants table use: McNemar's asymptotic test and
    Tango's score interval for Δ, against worked examples in the literature."""
    import math

    from weighbridge.analysis.stats import mcnemar_score_p, tango_interval

    # Agresti, An Introduction to Categorical Data Analysis: presidential approval of 1,600 people,
    # 150 approved only at the first survey, 86 only at the second: z = −4.17
    assert math.isclose(abs(86 - 150) / math.sqrt(150 + 86), 4.17, abs_tol=0.005)
    assert mcnemar_score_p(150, 86) < 1e-4
    # Fagerland, Lydersen & Laake (BMC Med Res Methodol 13:91, 2013; Stat Med 33:2850, 2014): airway
    # hyper-responsiveness before/after stem-cell transplantation (Bentur et al. 2009: 1 pair only
    # before, 7 only after, 21 in all): asymptotic McNemar p = 0.034 (the exact conditional test gave
    # 0.070); Tango's interval for the difference 0.026 to 0.517 (reported with the opposite sign)
    assert round(mcnemar_score_p(1, 7), 3) == 0.034
    lo, hi = tango_interval(1, 7, 21)
    assert (round(lo, 3), round(hi, 3)) == (0.026, 0.517)
    # … and complete response before/after consolidation therapy (Cavo et al. 2012: 6 and 16 of 161):
    # asymptotic p = 0.033, Tango 0.0054 to 0.124 (the paper's −0.124 to −0.0054 for before − after)
    assert round(mcnemar_score_p(6, 16), 3) == 0.033
    lo, hi = tango_interval(6, 16, 161)
    assert (round(lo, 4), round(hi, 3)) == (0.0054, 0.124)


def test_the_interval_excludes_zero_exactly_when_the_test_rejects():
    from weighbridge.analysis.stats import mcnemar_score_p, tango_interval

    # the example that made the old pair disagree: 48 pairs, 4 discordant, all one way. The bootstrap
    # interval excluded 0 while McNemar's exact p was 0.125; now both say "significant" or neither
    lo, hi = tango_interval(4, 0, 48)
    assert hi < 0 and mcnemar_score_p(4, 0) < 0.05
    assert tango_interval(3, 0, 48)[1] > 0 and mcnemar_score_p(3, 0) > 0.05
    for n in (2, 7, 20, 48, 101):
        for b in range(n + 1):
            for c in range(n + 1 - b):
                lo, hi = tango_interval(b, c, n)
                assert lo <= (c - b) / n <= hi
                assert (lo > 0 or hi < 0) == (mcnemar_score_p(b, c) < 0.05), (b, c, n)
    # no discordant pairs is still uncertainty, not a point: ±z²/(n + z²)
    lo, hi = tango_interval(0, 0, 48)
    assert abs(hi - 1.959964 ** 2 / (48 + 1.959964 ** 2)) < 1e-6 and lo == -hi
    assert tango_interval(10, 0, 10)[0] == -1.0 and tango_interval(0, 10, 10)[1] == 1.0


def test_paired_bootstrap_fixed_seed_and_degenerate_cases():
    from weighbridge.analysis.stats import paired_bootstrap
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
    from weighbridge.analysis.stats import pass_at_k
    assert pass_at_k(5, 0, 1) == 0.0 and pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(5, 2, 1) == 0.4           # pass@1 is the plain pass rate
    assert pass_at_k(5, 2, 5) == 1.0           # one of the five passed
    assert abs(pass_at_k(10, 3, 2) - (1 - 21 / 45)) < 1e-12  # 1 − C(7,2)/C(10,2)
