"""Evaluate trained runs on the store's test splits with the paper's test-time strategies.

For every test image, one pass gives the raw-input and the augmented-input probabilities
(whole image, overlapping sliding windows); from them the four strategies: ``raw``,
``samaug``, ``ensemble`` (mean of the two) and ``select`` (per image the more certain).
Each is scored by the run's task (``train.tasks``, with the metrics of ``train.metrics``):

- glands (glas): object F1, object Dice, object Hausdorff per split and for all test splits
  together;
- nuclei (monuseg): AJI, AJI+, PQ, pixel F1;
- binary (kvasir, polyp, folder): mean Dice, mean IoU, Dice at 0.5, S-measure,
  mean/max E-measure, weighted F-measure, MAE.

MoNuSeg and polyp metrics are computed per image and averaged over the images of a split
(the way the PraNet and MoNuSeg evaluation scripts report them). The GlaS scores are the
challenge's: pooled over all images of a split (F1 from the summed counts; object Dice and
Hausdorff weighting each object by its share of the whole split's gland area); their
per-image means are reported too, as ``*_image_mean``. Results go to ``metrics.json`` in
the run directory, under "test", and every image's scores to ``test_per_image.csv``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from precompute import checks
from precompute.devices import resolve_device
from precompute.files import atomic_file
from precompute.store import SamaugStore, open_store
from precompute.types import SamaugError, SettingError

from .checkpoint import load_checkpoint, read_json, update_metrics
from .choices import STRATEGIES
from .config import TrainConfig
from .data import WholeImageDataset
from .fusion import FusionSettings
from .inference import all_strategies, check_certainty, predict_image
from .models import create_model
from .tasks import Task, get_task


def load_run(run_dir: str | Path, checkpoint: str = "best.pt", device: str = "auto"):
    """(model in eval mode, config, checkpoint state) of a run directory.

    The checkpoint is read without unpickling code (``train.checkpoint.load_checkpoint``);
    a missing, damaged or unsafe file is a SamaugError naming it.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    path = Path(run_dir) / checkpoint
    state = load_checkpoint(path, device, remedy="restore it, or train the run again")
    try:
        config = TrainConfig.from_dict(state["config"])
    except SettingError as err:
        raise SamaugError(f"{path}: its config is not valid here ({err})") from err
    # The checkpoint holds every weight: a pretrained file the run started from is not read
    # again (it may have moved since training).
    kwargs = {k: v for k, v in config.model_kwargs.items() if k != "pretrained"}
    model = create_model(
        config.model, in_channels=state["in_channels"], num_classes=state["num_outputs"], **kwargs
    )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise SamaugError(f"{path}: its weights do not fit its model ({err})") from err
    return model.to(device).eval(), config, state


def test_splits(store, config: TrainConfig) -> list[str]:
    """Every split the run did not train or validate on."""
    used = {config.train_split, config.val_split}
    return [s for s in store.splits() if s not in used]


@dataclass
class Evaluation:
    """A run ready to be scored: everything ``prepare_evaluation`` checked and loaded."""

    run_dir: Path
    model: torch.nn.Module
    config: TrainConfig
    task: Task
    store: SamaugStore
    splits: list[str]
    certainty: str
    overlap: float
    min_size: int
    checkpoint: str
    storage_options: dict | None = None  # for a store URL (credentials; never saved)


def prepare_evaluation(
    run_dir: str | Path,
    store_location: str | None = None,
    splits: list[str] | None = None,
    certainty: str = "margin",
    overlap: float = 0.5,
    device: str = "auto",
    min_size: int = 10,
    checkpoint: str = "best.pt",
    storage_options: dict | None = None,
    cache: str | Path | None = None,
) -> Evaluation:
    """Check every setting and load the run and its store; no image is read yet.

    SettingError / SamaugError for: an unknown certainty, min_size < 0, overlap outside
    [0, 1), a device torch does not have, a missing or unreadable checkpoint, a split the
    store lacks (the message lists the store's), or no split left to test on.
    storage_options and cache: how a store URL is read (``open_store``).
    """
    check_certainty(certainty)
    checks.integer("--min-size", min_size, minimum=0)
    if checks.number("overlap", overlap, minimum=0) >= 1:
        raise SettingError(f"overlap must be in [0, 1), not {overlap}")
    model, config, state = load_run(run_dir, checkpoint, resolve_device(device))
    location = store_location or config.store
    store = open_store(location, storage_options, cache=cache)
    available = store.splits()
    unknown = [s for s in splits or [] if s not in available]
    if unknown:
        listed = ", ".join(f"{s} ({n} images)" for s, n in available.items()) or "none"
        raise SettingError(
            f"--split {unknown[0]!r}: {location} has no complete images in that split; "
            f"its splits: {listed}"
        )
    splits = list(splits or test_splits(store, config))
    if not splits:
        raise SettingError(f"{location} has no split besides the training ones to evaluate on")
    return Evaluation(
        Path(run_dir),
        model,
        config,
        get_task(state["task"]),
        store,
        splits,
        certainty,
        overlap,
        min_size,
        checkpoint,
        storage_options,
    )


