"""``samaug score``: the metrics of ``samaug eval`` for a folder of predictions from any tool.

Predictions are matched to the ground truth by image ID, that is by file stem
(``train.results.prediction_reader.match_predictions``): for tasks scored on instance label
maps (glands, nuclei) ``<id>.png`` / ``<id>.tif`` / ... label maps (0 = background); for tasks
scored on the foreground probability (binary) ``<id>.npz``, else ``<id>_probability.tif``, else
``<id>.png`` / ... read as a probability (8-bit: v / 255, so a 0/255 mask is 0/1). The ground
truth is a store's label maps (``--store``, its ``--split`` s, default every split) or a folder
of label maps matched the same way (``--labels``). Each image is scored by the task's own
``score_prediction`` and the splits aggregated as ``eval`` aggregates them, so a folder ``samaug
eval --save-predictions`` wrote scores to eval's numbers.

Before any image is scored: a ground-truth image without a prediction is an error naming
it; a prediction without a ground-truth image is named in the result (``extra``) and left
out, so one folder may hold the predictions of several splits. A prediction whose size
differs from its label's is an error naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from precompute.files import atomic_write_json
from precompute.listing import by_stem, image_files
from precompute.store import SamaugStore, StoreAccess, access_of
from precompute.types import InputError, SamaugError, SettingError
from train.results.prediction_files import INDEX_NAME, read_index
from train.results.prediction_reader import check_shape, match_predictions, read_prediction
from train.results.splits import check_splits, split_groups
from train.results.tables import write_csv
from train.tasks import Task, get_task, list_tasks, task_for_dataset
from train.training.run_log import Progress

SCORES = "scores.json"
PER_IMAGE = "scores_per_image.csv"
LABELS_SPLIT = "labels"  # the split name of images given by --labels


@dataclass
class Scoring:
    """A folder ready to be scored: what ``prepare_scoring`` checked and matched."""

    predictions: Path
    task: Task
    images: list[tuple[str, str]]  # (split, image ID), in order
    found: dict[str, Path]
    out: Path
    store: SamaugStore | None = None
    labels: dict[str, Path] = field(default_factory=dict)  # --labels: {image ID: file}
    extra: list[Path] = field(default_factory=list)


def prepare_scoring(
    predictions: str | Path,
    store: StoreAccess | str | None = None,
    splits: list[str] | None = None,
    labels: str | Path | None = None,
    task: str | None = None,
    out: str | Path | None = None,
) -> Scoring:
    """Check the settings, list the ground truth and match the predictions; nothing is read.

    predictions: the folder of prediction files. store (a location or a ``StoreAccess``:
    fsspec options, cache; with splits, default the splits predictions.json records as
    predicted, else all) or labels: the ground truth, exactly one. task: a name of
    ``train.tasks``; default the one predictions.json records, else the store's dataset's.
    out: where scores.json and scores_per_image.csv go (default: the predictions folder).
    """
    predictions = Path(predictions)
    if not predictions.is_dir():
        raise SettingError(f"{predictions}: no such folder of predictions")
    if (store is None) == (labels is None):
        raise SettingError("give the ground truth: --store STORE or --labels DIR (one of them)")
    if splits and store is None:
        raise SettingError("--split picks splits of a --store; --labels has none")
    opened = access_of(store).open() if store is not None else None
    made_by = _made_by(predictions)
    chosen = get_task(task) if task is not None else _recorded_task(predictions, made_by, opened)
    label_files: dict[str, Path] = {}
    if opened is not None:
        images = _store_images(opened, splits or _recorded_splits(made_by, opened))
    else:
        labels = Path(labels)
        if not labels.is_dir():
            raise SettingError(f"--labels {labels}: no such folder of label maps")
        label_files = by_stem(image_files(labels))
        if not label_files:
            raise SettingError(f"--labels {labels}: no label maps (png, tif, bmp, ...) in it")
        images = [(LABELS_SPLIT, image_id) for image_id in label_files]
    found, missing, extra = match_predictions(
        predictions, [image_id for _, image_id in images], chosen.prediction_kind
    )
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if missing[5:] else "")
        hint = f"give a {chosen.prediction_kind} file named after each image ID"
        if extra:  # predictions of images the ground truth does not hold: another set
            others = ", ".join(sorted(path.name for path in extra)[:3])
            hint = (
                f"{len(extra)} of its predictions ({others}, ...) are of images the ground "
                "truth does not hold: score them against the store, --split or --labels "
                "they were made from"
            )
        raise SamaugError(
            f"{predictions}: no prediction for {len(missing)} of {len(images)} images ({shown}); "
            f"{hint}"
        )
    out_dir = Path(out) if out is not None else predictions
    if out_dir.exists() and not out_dir.is_dir():
        raise SettingError(f"--out {out_dir} is a file; give a folder for the scores")
    return Scoring(predictions, chosen, images, found, out_dir, opened, label_files, extra)


def score_folder(job: Scoring, progress: Progress | None = None) -> dict:
    """Score every matched prediction; write ``scores.json`` ({"scores": {split or "all":
    {metric: value}}, "task", "predictions", "ground_truth", "extra"}) and every image's
    scores to ``scores_per_image.csv`` in ``job.out``. Returns the "scores" part.

    progress("score", images done, images) is called after each image."""
    rows = []
    for done, (split, image_id) in enumerate(job.images, start=1):
        label = _label(job, image_id)
        path = job.found[image_id]
        predicted = check_shape(path, read_prediction(path, job.task.prediction_kind), label.shape)
        scores = job.task.score_prediction(predicted, label)
        rows.append({"split": split, "image_id": image_id, **scores})
        if progress is not None:
            progress("score", done, len(job.images))
    splits = list(dict.fromkeys(split for split, _ in job.images))
    results = {
        name: job.task.aggregate([r for r in rows if r["split"] in members])
        for name, members in split_groups(job.task, splits).items()
    }
    truth = (
        {"store": job.store.location, "splits": splits}
        if job.store is not None
        else {"labels": str(next(iter(job.labels.values())).parent)}
    )
    job.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, job.out / PER_IMAGE)
    atomic_write_json(
        job.out / SCORES,
        {
            "scores": results,
            "task": job.task.name,
            "predictions": str(job.predictions),
            "ground_truth": truth,
            "extra": [p.name for p in job.extra],
        },
    )
    return results


def score_rows(job: Scoring, results: dict) -> list[dict]:
    """The table of a scored folder: one row per split (and "all"), one column per metric."""
    name = job.predictions.name
    return [{"predictions": name, "split": split, **scores} for split, scores in results.items()]


def _store_images(store: SamaugStore, splits: list[str] | None) -> list[tuple[str, str]]:
    check_splits(store, splits)
    images = [(split, i) for split in splits or store.splits() for i in store.ids(split)]
    unlabelled = [image_id for _, image_id in images if not store.has(image_id, "label")]
    if unlabelled:
        raise SettingError(
            f"{store.location}: {len(unlabelled)} of the images to score have no label (e.g. "
            f"{unlabelled[0]!r}); give --split with annotated splits"
        )
    return images


def _made_by(predictions: Path) -> dict:
    """The ``made_by`` of the folder's predictions.json ({} without one)."""
    if not (predictions / INDEX_NAME).exists():
        return {}
    made_by = read_index(predictions).get("made_by")
    return made_by if isinstance(made_by, dict) else {}


