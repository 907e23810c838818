"""Is a gain real? Paired per-image comparisons against the baseline.

Each non-baseline row of a table is compared with its model's baseline (``raw``-trained,
tested on raw images) on the main metric, image by image, within one test split:

- Pairing. The images are the independent units. Each side is first averaged over its
  seeds, per image (``average_over_seeds``): the baseline's score of an image is the mean
  over the raw-trained runs, the other side's the mean over its own runs. Seeds are not
  pairs: seed 0 of the baseline and seed 0 of the joint model share nothing but a number.
  Both sides must score the same images.
- Difference: ``other - baseline`` per image, in the metric's own units and direction; the
  record says whether higher is better, so a positive mean difference is a gain for AJI or
  Dice and a loss for a Hausdorff distance.
- Wilcoxon signed-rank test (``scipy.stats.wilcoxon`` with its defaults: differences of
  exactly zero are dropped, as in Wilcoxon's original test, and ``method="auto"`` chooses
  the exact distribution for small samples, the normal approximation otherwise), two-sided.
  When every difference is zero the test is not run: the statistic and p-value are NaN and
  ``note`` says why. (scipy would return p = 1 there, which reads as evidence of no
  difference where there is no evidence at all.)
- Bootstrap 95% confidence interval of the mean difference: the percentile method over
  ``n_boot`` resamples of the images (with replacement), drawn from
  ``numpy.random.default_rng(seed)``, so the same numbers always give the same interval.
- Below ``MIN_IMAGES`` (10) paired images neither the test nor the interval is computed
  (NaN, and ``note`` says so): under 6 images the two-sided signed-rank test cannot reach
  p < 0.05 whatever the differences (its smallest p is 2 / 2^n), and a bootstrap over so
  few images resamples a handful of distinct values, giving intervals far narrower than the
  uncertainty. MoNuSeg's test set has 14 images, GlaS's parts 60 and 20, PraNet's test sets
  60 to 380: every full table clears it; a smoke run on a few images does not.
- Images whose score is NaN or infinite on either side (an object Hausdorff against an
  empty prediction) are left out of both and counted in ``n_excluded``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from precompute.checks import integer
from precompute.types import SamaugError

CONFIDENCE = 0.95
MIN_IMAGES = 10  # paired images below which no test or interval is given (module doc)
BOOT_CHUNK = 1000  # resamples drawn at a time, to bound memory for large test sets


@dataclass(frozen=True)
class PairedComparison:
    """``other`` against ``baseline`` over n paired images (module doc).

    mean_difference: mean of ``other - baseline`` in the metric's units; a gain when
    ``higher_is_better`` and positive, or not ``higher_is_better`` and negative.
    statistic, p_value: Wilcoxon signed-rank (NaN when not run, ``note`` says why).
    ci_low, ci_high: bootstrap 95% percentile interval of ``mean_difference``.
    differences: the n per-image differences, in the images' sorted key order.
    """

    n: int
    n_excluded: int
    higher_is_better: bool
    mean_baseline: float
    mean_other: float
    mean_difference: float
    statistic: float
    p_value: float
    ci_low: float
    ci_high: float
    n_boot: int
    note: str = ""
    differences: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)

    @property
    def verdict(self) -> str:
        """Whether the interval excludes 0, read in the metric's direction: "better",
        "worse", or "unclear" when it holds 0 (or is NaN)."""
        if not (self.ci_low > 0 or self.ci_high < 0):
            return "unclear"
        return "better" if (self.ci_low > 0) == self.higher_is_better else "worse"


def paired_comparison(
    baseline: Mapping[Hashable, float],
    other: Mapping[Hashable, float],
    higher_is_better: bool,
    n_boot: int = 10000,
    seed: int = 0,
) -> PairedComparison:
    """Compare per-image scores {image key: value} of two rows (module doc).

    Both mappings must have the same keys (SamaugError naming a few that differ).
    """
    integer("n_boot", n_boot, minimum=1)
    integer("seed", seed, minimum=0)
    if set(baseline) != set(other):
        only_base = sorted(map(str, set(baseline) - set(other)))
        only_other = sorted(map(str, set(other) - set(baseline)))
        raise SamaugError(
            "the rows compared were scored on different images "
            f"(only in the baseline: {only_base[:3]}, only in the other: {only_other[:3]}); "
            "evaluate every run on the same splits"
        )
    keys = sorted(baseline, key=str)
    base = np.array([baseline[k] for k in keys], np.float64)
    new = np.array([other[k] for k in keys], np.float64)
    finite = np.isfinite(base) & np.isfinite(new)
    base, new = base[finite], new[finite]
    diff = new - base
    n = int(diff.size)
    if n < MIN_IMAGES:
        statistic = p_value = ci_low = ci_high = math.nan
        note = f"{n} paired image(s), below {MIN_IMAGES}: no test or interval"
    else:
        statistic, p_value, note = wilcoxon(diff)
        ci_low, ci_high = bootstrap_ci(diff, n_boot, seed)
    return PairedComparison(
        n=n,
        n_excluded=int((~finite).sum()),
        higher_is_better=higher_is_better,
        mean_baseline=float(base.mean()) if n else math.nan,
        mean_other=float(new.mean()) if n else math.nan,
        mean_difference=float(diff.mean()) if n else math.nan,
        statistic=statistic,
        p_value=p_value,
        ci_low=ci_low,
        ci_high=ci_high,
        n_boot=n_boot,
        note=note,
        differences=diff,
    )


def wilcoxon(differences: np.ndarray) -> tuple[float, float, str]:
    """(statistic, two-sided p-value, note) of the signed-rank test on ``differences``."""
    if differences.size < 2:
        return math.nan, math.nan, f"{differences.size} paired image(s): too few for a test"
    if not np.any(differences):
        return math.nan, math.nan, "every difference is zero: nothing to rank"
    from scipy.stats import wilcoxon as scipy_wilcoxon

    result = scipy_wilcoxon(differences)
    return float(result.statistic), float(result.pvalue), ""


def bootstrap_ci(
    differences: np.ndarray, n_boot: int, seed: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile interval of the mean of ``differences`` (1-D float) over ``n_boot``
    resamples with replacement; draws ``rng.integers(0, n, size=(chunk, n))`` in chunks of
    ``BOOT_CHUNK`` rows, the same stream as one (n_boot, n) draw."""
    n = differences.size
    if n == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, BOOT_CHUNK):
        rows = min(BOOT_CHUNK, n_boot - start)
        means[start : start + rows] = differences[rng.integers(0, n, size=(rows, n))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def average_over_seeds(
    per_seed: Sequence[Mapping[Hashable, float]], names: Sequence[str] | None = None
) -> dict[Hashable, float]:
    """Per image, the mean of its scores over the seeds' runs ({image key: value} each).

    Every run must have scored the same images (SamaugError naming the runs, by ``names``
    where given, otherwise). A non-finite score in any seed makes the image's mean
    non-finite, so ``paired_comparison`` leaves it out.
    """
    if not per_seed:
        return {}
    keys = set(per_seed[0])
    for index, scores in enumerate(per_seed[1:], start=1):
        if set(scores) != keys:
            differ = sorted(map(str, keys ^ set(scores)))
            which = f"{names[0]} and {names[index]}" if names else "the seeds' runs"
            raise SamaugError(
                f"{which} were scored on different images (e.g. {differ[:3]}); "
                "evaluate every run on the same splits"
            )
    return {k: float(np.mean([scores[k] for scores in per_seed])) for k in keys}
