"""Paired statistics of ``samaug reproduce`` (samaug/reproduce/stats.py): the Wilcoxon
signed-rank test as scipy computes it, the bootstrap interval against a direct loop, known
effects, and the degenerate cases."""

import math

import numpy as np
import pytest
import scipy.stats

from precompute.types import SamaugError
from samaug.reproduce import paired_comparison
from samaug.reproduce.stats import MIN_IMAGES, average_over_seeds


def by_image(values) -> dict[str, float]:
    """{image key: value}; the keys sort in the values' order (the order images are resampled)."""
    return {f"img{i:03d}": float(v) for i, v in enumerate(values)}


def test_wilcoxon_statistic_and_p_equal_scipys_on_the_same_numbers():
    rng = np.random.default_rng(3)
    for n, with_zeros in ((12, False), (40, False), (30, True), (80, True)):
        base = rng.uniform(0.4, 0.8, n)
        other = base + rng.normal(0.01, 0.03, n)
        if with_zeros:
            other[:5] = base[:5]  # exact ties with the baseline are dropped, as scipy does
        result = paired_comparison(by_image(base), by_image(other), True, n_boot=10)
        expected = scipy.stats.wilcoxon(other - base)
        assert result.statistic == expected.statistic
        assert result.p_value == expected.pvalue
        assert result.n == n and result.mean_difference == pytest.approx(np.mean(other - base))


def test_bootstrap_interval_equals_a_direct_loop():
    base = by_image([0.50, 0.61, 0.47, 0.70, 0.55, 0.58, 0.66, 0.49, 0.63, 0.52, 0.57])
    other = by_image([0.52, 0.60, 0.55, 0.71, 0.61, 0.57, 0.70, 0.53, 0.62, 0.58, 0.60])
    d = np.array([other[k] - base[k] for k in sorted(base)])
    for n_boot, seed in ((300, 0), (2500, 7)):  # 2500: more than one chunk of resamples
        rng = np.random.default_rng(seed)
        means = []
        for _ in range(n_boot):
            picks = rng.integers(0, len(d), size=len(d))
            means.append(sum(d[i] for i in picks) / len(d))
        low, high = np.percentile(means, [2.5, 97.5])
        result = paired_comparison(base, other, True, n_boot=n_boot, seed=seed)
        assert result.ci_low == pytest.approx(low, abs=1e-12)
        assert result.ci_high == pytest.approx(high, abs=1e-12)


def test_a_known_effect_excludes_zero_and_no_effect_includes_it():
    rng = np.random.default_rng(5)
    base = rng.uniform(0.4, 0.8, 30)
    better = base + 0.05 + rng.normal(0, 0.01, 30)
    gain = paired_comparison(by_image(base), by_image(better), True)
    assert gain.ci_low > 0.03 and gain.p_value < 1e-4 and gain.verdict == "better"
    # The same numbers for a distance (lower is better) are a loss.
    loss = paired_comparison(by_image(base), by_image(better), False)
    assert loss.ci_low > 0 and loss.verdict == "worse"
    noise = rng.uniform(0.01, 0.03, 15)
    shift = np.concatenate([noise, -noise])  # symmetric around 0: no effect at all
    none = paired_comparison(by_image(base), by_image(base + shift), True)
    assert none.ci_low < 0 < none.ci_high and none.p_value > 0.5 and none.verdict == "unclear"


def test_too_few_images_all_zero_differences_and_non_finite_scores():
    # Below MIN_IMAGES (10) paired images: the mean difference, but no test and no interval.
    assert MIN_IMAGES == 10
    nine = paired_comparison(by_image(np.zeros(9)), by_image(np.arange(1, 10) / 10), True)
    assert nine.n == 9 and nine.mean_difference == pytest.approx(0.5)
    assert math.isnan(nine.p_value) and math.isnan(nine.statistic) and math.isnan(nine.ci_low)
    assert nine.note == "9 paired image(s), below 10: no test or interval"
    ten = paired_comparison(by_image(np.zeros(10)), by_image(np.arange(1, 11) / 10), True)
    assert ten.p_value < 0.01 and ten.ci_low > 0 and ten.note == ""
    empty = paired_comparison({}, {}, True)
    assert empty.n == 0 and math.isnan(empty.p_value) and math.isnan(empty.ci_low)
    zeros = np.linspace(0.3, 0.7, 12)
    same = paired_comparison(by_image(zeros), by_image(zeros), True)
    assert math.isnan(same.p_value) and "zero" in same.note
    assert same.ci_low == same.ci_high == 0.0
    base = np.full(12, 4.0)
    base[1] = math.inf
    hausdorff = paired_comparison(by_image(base), by_image(np.full(12, 2.5)), False)
    assert hausdorff.n == 11 and hausdorff.n_excluded == 1
    assert hausdorff.mean_difference == pytest.approx(-1.5)
    with pytest.raises(SamaugError, match="different images"):
        paired_comparison({"a": 1.0, "b": 1.0}, {"a": 1.0, "c": 1.0}, True)


def test_seeds_are_averaged_per_image_before_pairing():
    mean = average_over_seeds([{"a": 0.2, "b": 0.4}, {"a": 0.4, "b": 0.8}])
    assert mean == pytest.approx({"a": 0.3, "b": 0.6})
    with pytest.raises(SamaugError, match="run0 and run1 were scored on different images"):
        average_over_seeds([{"a": 0.2}, {"b": 0.4}], ["run0", "run1"])
