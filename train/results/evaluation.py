"""Evaluate trained runs on the store's test splits with the paper's test-time strategies.

For every test image, one pass gives the raw-input and the augmented-input probabilities
as the run's protocol tests (``train.inference.predicting.predict_image``: whole image by
overlapping sliding windows under the patches protocol; under the polyp protocol the image
resized to 352 x 352, the output upsampled to the image's size, sigmoid and per-image min-max
normalisation); from them the four strategies: ``raw``, ``samaug``, ``ensemble`` (mean of the
two) and ``select`` (per image the more certain, by default the released code's
``margin_minmax``). Each is scored by the run's task (``train.tasks``, with the metrics of
``train.metrics``):

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
the run directory, under "test" (the settings under "test_settings"), and every image's
scores to ``test_per_image.csv``.

A model is a run directory, a bundle or a checkpoint file (``load_model``); the results of a
file go to a folder beside it (``results_dir``). With ``tta="flip"`` each probability map is
the mean over mirrorings (``train.inference.tta``). With ``save_predictions`` every
image's prediction files are written, one folder per split and strategy
(``train.results.saving``), the label maps being the ones scored, so ``train.results.scoring``
reads back the same numbers.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from precompute import checks
from precompute.devices import resolve_device
from precompute.files import atomic_file
from precompute.store import SamaugStore, open_store
from precompute.types import SamaugError, SettingError
from train.choices import DEFAULT_CERTAINTY, STRATEGIES
from train.data.datasets import WholeImageDataset
from train.fusion import FusionSettings
from train.inference import tta as test_time
from train.inference.predicting import all_strategies, check_certainty
from train.models import create_model
from train.results.bundle import read_model
from train.results.prediction_files import prepare_folder, write_index
from train.results.provenance import check_store, uses_priors
from train.results.saving import FileSettings, made_by, save_probs
from train.tasks import Task, get_task
from train.training.checkpoint import read_json, update_metrics
from train.training.config import TrainConfig
from train.training.run_log import Progress


@dataclass
class LoadedModel:
    """A model ready to predict: the network in eval mode, its config and task, the
    checkpoint-like state it came from (``train.results.bundle.read_model``), where it was named
    (``source``) and the file read (``path``)."""

    model: torch.nn.Module
    config: TrainConfig
    task: Task
    state: dict
    source: Path
    path: Path


def load_model(
    source: str | Path, checkpoint: str = "best.pt", device: str | torch.device = "auto"
) -> LoadedModel:
    """The model of a run directory (its ``checkpoint``), a bundle or a checkpoint file.

    Read without unpickling code (``train.results.bundle.read_model``); a missing, damaged, unsafe
    or foreign file is a SamaugError naming it.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    state, path = read_model(source, checkpoint, device)
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
    return LoadedModel(
        model.to(device).eval(), config, get_task(state["task"]), state, Path(source), path
    )


def load_run(run_dir: str | Path, checkpoint: str = "best.pt", device: str = "auto"):
    """(model in eval mode, config, checkpoint state) of a run directory, bundle or
    checkpoint file (``load_model``)."""
    loaded = load_model(run_dir, checkpoint, device)
    return loaded.model, loaded.config, loaded.state


def results_dir(source: str | Path) -> Path:
    """Where evaluating ``source`` writes metrics.json and test_per_image.csv: a run
    directory itself; beside a bundle or checkpoint file, ``<its name>_eval``."""
    source = Path(source)
    return source if source.is_dir() else source.with_name(f"{source.stem}_eval")


def check_splits(store: SamaugStore, splits: list[str] | tuple[str, ...] | None) -> None:
    """SettingError naming the store's splits when one of ``splits`` is not among them."""
    available = store.splits()
    unknown = [s for s in splits or [] if s not in available]
    if unknown:
        listed = ", ".join(f"{s} ({n} images)" for s, n in available.items()) or "none"
        raise SettingError(
            f"--split {unknown[0]!r}: {store.location} has no complete images in that split; "
            f"its splits: {listed}"
        )


def test_splits(store, config: TrainConfig) -> list[str]:
    """Every split the run did not train or validate on."""
    used = {config.train_split, config.val_split}
    return [s for s in store.splits() if s not in used]


@dataclass
class Evaluation:
    """A run ready to be scored: everything ``prepare_evaluation`` checked and loaded."""

    run_dir: Path  # where the results go (``results_dir``)
    model: torch.nn.Module
    config: TrainConfig
    task: Task
    store: SamaugStore
    splits: list[str]
    certainty: str
    overlap: float
    min_size: int
    checkpoint: str
    loaded: LoadedModel | None = None
    tta: str = "none"
    predictions: Path | None = None  # --save-predictions: <it>/<split>/<strategy>/
    files: FileSettings = FileSettings()
    storage_options: dict | None = None  # for a store URL (credentials; never saved)


