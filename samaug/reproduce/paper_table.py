"""A paper table built from evaluated runs: mean ± std over seeds, the published number beside
it, and the paired statistics of the main metric against the baseline.

Rows follow the grid (``grids.py``): per test split (the polyp layout) or with the splits as
column groups (GlaS), per model, the baseline (``raw``-trained, ``raw`` strategy) first, the
compute-matched baseline (``raw_x2``: the joint run's optimizer steps on raw input), then the
``joint``-trained model's four strategies. A cell of the table is one split, metric and row:

- its value per seed is what ``metrics.json`` holds for that split and strategy (GlaS: pooled
  over the split as the challenge scores it; MoNuSeg and polyp: the mean over its images);
- ``mean`` is their mean and ``std`` the sample standard deviation (ddof=1) over seeds.
  With one seed there is no spread to estimate: ``std`` is NaN and the Markdown prints the
  mean alone (the CSV leaves the std empty).
- A row whose model and arm has no run yet (a grid still running) is kept with no values,
  so the published number still shows; it gets no statistics.
- ``length``: how long its runs trained (``runs.RunLength``); a row of runs shorter than
  their recipe is ``short`` (a smoke run), and the table says so on that row.

The statistics (``stats.py``) compare, per split, each non-baseline row with its model's
baseline on the main metric's *per-image* scores (``test_per_image.csv``), each side
averaged over its seeds per image: the paper's comparison; the joint rows are compared with
the compute-matched baseline too, the fair one (``Grid.references``). For GlaS the table's
values are pooled over a split but the test pairs per-image scores, so its mean difference is
not the difference of the table's two cells.

The splits shown are the grid's splits that any run was evaluated on; every run must then
have all of them (InputError naming its ``metrics.json`` otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from precompute.checks import integer
from precompute.types import InputError, SamaugError
from samaug.reproduce.grids import Grid
from samaug.reproduce.paper import PaperResults, load_paper
from samaug.reproduce.runs import (
    METRICS,
    PER_IMAGE,
    RunLength,
    RunResult,
    check_run,
    check_unique,
)
from samaug.reproduce.stats import PairedComparison, average_over_seeds, paired_comparison


@dataclass
class Cell:
    """One value of the table over seeds. values: {seed: value}, in seed order."""

    values: dict[int, float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.values.values()))) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (ddof=1); NaN with fewer than two, or where a
        value is not finite (an infinite Hausdorff distance has no spread)."""
        values = np.array(list(self.values.values()), dtype=float)
        if self.n < 2 or not np.isfinite(values).all():
            return math.nan
        return float(np.std(values, ddof=1))


@dataclass
class TableRow:
    """One row: a model, arm and test-time strategy over ``splits``.

    cells / paper: keyed by (split, metric); paper values are fractions like ours.
    comparisons: {reference arm: {split: main-metric comparison against that reference
    row}} (``Grid.references``); absent for the baseline row and wherever either side has
    no run. lengths: how long each of its runs trained, by seed.
    """

    model: str
    arm: str
    strategy: str
    splits: tuple[str, ...]
    seeds: tuple[int, ...]
    cells: dict[tuple[str, str], Cell]
    paper: dict[tuple[str, str], float] = field(default_factory=dict)
    comparisons: dict[str, dict[str, PairedComparison]] = field(default_factory=dict)
    is_baseline: bool = False
    lengths: tuple[RunLength, ...] = ()

    @property
    def short(self) -> bool:
        """Whether any of its runs trained less than its recipe (a smoke run)."""
        return any(length.short for length in self.lengths)


@dataclass
class Table:
    """A grid's table: its rows in the paper's order, how the statistics were made, and the
    store's settings it was made from (``store``: its location, dataset and masker, when
    known)."""

    grid: Grid
    splits: tuple[str, ...]
    rows: list[TableRow]
    paper: PaperResults
    n_boot: int
    seed: int
    store: dict = field(default_factory=dict)

    @property
    def short(self) -> bool:
        return any(row.short for row in self.rows)


