"""Evaluate trained runs on the store's test splits with the paper's test-time strategies.

For every test image, one pass gives the raw-input and the augmented-input probabilities
as the run's protocol tests (``train.inference.predictor.Predictor``: whole image by
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
the run directory, under "test" (the settings under "test_settings", and under "test_empty"
{split: {strategy: [image IDs]}} the images where nothing was predicted), and every image's
scores to ``test_per_image.csv``.

A model is a run directory, a bundle or a checkpoint file
(``train.results.loading.load_model``); the results of a file go to a folder beside it
(``results_dir``). With ``tta="flip"`` each probability map is the mean over mirrorings. With
``save_predictions`` every image's prediction files are written, one folder per split and
strategy (``train.results.saving``), the label maps being the ones scored, so
``train.results.scoring`` reads back the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from precompute.store import SamaugStore, StoreAccess, access_of, is_url
from precompute.types import SettingError
from train.choices import STRATEGIES
from train.data.datasets import WholeImageDataset
from train.inference.predictor import Predictor, PredictSettings
from train.modes import get_mode
from train.results.bundle import is_bundle
from train.results.loading import LoadedModel, load_model
from train.results.prediction_journal import Journal, open_journal
from train.results.provenance import check_priors_match
from train.results.saving import FileSettings, made_by, save_probs
from train.results.splits import check_splits, split_groups, test_splits
from train.results.tables import write_csv
from train.training.checkpoint import update_metrics
from train.training.run_log import Progress


def results_dir(source: str | Path) -> Path:
    """Where evaluating ``source`` writes metrics.json and test_per_image.csv: a run
    directory itself; beside a bundle or checkpoint file, ``<its name>_eval``."""
    source = Path(source)
    return source if source.is_dir() else source.with_name(f"{source.stem}_eval")


@dataclass
class Evaluation:
    """A run ready to be scored: everything ``prepare_evaluation`` checked and loaded."""

    run_dir: Path  # where the results go (``results_dir``)
    loaded: LoadedModel
    predictor: Predictor
    store: SamaugStore
    splits: list[str]
    checkpoint: str
    files: FileSettings
    predictions: Path | None = None  # --save-predictions: <it>/<split>/<strategy>/
    # Each such folder's journal: an interrupted eval's files are replaced by the rerun.
    journals: dict[tuple[str, str], Journal] | None = None
    # After score_run: {split: {strategy: image IDs where nothing was predicted}}.
    empty: dict[str, dict[str, list[str]]] = field(default_factory=dict)


def prepare_evaluation(
    run_dir: str | Path,
    store: StoreAccess | str | None = None,
    splits: list[str] | None = None,
    settings: PredictSettings | None = None,
    files: FileSettings | None = None,
    device: str = "auto",
    checkpoint: str = "best.pt",
    save_predictions: str | Path | None = None,
) -> Evaluation:
    """Check every setting and load the run and its store; no image is read yet.

    run_dir: a run directory, a model bundle or a checkpoint file (``load_model``).
    store: the store to evaluate on and how it is reached (``StoreAccess``; a location or
    none: the run's training store). settings: how the model predicts (overlap, tta,
    certainty; default ``PredictSettings()``). files: the minimum size of the objects
    scored, and what is written per image (default ``FileSettings()``) with
    save_predictions: a folder to write every image's prediction files to, one subfolder
    per split and strategy (``train.results.prediction_files`` layout).

    SettingError / SamaugError for: a device torch does not have, a missing or unreadable
    checkpoint, a store missing or made with priors other than the model's, a split the
    store lacks (the message lists the store's), no split left to test on, or a prediction
    folder holding files samaug did not write (``settings`` and ``files`` check themselves
    on construction).
    """
    settings, files = settings or PredictSettings(), files or FileSettings()
    access = access_of(store if store is not None else StoreAccess(None))
    if access.location is None and is_bundle(run_dir):
        raise SettingError(
            f"{run_dir} is a model bundle: give --store (the store it names was chosen by "
            "whoever exported it; a received file never chooses the data read)"
        )
    results = results_dir(run_dir)
    if results.exists() and not results.is_dir():
        raise SettingError(
            f"{results} is a file, where evaluating {run_dir} writes its results folder; move "
            "it, or the model"
        )
    loaded = load_model(run_dir, checkpoint, device)
    config = loaded.config
    predictor = Predictor.of_run(loaded.model, config, loaded.task, settings)
    if access.location is None and not is_url(config.store) and not Path(config.store).exists():
        raise SettingError(
            f"{run_dir}: its training store {config.store} is not on this machine; give --store"
        )
    opened = access.or_location(config.store).open()
    if get_mode(config.mode).needs_priors:
        check_priors_match(loaded.state, opened)
    check_splits(opened, splits)
    splits = list(splits or test_splits(opened, config))
    if not splits:
        raise SettingError(
            f"{opened.location} has no split besides the training ones to evaluate on"
        )
    predictions, journals = None, None
    if save_predictions is not None:
        predictions = Path(save_predictions)
        if predictions.exists() and not predictions.is_dir():
            raise SettingError(f"--save-predictions {predictions} is a file; give a folder")
        journals = {
            (split, strategy): open_journal(predictions / split / strategy, {"eval": True}, [])
            for split in splits
            for strategy in STRATEGIES
        }
    return Evaluation(
        results,
        loaded,
        predictor,
        opened,
        splits,
        checkpoint,
        files,
        predictions,
        journals,
    )


def _save(job: Evaluation, split: str, strategy: str, item: dict, probs, decision) -> dict:
    """Write one image's prediction files for ``strategy``, recorded in the folder's journal
    before and after (so that the rerun of an interrupted eval replaces them)."""
    journal = job.journals[(split, strategy)]
    journal.writing(item["image_id"], job.files.names(item["image_id"]))
    entry = save_probs(journal.folder, item, probs, job.loaded.task, job.files, decision)
    journal.done(entry)
    return entry


@torch.no_grad()
def score_run(job: Evaluation, progress: Progress | None = None) -> dict:
    """Score a prepared run on its test splits; writes and returns metrics.json's "test"
    part: {split: {strategy: {metric: value}}} (the task's aggregation, ``train.tasks``),
    plus "select_took_samaug" per split, and writes every image's scores to
    ``test_per_image.csv`` (and, with ``job.predictions``, every prediction's files).

    progress(split, images done, images in the split) is called after each image."""
    task = job.loaded.task
    took: dict[str, list[bool]] = {}
    image_rows: list[dict] = []  # one per image and strategy, named by IMAGE_KEYS
    entries: dict[tuple[str, str], list[dict]] = {}
    for split in job.splits:
        dataset = WholeImageDataset(job.store, split)
        took[split] = []
        for index in range(len(dataset)):
            item = dataset[index]
            predicted = job.predictor.strategies(item)
            took[split].append(predicted.took_samaug)
            label = item["label"].numpy()
            for strategy, probs in predicted.probs.items():
                decision = task.prediction(probs[0].cpu().numpy(), job.files.min_size)
                scores = task.score_prediction(decision, label)
                image_rows.append(
                    {"split": split, "image_id": item["image_id"], "strategy": strategy, **scores}
                )
                if task.predicts_nothing(decision):
                    job.empty.setdefault(split, {}).setdefault(strategy, [])
                    job.empty[split][strategy].append(item["image_id"])
                if job.journals is not None:
                    entry = _save(job, split, strategy, item, probs, decision)
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
    settings = _settings(job)
    for (split, strategy), found in entries.items():
        info = made_by(
            job.loaded.source,
            job.loaded.path,
            job.loaded.state,
            task,
            strategy,
            {**settings, **asdict(job.files), "split": split},
        )
        job.journals[(split, strategy)].finish(info, found)
    _prepare_results(job)
    write_csv(image_rows, job.run_dir / "test_per_image.csv")
    update_metrics(
        job.run_dir, {"test": results, "test_settings": settings, "test_empty": job.empty}
    )
    return results


def _settings(job: Evaluation) -> dict:
    """What the evaluation was run with (metrics.json's "test_settings")."""
    return {
        "store": job.store.location,
        "certainty": job.predictor.settings.certainty,
        "overlap": job.predictor.settings.overlap,
        "min_size": job.files.min_size,
        "checkpoint": job.checkpoint,
        "tta": job.predictor.settings.tta,
        "model": str(job.loaded.source),
        "predictions": None if job.predictions is None else str(job.predictions),
    }


def _prepare_results(job: Evaluation) -> None:
    """Make the results folder of a bundle or checkpoint file look like a run's: its
    config.json, and the bundle's metrics as the start of metrics.json."""
    if job.loaded.source.is_dir():
        return
    job.run_dir.mkdir(parents=True, exist_ok=True)
    job.loaded.config.save(job.run_dir / "config.json")
    metrics = job.loaded.state.get("metrics")
    if isinstance(metrics, dict) and not (job.run_dir / "metrics.json").exists():
        update_metrics(job.run_dir, metrics)


def evaluate_run(run_dir: str | Path, *args, **kwargs) -> dict:
    """``score_run(prepare_evaluation(run_dir, ...))``: the arguments are
    ``prepare_evaluation``'s; returns the run's "test" results (see ``score_run``)."""
    return score_run(prepare_evaluation(run_dir, *args, **kwargs))