def prepare_evaluation(
    run_dir: str | Path,
    store_location: str | None = None,
    splits: list[str] | None = None,
    certainty: str = DEFAULT_CERTAINTY,
    overlap: float = 0.5,
    device: str = "auto",
    min_size: int = 10,
    checkpoint: str = "best.pt",
    tta: str = "none",
    save_predictions: str | Path | None = None,
    save_probabilities: bool = False,
    probability_format: str = "npz",
    overlay: bool = False,
    storage_options: dict | None = None,
    cache: str | Path | None = None,
) -> Evaluation:
    """Check every setting and load the run and its store; no image is read yet.

    run_dir: a run directory, a model bundle or a checkpoint file (``load_model``).
    save_predictions: a folder to write every image's prediction files to, one subfolder
    per split and strategy (``train.results.prediction_files`` layout), with the probability
    map and the overlay as asked.

    SettingError / SamaugError for: an unknown certainty or tta, min_size < 0, overlap
    outside [0, 1), a device torch does not have, a missing or unreadable checkpoint, a
    store missing or made with priors other than the model's, a split the store lacks (the
    message lists the store's), no split left to test on, or a prediction folder holding
    files samaug did not write.
    storage_options and cache: how a store URL is read (``open_store``).
    """
    check_certainty(certainty)
    test_time.check_tta(tta)
    files = FileSettings(min_size, save_probabilities, probability_format, overlay)
    if checks.number("overlap", overlap, minimum=0) >= 1:
        raise SettingError(f"overlap must be in [0, 1), not {overlap}")
    loaded = load_model(run_dir, checkpoint, resolve_device(device))
    config = loaded.config
    location = store_location or config.store
    if store_location is None and "://" not in location and not Path(location).exists():
        raise SettingError(
            f"{run_dir}: its training store {location} is not on this machine; give --store"
        )
    store = open_store(location, storage_options, cache=cache)
    if uses_priors(config):
        check_store(loaded.state, store)
    check_splits(store, splits)
    splits = list(splits or test_splits(store, config))
    if not splits:
        raise SettingError(f"{location} has no split besides the training ones to evaluate on")
    predictions = None
    if save_predictions is not None:
        predictions = Path(save_predictions)
        if predictions.exists() and not predictions.is_dir():
            raise SettingError(f"--save-predictions {predictions} is a file; give a folder")
        for split in splits:
            for strategy in STRATEGIES:
                prepare_folder(predictions / split / strategy)
    return Evaluation(
        results_dir(run_dir),
        loaded.model,
        config,
        loaded.task,
        store,
        splits,
        certainty,
        overlap,
        min_size,
        checkpoint,
        loaded,
        tta,
        predictions,
        files,
        storage_options,
    )


def split_groups(task: Task, splits: list[str]) -> dict[str, list[str]]:
    """The groups of splits a task reports: each split, and for tasks that pool splits
    (GlaS) all of them together as "all" when there are several."""
    groups = {split: [split] for split in splits}
    if task.pool_splits and len(splits) > 1:
        groups["all"] = list(splits)  # the GlaS "testA + testB" column
    return groups


@torch.no_grad()
def score_run(job: Evaluation, progress: Progress | None = None) -> dict:
    """Score a prepared run on its test splits; writes and returns metrics.json's "test"
    part: {split: {strategy: {metric: value}}} (the task's aggregation, ``train.tasks``),
    plus "select_took_samaug" per split, and writes every image's scores to
    ``test_per_image.csv`` (and, with ``job.predictions``, every prediction's files).

    progress(split, images done, images in the split) is called after each image."""
    config, task = job.config, job.task
    fusion = FusionSettings(config.fusion, config.seg_scale)
    took: dict[str, list[bool]] = {}
    image_rows: list[dict] = []  # one per image and strategy, named by IMAGE_KEYS
    entries: dict[tuple[str, str], list[dict]] = {}
    for split in job.splits:
        dataset = WholeImageDataset(
            job.store.location, split, storage_options=job.storage_options, cache=job.store.cache
        )
        took[split] = []
        for index in range(len(dataset)):
            item = dataset[index]
            raw, augmented = (
                test_time.predict(
                    job.model,
                    item,
                    fusion,
                    aug,
                    task,
                    config.patch_size,
                    job.overlap,
                    job.tta,
                    protocol=config.protocol,
                )
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
                if job.predictions is not None:
                    folder = job.predictions / split / strategy
                    entry = save_probs(folder, item, probs, task, job.files)
                    entries.setdefault((split, strategy), []).append(entry)
            if progress is not None:
                progress(split, index + 1, len(dataset))

    results: dict = {}
    for name, members in split_groups(task, job.splits).items():
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
        "tta": job.tta,
        "model": str(job.loaded.source) if job.loaded else str(job.run_dir),
        "predictions": None if job.predictions is None else str(job.predictions),
    }
    for (split, strategy), found in entries.items():
        info = made_by(
            job.loaded.source,
            job.loaded.path,
            job.loaded.state,
            task,
            strategy,
            {**settings, **asdict(job.files), "split": split},
        )
        write_index(job.predictions / split / strategy, info, found)
    _prepare_results(job)
    write_table(image_rows, job.run_dir / "test_per_image.csv")
    update_metrics(job.run_dir, {"test": results, "test_settings": settings})
    return results


def _prepare_results(job: Evaluation) -> None:
    """Make the results folder of a bundle or checkpoint file look like a run's: its
    config.json, and the bundle's metrics as the start of metrics.json."""
    if job.loaded is None or job.loaded.source.is_dir():
        return
    job.run_dir.mkdir(parents=True, exist_ok=True)
    job.config.save(job.run_dir / "config.json")
    metrics = job.loaded.state.get("metrics")
    if isinstance(metrics, dict) and not (job.run_dir / "metrics.json").exists():
        update_metrics(job.run_dir, metrics)


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