def build_table(
    grid: Grid,
    runs: list[RunResult],
    n_boot: int = 10000,
    seed: int = 0,
    paper: PaperResults | None = None,
    store: dict | None = None,
) -> Table:
    """The ``grid`` table of ``runs`` (module doc). Runs are checked before any statistic:
    each must fit the grid (``runs.check_run``), no two may share model, arm and seed, and
    each must hold every split shown, scored on the same images as every other run.
    store: what the table says of its store (``store_settings``)."""
    integer("n_boot", n_boot, minimum=1)
    integer("seed", seed, minimum=0)
    if not runs:
        raise SamaugError(f"no runs to build the {grid.name} table from")
    for run in runs:
        check_run(run, grid)
    check_unique(runs)
    splits = tuple(s for s in grid.splits if any(s in run.split_scores for run in runs))
    for run in runs:
        absent = [s for s in splits if s not in run.split_scores]
        if absent:
            raise InputError(
                f"{Path(run.run_dir) / METRICS}: not evaluated on {', '.join(absent)}, which "
                "other runs of the table were; evaluate it on the same splits"
            )
    _check_images(grid, runs, splits)
    paper = load_paper() if paper is None else paper
    blocks = [(s,) for s in splits] if grid.split_axis == "rows" else [splits]
    rows = [
        _row(grid, runs, paper, block, model, arm, strategy, n_boot, seed)
        for block in blocks
        for model in grid.models
        for arm, strategy in grid.rows
    ]
    return Table(grid, splits, rows, paper, n_boot, seed, dict(store or {}))


def store_settings(store) -> dict:
    """What a table says of the store its runs trained on (a ``SamaugStore``): location,
    dataset and masker (``precompute.maskers.describe_masker``)."""
    from precompute.maskers import describe_masker

    masker = store.attrs.get("masker", {})
    described = describe_masker(masker)
    return {
        "location": store.location,
        "dataset": store.attrs.get("dataset", {}).get("name"),
        "masker": str(masker.get("kind", "unknown")) + (f" ({described})" if described else ""),
    }


def _row(grid, runs, paper, splits, model, arm, strategy, n_boot, seed) -> TableRow:
    mine = _runs_of(runs, model, arm)
    row = TableRow(
        model=model,
        arm=arm,
        strategy=strategy,
        splits=splits,
        seeds=tuple(r.seed for r in mine),
        cells={
            (split, m.name): Cell({r.seed: r.split_scores[split][strategy][m.name] for r in mine})
            for split in splits
            for m in grid.metrics
        },
        is_baseline=(arm, strategy) == grid.rows[0],
        lengths=tuple(r.length for r in mine if r.length is not None),
    )
    for split in splits:
        for m in grid.metrics:
            value = paper.value(grid.name, model, arm, strategy, split, m.name)
            if value is not None:
                row.paper[(split, m.name)] = value
    for reference_arm, reference_strategy in grid.references((arm, strategy)):
        reference = _runs_of(runs, model, reference_arm)
        if not mine or not reference:
            continue
        row.comparisons[reference_arm] = {
            split: paired_comparison(
                _per_image(reference, split, reference_strategy, grid.main_metric),
                _per_image(mine, split, strategy, grid.main_metric),
                grid.main.higher_is_better,
                n_boot=n_boot,
                seed=seed,
            )
            for split in splits
        }
    return row


def _runs_of(runs: list[RunResult], model: str, arm: str) -> list[RunResult]:
    return sorted((r for r in runs if r.model == model and r.arm == arm), key=lambda r: r.seed)


def _per_image(runs: list[RunResult], split: str, strategy: str, metric: str) -> dict:
    return average_over_seeds(
        [r.image_scores(split, strategy, metric) for r in runs], [r.run_dir for r in runs]
    )


def _check_images(grid: Grid, runs: list[RunResult], splits: tuple[str, ...]) -> None:
    """InputError naming the CSV when a run scored other images of a split than the first
    run did (per-image pairs need the same images on both sides)."""
    for split in splits:
        reference, first = None, ""
        for run in runs:
            for arm, strategy in grid.rows:
                if arm != run.arm:
                    continue
                images = set(run.image_scores(split, strategy, grid.main_metric))
                if reference is None:
                    reference, first = images, run.run_dir
                elif images != reference:
                    raise InputError(
                        f"{Path(run.run_dir) / PER_IMAGE}: split {split!r}, strategy "
                        f"{strategy!r} has {len(images)} images, {len(images - reference)} of "
                        f"them not scored in {Path(first) / PER_IMAGE} (which has "
                        f"{len(reference)}); evaluate every run on the same store and splits"
                    )
