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