def _recorded_task(predictions: Path, made_by: dict, store: SamaugStore | None) -> Task:
    """The task predictions.json records, else the store's dataset's; else SettingError."""
    model = made_by.get("model")
    recorded = model.get("task") if isinstance(model, dict) else None
    if isinstance(recorded, str):
        return get_task(recorded)
    if store is not None:
        return get_task(task_for_dataset(store.attrs["dataset"]["name"]))
    raise SettingError(
        f"{predictions}: which task scores these predictions? give --task "
        f"({', '.join(list_tasks())})"
    )


def _recorded_splits(made_by: dict, store: SamaugStore) -> list[str] | None:
    """The splits predictions.json says were predicted, if they are the store's: the split
    of an eval folder, the splits of ``samaug predict --store``; else None (all)."""
    settings = made_by.get("settings")
    if not isinstance(settings, dict):
        return None
    source = settings.get("input")
    recorded = [settings.get("split")] if "split" in settings else None
    if isinstance(source, dict) and source.get("store") is not None:
        recorded = source.get("splits")
    if not recorded or not all(isinstance(s, str) and s in store.splits() for s in recorded):
        return None
    return list(recorded)


def _label(job: Scoring, image_id: str):
    if job.store is not None:
        return job.store.read(image_id, "label")
    try:
        return read_prediction(job.labels[image_id], "labels")
    except InputError as err:
        raise InputError(f"{err} (a ground-truth label map)") from err
