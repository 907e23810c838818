"""Evaluated runs read back from their directories, as plain data for the tables and statistics.

A run directory written by ``samaug train`` and ``samaug eval`` holds:

- ``config.json``: the TrainConfig; ``model``, ``mode``, ``steps_per_batch`` (the two make
  the run's arm, ``grids.arm_of``), ``seed``, and how long it trained (``epochs``, the
  recipe's epochs, ``samples_per_epoch``) are read;
- ``metrics.json``: ``{"test": {split: {strategy: {metric: value}}}}`` (entries of a split
  that are not a strategy, like ``select_took_samaug``, are skipped);
- ``test_per_image.csv``: columns ``split, image_id, strategy`` and one column per metric,
  one row per image, split and strategy; ``metrics.json``'s "train" summary gives the
  optimizer steps taken.

Every problem with these files is an InputError naming the file (and the line of the CSV),
raised while loading, before any table is built. Given a grid, ``load_run`` also checks that
the run is one of its models and arms, that ``metrics.json`` holds every table metric for
every strategy of the grid in each of the grid's splits the run was evaluated on, and that
the CSV has the main metric's column.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from precompute.received import read_json_file
from precompute.types import InputError
from samaug.reproduce.grids import Grid, arm_of

CONFIG, METRICS, PER_IMAGE = "config.json", "metrics.json", "test_per_image.csv"
KEY_COLUMNS = ("split", "image_id", "strategy")


@dataclass(frozen=True)
class RunLength:
    """How long a run trained: ``epochs`` of its ``recipe_epochs``, ``items_per_epoch``
    (None: the protocol's, every image once), ``steps`` (optimizer steps; None if its
    metrics.json does not say). ``short``: fewer epochs than the recipe, or a budget of items
    per epoch: a smoke run, not a reproduction."""

    epochs: int
    recipe_epochs: int
    items_per_epoch: int | None
    steps: int | None

    @property
    def short(self) -> bool:
        return self.epochs < self.recipe_epochs or self.items_per_epoch is not None

    def describe(self) -> str:
        items = "" if self.items_per_epoch is None else f", {self.items_per_epoch} items/epoch"
        steps = "" if self.steps is None else f", {self.steps} optimizer steps"
        return f"{self.epochs} of {self.recipe_epochs} epochs{items}{steps}"


@dataclass
class RunResult:
    """One evaluated run.

    split_scores: {split: {strategy: {metric: value}}} as metrics.json holds them (GlaS
    scores pooled over the split, other datasets the mean over its images).
    per_image: one dict per CSV row: "split", "image_id", "strategy" (str) and every metric
    column as a float (NaN for an empty cell; inf is kept, e.g. an object Hausdorff).
    """

    model: str
    arm: str
    seed: int
    split_scores: dict[str, dict[str, dict[str, float]]]
    per_image: list[dict] = field(default_factory=list)
    run_dir: str = ""
    length: RunLength | None = None

    def image_scores(self, split: str, strategy: str, metric: str) -> dict[str, float]:
        """{image_id: value} of one split, strategy and metric (empty if none was scored)."""
        return {
            row["image_id"]: row[metric]
            for row in self.per_image
            if row["split"] == split and row["strategy"] == strategy
        }


def load_run(run_dir: str | Path, grid: Grid | None = None) -> RunResult:
    """Read one run directory (module doc); with ``grid``, check it fits that grid."""
    run_dir = Path(run_dir)
    config = _read_json(run_dir / CONFIG, "config")
    for key in ("model", "mode", "seed"):
        if key not in config:
            raise InputError(f"{run_dir / CONFIG}: no {key!r}; is this a samaug run directory?")
    seed = config["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"{run_dir / CONFIG}: seed must be a whole number, not {seed!r}")
    metrics = _read_json(run_dir / METRICS, "metrics")
    if not isinstance(metrics.get("test"), dict):
        raise InputError(
            f"{run_dir / METRICS}: no test results; evaluate the run first (samaug eval {run_dir})"
        )
    run = RunResult(
        model=str(config["model"]),
        arm=arm_of(str(config["mode"]), config.get("steps_per_batch", 1)),
        seed=seed,
        split_scores=_split_scores(metrics["test"], run_dir / METRICS),
        per_image=_read_per_image(run_dir / PER_IMAGE),
        run_dir=str(run_dir),
        length=_length(config, metrics),
    )
    if grid is not None:
        check_run(run, grid)
    return run


def load_runs(run_dirs: Iterable[str | Path], grid: Grid | None = None) -> list[RunResult]:
    """``load_run`` of each directory; two runs of the same model, mode and seed are an
    InputError naming both directories."""
    runs = [load_run(d, grid) for d in run_dirs]
    check_unique(runs)
    return runs


def check_unique(runs: Iterable[RunResult]) -> None:
    """InputError naming both directories when two runs share model, arm and seed."""
    seen: dict[tuple, str] = {}
    for run in runs:
        key = (run.model, run.arm, run.seed)
        if key in seen:
            raise InputError(
                f"{seen[key]} and {run.run_dir} are both model {run.model}, arm {run.arm}, "
                f"seed {run.seed}; pass one of them"
            )
        seen[key] = run.run_dir


def check_run(run: RunResult, grid: Grid) -> None:
    """InputError naming the file when ``run`` cannot fill its rows of ``grid``."""
    config = Path(run.run_dir) / CONFIG
    if run.model not in grid.models:
        raise InputError(
            f"{config}: model {run.model!r} is not in the {grid.name} table "
            f"({', '.join(grid.models)})"
        )
    if run.arm not in grid.arms:
        raise InputError(
            f"{config}: arm {run.arm!r} (its mode and steps per batch) is not in the "
            f"{grid.name} table ({', '.join(grid.arms)})"
        )
    splits = [s for s in grid.splits if s in run.split_scores]
    if not splits:
        raise InputError(
            f"{Path(run.run_dir) / METRICS}: none of the {grid.name} test splits "
            f"({', '.join(grid.splits)}) was evaluated; it has {', '.join(run.split_scores)}"
        )
    strategies = {s for arm, s in grid.rows if arm == run.arm}
    for split in splits:
        for strategy in sorted(strategies):
            scores = run.split_scores[split].get(strategy, {})
            absent = [m.name for m in grid.metrics if m.name not in scores]
            if absent:
                raise InputError(
                    f"{Path(run.run_dir) / METRICS}: split {split!r}, strategy {strategy!r} has "
                    f"no {', '.join(absent)}; re-evaluate the run with samaug eval"
                )
    if run.per_image and grid.main_metric not in run.per_image[0]:
        raise InputError(
            f"{Path(run.run_dir) / PER_IMAGE}: no {grid.main_metric!r} column, which the "
            f"{grid.name} statistics need; re-evaluate the run with samaug eval"
        )


def _length(config: dict, metrics: dict) -> RunLength | None:
    """How long the run trained, from its resolved config (None for a config without a
    recipe: not a run this samaug trained)."""
    from train.protocols import RECIPES

    recipe = config.get("recipe")
    epochs = config.get("epochs")
    if recipe not in RECIPES or not isinstance(epochs, int):
        return None
    train = metrics.get("train") if isinstance(metrics.get("train"), dict) else {}
    steps = train.get("steps") if isinstance(train.get("steps"), int) else None
    items = config.get("samples_per_epoch")
    items = items if isinstance(items, int) else None
    return RunLength(epochs, RECIPES[recipe].epochs, items, steps)


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        hint = "train the run first" if what == "config" else "evaluate the run (samaug eval)"
        raise InputError(f"{path}: missing; {hint}")
    value = read_json_file(path)
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def _split_scores(test: dict, path: Path) -> dict[str, dict[str, dict[str, float]]]:
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for split, by_strategy in test.items():
        if not isinstance(by_strategy, dict):
            raise InputError(f"{path}: test split {split!r} is not an object of strategies")
        scores[split] = {}
        for strategy, values in by_strategy.items():
            if not isinstance(values, dict):
                continue  # a per-split figure such as select_took_samaug
            scores[split][strategy] = {
                metric: _number(value, f"{path}: {split}/{strategy}/{metric}")
                for metric, value in values.items()
            }
    return scores


def _read_per_image(path: Path) -> list[dict]:
    if not path.is_file():
        raise InputError(f"{path}: missing; evaluate the run (samaug eval) to write it")
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            raw_rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: cannot read it as CSV ({err})") from err
    absent = [c for c in KEY_COLUMNS if c not in columns]
    if absent:
        raise InputError(f"{path}: no {', '.join(absent)} column (has {', '.join(columns)})")
    metrics = [c for c in columns if c not in KEY_COLUMNS]
    rows, seen = [], set()
    for line, raw in enumerate(raw_rows, start=2):
        key = tuple(raw[c] for c in KEY_COLUMNS)
        if key in seen:
            raise InputError(f"{path}, line {line}: a second row for {'/'.join(key)}")
        seen.add(key)
        row: dict = dict(zip(KEY_COLUMNS, key, strict=True))
        for c in metrics:
            text = raw.get(c)
            row[c] = math.nan if text in (None, "") else _number(text, f"{path}, line {line}, {c}")
        rows.append(row)
    return rows


def _number(value, where: str) -> float:
    if isinstance(value, bool):
        raise InputError(f"{where}: expected a number, found {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise InputError(f"{where}: expected a number, found {value!r}") from err