@torch.no_grad()
def score_run(job: Evaluation) -> dict:
    """Score a prepared run on its test splits; writes and returns metrics.json's "test"
    part: {split: {strategy: {metric: value}}} (the task's aggregation, ``train.tasks``),
    plus "select_took_samaug" per split, and writes every image's scores to
    ``test_per_image.csv``."""
    config, task = job.config, job.task
    fusion = FusionSettings(config.fusion, config.seg_scale)
    took: dict[str, list[bool]] = {}
    image_rows: list[dict] = []  # one per image and strategy, named by IMAGE_KEYS
    for split in job.splits:
        dataset = WholeImageDataset(
            job.store.location, split, storage_options=job.storage_options, cache=job.store.cache
        )
        took[split] = []
        for index in range(len(dataset)):
            item = dataset[index]
            raw, augmented = (
                predict_image(job.model, item, fusion, aug, task, config.patch_size, job.overlap)
                for aug in (False, True)
            )
            combined, took_samaug = all_strategies(raw, augmented, job.certainty)
            took[split].append(bool(took_samaug[0]))
            label = item["label"].numpy()
            for strategy, probs in combined.items():
                scores = task.score(probs[0].cpu().numpy(), label, job.min_size)
                image_rows.append(
                    {"split": split, "image_id": item["image_id"], "strategy": strategy, **scores}
                )

    results: dict = {}
    groups = {split: [split] for split in job.splits}
    if task.pool_splits and len(job.splits) > 1:
        groups["all"] = list(job.splits)  # the GlaS "testA + testB" column
    for name, members in groups.items():
        results[name] = {
            strategy: task.aggregate(
                [r for r in image_rows if r["split"] in members and r["strategy"] == strategy]
            )
            for strategy in STRATEGIES
        }
        picks = [t for m in members for t in took[m]]
        results[name]["select_took_samaug"] = float(np.mean(picks))
    settings = {
        "store": job.store.location,
        "certainty": job.certainty,
        "overlap": job.overlap,
        "min_size": job.min_size,
        "checkpoint": job.checkpoint,
    }
    write_table(image_rows, job.run_dir / "test_per_image.csv")
    update_metrics(job.run_dir, {"test": results, "test_settings": settings})
    return results


def evaluate_run(run_dir: str | Path, *args, **kwargs) -> dict:
    """``score_run(prepare_evaluation(run_dir, ...))``: the arguments are
    ``prepare_evaluation``'s; returns the run's "test" results (see ``score_run``)."""
    return score_run(prepare_evaluation(run_dir, *args, **kwargs))


def comparison_rows(run_dirs: list[str | Path]) -> list[dict]:
    """One row per run, split and strategy, one column per metric (from metrics.json)."""
    rows = []
    for run_dir in run_dirs:
        config = TrainConfig.load(Path(run_dir) / "config.json")
        metrics = read_json(Path(run_dir) / "metrics.json")
        if not isinstance(metrics, dict) or "test" not in metrics:
            raise SamaugError(f"{run_dir}: no test results in metrics.json; run `samaug eval`")
        results = metrics["test"]
        for split, by_strategy in results.items():
            for strategy in STRATEGIES:
                rows.append(
                    {
                        "run": Path(run_dir).name,
                        "model": config.model,
                        "trained_on": config.mode,
                        "split": split,
                        "strategy": strategy,
                        **by_strategy[strategy],
                    }
                )
    return rows


def format_table(rows: list[dict]) -> str:
    """Aligned plain-text table (numbers to 4 decimals)."""
    if not rows:
        return "(no results)"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[_cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def write_table(rows: list[dict], path: str | Path) -> None:
    """Rows (dicts) as CSV, one column per key, floats in full precision."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_file(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
